"""Bad input against a real Redis: byte-for-byte nothing written, and documents at the JSON
depth limit read back from deep call stacks."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from helpers import MODES, call, snapshot

from quantumorm import (
    Document,
    DocumentTooLargeError,
    IntField,
    JSONField,
    StringField,
    ValidationError,
    create_connection,
)
from quantumorm.fields.structured import MAX_JSON_DEPTH


class Packet(Document):
    name = StringField(indexed=True)
    n = IntField(indexed=True)
    payload = JSONField()

    class Meta:
        collection = "bi_packets"
        partitions = 3


def nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("mode", MODES)
async def test_bulk_create_refuses_before_the_first_batch_byte_for_byte(
        conn: Any, redis_url: str, redis_client: Any, mode: str) -> None:
    create_connection(url=redis_url, name="default", make_default=True, max_document_bytes=500)
    await call(Packet(id="old", name="old", n=0), "save", mode)
    before = snapshot(redis_client)
    docs = [Packet(name=f"p{i}", n=i) for i in range(12)]
    docs[9].payload = "x" * 600
    with pytest.raises(DocumentTooLargeError) as caught:
        await call(Packet.objects, "bulk_create", mode, docs, batch_size=2)
    assert list(caught.value.positions) == [9]
    assert snapshot(redis_client) == before  # not even an auto id was allocated
    docs[9].payload = {"bad": "\ud800"}
    docs[11].payload = nested(MAX_JSON_DEPTH + 1)
    with pytest.raises(ValidationError) as refused:
        await call(Packet.objects, "bulk_create", mode, docs, batch_size=1)
    assert set(refused.value.errors) == {"[9].payload", "[11].payload"}
    assert snapshot(redis_client) == before


def _at_depth(frames: int, work: Any) -> Any:
    """Run ``work()`` with ``frames`` more frames on the stack."""
    if frames <= 0:
        return work()
    return _at_depth(frames - 1, work)


def test_documents_at_the_depth_limit_read_back_from_a_deep_stack(conn: Any) -> None:
    deep = nested(MAX_JSON_DEPTH)
    for i in range(3):
        Packet(name=f"d{i}", n=i, payload=deep).save_sync()
    # what the limit buys: a caller already most of the way down the stack can still read
    headroom = sys.getrecursionlimit() - MAX_JSON_DEPTH * 3 - 200
    got = _at_depth(headroom, lambda: Packet.objects.order_by("n").all_sync())
    assert [d.payload for d in got] == [deep] * 3
    one = _at_depth(headroom, lambda: Packet.objects.get_sync(name="d1"))
    assert one.payload == deep
