"""A Redis document key carries its version (``backends/redis/stored.py``): reads get it
with the document and read no meta hash; documents stored before (JSON alone, the version in
the meta hash only) are read and written as before and carry their version once written;
verify() reports, and repair() mends, a document whose version differs from its meta
hash's; a collection stored by the older format is upgraded at first use, and one stored by
a newer format is refused. The tests of a version in the meta hash run on format-2 documents
(``format2_writes``: format 3, what inserts store, keeps no version there)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call, stored_payload

import quantumorm
from quantumorm import Document, IntField, SchemaMismatchError, StringField, VersionConflict
from quantumorm.backends.redis import stored
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.schema import FORMAT


class Note(Document):
    title = StringField(indexed=True)
    rank = IntField(indexed=True)

    class Meta:
        collection = "vd_notes"


KEYS = KeySpace(Note._meta)


def calls(client: Any) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(stat["calls"])
            for name, stat in client.info("commandstats").items()}


def delta(client: Any, before: dict[str, int]) -> dict[str, int]:
    return {name: n - before.get(name, 0) for name, n in calls(client).items()
            if n != before.get(name, 0)}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", ["2", "3"])
async def test_reads_take_the_version_from_the_document(conn: Any, redis_client: Any,
                                                        request: Any, mode: str,
                                                        form: str) -> None:
    """Format 2: the version in the key's prefix and the meta hash; format 3 (what inserts
    store): in the header, no meta hash. Reads read the document key alone either way."""
    if form == "2":
        request.getfixturevalue("format2_writes")
    await call(Note.objects, "bulk_create", mode,
               [Note(id=str(i), title=f"t{i % 3}", rank=i) for i in range(30)])
    raw = redis_client.get(KEYS.doc(0, "7"))
    version, payload = stored.split(raw)
    if form == "2":
        assert raw.startswith(b"\x00%d\x00{" % version)
        assert version == int(redis_client.hget(KEYS.meta(0, "7"), "v"))
    else:
        assert raw.startswith(b"\x01%d\x00" % version)
        assert not redis_client.exists(KEYS.meta(0, "7"))
    await call(Note.objects.filter(title="t1"), "all", mode)  # (scripts loaded)
    before = calls(redis_client)
    got = await call(Note.objects, "get_many", mode, ["7", "8", "9"])
    assert [d.version for d in got] == [
        stored.split(redis_client.get(KEYS.doc(0, id)))[0] for id in ("7", "8", "9")]
    rows = await call(Note.objects.filter(title="t1"), "all", mode)
    assert sorted(d.rank for d in rows) == [1, 4, 7, 10, 13, 16, 19, 22, 25, 28]
    assert all(d.version == stored.split(redis_client.get(KEYS.doc(0, d.id)))[0]
               for d in rows)
    used = delta(redis_client, before)
    # no meta hash read for any of the 13 rows: one MGET in each script, and the query's
    # layout check (an order by a field still reads each row's sort key there)
    assert used.get("hmget", 0) == 0 and used.get("hget", 0) == 1
    # (get_many: one MGET, no script; the query's script by EVALSHA or FCALL)
    assert used["mget"] == 2 and used.get("evalsha", 0) + used.get("fcall", 0) == 1
    # a stale instance is still refused: compare-and-set reads the meta hash's version
    # (format 2), the header's (format 3)
    stale = got[0]
    fresh = await call(Note.objects, "get", mode, id="7")
    fresh.rank = 70
    await call(fresh, "save", mode)
    stale.rank = 71
    with pytest.raises(VersionConflict):
        await call(stale, "save", mode)
    assert_indexes_consistent(redis_client, Note)


@pytest.mark.usefixtures("format2_writes")  # (the meta hash holds the version)
@pytest.mark.parametrize("mode", MODES)
async def test_documents_stored_without_their_version(conn: Any, redis_client: Any,
                                                      mode: str) -> None:
    """JSON alone in the document key, as the earlier format stored it."""
    await call(Note.objects, "bulk_create", mode,
               [Note(id=str(i), title="old", rank=i) for i in range(5)])
    versions = {}
    for i in range(5):
        key = KEYS.doc(0, str(i))
        versions[str(i)], payload = stored.split(redis_client.get(key))
        redis_client.set(key, payload, keepttl=True)
    got = await call(Note.objects, "get", mode, id="2")
    assert (got.rank, got.version) == (2, versions["2"])
    # read again with the meta hash's version (fetch.lua), beside one that carries its own
    await call(Note(id="new", title="new", rank=9), "save", mode)
    both = await call(Note.objects, "get_many", mode, ["new", "1", "nope"])
    assert [(d.id, d.version) for d in both if d is not None] == [
        ("new", stored.split(redis_client.get(KEYS.doc(0, "new")))[0]), ("1", versions["1"])]
    assert both[2] is None
    ordered = await call(Note.objects.filter(title="old").order_by("-rank"), "all", mode)
    assert [(d.id, d.version) for d in ordered] == [
        (str(i), versions[str(i)]) for i in (4, 3, 2, 1, 0)]
    got.rank = 20
    await call(got, "save", mode)  # compare-and-set on the meta hash's version, as before
    assert stored.split(redis_client.get(KEYS.doc(0, "2")))[0] == got.version
    assert await call(Note.objects.filter(id="3"), "update", mode, rank=30) == 1  # (patch)
    assert redis_client.get(KEYS.doc(0, "3")).startswith(b"\x00")
    four = await call(Note.objects, "get", mode, id="4")
    assert four.version == versions["4"]
    await call(four, "delete", mode)  # compare-and-set on the meta hash's version
    assert stored_payload(redis_client, KEYS.doc(0, "0")) == b'{"title":"old","rank":0}'
    assert (await call(Note.objects, "verify", mode)).ok
    assert_indexes_consistent(redis_client, Note)


@pytest.mark.usefixtures("format2_writes")  # (the meta hash holds the version)
@pytest.mark.parametrize("mode", MODES)
async def test_a_version_that_differs_from_the_meta_hash_is_found_and_mended(
        conn: Any, redis_client: Any, mode: str) -> None:
    await call(Note.objects, "bulk_create", mode,
               [Note(id=str(i), title="x", rank=i) for i in range(3)])
    key = KEYS.doc(0, "1")
    version, payload = stored.split(redis_client.get(key))
    redis_client.set(key, stored.versioned(version - 5, payload), keepttl=True)
    doc = await call(Note.objects, "get", mode, id="1")
    assert doc.version == version - 5
    doc.rank = 10
    with pytest.raises(VersionConflict):  # (never a write on the wrong version)
        await call(doc, "save", mode)
    # a rebuild of the indexes goes by the meta hash's version (not stuck on this one)
    rebuilt = await call(Note.objects, "reindex", mode)
    assert rebuilt.ready and rebuilt.documents == 3
    report = await call(Note.objects, "verify", mode)
    assert report.problems == {"version_mismatch": 1}
    assert report.samples["version_mismatch"] == ["1"]
    repaired = await call(Note.objects, "repair", mode)
    assert repaired.ok
    doc = await call(Note.objects, "get", mode, id="1")
    assert doc.version == version
    doc.rank = 10
    await call(doc, "save", mode)
    assert (await call(Note.objects, "verify", mode)).ok


def test_a_collection_of_the_older_format_is_upgraded_at_first_use(
        conn: Any, redis_client: Any) -> None:
    Note.objects.bulk_create_sync([Note(id="a", title="x", rank=1)])
    redis_client.hset(KEYS.schema, "format", str(FORMAT - 1))
    layout = int(redis_client.hget(KEYS.schema, "layout"))
    quantumorm.close_all()
    quantumorm.create_connection(backend="redis", url=conn.url, make_default=True)
    assert Note.objects.get_sync(id="a").rank == 1
    assert redis_client.hget(KEYS.schema, "format") == str(FORMAT).encode()
    # a new layout: a process still running the older format is stopped at its next call
    assert int(redis_client.hget(KEYS.schema, "layout")) > layout
    assert int(redis_client.hget(KEYS.state(0), "layout")) > layout


def test_a_collection_of_a_newer_format_is_refused(conn: Any, redis_client: Any) -> None:
    Note.objects.bulk_create_sync([Note(id="a", title="x", rank=1)])
    redis_client.hset(KEYS.schema, "format", str(FORMAT + 1))
    quantumorm.close_all()
    quantumorm.create_connection(backend="redis", url=conn.url, make_default=True)
    with pytest.raises(SchemaMismatchError, match="newer QuantumORM"):
        Note.objects.get_sync(id="a")


@pytest.mark.parametrize("tool", ["reindex", "verify", "repair", "sweep"])
def test_the_tools_refuse_a_collection_of_a_newer_format(conn: Any, redis_client: Any,
                                                         tool: str) -> None:
    # reindex() adopts the model's declaration even over a newer one (an explicit decision),
    # but never over a newer storage format: it would store the schema back at this format
    # and let this release's processes write a collection they cannot read or write right
    # (round 14's reindex() did so to a collection upgraded to format 3, and round 13's then
    # dropped the index entries of its documents written in format 3)
    Note.objects.bulk_create_sync([Note(id="a", title="x", rank=1)])
    redis_client.hset(KEYS.schema, "format", str(FORMAT + 1))
    quantumorm.close_all()
    quantumorm.create_connection(backend="redis", url=conn.url, make_default=True)
    before = {key: redis_client.dump(key) for key in redis_client.scan_iter()}
    with pytest.raises(SchemaMismatchError, match="newer QuantumORM"):
        getattr(Note.objects, f"{tool}_sync")()
    assert {key: redis_client.dump(key) for key in redis_client.scan_iter()} == before
