"""Differential test: Redis, SQLite, PostgreSQL and a plain-Python evaluation of the same
random queries over the same random documents must give the same ids in the same order,
through the blocking API and through asyncio.

Documents and queries are drawn by hypothesis: nested AND/OR/NOT over every lookup on every
field type, several orderings, offsets and limits. The number of examples is the active
hypothesis profile's: ``ci`` (the default, fast) or ``long`` (``QORM_HYPOTHESIS=long``).
The Python side is written here from the documented rules, not taken from the library.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import os
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import postgres_support
import quantumorm
from quantumorm import (
    ArrayField,
    BooleanField,
    DateField,
    DateTimeField,
    DecimalField,
    Document,
    EnumField,
    FloatField,
    IntField,
    Q,
    StringField,
)

settings.register_profile("ci", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])
settings.register_profile("long", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow])
PROFILE = os.environ.get("QORM_HYPOTHESIS", "ci")

WORDS = ["", "a", "ab", "b", "é", "a\x00", "zz", "ß", "SS", "İ", "i", "Σ", "ς", "É", "E\u0301"]
#: patterns of regex/iregex: Python re syntax (classes, alternation, anchors, escapes)
PATTERNS = ["^a", "ß|ss", "é$", "^$", "\\x00", "^[a-z]+$", "\\w", "(?i)^s", "σ"]
INTS = [-(2**60), -2, 0, 1, 2**53 + 1, 10**25]
FLOATS = [-1.5, 0.0, 0.25, 3.5, 0.1, 1e30, -0.0]
DECIMALS = [Decimal("-1"), Decimal("0.1"), Decimal("0.10"), Decimal("7.25")]
TIMES = [dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
         dt.datetime(2024, 1, 1, 3, tzinfo=dt.timezone(dt.timedelta(hours=3))),
         dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc)]
TAGS = ["x", "y", "z"]


class Level(enum.Enum):
    HIGH = 10
    LOW = -1
    MID = 2


DAYS = [dt.date(1999, 12, 31), dt.date(2024, 1, 31), dt.date(2024, 2, 1)]
POOLS: dict[str, list[Any]] = {"s": WORDS, "n": INTS, "f": FLOATS, "d": DECIMALS, "t": TIMES,
                               "b": [True, False], "w": WORDS, "day": DAYS, "lvl": list(Level)}


def declare(backend: str) -> type[Document]:
    # (s has a case-folded index too, w none: the folded lookups are drawn on both)
    meta = type("Meta", (), {"backend": backend, "collection": "diff3", "namespace": "d3",
                             "indexes": [{"fields": ["s"], "casefold": True}]})
    return type(f"Diff3{backend.title()}", (Document,), {
        "s": StringField(indexed=True), "n": IntField(indexed=True),
        "f": FloatField(indexed=True), "d": DecimalField(indexed=True),
        "t": DateTimeField(indexed=True), "b": BooleanField(indexed=True),
        "tags": ArrayField(StringField(), indexed=True),
        "w": StringField(),  # unindexed
        "day": DateField(indexed=True), "lvl": EnumField(Level, indexed=True),
        "Meta": meta,
    })


MODELS = {backend: declare(backend) for backend in ("redis", "sqlite", "postgres")}


# -- the reference, written from the README's rules --------------------------------------

def _key(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc)
    if isinstance(value, str):
        return value.encode("utf-8")  # code point order
    if isinstance(value, Level):
        return value.value  # an enum of numbers: ordered by value
    return value


FOLDED = {"iexact": str.__eq__, "icontains": lambda v, w: w in v,
          "istartswith": str.startswith, "iendswith": str.endswith}


def _id_key(i: str) -> tuple[int, Any]:  # numeric ids numerically, before the others
    return (0, int(i)) if i.isdigit() and (i == "0" or not i.startswith("0")) else (1, i)


def holds(doc: dict[str, Any], field: str, lookup: str, wanted: Any) -> bool:
    value = doc["id"] if field == "id" else doc[field]
    if lookup == "isnull":
        return (value is None) is wanted
    if field == "tags":
        return value is not None and wanted in value
    if lookup == "exact":
        return value is not None and _key(value) == _key(wanted)
    if lookup == "ne":
        return value is None or _key(value) != _key(wanted)
    if lookup == "in":
        return any(holds(doc, field, "exact", w) if w is not None else value is None
                   for w in wanted)
    if lookup == "nin":
        return not holds(doc, field, "in", wanted)
    if value is None:
        return False
    if field == "id":  # ranges on the id: the id order
        a, b = _id_key(value), _id_key(wanted)
        return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[lookup]
    if lookup in FOLDED:  # the documented folding: str.casefold() of both sides
        return FOLDED[lookup](value.casefold(), wanted.casefold())
    if lookup == "regex":
        return re.search(wanted, value) is not None
    if lookup == "iregex":
        return re.search(wanted, value, re.IGNORECASE) is not None
    if lookup == "startswith":
        return bool(value.startswith(wanted))
    if lookup == "endswith":
        return bool(value.endswith(wanted))
    if lookup == "contains":
        return wanted in value
    a, b = _key(value), _key(wanted)
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[lookup]


def reference(docs: list[dict[str, Any]], where: Any, order: list[str]) -> list[str]:
    hits = [d for d in docs if where(d)]
    id_key = _id_key

    last_desc = order[-1].startswith("-") if order else False
    hits.sort(key=lambda d: id_key(d["id"]), reverse=last_desc)
    for name in reversed(order):
        field, desc = name.lstrip("-"), name.startswith("-")
        if field == "id":
            hits.sort(key=lambda d: id_key(d["id"]), reverse=desc)
            continue
        hits.sort(key=lambda d: (d[field] is not None, _key(d[field]) if d[field] is not None
                                 else 0), reverse=desc)
    return [d["id"] for d in hits]


# -- strategies ----------------------------------------------------------------------------

LOOKUPS = {"s": ["exact", "ne", "in", "nin", "gt", "lte", "startswith", "endswith",
                 "contains", "isnull", "iexact", "icontains", "istartswith", "iendswith",
                 "regex", "iregex"],
           "n": ["exact", "ne", "in", "gt", "gte", "lt", "isnull"],
           "f": ["exact", "gt", "lte"], "d": ["exact", "ne", "gte", "lt", "in"],
           "t": ["exact", "gt", "lt", "isnull"], "b": ["exact", "ne", "isnull"],
           "tags": ["contains", "isnull"], "w": ["exact", "startswith", "gt", "isnull",
                                                         "iexact", "iendswith", "iregex",
                                                         "istartswith", "icontains"],
           "id": ["exact", "in", "ne", "gt", "lte"],
           "day": ["exact", "gt", "lte", "in", "isnull"], "lvl": ["exact", "ne", "gte", "lt"]}


@st.composite
def leaf(draw: st.DrawFn) -> tuple[Any, Any]:
    field = draw(st.sampled_from(sorted(LOOKUPS)))
    lookup = draw(st.sampled_from(LOOKUPS[field]))
    if lookup == "isnull":
        value: Any = draw(st.booleans())
    elif field == "id":
        value = draw(st.sampled_from(["1", "5", "k:0", "nope"]))
    elif field == "tags":
        value = draw(st.sampled_from(TAGS))
    elif lookup in ("regex", "iregex"):
        value = draw(st.sampled_from(PATTERNS))
    elif lookup in ("startswith", "endswith", "contains", "iexact", "icontains", "istartswith",
                    "iendswith"):
        value = draw(st.sampled_from(WORDS))
    else:
        value = draw(st.sampled_from(POOLS[field]))
    if lookup in ("in", "nin"):
        pool = ["1", "5", "k:0", "nope"] if field == "id" else POOLS[field] + [None]
        value = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3))
    q = Q(**{f"{field}__{lookup}": value})
    return q, lambda d: holds(d, field, lookup, value)


def combine(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    pair = st.tuples(inner, inner)
    return st.one_of(
        pair.map(lambda p: (p[0][0] & p[1][0], lambda d, a=p[0][1], b=p[1][1]: a(d) and b(d))),
        pair.map(lambda p: (p[0][0] | p[1][0], lambda d, a=p[0][1], b=p[1][1]: a(d) or b(d))),
        inner.map(lambda x: (~x[0], lambda d, a=x[1]: not a(d))),
    )


trees = st.recursive(leaf(), combine, max_leaves=5)
documents = st.lists(st.fixed_dictionaries({
    **{name: st.one_of(st.none(), st.sampled_from(pool)) for name, pool in POOLS.items()},
    "tags": st.one_of(st.none(), st.lists(st.sampled_from(TAGS), max_size=3, unique=True)),
}), min_size=0, max_size=25)
orderings = st.lists(st.tuples(st.sampled_from(["s", "n", "d", "t", "b", "w", "id", "day",
                                                "lvl"]),
                               st.booleans()), max_size=2, unique_by=lambda x: x[0]).map(
    lambda items: [("-" if desc else "") + name for name, desc in items])


@pytest.fixture
async def stores(redis_url: str, redis_client: Any, postgres_url: str) -> Any:
    redis_client.flushdb()
    postgres_support.reset(postgres_url)
    quantumorm.create_connection(backend="redis", url=redis_url, name="d3-redis")
    quantumorm.create_connection(backend="sqlite", url="sqlite://", name="d3-sqlite")
    quantumorm.create_connection(backend="postgres", url=postgres_url, name="d3-postgres")
    yield
    try:
        await quantumorm.aclose_all()
    finally:
        quantumorm.close_all()


def _answers_sync(model: Any, qs: Any) -> tuple[list[str], int]:
    return [d.id for d in qs.all_sync()], qs.count_sync()


async def _answers(model: Any, qs: Any) -> tuple[list[str], int]:
    return [d.id for d in await qs.all()], await qs.count()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_redis_sqlite_postgres_and_python_agree(stores: Any, mode: str) -> None:
    @settings(settings.get_profile(PROFILE))
    @given(docs=documents, queries=st.lists(st.tuples(trees, orderings, st.integers(0, 4),
                                                      st.one_of(st.none(), st.integers(0, 8))),
                                            min_size=1, max_size=4))
    def check(docs: list[dict[str, Any]], queries: list[Any]) -> None:
        stored = [{"id": ("k:0" if i == 0 else str(i)), **d} for i, d in enumerate(docs)]
        cleaned = None
        for model in MODELS.values():
            model.objects.delete_sync()
            saved = model.objects.bulk_create_sync([model(**d) for d in stored])
            cleaned = [doc.to_dict() for doc in saved]  # values as the fields cleaned them
        assert cleaned is not None
        for (q, predicate), order, offset, limit in queries:
            want = reference(cleaned, predicate, order)
            end = None if limit is None else offset + limit
            want = want[offset:end]
            for backend, model in MODELS.items():
                qs = model.objects.filter(q).order_by(*order)
                qs = qs[offset:] if limit is None else qs[offset:offset + limit]
                if mode == "sync":
                    got, counted = _answers_sync(model, qs)
                else:
                    # (a loop per example: each backend's asyncio clients are made for it
                    # and closed when it ends)
                    got, counted = asyncio.run(_answers(model, qs))
                assert got == want, (backend, mode, q, order, offset, limit)
                assert counted == len(want), (backend, mode, q)

    check()
