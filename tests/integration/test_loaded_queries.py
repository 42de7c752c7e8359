"""``all()`` of whole documents on Redis (issue 12): the documents are made by the model's
loader straight from the reply (``Reader.query_loaded``), without a ``Row`` per document
in between. Every read path of a query (a single partition's reply, a merge of
partitions' windows, rows ordered or filtered in Python, reads by id, documents stored
before the document key carried its version) gives the documents that loading the rows
of ``query()`` gives: same class, ids, versions and values, in the same order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import MODES, call

from quantumorm import ArrayField, DateTimeField, Document, IntField, StringField
from quantumorm.backends.redis import results, stored
from quantumorm.backends.redis.headed import Headed
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.engine.contract import Row


class Single(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    note = StringField()  # not indexed: checked in Python
    tags = ArrayField(StringField())
    when = DateTimeField()

    class Meta:
        collection = "loaded_single"


class Split(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    note = StringField()
    tags = ArrayField(StringField())
    when = DateTimeField()

    class Meta:
        collection = "loaded_split"
        partitions = 3


def _docs(model: type[Any]) -> list[Any]:
    return [model(id=str(i), name=f"n{i % 4}", age=i % 9, note=f"x{i % 2}",
                  tags=[f"t{i % 3}"], when=f"2024-01-{1 + i % 28:02d}T00:00:00+00:00")
            for i in range(1, 80)]


def _state(doc: Any) -> dict[str, Any]:
    return dict(doc.__dict__)


async def _by_rows(conn: Any, qs: Any) -> list[Any]:
    """The reference: query()'s rows, each loaded by ``from_storage``."""
    rows = await asyncio.to_thread(conn.run, lambda backend: backend.query(qs.model._meta,
                                                                           qs.spec))
    return [qs.model.from_storage(row.id, row.version, row.data) for row in rows]


QUERIES = [
    lambda m: m.objects.filter(name="n1"),  # an exact walk of one index
    lambda m: m.objects.filter(age__gte=2, age__lt=6).order_by("age")[:25],
    lambda m: m.objects.filter(age__gte=2).order_by("-age", "name")[5:30],
    lambda m: m.objects.filter(name="n2", note="x0"),  # filtered in Python
    lambda m: m.objects.filter(note="x1").order_by("-note"),  # ordered in Python
    lambda m: m.objects.filter(id__in=["3", "70", "nope", "12"]).order_by("-age"),
    lambda m: m.objects.filter(id="5"),
    lambda m: m.objects.filter(name="none"),
    lambda m: m.objects.filter()[:0],
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("model", [Single, Split])
async def test_loaded_documents_are_those_of_the_rows(conn: Any, model: type[Any],
                                                      mode: str) -> None:
    await call(model.objects, "bulk_create", mode, _docs(model))
    for make in QUERIES:
        qs = make(model)
        got = await call(qs, "all", mode)
        expected = await _by_rows(conn, qs)
        assert all(type(doc) is model for doc in got)
        assert [_state(doc) for doc in got] == [_state(doc) for doc in expected], qs
    assert len(await call(QUERIES[0](model), "all", mode)) == 20


def test_query_still_gives_rows(conn: Any) -> None:
    Single.objects.bulk_create_sync(_docs(Single))
    spec = Single.objects.filter(name="n1").spec
    rows = conn.run(lambda backend: backend.query(Single._meta, spec))
    assert [type(row).__name__ for row in rows] == ["Row"] * 20
    assert rows[0].data["name"] == "n1" and rows[0].version > 0


@pytest.mark.usefixtures("format2_writes")
@pytest.mark.parametrize("mode", MODES)
async def test_documents_stored_without_their_version_load_alike(
        conn: Any, redis_client: Any, mode: str) -> None:
    """A document key of the earlier format (JSON alone, the version in the meta hash)
    beside ones that carry their version, in one reply (format 2's: a format-3 document
    has no meta hash to keep its version)."""
    await call(Single.objects, "bulk_create", mode, _docs(Single))
    keys = KeySpace(Single._meta)
    versions = {}
    for id in ("1", "9"):  # both named n1
        versions[id], payload = stored.split(redis_client.get(keys.doc(0, id)))
        redis_client.set(keys.doc(0, id), payload)
    got = await call(Single.objects.filter(name="n1"), "all", mode)
    assert [_state(doc) for doc in got] == [
        _state(doc) for doc in await _by_rows(conn, Single.objects.filter(name="n1"))]
    found = {doc.id: doc for doc in got}
    assert (found["1"].version, found["9"].version) == (versions["1"], versions["9"])
    assert found["9"].tags == ["t0"] and found["9"].when.day == 10


@pytest.mark.parametrize("format", [3, 2])
def test_a_single_partition_query_makes_no_row(conn: Any, monkeypatch: Any, format: int,
                                               request: Any) -> None:
    """The point of the loaded path: one object per document (its instance), not two, a
    format-3 document's (its version a Headed) as a format-2 one's; and reads by id."""
    if format == 2:
        request.getfixturevalue("format2_writes")
    Single.objects.bulk_create_sync(_docs(Single))
    made: list[str] = []
    init = Row.__init__

    def counted(self: Row, id: str, version: int, data: dict[str, Any]) -> None:
        made.append(id)
        init(self, id, version, data)

    monkeypatch.setattr(Row, "__init__", counted)
    got = Single.objects.filter(age__gte=1, age__lt=4).order_by("age").all_sync()
    assert len(got) == 27 and made == []
    assert all((type(doc.version) is Headed) == (format == 3) for doc in got)
    # (reads by id: one Row per document, made inline, not by results.row())
    calls: list[str] = []
    row = results.row

    def counted_row(options: Any, id: str, version: Any, raw: bytes) -> Any:
        calls.append(id)
        return row(options, id, version, raw)

    monkeypatch.setattr(results, "row", counted_row)
    many = Single.objects.get_many_sync([doc.id for doc in got])
    assert [doc.version for doc in many] == [doc.version for doc in got] and calls == []
    assert all((type(doc.version) is Headed) == (format == 3) for doc in many)
    made.clear()
    # (a merge of partitions' windows still makes rows first)
    Split.objects.bulk_create_sync(_docs(Split))
    made.clear()
    assert len(Split.objects.filter(name="n1").order_by("age").all_sync()) == 20
    assert len(made) == 20
