"""Differential test of update operators: Redis, SQLite, PostgreSQL and a plain-Python
application of the same random operators to the documents the same random query matches
must leave the same stored documents and report the same counts, through the blocking API
and through asyncio.

The Python side is written here from the documented rules (a stored null counts as 0 for
``inc`` and as ``[]`` for the list operators), not taken from the library.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_differential import PROFILE, holds

import postgres_support
import quantumorm
from quantumorm import (
    ArrayField,
    BooleanField,
    DecimalField,
    Document,
    FloatField,
    IntField,
    Q,
    StringField,
)

WORDS = ["", "a", "ab", "é"]
POOLS: dict[str, list[Any]] = {"s": WORDS, "n": [-2, 0, 1, 2**53 + 1],
                               "f": [-1.5, 0.0, 0.25], "d": [Decimal("-1"), Decimal("0.10")],
                               "b": [True, False], "w": WORDS}
TAGS = ["x", "y", "z"]


def declare(backend: str) -> type[Document]:
    meta = type("Meta", (), {"backend": backend, "collection": "updiff", "namespace": "ud"})
    return type(f"UpDiff{backend.title()}", (Document,), {
        "s": StringField(indexed=True), "n": IntField(indexed=True),
        "f": FloatField(indexed=True), "d": DecimalField(indexed=True),
        "b": BooleanField(indexed=True), "tags": ArrayField(StringField(), indexed=True),
        "w": StringField(), "Meta": meta,
    })


MODELS = {backend: declare(backend) for backend in ("redis", "sqlite", "postgres")}


def reference_apply(doc: dict[str, Any], ops: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc)
    for key, value in ops.items():
        op, _, name = key.partition("__")
        current = out[name]
        if op == "set":
            out[name] = value
        elif op == "unset":
            out[name] = None
        elif op in ("inc", "dec"):
            out[name] = (current or 0) + (value if op == "inc" else -value)
        elif op in ("push", "push_all"):
            out[name] = (current or []) + ([value] if op == "push" else list(value))
        elif op in ("pull", "pull_all"):
            gone = [value] if op == "pull" else list(value)
            out[name] = [item for item in current or [] if item not in gone]
        else:  # add_to_set
            out[name] = (current or []) + ([] if value in (current or []) else [value])
    return out


@st.composite
def operators(draw: st.DrawFn) -> dict[str, Any]:
    choices: dict[str, st.SearchStrategy[tuple[str, Any]]] = {
        "n": st.tuples(st.sampled_from(["inc", "dec"]), st.sampled_from([1, 3, 2**40])),
        "f": st.tuples(st.just("inc"), st.sampled_from([0.5, -1.25, 2])),
        "d": st.tuples(st.just("inc"), st.sampled_from([Decimal("0.05"), 1])),
        "tags": st.one_of(
            st.tuples(st.sampled_from(["push", "pull", "add_to_set"]), st.sampled_from(TAGS)),
            st.tuples(st.sampled_from(["push_all", "pull_all"]),
                      st.lists(st.sampled_from(TAGS), max_size=2))),
        "s": st.one_of(st.tuples(st.just("set"), st.sampled_from(WORDS)),
                       st.just(("unset", True))),
        "w": st.just(("unset", True)),
    }
    names = draw(st.lists(st.sampled_from(sorted(choices)), min_size=1, max_size=4,
                          unique=True))
    ops = {}
    for name in names:
        op, value = draw(choices[name])
        ops[f"{op}__{name}"] = value
    return ops


documents = st.lists(st.fixed_dictionaries({
    **{name: st.one_of(st.none(), st.sampled_from(pool)) for name, pool in POOLS.items()},
    "tags": st.one_of(st.none(), st.lists(st.sampled_from(TAGS), max_size=3)),
}), min_size=0, max_size=12)
conditions = st.one_of(
    st.sampled_from(["s", "b", "w"]).flatmap(lambda field: st.tuples(
        st.just(field), st.just("exact"), st.sampled_from(POOLS[field]))),
    st.tuples(st.just("n"), st.sampled_from(["gte", "lt"]), st.sampled_from(POOLS["n"])),
    st.tuples(st.just("tags"), st.just("contains"), st.sampled_from(TAGS)),
    st.tuples(st.just("s"), st.just("isnull"), st.booleans()))


@pytest.fixture
async def stores(redis_url: str, redis_client: Any, postgres_url: str) -> Any:
    redis_client.flushdb()
    postgres_support.reset(postgres_url)
    quantumorm.create_connection(backend="redis", url=redis_url, name="ud-redis")
    quantumorm.create_connection(backend="sqlite", url="sqlite://", name="ud-sqlite")
    quantumorm.create_connection(backend="postgres", url=postgres_url, name="ud-postgres")
    yield
    try:
        await quantumorm.aclose_all()
    finally:
        quantumorm.close_all()


async def _run(qs: Any, ops: dict[str, Any], one: bool) -> tuple[int, list[Any]]:
    count = await (qs.update_one(**ops) if one else qs.update(**ops))
    return count, await qs.model.objects.all()


def _run_sync(qs: Any, ops: dict[str, Any], one: bool) -> tuple[int, list[Any]]:
    count = qs.update_one_sync(**ops) if one else qs.update_sync(**ops)
    return count, qs.model.objects.all_sync()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_update_operators_agree_with_python(stores: Any, mode: str) -> None:
    @settings(settings.get_profile(PROFILE))
    @given(docs=documents, condition=conditions, ops=operators(), one=st.booleans())
    def check(docs: list[dict[str, Any]], condition: tuple[str, str, Any],
              ops: dict[str, Any], one: bool) -> None:
        stored = [{"id": f"k{i:02}", **d} for i, d in enumerate(docs)]
        cleaned: list[dict[str, Any]] = []
        for model in MODELS.values():
            model.objects.delete_sync()
            saved = model.objects.bulk_create_sync([model(**d) for d in stored])
            cleaned = [doc.to_dict() for doc in saved]
        field, lookup, value = condition
        hits = [d["id"] for d in cleaned if holds(d, field, lookup, value)]
        if one:
            hits = sorted(hits)[:1]  # the first by id (no order given)
        want = [reference_apply(d, ops) if d["id"] in hits else d for d in cleaned]
        for backend, model in MODELS.items():
            qs = model.objects.filter(Q(**{f"{field}__{lookup}": value}))
            if mode == "sync":
                count, after = _run_sync(qs, ops, one)
            else:
                count, after = asyncio.run(_run(qs, ops, one))
            assert count == len(hits), (backend, mode, condition, ops)
            got = sorted((doc.to_dict() for doc in after), key=lambda d: d["id"])
            assert got == want, (backend, mode, condition, ops)

    check()

