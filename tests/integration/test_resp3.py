"""The Redis backend with RESP3 replies (``protocol=3``): change feeds, consumer groups
(read, claim, pending, ack), Pub/Sub, transactions and verify work as with RESP2 (the
contract suite runs whole under RESP3 too: tests/contract, store ``redis-resp3``)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from helpers import MODES, call

import quantumorm
from quantumorm import Document, StringField


class Note(Document):
    text = StringField(indexed=True)

    class Meta:
        collection = "resp3_notes"
        publish = True


@pytest.fixture
def resp3(conn: Any, redis_url: str) -> Any:
    quantumorm.create_connection(url=redis_url, name="default", make_default=True, protocol=3)
    return quantumorm.get_connection()


@pytest.mark.parametrize("mode", MODES)
async def test_change_feeds_and_groups_under_resp3(resp3: Any, mode: str) -> None:
    first = await call(Note(id="a", text="one"), "save", mode)
    first.text = "two"
    await call(first, "save", mode)
    events = await call(Note.objects.changes(since="0", wait=0), "read", mode)
    assert [(e.op, e.id, e.changed) for e in events] == [("create", "a", None),
                                                         ("update", "a", ("text",))]
    assert events[-1].version == first.version
    group = Note.objects.consumer_group("workers", start="0")
    worker = group.consumer("w1", wait=0)
    got = await call(worker, "read", mode)
    assert [e.stream_id for e in got] == [e.stream_id for e in events]
    assert await call(group, "pending", mode) == 2
    await asyncio.sleep(0.03)
    taken = await call(group.consumer("w2", wait=0), "claim", mode, 0.01)
    assert [e.stream_id for e in taken] == [e.stream_id for e in events]
    assert await call(group.consumer("w2", wait=0), "ack", mode, *taken) == 2
    assert await call(group, "pending", mode) == 0


def test_pubsub_transactions_and_verify_under_resp3(resp3: Any) -> None:
    with Note.objects.subscribe(wait=2) as subscription:
        threading.Timer(0.2, lambda: Note(id="p", text="hi").save_sync()).start()
        received = []
        for event in subscription:
            received.append((event.op, event.id))
            break
    assert received == [("create", "p")]
    with resp3.transaction_sync() as tx:
        doc = tx.get(Note, "p")
        assert doc is not None
        doc.text = "changed"
        tx.save(doc)
    assert Note.objects.filter(text="changed").count_sync() == 1
    assert Note.objects.verify_sync().ok
