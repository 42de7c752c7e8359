"""A bulk insert's batch streamed in chunks (``writer.StreamedChunk``): each chunk's
``insert_many`` call is made only after the one before it was written to the socket, so the
server runs a chunk while the client makes the next. These tests act between two chunks
from inside the making of a later one (a field whose index encoding runs a real command on
another connection: SCRIPT FLUSH, FUNCTION FLUSH, CLIENT KILL), and check that the chunks
before it had reached the server by then, and that every outcome is today's: refusals by
position, each document written once, its events and index entries, nothing written when
the input does not validate."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from helpers import MODES, assert_indexes_consistent, call

import quantumorm
from quantumorm import (
    BulkWriteError,
    Document,
    DuplicateIdError,
    IntField,
    StringField,
    UniqueViolation,
    ValidationError,
)
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.backends.redis.writer import STREAM_FIRST, _chunks

#: what a HookedField runs when it encodes the value it is armed with (once)
_armed: dict[str, Callable[[], None]] = {}


class HookedField(StringField):
    """A string field that runs a test's action when its index entries are made for one
    value: in a bulk insert, while the client makes the chunk holding that value."""

    def index_keys(self, value: Any) -> list[bytes]:
        action = _armed.pop(value, None) if isinstance(value, str) else None
        if action is not None:
            action()
        return super().index_keys(value)


class Streamed(Document):
    tag = HookedField(indexed=True)
    email = StringField(unique=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "b_streamed"


BATCH = 500
#: the start of the last chunk of a batch of BATCH documents
LAST = _chunks(BATCH)[-1][0]


def docs(prefix: str, count: int = BATCH, trigger: str | None = None) -> list[Streamed]:
    """``count`` new documents; the one at LAST + 5 (in the last chunk) tagged ``trigger``."""
    return [Streamed(id=f"{prefix}{i}", tag=trigger if i == LAST + 5 and trigger else "x",
                     email=f"{prefix}{i}@x", n=i) for i in range(count)]


def arm(action: Callable[[], None]) -> str:
    value = f"trigger-{uuid.uuid4().hex}"
    _armed[value] = action
    return value


def wait_stored(client: redis.Redis, key: str) -> bool:
    """Whether ``key`` exists, waiting for the server to run what was written before (the
    chunks sent ahead of the one being made); False if it never comes."""
    deadline = time.monotonic() + 10
    while not client.exists(key):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def events_of(client: redis.Redis) -> list[bytes]:
    keys = KeySpace(Streamed._meta)
    return [fields[b"id"] for _, fields in client.xrange(keys.changes(0))]


def check_stored(client: redis.Redis, written: list[Streamed], before: int = 0) -> None:
    """Every document of a batch written once: its version stored, one create event each
    (``before``: documents saved before the batch)."""
    keys = KeySpace(Streamed._meta)
    assert len(written) == BATCH
    for doc in written:
        assert client.hget(keys.meta(0, doc.id), "v") == str(doc.version).encode()
    events = events_of(client)
    assert len(events) == len(set(events)) == BATCH + before
    assert_indexes_consistent(client, Streamed)


def test_a_batch_is_cut_into_growing_chunks() -> None:
    assert _chunks(2 * STREAM_FIRST - 1) == [(0, 2 * STREAM_FIRST - 1)]
    for count in (2 * STREAM_FIRST, 2 * STREAM_FIRST + 1, 150, 499, 500, 501, 1000):
        chunks = _chunks(count)
        assert chunks[0] == (0, STREAM_FIRST) and chunks[-1][1] == count
        assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
        assert all(end - start >= STREAM_FIRST for start, end in chunks)
    assert len(_chunks(BATCH)) > 1


@pytest.mark.parametrize("mode", MODES)
async def test_the_server_runs_a_chunk_while_the_client_makes_the_next(
        conn: Any, redis_client: redis.Redis, mode: str) -> None:
    keys = KeySpace(Streamed._meta)
    seen: dict[str, bool] = {}

    def look() -> None:  # (while the last chunk is made: the first is stored already)
        seen["first"] = wait_stored(redis_client, keys.doc(0, "s0"))
        seen["last"] = bool(redis_client.exists(keys.doc(0, f"s{BATCH - 1}")))

    written = await call(Streamed.objects, "bulk_create", mode,
                         docs("s", trigger=arm(look)))
    assert seen == {"first": True, "last": False}
    check_stored(redis_client, written)


@pytest.mark.parametrize("mode", MODES)
async def test_an_invalid_document_in_a_later_chunk_writes_nothing(
        conn: Any, redis_client: redis.Redis, mode: str) -> None:
    batch = docs("v")
    batch[LAST + 7].n = "not a number"  # type: ignore[assignment]
    with pytest.raises(ValidationError) as caught:
        await call(Streamed.objects, "bulk_create", mode, batch)
    assert f"[{LAST + 7}].n" in caught.value.errors
    assert redis_client.dbsize() <= 1  # (the schema at most: no document, no event)
    assert not redis_client.keys("*b_streamed*:d*") and events_of(redis_client) == []


@pytest.mark.parametrize("mode", MODES)
async def test_refusals_in_later_chunks_are_reported_by_position(
        conn: Any, redis_client: redis.Redis, mode: str) -> None:
    await call(Streamed(id="r300", email="before@x", n=-1), "save", mode)
    batch = docs("r")
    batch[LAST + 10].email = batch[3].email  # a value of the first chunk, in the last
    batch[LAST + 20].email = "before@x"  # a value stored before
    batch[STREAM_FIRST + 1].id = "r2"  # an id of the first chunk, in the second
    with pytest.raises(BulkWriteError) as caught:
        await call(Streamed.objects, "bulk_create", mode, batch)
    failed = {position: type(error) for position, error in caught.value.errors}
    assert failed == {LAST + 10: UniqueViolation, LAST + 20: UniqueViolation,
                      STREAM_FIRST + 1: DuplicateIdError, 300: DuplicateIdError}
    holder = dict(caught.value.errors)[LAST + 10]
    assert isinstance(holder, UniqueViolation) and holder.other_id == "r3"
    written = caught.value.written
    assert len(written) == BATCH - 4
    keys = KeySpace(Streamed._meta)
    assert redis_client.hget(keys.meta(0, "r300"), "v") is not None
    assert len(events_of(redis_client)) == BATCH - 4 + 1
    assert_indexes_consistent(redis_client, Streamed)
    versions = [d.version for d in written]
    assert versions == sorted(set(versions))


@pytest.mark.parametrize("mode", MODES)
async def test_a_connection_killed_between_chunks_writes_each_document_once(
        conn: Any, redis_client: redis.Redis, mode: str,
        caplog: pytest.LogCaptureFixture) -> None:
    keys = KeySpace(Streamed._meta)
    seen: dict[str, Any] = {}

    def kill() -> None:  # (the first chunk stored: then every other client cut off)
        seen["first"] = wait_stored(redis_client, keys.doc(0, "k0"))
        seen["killed"] = redis_client.execute_command("CLIENT", "KILL", "TYPE", "normal",
                                                      "SKIPME", "yes")

    written = await call(Streamed.objects, "bulk_create", mode,
                         docs("k", trigger=arm(kill)))
    assert seen["first"] and seen["killed"] >= 1
    # (the stream broke: the plan was sent again whole, on a fresh connection)
    assert "retrying plan after ConnectionError" in caplog.text
    check_stored(redis_client, written)
    # the first chunk's documents, sent twice, were recognised by their write ids
    assert [d.version for d in written] == sorted(d.version for d in written)


@pytest.mark.parametrize("mode", MODES)
async def test_scripts_flushed_between_chunks_are_loaded_and_the_rest_sent(
        conn: Any, redis_client: redis.Redis, mode: str) -> None:
    keys = KeySpace(Streamed._meta)
    await call(Streamed(id="warm", email="warm@x"), "save", mode)  # (scripts loaded)
    seen: dict[str, bool] = {}

    def flush() -> None:
        seen["first"] = wait_stored(redis_client, keys.doc(0, "f0"))
        redis_client.script_flush()

    redis_client.config_resetstat()
    written = await call(Streamed.objects, "bulk_create", mode,
                         docs("f", trigger=arm(flush)))
    assert seen["first"]
    stats = redis_client.info("commandstats")
    assert stats["cmdstat_script|load"]["calls"] >= 1  # (NOSCRIPT, then loaded)
    check_stored(redis_client, written, 1)


@pytest.fixture
def fconn(conn: Any, redis_url: str) -> Any:
    """The default connection, calling scripts as Redis Functions."""
    return quantumorm.create_connection(url=redis_url, name="default", make_default=True,
                                        scripts="functions")


@pytest.mark.parametrize("mode", MODES)
async def test_functions_flushed_between_chunks_are_loaded_and_the_rest_sent(
        fconn: Any, redis_client: redis.Redis, mode: str) -> None:
    keys = KeySpace(Streamed._meta)
    await call(Streamed(id="warm", email="warm@x"), "save", mode)  # (library loaded)
    seen: dict[str, bool] = {}

    def flush() -> None:
        seen["first"] = wait_stored(redis_client, keys.doc(0, "g0"))
        redis_client.execute_command("FUNCTION", "FLUSH")

    redis_client.config_resetstat()
    written = await call(Streamed.objects, "bulk_create", mode,
                         docs("g", trigger=arm(flush)))
    assert seen["first"]
    stats = redis_client.info("commandstats")
    assert stats["cmdstat_fcall"]["calls"] >= len(_chunks(BATCH)) + 1
    assert stats["cmdstat_function|load"]["calls"] >= 1
    check_stored(redis_client, written, 1)


class SpreadStreamed(Document):
    tag = HookedField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "b_streamed_spread"
        partitions = 4


@pytest.mark.parametrize("mode", MODES)
async def test_each_partition_of_a_batch_is_streamed(
        conn: Any, redis_client: redis.Redis, mode: str) -> None:
    keys = KeySpace(SpreadStreamed._meta)
    seen: dict[str, bool] = {}

    def look() -> None:  # (the last document's chunk: the batch's first call is stored)
        seen["first"] = wait_stored(redis_client, keys.doc(keys.partition_of("p0"), "p0"))

    trigger = arm(look)
    batch = [SpreadStreamed(id=f"p{i}", tag=trigger if i == BATCH - 1 else "x", n=i)
             for i in range(BATCH)]
    batch[BATCH - 2].id = "p0"  # (the id of the first call's first document, in a later one)
    with pytest.raises(BulkWriteError) as caught:
        await call(SpreadStreamed.objects, "bulk_create", mode, batch)
    assert seen == {"first": True}
    assert [(p, type(e)) for p, e in caught.value.errors] == [(BATCH - 2, DuplicateIdError)]
    written = caught.value.written
    assert len(written) == BATCH - 1
    for doc in written:
        p = keys.partition_of(doc.id)
        assert redis_client.hget(keys.meta(p, doc.id), "v") == str(doc.version).encode()
    assert_indexes_consistent(redis_client, SpreadStreamed)
