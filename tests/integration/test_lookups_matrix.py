"""Every lookup on every field type, against a real Redis, compared with plain Python.

Models carry the same fields: one with every indexable field indexed (the server answers
from index ranges and from the value encodings in the meta hashes), one with no index (every
query is a scan plus a Python post-filter), and an indexed one spread over three partitions.
All hold the same ~60 documents, chosen to hit the edges: nulls, integers beyond 2**53, long
Decimals, one instant written with several UTC offsets, strings with NUL bytes and non-ASCII,
duplicates. The expected id set of each query is computed here, from the inserted values, with
plain Python comparisons.
"""

from __future__ import annotations

import json
import random
import re
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call

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

UTC = timezone.utc


def tz(hours: int, minutes: int = 0, seconds: int = 0) -> timezone:
    sign = -1 if hours < 0 else 1
    return timezone(sign * timedelta(hours=abs(hours), minutes=minutes, seconds=seconds))


def make_model(name: str, collection: str, indexed: bool, partitions: int = 1) -> Any:
    namespace = {
        "s": StringField(indexed=indexed),
        "i": IntField(indexed=indexed),
        "f": FloatField(indexed=indexed),
        "b": BooleanField(indexed=indexed),
        "dt": DateTimeField(indexed=indexed),
        "d": DecimalField(indexed=indexed),
        "u": UUIDField(indexed=indexed),
        "tags": ArrayField(StringField(), indexed=indexed),
        "j": JSONField(),
        "Meta": type("Meta", (), {"collection": collection, "partitions": partitions}),
        "__module__": __name__,
    }
    return type(name, (Document,), namespace)


MatrixIndexed = make_model("MatrixIndexed", "matrix_indexed", indexed=True)
MatrixPlain = make_model("MatrixPlain", "matrix_plain", indexed=False)
# the same, spread over three partitions (one query script per partition, merged in Python)
MatrixPartitioned = make_model("MatrixPartitioned", "matrix_partitioned", indexed=True,
                               partitions=3)
MODELS = {"indexed": MatrixIndexed, "plain": MatrixPlain, "partitioned": MatrixPartitioned}

# -- the data ---------------------------------------------------------------------------------

U1, U2, U3, U4, U5 = (uuid.UUID(f"{n:08x}-0000-4000-8000-{n:012x}") for n in (1, 2, 3, 4, 5))
U_RARE = uuid.UUID("ffffffff-ffff-4fff-bfff-ffffffffffff")
NOON = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
PI_LONG = Decimal("3.14159265358979323846264338327950288419716939937510582097494459")
BIG = 123456789012345678901234567890

# value pools: COMMON values fill most rows (duplicates), RARE ones appear exactly once
COMMON: dict[str, list[Any]] = {
    "s": [None, "", "a", "A", "ab", "abc", "abd", "b", "ba", "a\x00", "a\x00b", "\x00", "é",
          "e\u0301", "日本", "😀", "a😀b", "zz", "a b", "%41", "a:b", "Z", "a\u2028",
          "Straße", "STRASSE", "İ", "σας", "ΣΑΣ", "É", "ǅ"],
    "i": [None, 0, 1, -1, 2, 42, -42, 2**53, 2**53 + 1, 2**53 - 1, -(2**53) - 1, 2**63,
          -(2**63), 2**64 + 7, 10**30, -(10**30)],
    "f": [None, 0.0, -0.0, 0.1, 0.2, 0.1 + 0.2, 0.3, 1.0, -1.5, -1e300, 5e-324, -5e-324,
          2.0**53, 2.0**53 + 2, 3.141592653589793, 1e-7, 123456.789],
    "dt": [None, NOON, datetime(2024, 1, 1, 13, 0, tzinfo=tz(1)),  # the same instant as NOON
           datetime(2024, 1, 1, 7, 0, tzinfo=tz(-5)),  # and again
           datetime(2024, 1, 1, 17, 45, 15, tzinfo=tz(5, 45, 15)),  # and again
           datetime(2024, 1, 1, 12, 0, 0, 1, tzinfo=UTC),
           datetime(2024, 1, 1, 11, 59, 59, 999999, tzinfo=UTC),
           datetime(2024, 1, 1, 23, 30, tzinfo=tz(12)),  # 11:30 UTC
           datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
           datetime(1900, 1, 1, tzinfo=tz(5, 30)),
           datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
           datetime(1, 1, 2, 0, 0, tzinfo=tz(14))],
    "d": [None, Decimal("0"), Decimal("-0"), Decimal("0.00"), Decimal("1.1"), Decimal("1.10"),
          Decimal("-1.1"),
          Decimal("3.14159265358979323846264338327950288419716939937510582097494460"),
          Decimal("1E+30"), Decimal("-1E-30"), Decimal("123456789012345678901234567890"),
          Decimal("123456789012345678901234567890.000000000000000001"),
          Decimal("9007199254740993"), Decimal("0.1")],
    "u": [None, U1, U2, U3, U4, U5],
    "tags": [None, [], ["a"], ["a", "b"], ["b", "a"], ["a", "a"], ["b"], ["x\x00y"], ["A"],
             ["a", "b", "c"], [""], ["ab"]],
    "j": [None, {"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, [1, 2], [2, 1], [], {}, "s", "",
          0, 1.5, BIG, True, False, ["日本"]],
}
RARE: dict[str, list[Any]] = {
    "s": ["日本語"],
    "i": [BIG],
    "f": [1e300],
    "dt": [datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)],
    "d": [PI_LONG],
    "u": [U_RARE],
    "tags": [["é", "日本"]],
    "j": [{"k": "v\x00"}],
}
FIELDS = ("s", "i", "f", "b", "dt", "d", "u", "tags", "j")
ID_FORMS = ("{k}", "d{k}", "x:{k}", "日{k}", "{k}%", "a b{k}")


def _build_rows() -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(20240601)
    rows = []
    for k in range(60):
        values: dict[str, Any] = {}
        for name in FIELDS:
            if name == "b":  # False is selective (6 rows), None 10 rows, else True
                values[name] = False if k % 10 == 3 else None if k % 6 == 0 else True
                continue
            pool = COMMON[name] + RARE[name]
            values[name] = pool[k] if k < len(pool) else rng.choice(COMMON[name])
        rows.append((ID_FORMS[k % len(ID_FORMS)].format(k=k), values))
    return rows


ROWS = _build_rows()
ALL_IDS = {id for id, _ in ROWS}

# -- the expected semantics, written out plainly -------------------------------------------------


def canon(field: str, value: Any) -> Any:
    """The Python value a stored or queried value stands for (None stays None)."""
    if value is None:
        return None
    if field == "j":  # JSON values compare as canonical JSON text
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    if field == "dt":
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if field == "d":
        return Decimal(value) if isinstance(value, (int, str)) else value
    if field == "f":
        return float(value)
    if field == "u":
        return uuid.UUID(value) if isinstance(value, str) else value
    if field == "tags":
        return list(value)
    return value


def expected_match(field: str, lookup: str, stored: Any, query: Any) -> bool:
    mine = canon(field, stored)
    if lookup == "isnull":
        return (mine is None) == query
    if lookup == "exact":
        return mine is None if query is None else mine == canon(field, query)
    if lookup == "ne":
        return not expected_match(field, "exact", stored, query)
    if lookup == "in":
        return any(expected_match(field, "exact", stored, q) for q in query)
    if lookup == "nin":
        return not expected_match(field, "in", stored, query)
    if mine is None:  # ranges and string lookups never match null
        return False
    if lookup == "gt":
        return mine > canon(field, query)
    if lookup == "gte":
        return mine >= canon(field, query)
    if lookup == "lt":
        return mine < canon(field, query)
    if lookup == "lte":
        return mine <= canon(field, query)
    if lookup == "contains":  # substring for strings, membership for arrays
        return canon("s", query) in mine
    if lookup == "startswith":
        return mine.startswith(query)
    if lookup == "endswith":
        return mine.endswith(query)
    if lookup in FOLDED:  # both sides case-folded (str.casefold), as the README says
        return FOLDED[lookup](mine.casefold(), query.casefold())
    if lookup == "regex":
        return re.search(query, mine) is not None
    if lookup == "iregex":
        return re.search(query, mine, re.IGNORECASE) is not None
    raise AssertionError(lookup)


FOLDED = {"iexact": str.__eq__, "icontains": lambda v, w: w in v,
          "istartswith": str.startswith, "iendswith": str.endswith}


def expected_ids(field: str, lookup: str, query: Any) -> set[str]:
    return {id for id, values in ROWS if expected_match(field, lookup, values[field], query)}


# -- the query values of each (field, lookup) --------------------------------------------------

EQ_VALUES: dict[str, list[Any]] = {
    "s": ["a", "", "a\x00", "\x00", "日本", "e\u0301", "é", "nope", None, "A"],
    "i": [0, 1, 2**53, 2**53 + 1, -(2**53) - 1, BIG, 10**30, 7, None],
    "f": [0.0, -0.0, 0, 0.3, 0.1 + 0.2, 1, 5e-324, 2.0**53, 1e300, 99.5, None],
    "b": [True, False, None],
    "dt": [NOON, datetime(2024, 1, 1, 14, 0, tzinfo=tz(2)), datetime(2024, 1, 1, 12, 0),
           "2024-01-01T12:00:00.000001+00:00", datetime(2000, 1, 1, tzinfo=UTC), None],
    "d": [Decimal("1.1"), Decimal("1.100"), "1.1", 0, Decimal("-0.0"), PI_LONG,
          Decimal("1000000000000000000000000000000"), 9007199254740993, Decimal("0.10"), None],
    "u": [U1, str(U2), U_RARE, uuid.UUID(int=7), None],
    "tags": [["a", "b"], ["b", "a"], ["a"], ["a", "a"], [], ("a", "b"), ["x\x00y"], ["zz"], None],
    "j": [{"a": 1, "b": [1, 2]}, [1, 2], [], {}, "s", 0, False, True, BIG, 1.5, {"k": "v\x00"},
          "nope", None],
}

RANGE_VALUES: dict[str, list[Any]] = {
    "s": ["a", "", "a\x00", "ab", "b", "Z", "日本", "é", "\x00", "zzz"],
    "i": [0, -1, 2**53, 2**53 + 1, -(2**63), 10**30, BIG, 41],
    "f": [0, 0.1, 0.30000000000000004, 0.3, -1e300, 5e-324, -5e-324, 2.0**53 + 1, 1e300],
    "dt": [NOON, datetime(2024, 1, 1, 7, 0, tzinfo=tz(-5)), datetime(2024, 1, 1, 12, 0, 0, 1),
           datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), "1900-01-01T00:00:00+05:30",
           datetime(1, 1, 1, 12, tzinfo=UTC)],
    "d": [Decimal("0"), Decimal("1.10"), Decimal("1.1000000000000000000000000000000000001"),
          PI_LONG, Decimal("123456789012345678901234567890"), Decimal("-1E-31"), -1, "1E+30"],
}

IN_VALUES: dict[str, list[list[Any]]] = {
    field: [values[:2], values[2:5], [values[-2], None], [None], [values[-2]], []]
    for field, values in EQ_VALUES.items()
    if field not in ("tags", "j")
}

STRING_VALUES = {
    "contains": ["a", "", "\x00", "日", "b", "😀", "zzz", "a\x00b", "\u0301"],
    "startswith": ["", "a", "a\x00", "ab", "日", "é", "A", "e", "%"],
    "endswith": ["", "b", "\x00", "本", "a", "\u0301", "😀b"],
    "iexact": ["a", "", "A", "ABC", "É", "a\x00B", "STRASSE", "ß", "i\u0307", "σς"],
    "icontains": ["A", "", "\x00", "SS", "ß", "Σ", "\u0301", "B"],
    "istartswith": ["", "A", "a\x00", "İ", "i", "STR", "É", "Σ"],
    "iendswith": ["", "B", "\x00", "SSE", "ẞE", "ς", "Ǆ"],
    "regex": ["^a", "b$", "\\x00", "^$", "ß|ss", "^[a-z]+$", "(?s)a.b", "\\w+\\s"],
    "iregex": ["^A", "B$", "^É", "σ", "STRASSE", "^[A-Z]+$"],
}

LOOKUPS: dict[str, tuple[str, ...]] = {
    "s": ("exact", "ne", "in", "nin", "gt", "gte", "lt", "lte", "contains", "startswith",
          "endswith", "isnull", "iexact", "icontains", "istartswith", "iendswith", "regex",
          "iregex"),
    "i": ("exact", "ne", "in", "nin", "gt", "gte", "lt", "lte", "isnull"),
    "f": ("exact", "ne", "in", "nin", "gt", "gte", "lt", "lte", "isnull"),
    "d": ("exact", "ne", "in", "nin", "gt", "gte", "lt", "lte", "isnull"),
    "dt": ("exact", "ne", "in", "nin", "gt", "gte", "lt", "lte", "isnull"),
    "b": ("exact", "ne", "in", "nin", "isnull"),
    "u": ("exact", "ne", "in", "nin", "isnull"),
    "tags": ("exact", "ne", "contains", "isnull"),
    "j": ("exact", "ne", "isnull"),
}


def query_values(field: str, lookup: str) -> list[Any]:
    if lookup in ("exact", "ne"):
        return EQ_VALUES[field]
    if lookup in ("in", "nin"):
        return IN_VALUES[field]
    if lookup in ("gt", "gte", "lt", "lte"):
        return RANGE_VALUES[field]
    if lookup == "isnull":
        return [True, False]
    if field == "tags":
        return ["a", "b", "x\x00y", "", "zz", "é", "A"]
    return STRING_VALUES[lookup]


CASES = [(field, lookup) for field in FIELDS for lookup in LOOKUPS[field]]


def expression(model: Any, field: str, lookup: str, value: Any) -> Q:
    """The same condition written as a field expression."""
    ref = getattr(model, field)
    build = {
        "exact": lambda: ref == value, "ne": lambda: ref != value, "gt": lambda: ref > value,
        "gte": lambda: ref >= value, "lt": lambda: ref < value, "lte": lambda: ref <= value,
        "in": lambda: ref.in_(value), "nin": lambda: ref.not_in(value),
        "contains": lambda: ref.contains(value), "startswith": lambda: ref.startswith(value),
        "endswith": lambda: ref.endswith(value), "isnull": lambda: ref.isnull(value),
        "iexact": lambda: ref.iexact(value), "icontains": lambda: ref.icontains(value),
        "istartswith": lambda: ref.istartswith(value), "iendswith": lambda: ref.iendswith(value),
        "regex": lambda: ref.regex(value), "iregex": lambda: ref.iregex(value),
    }
    return build[lookup]()


async def insert_rows(model: Any, mode: str) -> dict[str, int]:
    """Writes ROWS; returns the version each document was written with."""
    docs = [model(id=id, **values) for id, values in ROWS]
    written = await call(model.objects, "bulk_create", mode, docs, batch_size=25)
    assert len(written) == len(ROWS)
    return {doc.id: doc.version for doc in written}


# -- tests ----------------------------------------------------------------------------------


def test_data_covers_the_edges() -> None:
    """The fixture data itself: duplicates, nulls and the rare values are where they should be."""
    for field in FIELDS:
        values = [v for _, v in ROWS]
        assert any(row[field] is None for row in values), field
    assert sum(1 for _, v in ROWS if v["s"] == "日本語") == 1
    assert sum(1 for _, v in ROWS if v["i"] == BIG) == 1
    assert sum(1 for _, v in ROWS if v["b"] is False) == 6
    assert len(ALL_IDS) == len(ROWS)
    same_instant = [v["dt"] for _, v in ROWS if v["dt"] is not None and v["dt"] == NOON]
    assert len({d.utcoffset() for d in same_instant}) >= 3


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", sorted(MODELS))
@pytest.mark.parametrize(("field", "lookup"), CASES, ids=[f"{f}__{lk}" for f, lk in CASES])
async def test_lookup(conn: Any, redis_client: Any, variant: str, mode: str, field: str,
                      lookup: str) -> None:
    model = MODELS[variant]
    await insert_rows(model, mode)
    failures = []
    for value in query_values(field, lookup):
        want = expected_ids(field, lookup, value)
        key = f"{field}__{lookup}"
        qs = model.objects.filter(**{key: value})
        docs = await call(qs, "all", mode)
        got = [doc.id for doc in docs]
        if len(got) != len(set(got)):
            failures.append(f"{key}={value!r}: duplicate rows {sorted(got)}")
        if set(got) != want:
            failures.append(f"{key}={value!r}: missing {sorted(want - set(got))}, "
                            f"unexpected {sorted(set(got) - want)}")
        count = await call(qs, "count", mode)
        if count != len(want):
            failures.append(f"{key}={value!r}: count() = {count}, expected {len(want)}")
        exists = await call(qs, "exists", mode)
        if exists != bool(want):
            failures.append(f"{key}={value!r}: exists() = {exists}, expected {bool(want)}")
        by_expression = await call(model.objects.filter(expression(model, field, lookup, value)),
                                   "all", mode)
        if {doc.id for doc in by_expression} != want:
            failures.append(f"{key}={value!r}: field expression gave "
                            f"{sorted(doc.id for doc in by_expression)}")
        excluded = await call(model.objects.exclude(**{key: value}), "all", mode)
        if {doc.id for doc in excluded} != ALL_IDS - want:
            failures.append(f"exclude({key}={value!r}): missing "
                            f"{sorted(ALL_IDS - want - {d.id for d in excluded})}, unexpected "
                            f"{sorted({d.id for d in excluded} & want)}")
        excluded_count = await call(model.objects.exclude(**{key: value}), "count", mode)
        if excluded_count != len(ALL_IDS - want):
            failures.append(f"exclude({key}={value!r}).count() = {excluded_count}, expected "
                            f"{len(ALL_IDS - want)}")
    assert not failures, "\n".join(failures)
    if mode == "sync":
        assert_indexes_consistent(redis_client, model)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", sorted(MODELS))
async def test_values_round_trip(conn: Any, variant: str, mode: str) -> None:
    """What comes back equals what went in, field by field, with the same types."""
    model = MODELS[variant]
    versions = await insert_rows(model, mode)
    docs = await call(model.objects, "all", mode)
    by_id = {doc.id: doc for doc in docs}
    assert set(by_id) == ALL_IDS
    for id, values in ROWS:
        doc = by_id[id]
        assert doc.version == versions[id] > 0
        for field, value in values.items():
            got = getattr(doc, field)
            if field == "j":
                assert json.dumps(got, sort_keys=True) == json.dumps(value, sort_keys=True)
                assert type(got) is type(value), (id, field, got, value)
            else:
                assert got == value, (id, field, got, value)
                assert type(got) is type(value), (id, field, got, value)
            if field == "dt" and value is not None:
                # the offset is kept, unless it is not a whole number of minutes (+05:45:15):
                # then the value is converted to UTC (DateTimeField's docstring)
                offset = value.utcoffset()
                kept = timedelta(0) if offset % timedelta(minutes=1) else offset
                assert got.utcoffset() == kept, (id, got, value)
            if field == "d" and value is not None:
                assert str(got) == str(value), (id, got, value)  # every digit, and the exponent


EXPLAIN_CASES = {
    "s": ("s", "日本語"),
    "i": ("i", BIG),
    "f": ("f", 1e300),
    "b": ("b", False),
    "dt": ("dt", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    "d": ("d", PI_LONG),
    "u": ("u", U_RARE),
    "tags": ("tags__contains", "日本"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("field", sorted(EXPLAIN_CASES))
async def test_explain_index_versus_scan(conn: Any, field: str, mode: str) -> None:
    """A selective filter on an indexed field uses its index; unindexed ones scan and filter
    in Python."""
    key, value = EXPLAIN_CASES[field]
    for model in (MatrixIndexed, MatrixPlain):
        await insert_rows(model, mode)
    indexed = await call(MatrixIndexed.objects.filter(**{key: value}), "explain", mode)
    assert indexed.scanned is False, str(indexed)
    assert indexed.client_filter is None, str(indexed)
    assert field in indexed.indexes, str(indexed)
    plain = await call(MatrixPlain.objects.filter(**{key: value}), "explain", mode)
    assert plain.scanned is True, str(plain)
    assert plain.client_filter is not None, str(plain)
    assert plain.indexes == (), str(plain)
    # and both answer the same
    a = await call(MatrixIndexed.objects.filter(**{key: value}), "all", mode)
    b = await call(MatrixPlain.objects.filter(**{key: value}), "all", mode)
    assert [d.id for d in a] == [d.id for d in b]
    assert len(a) >= 1


@pytest.mark.parametrize("mode", MODES)
async def test_explain_json_field_always_scans(conn: Any, mode: str) -> None:
    for model in (MatrixIndexed, MatrixPlain):
        await insert_rows(model, mode)
        explanation = await call(model.objects.filter(j={"k": "v\x00"}), "explain", mode)
        assert explanation.scanned is True, str(explanation)
        assert explanation.client_filter is not None, str(explanation)


@pytest.mark.parametrize("mode", MODES)
async def test_mixed_indexed_and_unindexed_filter(conn: Any, mode: str) -> None:
    """An indexed condition drives, the unindexed one is a client filter; same answer."""
    await insert_rows(MatrixIndexed, mode)
    (row,) = [v for _, v in ROWS if v["s"] == "日本語"]
    for j, hit in ((row["j"], True), ({"other": 1}, False)):
        qs = MatrixIndexed.objects.filter(s="日本語", j=j)
        explanation = await call(qs, "explain", mode)
        assert explanation.scanned is False, str(explanation)
        assert explanation.client_filter is not None, str(explanation)
        want = {id for id, v in ROWS
                if v["s"] == "日本語" and expected_match("j", "exact", v["j"], j)}
        assert len(want) == (1 if hit else 0)
        assert {d.id for d in await call(qs, "all", mode)} == want
        assert await call(qs, "count", mode) == len(want)
        assert await call(qs, "exists", mode) is hit


ID_CASES = [
    ("exact", "0"), ("exact", 0), ("exact", "x:2"), ("exact", "日3"), ("exact", "4%"),
    ("exact", "a b5"), ("exact", "missing"), ("exact", None),
    ("ne", "0"), ("ne", "missing"), ("ne", None),
    ("in", ["0", 6, "missing", "x:2"]), ("in", ["missing"]), ("in", []), ("in", ["d1", None]),
    ("nin", ["0", "d1", "missing"]), ("nin", []), ("nin", [None]), ("nin", ["日3", None]),
]


def expected_id_match(lookup: str, id: str, query: Any) -> bool:
    def same(q: Any) -> bool:
        return q is not None and str(q) == id  # an id is never null

    if lookup == "exact":
        return same(query)
    if lookup == "ne":
        return not same(query)
    if lookup == "in":
        return any(same(q) for q in query)
    return not any(same(q) for q in query)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", sorted(MODELS))
@pytest.mark.parametrize(("lookup", "value"), ID_CASES, ids=[f"{lk}-{v!r}" for lk, v in ID_CASES])
async def test_id_lookup(conn: Any, variant: str, mode: str, lookup: str, value: Any) -> None:
    """Lookups on the id. None is a value no id equals: ``id=None`` matches nothing and
    ``id__ne=None`` everything (or the query is refused with a QueryError)."""
    from quantumorm import QueryError

    model = MODELS[variant]
    await insert_rows(model, mode)
    want = {id for id, _ in ROWS if expected_id_match(lookup, id, value)}
    try:
        qs = model.objects.filter(**{f"id__{lookup}": value})
        got = [doc.id for doc in await call(qs, "all", mode)]
        count = await call(qs, "count", mode)
        exists = await call(qs, "exists", mode)
        combined = await call(model.objects.filter(Q(**{f"id__{lookup}": value}) & Q(b=False)),
                              "all", mode)
    except QueryError:
        assert value is None or (isinstance(value, list) and None in value)
        return
    assert sorted(got) == sorted(want)
    assert len(got) == len(set(got))
    assert count == len(want)
    assert exists is bool(want)
    assert {d.id for d in combined} == {id for id in want if dict(ROWS)[id]["b"] is False}
