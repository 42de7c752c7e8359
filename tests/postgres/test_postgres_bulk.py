"""Bulk inserts as one set-based statement (``_bulk_insert``), and the request-by-request
path they fall back to when something is taken: the same results and the same typed errors
either way."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from postgres_helpers import MODES, call, ids_of, sql

from quantumorm import (
    ArrayField,
    DateTimeField,
    DecimalField,
    Document,
    FloatField,
    IntField,
    JSONField,
    StringField,
)
from quantumorm.backends.postgres import backend as pg_backend
from quantumorm.backends.postgres.schema import Layout
from quantumorm.engine.contract import WriteRequest, encode_document
from quantumorm.errors import BulkWriteError, DuplicateIdError, UniqueViolation


class Member(Document):
    email = StringField(unique=True)
    team = StringField()
    rank = IntField(indexed=True)
    extra = JSONField()

    class Meta:
        backend = "postgres"
        collection = "members"
        indexes = [{"fields": ("team", "rank"), "unique": True, "name": "team_rank"}]


def _members(n: int, start: int = 0) -> list[Member]:
    return [Member(id=f"m{i}", email=f"e{i}@x", team=f"t{i % 3}", rank=i,
                   extra={"i": i, "big": 10**30}) for i in range(start, start + n)]


def test_what_goes_in_one_statement() -> None:
    layout = Layout(Member._meta)

    def request(id: str | None, kind: str = "insert", **values: Any) -> WriteRequest:
        data = {"email": values.get("email"), "team": None, "rank": None, "extra": None}
        return WriteRequest(kind, id, data=data, values=values)  # type: ignore[arg-type]

    fresh = [request(f"a{i}", email=f"{i}@x") for i in range(5)]
    plan = pg_backend._bulk_insert(layout, fresh, 1 << 20)
    assert plan is not None and len(plan.groups) == 1
    *guards, insert = plan.groups[0]
    assert [g.label for g in guards] == ["EXISTS", "UNIQUE:email"]  # (team_rank: all null)
    assert insert.sql.startswith('INSERT INTO "qorm:members"') and "unnest(" in insert.sql
    assert pg_backend._bulk_insert(layout, fresh[:3], 1 << 20) is None  # too few
    assert pg_backend._bulk_insert(layout, [*fresh, request("a0")], 1 << 20) is None  # same id
    same_email = [*fresh, request("z", email="0@x")]
    assert pg_backend._bulk_insert(layout, same_email, 1 << 20) is None
    assert pg_backend._bulk_insert(layout, [*fresh, request("n\x00l")], 1 << 20) is None
    assert pg_backend._bulk_insert(layout, fresh, 10) is None  # over the size limit


@pytest.mark.parametrize("mode", MODES)
async def test_a_bulk_insert_stores_what_single_saves_store(
        pg: Any, postgres_url: str, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Any] = []
    original = pg_backend._bulk_insert

    def spy(*args: Any) -> Any:
        built.append(original(*args))
        return built[-1]

    monkeypatch.setattr(pg_backend, "_bulk_insert", spy)
    docs = _members(20) + [Member(id="nul", email=None, team="a\x00b", rank=None)]
    saved = await call(Member.objects, "bulk_create", mode, docs)
    assert built and all(plan is not None for plan in built)  # (the set-based path)
    assert [d.version > 0 for d in saved] == [True] * len(docs)
    assert len({d.version for d in saved}) == len(docs)
    assert await call(Member.objects.filter(rank__gte=10), "count", mode) == 10
    got = await call(Member.objects, "get", mode, id="m7")
    assert (got.email, got.team, got.rank, got.extra) == ("e7@x", "t1", 7, {"i": 7, "big": 10**30})
    assert (await call(Member.objects, "get", mode, id="nul")).team == "a\x00b"
    rows = dict(sql(postgres_url, 'SELECT id, body FROM "qorm:members" WHERE id IS NOT NULL'))
    assert rows["m7"]["extra"]["big"] == 10**30 and rows["nul"] is None  # (jsonb: no U+0000)
    text = dict(sql(postgres_url, 'SELECT id, doc FROM "qorm:members"'))["m7"]
    assert text.encode() == encode_document(json.loads(text))  # the exact stored bytes
    assert json.loads(text)["email"] == "e7@x"
    # versions are those stored
    assert (await call(Member.objects, "get", mode, id="m3")).version == saved[3].version


@pytest.mark.parametrize("mode", MODES)
async def test_taken_ids_and_values_are_refused_one_by_one(pg: Any, mode: str) -> None:
    await call(Member.objects, "bulk_create", mode, _members(5))
    # one taken id, one taken email, one taken (team, rank), among fresh ones
    batch = _members(6, start=10) + [
        Member(id="m2", email="new@x", team="z", rank=99),
        Member(id="x1", email="e3@x", team="z", rank=98),
        Member(id="x2", email="x2@x", team="t1", rank=4),
    ]
    with pytest.raises(BulkWriteError) as info:
        await call(Member.objects, "bulk_create", mode, batch)
    errors = dict(info.value.errors)  # type: ignore[attr-defined]
    assert sorted(errors) == [6, 7, 8]
    assert isinstance(errors[6], DuplicateIdError)
    assert isinstance(errors[7], UniqueViolation) and errors[7].index == "email"
    assert errors[7].other_id == "m3"
    assert isinstance(errors[8], UniqueViolation) and errors[8].index == "team_rank"
    # the others were written
    assert await call(Member.objects.filter(rank__gte=10), "count", mode) == 6
    # two of one batch claiming one value: the later one is refused, naming the earlier
    twins = _members(4, start=20) + [Member(id="twin", email="e20@x", rank=77)]
    with pytest.raises(BulkWriteError) as twin:
        await call(Member.objects, "bulk_create", mode, twins)
    ((position, error),) = twin.value.errors  # type: ignore[attr-defined]
    assert position == 4 and isinstance(error, UniqueViolation) and error.other_id == "m20"
    assert ids_of(await call(Member.objects.filter(rank__gte=20, rank__lt=30), "all",
                             mode)) == ["m20", "m21", "m22", "m23"]


async def test_auto_ids_in_bulk(pg: Any) -> None:
    await Member(id="2", email="user@x").save()  # a user took an id the counter will give
    saved = await Member.objects.bulk_create([Member(email=f"a{i}@x", rank=i)
                                              for i in range(6)])
    assert "2" not in {d.id for d in saved} and len({d.id for d in saved}) == 6
    assert await Member.objects.count() == 7


def _plain(collection: str) -> Any:
    meta = type("Meta", (), {"backend": "postgres", "collection": collection})
    return type(f"Plain_{collection}", (Document,), {
        "s": StringField(indexed=True), "n": IntField(indexed=True),
        "d": DecimalField(indexed=True), "t": DateTimeField(indexed=True),
        "f": FloatField(), "j": JSONField(),
        "tags": ArrayField(StringField(), indexed=True), "Meta": meta})


BULK, ONE = _plain("via_bulk"), _plain("one_by_one")
values = st.fixed_dictionaries({
    "s": st.one_of(st.none(), st.text(max_size=6)),
    "n": st.one_of(st.none(), st.integers(-(2**70), 2**70)),
    "d": st.one_of(st.none(), st.decimals(allow_nan=False, allow_infinity=False, places=3)),
    "t": st.one_of(st.none(), st.datetimes(timezones=st.just(dt.timezone.utc))),
    "f": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
    "j": st.one_of(st.none(), st.dictionaries(st.text(max_size=3), st.integers(), max_size=3)),
    "tags": st.one_of(st.none(), st.lists(st.text(max_size=3), max_size=4)),
})


def test_the_set_based_insert_stores_the_same_rows_as_one_by_one(pg: Any,
                                                                 postgres_url: str) -> None:
    """Random documents stored by one bulk statement and by single saves: the same exact
    JSON text, jsonb copy and sort-key columns, byte for byte."""
    columns = ", ".join([*(f"k_{name}" for name in ("s", "n", "d", "t", "f", "j", "tags")),
                         "e_tags"])

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(docs=st.lists(values, min_size=pg_backend.BULK_FROM, max_size=12))
    def check(docs: list[dict[str, Any]]) -> None:
        BULK.objects.delete_sync()
        ONE.objects.delete_sync()
        BULK.objects.bulk_create_sync([BULK(id=str(i), **d) for i, d in enumerate(docs)])
        for i, d in enumerate(docs):
            ONE(id=str(i), **d).save_sync()
        query = f'SELECT id, doc, body, {columns} FROM "qorm:%s" ORDER BY id_key'
        assert sql(postgres_url, query % "via_bulk") == sql(postgres_url, query % "one_by_one")

    check()
