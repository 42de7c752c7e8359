"""Differential test: random queries answered by Redis (planner + query.lua) and by Python.

A fixed data set with small value domains (many ties and nulls) is stored once per model;
hypothesis then builds random nested AND/OR/NOT filters over every lookup, random orderings,
offsets, limits and keyset positions. The ids Redis returns, in order, must equal the ids the
reference evaluator (:mod:`quantumorm.query.evaluate`) selects and sorts in Python, and
``count()``/``exists()`` must agree. Runs with one partition and with several (merge path).
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest
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
    Q,
    StringField,
)
from quantumorm.query.nodes import ID
from reference_queries import assert_query_agrees, expected_ids

WORDS = ["", "a", "ab", "abc", "b", "ba", "é", "a\x00b", "zz"]
# against folding that is not full Unicode case folding ("ß" -> "ss"), "İ", final sigma
FOLD_WORDS = ["ß", "SS", "İ", "i", "ΣΑΣ", "σας", "É"]
PATTERNS = ["^a", "ß|ss", "é$", "^$", "\\x00", "^[a-z]+$", "(?i)^s", "σ"]
FOLDED = ["iexact", "icontains", "istartswith", "iendswith"]
TZ = dt.timezone(dt.timedelta(hours=5, minutes=30))
TIMES = [dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(2024, 1, 1, 5, 30, tzinfo=TZ),
         dt.datetime(2023, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc),
         dt.datetime(2030, 6, 1, 12, tzinfo=TZ)]
INTS = [-(2**60), -5, -1, 0, 1, 2, 5, 2**53, 2**53 + 1, 10**30]
DECIMALS = [Decimal("-1.5"), Decimal("0"), Decimal("0.10"), Decimal("0.1"), Decimal("2.5"),
            Decimal("12345678901234567890.123456789")]
FLOATS = [-2.5, -0.0, 0.0, 0.1, 0.30000000000000004, 1e300]
TAGS = ["x", "y", "z", "x y"]


def make_model(name: str, partitions: int) -> type[Document]:
    class Meta:
        collection = name
        indexes = [("s", "n")]

    Meta.partitions = partitions  # type: ignore[attr-defined]
    attrs: dict[str, Any] = {
        "s": StringField(indexed=True),
        "n": IntField(indexed=True),
        "d": DecimalField(indexed=True),
        "t": DateTimeField(indexed=True),
        "b": BooleanField(indexed=True),
        "tags": ArrayField(StringField(), indexed=True),
        "f": FloatField(),
        "s2": StringField(),
        "n2": IntField(),
        "Meta": Meta,
    }
    return type(name.capitalize(), (Document,), attrs)


Single = make_model("diff_single", 1)
Multi = make_model("diff_multi", 3)

PICK = {
    "s": WORDS + FOLD_WORDS, "s2": WORDS + FOLD_WORDS, "n": INTS, "n2": INTS, "d": DECIMALS,
    "t": TIMES,
    "b": [True, False], "f": FLOATS,
}


def dataset(model: type[Document], size: int = 120) -> list[Document]:
    rng = random.Random(1234)
    docs = []
    for i in range(size):
        values: dict[str, Any] = {}
        for name, choices in PICK.items():
            values[name] = None if rng.random() < 0.15 else rng.choice(choices)
        values["tags"] = None if rng.random() < 0.1 else rng.sample(TAGS, rng.randint(0, 3))
        doc_id = str(i) if i % 4 else f"k:{i}{{x}}"  # numeric and odd string ids
        docs.append(model(id=doc_id, **values))
    return docs


LOOKUPS: dict[str, list[str]] = {
    "s": ["exact", "ne", "in", "nin", "gt", "gte", "lt", "lte", "contains", "startswith",
          "endswith", "isnull", *FOLDED, "regex", "iregex"],
    "n": ["exact", "ne", "in", "nin", "gt", "gte", "lt", "lte", "isnull"],
    "d": ["exact", "ne", "in", "gt", "lte", "isnull"],
    "t": ["exact", "gt", "lt", "gte", "isnull"],
    "b": ["exact", "ne", "in", "isnull"],
    "f": ["exact", "ne", "gt", "lte", "isnull"],
    "tags": ["contains", "isnull"],
    "s2": ["exact", "startswith", "gt", "isnull", "in", "iexact", "iregex"],
    "n2": ["exact", "lt", "gte", "nin"],
    "id": ["exact", "in", "ne", "nin", "gt", "lte"],
}
IDS = ["1", "2", "k:0{x}", "17", "999", "k:8{x}"]


@st.composite
def leaves(draw: st.DrawFn) -> Q:
    field = draw(st.sampled_from(sorted(LOOKUPS)))
    lookup = draw(st.sampled_from(LOOKUPS[field]))
    if lookup == "isnull":
        value: Any = draw(st.booleans())
    elif field == "id":
        value = draw(st.sampled_from(IDS))
    elif field == "tags":
        value = draw(st.sampled_from(TAGS))
    elif lookup in ("contains", "startswith", "endswith"):
        value = draw(st.sampled_from(WORDS))
    elif lookup in FOLDED:
        value = draw(st.sampled_from(WORDS + FOLD_WORDS))
    elif lookup in ("regex", "iregex"):
        value = draw(st.sampled_from(PATTERNS))
    else:
        value = draw(st.sampled_from(PICK[field]))
    if lookup in ("in", "nin"):
        pool = IDS if field == "id" else PICK[field]
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


ORDER_FIELDS = ["s", "n", "d", "t", "b", "f", "s2", "id"]
orderings = st.lists(
    st.tuples(st.sampled_from(ORDER_FIELDS), st.booleans()), max_size=2, unique_by=lambda x: x[0]
).map(lambda items: [("-" if desc else "") + name for name, desc in items])


@pytest.mark.parametrize("model", [Single, Multi], ids=["p1", "p3"])
def test_random_queries_agree_with_python(conn: Any, model: type[Document]) -> None:
    docs = dataset(model)
    model.objects.bulk_create_sync(docs)
    stored = {d.id: d for d in model.objects.all_sync()}
    assert set(stored) == {d.id for d in docs}
    reference = list(stored.values())

    @settings(max_examples=250, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(where=trees(), order=orderings,
           offset=st.integers(0, 5), limit=st.one_of(st.none(), st.integers(0, 12)),
           cursor_at=st.one_of(st.none(), st.integers(0, 119)))
    def check(where: Q, order: list[str], offset: int, limit: int | None,
              cursor_at: int | None) -> None:
        assert_query_agrees(model, reference, where, order, offset, limit, cursor_at)

    check()


def test_order_by_id_and_natural_id_order(conn: Any) -> None:
    docs = [Single(id=i, n=1) for i in ["10", "9", "b", "100", "a", "0"]]
    Single.objects.bulk_create_sync(docs)
    assert [d.id for d in Single.objects.all_sync()] == ["0", "9", "10", "100", "a", "b"]
    assert [d.id for d in Single.objects.order_by("-id").all_sync()] == [
        "b", "a", "100", "10", "9", "0"]
    assert [d.id for d in Single.objects.filter(n=1).order_by("-n").all_sync()] == [
        "b", "a", "100", "10", "9", "0"]
    assert ID == "id"


@pytest.mark.parametrize("model", [Single, Multi], ids=["p1", "p3"])
def test_regressions_found_by_random_queries(conn: Any, model: type[Document]) -> None:
    """Shapes the random search once found wrong, kept as fixed cases."""
    docs = dataset(model)
    model.objects.bulk_create_sync(docs)
    reference = list(model.objects.all_sync())
    cases = [
        Q(tags__contains="x") & Q(tags__contains="y"),   # no intersection of element ranges
        Q(b=True) & Q(b=False),                          # an AND of one field's equalities
        Q(tags__isnull=False),                           # empty arrays are not null
        Q(id="999"),                                     # ids that do not exist
        Q(n__gte=0) & Q(n__lt=5) & Q(s="a"),             # merged range plus another index
        Q(d=Decimal("0.1")) & Q(d__gt=Decimal("-1.5")),  # equality inside a range
        Q(n__in=INTS) & Q(s__nin=WORDS),                 # long lists: meta reads, not probes
        Q(n__in=[*INTS, None]) | Q(b__in=[True, None]),
    ]
    for where in cases:
        qs = model.objects.filter(where)
        want = expected_ids(model, reference, qs)
        assert [d.id for d in qs.all_sync()] == want, where
        assert qs.count_sync() == len(want), where
