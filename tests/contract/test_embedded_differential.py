"""Differential test of paths into embedded documents: Redis, SQLite, PostgreSQL and a
plain-Python reference must give the same ids in the same order for random queries on
nested paths (``address__city``, ``address__geo__lat``, ``addresses__city`` through a
list), combined with AND/OR/NOT and top-level conditions, ordered by nested paths; with
and without indexes on the paths.

The reference is written here from the documented rules (quantumorm.query.paths): a path
under a null embedded document is null; through a list, a positive lookup matches when any
element's value does, ``ne``/``nin`` when the positive lookup matches no element, ``isnull``
when no element has a value.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_differential import PROFILE, combine

import postgres_support
import quantumorm
from quantumorm import (
    Document,
    EmbeddedDocument,
    EmbeddedDocumentField,
    FloatField,
    IntField,
    ListField,
    Q,
    StringField,
)

WORDS = ["", "a", "ab", "b", "é", "zz", "ß"]
ZIPS = [-3, 0, 7, 2**53 + 1]
LATS = [-1.5, 0.0, 2.25]


class Geo(EmbeddedDocument):
    lat = FloatField()


class Address(EmbeddedDocument):
    city = StringField()
    zip = IntField(db_field="z")
    geo = EmbeddedDocumentField(Geo)


def declare(backend: str, indexed: bool) -> type[Document]:
    # indexed: the paths' queries and orderings are served by indexes on the paths;
    # otherwise by a scan (Redis, PostgreSQL: checked in Python; SQLite: in a function)
    indexes = ["address__city", "address__zip", ("name", "address__geo__lat"),
               "addresses__city", "addresses__zip"] if indexed else []
    meta = type("Meta", (), {"backend": backend, "collection": f"embdiff{int(indexed)}",
                             "namespace": "ed", "indexes": indexes})
    return type(f"EmbDiff{backend.title()}{int(indexed)}", (Document,), {
        "name": StringField(indexed=True),
        "address": EmbeddedDocumentField(Address),
        "addresses": ListField(EmbeddedDocumentField(Address)),
        "Meta": meta,
    })


MODELS = {f"{backend}{' indexed' if indexed else ''}": declare(backend, indexed)
          for backend in ("redis", "sqlite", "postgres") for indexed in (False, True)}

# -- the reference ------------------------------------------------------------------------

POOLS = {"city": WORDS, "zip": ZIPS, "lat": LATS}


def _key(value: Any) -> Any:
    return value.encode("utf-8") if isinstance(value, str) else value  # code point order


def _read(doc: dict[str, Any], path: str) -> Any:
    value: Any = doc
    for step in path.split("__"):
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def _holds(value: Any, lookup: str, wanted: Any) -> bool:
    if lookup == "isnull":
        return (value is None) is wanted
    if lookup == "exact":
        return value is not None and _key(value) == _key(wanted)
    if lookup == "ne":
        return not _holds(value, "exact", wanted)
    if lookup == "in":
        return any(value is None if w is None else _holds(value, "exact", w) for w in wanted)
    if lookup == "nin":
        return not _holds(value, "in", wanted)
    if value is None:
        return False
    if lookup == "startswith":
        return bool(value.startswith(wanted))
    a, b = _key(value), _key(wanted)
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[lookup]


def holds(doc: dict[str, Any], path: str, lookup: str, wanted: Any) -> bool:
    if not path.startswith("addresses__"):
        return _holds(_read(doc, path), lookup, wanted)
    values = [_read(item, path.partition("__")[2]) for item in doc["addresses"] or ()]
    if lookup == "isnull":
        return all(v is None for v in values) is wanted
    if lookup in ("in", "nin") and None in wanted:  # None asks as exact None: no value
        rest = [w for w in wanted if w is not None]
        found = holds(doc, path, "isnull", True) or bool(rest) and holds(doc, path, "in", rest)
        return found if lookup == "in" else not found
    if lookup in ("ne", "nin"):
        positive = {"ne": "exact", "nin": "in"}[lookup]
        return not any(_holds(v, positive, wanted) for v in values)
    return any(_holds(v, lookup, wanted) for v in values)


def _id_key(i: str) -> tuple[int, Any]:
    return (0, int(i)) if i.isdigit() else (1, i)


def reference(docs: list[dict[str, Any]], where: Any, order: list[str]) -> list[str]:
    hits = [d for d in docs if where(d)]
    last_desc = order[-1].startswith("-") if order else False
    hits.sort(key=lambda d: _id_key(d["id"]), reverse=last_desc)
    for name in reversed(order):
        path, desc = name.lstrip("-"), name.startswith("-")
        if path == "id":
            hits.sort(key=lambda d: _id_key(d["id"]), reverse=desc)
            continue
        hits.sort(key=lambda d: (_read(d, path) is not None,
                                 _key(_read(d, path)) if _read(d, path) is not None else 0),
                  reverse=desc)
    return [d["id"] for d in hits]


# -- strategies -----------------------------------------------------------------------------

LOOKUPS = {
    "address__city": ["exact", "ne", "in", "nin", "gt", "startswith", "isnull"],
    "address__zip": ["exact", "ne", "gt", "lte", "in", "isnull"],
    "address__geo__lat": ["gt", "lt", "exact", "isnull"],
    "addresses__city": ["exact", "ne", "in", "nin", "startswith", "isnull"],
    "addresses__zip": ["gte", "exact", "isnull"],
    "address": ["isnull"],
    "name": ["exact", "isnull"],
}


@st.composite
def leaf(draw: st.DrawFn) -> tuple[Any, Any]:
    path = draw(st.sampled_from(sorted(LOOKUPS)))
    lookup = draw(st.sampled_from(LOOKUPS[path]))
    pool = POOLS.get(path.rpartition("__")[2], WORDS)
    value: Any
    if lookup == "isnull":
        value = draw(st.booleans())
    elif lookup in ("in", "nin"):
        value = draw(st.lists(st.sampled_from([*pool, None]), min_size=1, max_size=3))
    else:
        value = draw(st.sampled_from(pool))
    q = Q(**{f"{path}__{lookup}": value})
    if path in ("address", "name"):
        return q, lambda d: _holds(d[path], lookup, value)
    return q, lambda d: holds(d, path, lookup, value)


trees = st.recursive(leaf(), combine, max_leaves=4)
geos = st.one_of(st.none(), st.fixed_dictionaries({"lat": st.one_of(st.none(),
                                                                      st.sampled_from(LATS))}))
addresses = st.fixed_dictionaries({
    "city": st.one_of(st.none(), st.sampled_from(WORDS)),
    "zip": st.one_of(st.none(), st.sampled_from(ZIPS)),
    "geo": geos,
})
documents = st.lists(st.fixed_dictionaries({
    "name": st.one_of(st.none(), st.sampled_from(WORDS)),
    "address": st.one_of(st.none(), addresses),
    "addresses": st.one_of(st.none(), st.lists(addresses, max_size=3)),
}), max_size=15)
orderings = st.lists(st.tuples(st.sampled_from(["address__city", "address__zip",
                                                "address__geo__lat", "name", "id"]),
                               st.booleans()), max_size=2, unique_by=lambda x: x[0]).map(
    lambda items: [("-" if desc else "") + name for name, desc in items])


@pytest.fixture
async def stores(redis_url: str, redis_client: Any, postgres_url: str) -> Any:
    redis_client.flushdb()
    postgres_support.reset(postgres_url)
    quantumorm.create_connection(backend="redis", url=redis_url, name="ed-redis")
    quantumorm.create_connection(backend="sqlite", url="sqlite://", name="ed-sqlite")
    quantumorm.create_connection(backend="postgres", url=postgres_url, name="ed-postgres")
    yield
    try:
        await quantumorm.aclose_all()
    finally:
        quantumorm.close_all()


async def _answers(qs: Any) -> tuple[list[str], int]:
    return [d.id for d in await qs.all()], await qs.count()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_paths_agree_on_every_backend(stores: Any, mode: str) -> None:
    @settings(settings.get_profile(PROFILE))
    @given(docs=documents, queries=st.lists(st.tuples(trees, orderings, st.integers(0, 3),
                                                      st.one_of(st.none(), st.integers(0, 6))),
                                            min_size=1, max_size=4))
    def check(docs: list[dict[str, Any]], queries: list[Any]) -> None:
        stored = [{"id": str(i), **d} for i, d in enumerate(docs)]
        for model in MODELS.values():
            model.objects.delete_sync()
            model.objects.bulk_create_sync([model(**d) for d in stored])
        for (q, predicate), order, offset, limit in queries:
            want = reference(stored, predicate, order)
            want = want[offset:None if limit is None else offset + limit]
            for backend, model in MODELS.items():
                qs = model.objects.filter(q).order_by(*order)
                qs = qs[offset:] if limit is None else qs[offset:offset + limit]
                if mode == "sync":
                    got, counted = [d.id for d in qs.all_sync()], qs.count_sync()
                else:
                    got, counted = asyncio.run(_answers(qs))
                assert got == want, (backend, mode, q, order, offset, limit)
                assert counted == len(want), (backend, mode, q)

    check()
