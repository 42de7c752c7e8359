"""``delete.lua`` reads its change-event argument in both forms the client sends: the
stream's MAXLEN alone (digits: the usual events, read with no MessagePack to unpack) and
the whole spec (``events_on``'s), with the same stream entries, the same trimming and the
same refusal of a stream key holding another type (nothing deleted)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call

from quantumorm import Document, IntField, StringField, WrongTypeError, sortable
from quantumorm.backends.redis import writes
from quantumorm.backends.redis.keys import KeySpace


class Bolt(Document):
    name = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "delete_event_bolts"
        changes_maxlen = 5


@pytest.fixture(params=("maxlen", "spec"))
def form(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """ "spec": every delete sends the whole event spec, as before the MAXLEN form."""
    if request.param == "spec":
        made = writes.WriteLayout.delete

        def delete(self: writes.WriteLayout, request: Any) -> Any:
            return dataclasses.replace(made(self, request), events=self.events)
        monkeypatch.setattr(writes.WriteLayout, "delete", delete)
    return str(request.param)


def entries(redis_client: Any) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in redis_client.xrange(KeySpace(Bolt._meta).changes(0))]


@pytest.mark.parametrize("mode", MODES)
async def test_a_delete_writes_the_same_event_either_way(conn: Any, redis_client: Any,
                                                         mode: str, form: str) -> None:
    sent: list[bytes] = []
    made = writes.WriteLayout.delete

    def delete(self: writes.WriteLayout, request: Any) -> Any:
        record = made(self, request)
        sent.append(record.events)
        return record
    docs = [await call(Bolt(id=f"b{i}", name="x", n=i), "save", mode) for i in range(8)]
    loaded = await call(Bolt.objects, "get", mode, id="b0")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(writes.WriteLayout, "delete", delete)
        await call(loaded, "delete", mode)
    assert sent == ([b"5"] if form == "maxlen" else [writes.events_spec(
        Bolt._meta, KeySpace(Bolt._meta))])
    last = entries(redis_client)[-1]
    assert last == {b"op": b"delete", b"id": sortable.id_key("b0"),
                    b"v": str(docs[0].version).encode()}
    # trimmed to about MAXLEN (5): approximate trimming drops whole nodes only, so nodes
    # of two entries here (of 100 by default, which no test stream fills)
    node = redis_client.config_get("stream-node-max-entries")["stream-node-max-entries"]
    redis_client.config_set("stream-node-max-entries", 2)
    try:
        for doc in docs[1:]:
            await call(doc, "delete", mode)
    finally:
        redis_client.config_set("stream-node-max-entries", node)
    assert 5 <= redis_client.xlen(KeySpace(Bolt._meta).changes(0)) <= 7
    listed = entries(redis_client)
    assert [e[b"op"] for e in listed] == [b"delete"] * len(listed)  # (the 7 deletes last)
    assert await call(Bolt.objects.filter(name="x"), "count", mode) == 0
    assert_indexes_consistent(redis_client, Bolt)


@pytest.mark.parametrize("mode", MODES)
async def test_a_stream_of_another_type_refuses_a_delete_either_way(
        conn: Any, redis_client: Any, mode: str, form: str) -> None:
    await call(Bolt(id="k", name="k", n=1), "save", mode)
    doc = await call(Bolt.objects, "get", mode, id="k")
    stream = KeySpace(Bolt._meta).changes(0)
    redis_client.delete(stream)
    redis_client.set(stream, "not a stream")
    with pytest.raises(WrongTypeError):
        await call(doc, "delete", mode)
    assert [d.id for d in await call(Bolt.objects.filter(name="k"), "all", mode)] == ["k"]
    assert_indexes_consistent(redis_client, Bolt)
