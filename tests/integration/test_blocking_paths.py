"""The blocking paths of the Redis backend that are not plain operations (change feeds and
consumers iterated with ``for``, Pub/Sub ``with``/``for``, ``watch_sync``) refuse to run on the
thread running an event loop too, and run from a worker thread."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from quantumorm import Document, StringField, SyncInAsyncContext

OPT_OUT = "QUANTUMORM_ALLOW_SYNC_IN_LOOP"


class Note(Document):
    name = StringField(indexed=True)

    class Meta:
        collection = "sil_notes"
        publish = True


@pytest.fixture(autouse=True)
def strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(OPT_OUT, raising=False)


async def test_change_feeds_and_consumers(conn: Any) -> None:
    feed = Note.objects.changes(since="0", wait=0)
    consumer = Note.objects.consumer_group("g", start="0").consumer("c1", wait=0)
    await Note(name="a").save()
    for blocking in (lambda: list(feed), lambda: next(iter(feed)), feed.read_sync,
                     lambda: list(consumer), consumer.read_sync,
                     Note.objects.consumer_group("g", start="0").pending_sync):
        with pytest.raises(SyncInAsyncContext):
            blocking()
    # the feed did not move: every event is still ahead of it, and of the group
    assert [e.op for e in await asyncio.to_thread(list, feed)] == ["create"]
    assert [e.op for e in await asyncio.to_thread(list, consumer)] == ["create"]


async def test_pubsub_and_watch(conn: Any, redis_client: Any) -> None:
    with pytest.raises(SyncInAsyncContext):
        with Note.objects.subscribe(wait=0):
            pass
    with pytest.raises(SyncInAsyncContext):
        conn.watch_sync(lambda pipe: pipe.multi(), "sil:key")
    calls: list[Any] = []

    def transfer(pipe: Any) -> None:
        calls.append(pipe)
        pipe.multi()
        pipe.set("sil:key", "1")

    assert await asyncio.to_thread(conn.watch_sync, transfer, "sil:key") == [True]
    assert redis_client.get("sil:key") == b"1"

    def listen() -> list[str]:
        with Note.objects.subscribe(wait=0.2) as subscription:
            Note(name="b").save_sync()
            return [event.op for event in subscription]

    assert await asyncio.to_thread(listen) == ["create"]


def test_blocking_iteration_outside_a_loop(conn: Any) -> None:
    feed = Note.objects.changes(since="0", wait=0)
    Note(name="a").save_sync()
    assert [e.op for e in feed] == ["create"]
