"""The differential test of the SQL backends (SQLite and PostgreSQL): random queries
answered by the backend and by the Python reference.

Mirrors tests/integration/test_planner_differential.py: a fixed data set with small value
domains (many ties and nulls) on every field type, stored once; then hypothesis builds random
nested AND/OR/NOT filters over every lookup each type allows, random orderings, offsets,
limits and keyset positions. The ids the backend returns, in order, must equal those
:mod:`quantumorm.query.evaluate` selects and sorts, and ``count()`` and ``exists()`` must
agree, with every field indexed and with none (other query plans). The words include NUL,
U+00FF, U+FFFF and non-ASCII text, which a collation-ordered text column would get wrong.
The tests that run these checks are tests/sqlite/test_sqlite_differential.py and
tests/postgres/test_postgres_differential.py.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantumorm import (
    ArrayField,
    BooleanField,
    DateTimeField,
    DecimalField,
    Document,
    FloatField,
    IntField,
    JSONField,
    Q,
    StringField,
    UUIDField,
)
from reference_queries import assert_query_agrees, expected_ids

# strings chosen against the byte-level string lookups: NUL (escaped as \x00\xff in the
# encoding), a leading space (0x20 is also the string tag byte), U+00FF and U+FFFF, prefixes
WORDS = ["", "a", "ab", "abc", "b", "ba", "é", "a\x00b", "\x00", "zz", " a", "  ", "ÿ",
         "\uffff", "a\x00", "日本"]
# against case folding that is ASCII-only (SQLite's LOWER/LIKE) or collation-dependent
# (PostgreSQL's lower/ILIKE): full folding ("ß" -> "ss"), "İ", final sigma, accents, and
# a decomposed accent (never normalised)
FOLD_WORDS = ["ß", "SS", "Straße", "İ", "i", "ΣΑΣ", "σας", "É", "E\u0301", "ÿ", "Ÿ", "A"]
#: patterns of regex/iregex: Python re syntax
PATTERNS = ["^a", "ß|ss", "é$", "^$", "\\x00", "^[a-z]+$", "\\w", "(?i)^s", "σ", "b{2,}",
            "a\\Z", "^ab\\Z", "a\x00"]  # (the last three: literal, served as plain lookups)
TZ = dt.timezone(dt.timedelta(hours=5, minutes=30))
TIMES = [dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(2024, 1, 1, 5, 30, tzinfo=TZ),
         dt.datetime(2023, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc),
         dt.datetime(2030, 6, 1, 12, tzinfo=TZ)]
INTS = [-(2**60), -5, -1, 0, 1, 2, 5, 2**53, 2**53 + 1, 10**30]
DECIMALS = [Decimal("-1.5"), Decimal("0"), Decimal("0.10"), Decimal("0.1"), Decimal("2.5"),
            Decimal("12345678901234567890.123456789")]
FLOATS = [-2.5, -0.0, 0.0, 0.1, 0.30000000000000004, 1e300]
UUIDS = [uuid.UUID(int=n) for n in (0, 1, 2**127)]
JSONS: list[Any] = [{"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, [1, "x"], "x", 0, True]
TAGS = ["x", "y", "z", "x y", "\x00"]
NUMS = [1, 2, 10**20]


def make_model(name: str, indexed: bool, backend: str) -> type[Document]:
    """The data set's model on ``backend``: every field type, all indexed or none."""
    store = backend

    class Meta:
        backend = store
        collection = name
        # (indexed: s has a case-folded index too, which the folded lookups then use)
        indexes = [("s", "n"), {"fields": ["s"], "casefold": True}] if indexed else []

    attrs: dict[str, Any] = {
        "s": StringField(indexed=indexed),
        "n": IntField(indexed=indexed),
        "d": DecimalField(indexed=indexed),
        "t": DateTimeField(indexed=indexed),
        "b": BooleanField(indexed=indexed),
        "u": UUIDField(indexed=indexed),
        "tags": ArrayField(StringField(), indexed=indexed),
        "nums": ArrayField(IntField()),
        "j": JSONField(),
        "f": FloatField(),
        "s2": StringField(),
        "Meta": Meta,
    }
    return type(name.capitalize(), (Document,), attrs)


PICK: dict[str, list[Any]] = {
    "s": WORDS + FOLD_WORDS, "s2": WORDS + FOLD_WORDS, "n": INTS, "d": DECIMALS, "t": TIMES,
    "b": [True, False],
    "f": FLOATS, "u": UUIDS, "j": JSONS,
}


def dataset(model: type[Document], size: int = 120) -> list[Document]:
    rng = random.Random(1234)
    docs = []
    for i in range(size):
        values: dict[str, Any] = {}
        for name, choices in PICK.items():
            values[name] = None if rng.random() < 0.15 else rng.choice(choices)
        values["tags"] = None if rng.random() < 0.1 else rng.sample(TAGS, rng.randint(0, 3))
        values["nums"] = None if rng.random() < 0.1 else rng.sample(NUMS, rng.randint(0, 2))
        doc_id = str(i) if i % 4 else f"k:{i}{{x}}"  # numeric and odd string ids
        docs.append(model(id=doc_id, **values))
    return docs


ALL = ["exact", "ne", "in", "nin", "gt", "gte", "lt", "lte", "isnull"]
FOLDED = ["iexact", "icontains", "istartswith", "iendswith"]
TEXT = [*FOLDED, "regex", "iregex"]
LOOKUPS: dict[str, list[str]] = {
    "s": [*ALL, "contains", "startswith", "endswith", *TEXT],
    "s2": [*ALL, "contains", "startswith", "endswith", *TEXT],
    "n": ALL, "d": ALL, "t": ALL, "f": ALL,
    "b": ["exact", "ne", "in", "nin", "isnull"],
    "u": ["exact", "ne", "in", "nin", "isnull"],
    "j": ["exact", "ne", "isnull"],
    "tags": ["contains", "isnull", "exact", "ne"],
    "nums": ["contains", "isnull"],
    "id": ["exact", "in", "ne", "nin", "gt", "gte", "lt", "lte"],
}
IDS = ["1", "2", "k:0{x}", "17", "999", "k:8{x}"]


@st.composite
def leaves(draw: st.DrawFn) -> Q:
    field = draw(st.sampled_from(sorted(LOOKUPS)))
    lookup = draw(st.sampled_from(LOOKUPS[field]))
    value: Any
    if lookup == "isnull":
        value = draw(st.booleans())
    elif field == "id":
        value = draw(st.sampled_from(IDS))
    elif field == "tags":
        value = (draw(st.sampled_from(TAGS)) if lookup == "contains"
                 else draw(st.lists(st.sampled_from(TAGS), max_size=2)))
    elif field == "nums":
        value = draw(st.sampled_from(NUMS))
    elif lookup in ("contains", "startswith", "endswith"):
        value = draw(st.sampled_from(WORDS))
    elif lookup in FOLDED:
        value = draw(st.sampled_from(WORDS + FOLD_WORDS))
    elif lookup in ("regex", "iregex"):
        value = draw(st.sampled_from(PATTERNS))
    else:
        value = draw(st.sampled_from(PICK[field]))
    if lookup in ("in", "nin"):
        pool = IDS if field == "id" else [*PICK[field], None]
        value = draw(st.lists(st.sampled_from(pool), min_size=0, max_size=3))
    return Q(**{f"{field}__{lookup}": value})


def trees() -> st.SearchStrategy[Q]:
    return st.recursive(
        leaves(),
        lambda inner: st.one_of(
            st.tuples(inner, inner).map(lambda ab: ab[0] & ab[1]),
            st.tuples(inner, inner).map(lambda ab: ab[0] | ab[1]),
            inner.map(lambda q: ~q),
        ),
        max_leaves=5,
    )


ORDER_FIELDS = ["s", "n", "d", "t", "b", "f", "u", "s2", "id"]
orderings = st.lists(
    st.tuples(st.sampled_from(ORDER_FIELDS), st.booleans()), max_size=3, unique_by=lambda x: x[0]
).map(lambda items: [("-" if desc else "") + name for name, desc in items])


def check_random_queries(model: type[Document]) -> None:
    """Random filters, orderings, slices and keyset positions: the backend's ids, in order,
    are Python's (300 examples)."""
    docs = dataset(model)
    model.objects.bulk_create_sync(docs)
    stored = {d.id: d for d in model.objects.all_sync()}
    assert set(stored) == {d.id for d in docs}
    reference = list(stored.values())

    @settings(max_examples=300, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(where=trees(), order=orderings,
           offset=st.integers(0, 5), limit=st.one_of(st.none(), st.integers(0, 12)),
           cursor_at=st.one_of(st.none(), st.integers(0, 119)))
    def check(where: Q, order: list[str], offset: int, limit: int | None,
              cursor_at: int | None) -> None:
        assert_query_agrees(model, reference, where, order, offset, limit, cursor_at)

    check()


def check_every_single_lookup(model: type[Document]) -> None:
    """Each (field, lookup, value) of the domains above, exhaustively, no ordering."""
    docs = dataset(model)
    model.objects.bulk_create_sync(docs)
    reference = list(model.objects.all_sync())
    checked = 0
    for field, lookups in LOOKUPS.items():
        for lookup in lookups:
            if lookup == "isnull":
                values: list[Any] = [True, False]
            elif lookup in ("in", "nin"):
                pool = IDS if field == "id" else PICK.get(field, [])
                values = [[], pool[:3]] if field == "id" else [[], pool[:2], [pool[0], None]]
            elif field == "id":
                values = IDS
            elif field == "tags":
                values = TAGS if lookup == "contains" else [[], ["x"], ["x", "y"], ["y", "x"]]
            elif field == "nums":
                values = NUMS
            elif lookup in ("contains", "startswith", "endswith"):
                values = WORDS
            elif lookup in FOLDED:
                values = WORDS + FOLD_WORDS
            elif lookup in ("regex", "iregex"):
                values = PATTERNS
            else:
                values = PICK[field]
            for value in values:
                qs = model.objects.filter(**{f"{field}__{lookup}": value})
                want = expected_ids(model, reference, qs)
                assert [d.id for d in qs.all_sync()] == want, (field, lookup, value)
                assert [d.id for d in model.objects.exclude(**{f"{field}__{lookup}": value})
                        .all_sync()] == [d.id for d in reference if d.id not in set(want)]
                checked += 1
    assert checked > 150


def check_ties_and_nulls_order(model: type[Document]) -> None:
    """Nulls first, ties by id in natural order, both directions."""
    docs = [model(id=i, n=n) for i, n in
            [("10", 1), ("9", None), ("b", 1), ("100", None), ("a", 2), ("0", 1)]]
    model.objects.bulk_create_sync(docs)
    assert [d.id for d in model.objects.order_by("n").all_sync()] == [
        "9", "100", "0", "10", "b", "a"]
    assert [d.id for d in model.objects.order_by("-n").all_sync()] == [
        "a", "b", "10", "0", "100", "9"]
    assert [d.id for d in model.objects.all_sync()] == ["0", "9", "10", "100", "a", "b"]
