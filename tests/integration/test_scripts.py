"""The Lua scripts with ``scripts="eval"``: loaded by SHA, reloaded when the server lost
them (restart, failover, SCRIPT FLUSH), also in the middle of a pipelined plan. (As Redis
Functions, the default: test_functions.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call

import quantumorm
from quantumorm import Document, IntField, StringField
from quantumorm.errors import VersionConflict
from quantumorm.backends.redis.commands import SCRIPT_NAMES, script


class Note(Document):
    text = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "s_notes"
        partitions = 3  # several script calls in one pipeline


@pytest.mark.parametrize("mode", MODES)
async def test_every_operation_survives_a_flushed_script_cache(
        conn: Any, redis_client: Any, redis_url: str, mode: str) -> None:
    quantumorm.create_connection(url=redis_url, name="default", make_default=True,
                                 scripts="eval")

    def flush() -> None:
        redis_client.script_flush()
        assert not any(redis_client.script_exists(*(script(n).sha for n in SCRIPT_NAMES)))

    flush()
    docs = await call(Note.objects, "bulk_create", mode,
                      [Note(text=f"t{i % 4}", n=i) for i in range(40)])  # insert_many x3
    flush()
    doc = await call(Note(text="single", n=100), "save", mode)               # save
    flush()
    assert await call(Note.objects.filter(text="t1"), "count", mode) == 10   # counts
    flush()
    rows = await call(Note.objects.filter(n__gte=30).order_by("-n"), "all", mode)  # query x3
    assert [d.n for d in rows] == [100, *range(39, 29, -1)]
    flush()
    fetched = await call(Note.objects, "get_many", mode, [d.id for d in docs[:6]])  # fetch
    assert [d.n for d in fetched] == list(range(6))
    flush()
    assert await call(doc, "delete", mode) is True                            # delete
    flush()
    assert await call(Note.objects.filter(text="t2"), "update", mode, n=-1) == 10
    assert all(redis_client.script_exists(*(script(n).sha for n in SCRIPT_NAMES)))
    assert_indexes_consistent(redis_client, Note)


def test_scripts_declare_their_flags() -> None:
    """Writers refuse to start above maxmemory; readers run anywhere (no-writes)."""
    first_lines = {name: script(name).source.splitlines()[0] for name in SCRIPT_NAMES}
    assert first_lines == {
        "save": "#!lua", "insert": "#!lua", "patch": "#!lua", "insert_many": "#!lua",
        "delete": "#!lua flags=allow-oom",
        "query": "#!lua flags=no-writes", "fetch": "#!lua flags=no-writes",
        "group": "#!lua", "tx": "#!lua", "restore": "#!lua",
        # a committed two-phase commit's apply replaces what its intents hold: it must not
        # stay half applied on a full server (its prepare, tx.lua, is refused there)
        "tx_apply": "#!lua flags=allow-oom",
        # a record and a registry entry are new memory; deciding and releasing free it,
        # and finding the due ones only reads
        "tx_begin": "#!lua", "tx_open": "#!lua", "tx_decide": "#!lua flags=allow-oom",
        "tx_release": "#!lua flags=allow-oom", "tx_due": "#!lua flags=no-writes",
        "expire": "#!lua", "sweep": "#!lua flags=allow-oom", "count": "#!lua flags=no-writes",
        # the stored schema is reconciled at a model's first use, even above maxmemory (a
        # few bytes), so that reads keep working on a full server
        "schema": "#!lua flags=allow-oom", "reindex": "#!lua", "stamp": "#!lua flags=allow-oom",
        # verify reads; repair mostly frees memory, and a full server needs it most
        "inspect": "#!lua flags=no-writes", "entries": "#!lua flags=no-writes",
        "repair": "#!lua flags=allow-oom", "preflight": "#!lua flags=no-writes",
        "now": "#!lua flags=no-writes",
        # the cache (quantumorm.cache): what takes memory refuses above maxmemory; what
        # invalidates (small tombstones in place of entries) runs anyway
        "cache_read": "#!lua", "cache_fill": "#!lua", "cache_query_get": "#!lua",
        "cache_query_put": "#!lua", "cache_begin": "#!lua flags=allow-oom",
        "cache_finish": "#!lua flags=allow-oom", "cache_invalidate": "#!lua flags=allow-oom"}


@pytest.mark.parametrize("mode", MODES)
async def test_an_update_by_id_sent_packed_survives_a_flushed_script_cache(
        conn: Any, redis_client: Any, redis_url: str, mode: str) -> None:
    """An update by id's call goes out as the bytes its write layout packed (Call.wire);
    refused NOSCRIPT after a SCRIPT FLUSH, it is sent again by the exchange and applied: a
    newer version, the index moved."""
    quantumorm.create_connection(url=redis_url, name="default", make_default=True,
                                 scripts="eval")
    doc = await call(Note(text="packed", n=1), "save", mode)
    assert await call(Note.objects.filter(id=doc.id), "update", mode, n=2) == 1
    version = (await call(Note.objects, "get", mode, id=doc.id))._version
    for n in (3, 4):
        redis_client.script_flush()
        assert await call(Note.objects.filter(id=doc.id), "update", mode, n=n) == 1
        got = await call(Note.objects, "get", mode, id=doc.id)
        assert got.n == n and got._version > version
        version = got._version
    assert await call(Note.objects.filter(n=4), "count", mode) == 1
    assert await call(Note.objects.filter(id__in=[doc.id, "nope"]), "update", mode, n=5) == 1
    assert_indexes_consistent(redis_client, Note)


@pytest.mark.parametrize("mode", MODES)
async def test_a_delete_sent_packed_survives_a_flushed_script_cache(
        conn: Any, redis_client: Any, redis_url: str, mode: str) -> None:
    """A delete's call goes out as the bytes its write layout packed (Call.wire); refused
    NOSCRIPT after a SCRIPT FLUSH, it is sent again by the exchange and applied: the
    document and its index entries gone, a stale version still refused."""
    quantumorm.create_connection(url=redis_url, name="default", make_default=True,
                                 scripts="eval")
    docs = [await call(Note(text="packed", n=7), "save", mode) for _ in range(3)]
    await call(docs[0], "delete", mode)
    redis_client.script_flush()
    await call(docs[1], "delete", mode)
    assert await call(Note.objects.filter(n=7), "count", mode) == 1
    stale = await call(Note.objects, "get", mode, id=docs[2].id)
    await call(Note.objects.filter(id=docs[2].id), "update", mode, n=8)
    redis_client.script_flush()
    with pytest.raises(VersionConflict):
        await call(stale, "delete", mode)
    assert await call(Note.objects.filter(n=8), "count", mode) == 1
    assert_indexes_consistent(redis_client, Note)


def test_a_delete_goes_out_as_its_packed_bytes(
        conn: Any, redis_client: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first round of a lone delete sends the bytes its write layout packed, not a
    command packed again (the test above passes either way)."""
    from quantumorm.backends.redis import executor

    quantumorm.create_connection(url=redis_url, name="default", make_default=True,
                                 scripts="eval")
    doc = Note(text="packed", n=7).save_sync()
    sent: list[tuple[str, bytes | None]] = []
    round_trip = executor._round_trip

    def recording(pool: Any, commands: list[tuple[Any, ...]], wire: bytes | None = None
                  ) -> list[Any]:
        sent.append((str(commands[0][0]), wire))
        return round_trip(pool, commands, wire)

    monkeypatch.setattr(executor, "_round_trip", recording)
    doc.delete_sync()
    assert [name for name, _ in sent] == ["EVALSHA"]
    wire = sent[0][1]
    assert wire is not None and wire.startswith(b"*") and b"EVALSHA" in wire
    assert Note.objects.filter(id=doc.id).count_sync() == 0
