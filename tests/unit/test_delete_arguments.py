"""The change-event argument of a ``delete.lua`` call (``WriteLayout.delete``): the stream's
MAXLEN alone (its digits) for the usual events, a stream entry without the document and no
Pub/Sub, which the script reads with no MessagePack to unpack, as ``save.lua``'s; the whole
spec when events carry the document or are published; nothing when there are none."""

from __future__ import annotations

from typing import Any

import pytest

from quantumorm import Document, StringField
from quantumorm.backends.redis import wire, writes
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.engine.contract import WriteRequest

CASES: list[tuple[dict[str, Any], Any]] = [
    ({}, b"5"), ({"changes_maxlen": 7}, b"7"), ({"changes": False}, b""),
    ({"changes_document": True}, [b"5", b"1", b""]),
    ({"publish": True}, "spec"), ({"changes": False, "publish": True}, "spec")]


@pytest.mark.parametrize("position", range(len(CASES)))
def test_a_delete_sends_the_streams_maxlen_alone_for_the_usual_events(position: int) -> None:
    meta, expected = CASES[position]
    model = type(f"DeleteEvented{position}", (Document,), {
        "name": StringField(indexed=True),
        "Meta": type("Meta", (), {"collection": f"delete_evented{position}",
                                  "namespace": "unit", "changes_maxlen": 5, **meta})})
    keys = KeySpace(model._meta)
    call = writes.WriteLayout(model._meta, keys).delete(
        WriteRequest("delete", "d1", 12, None, None, None)).call()
    sent, spec = call.args[4], writes.events_spec(model._meta, keys)
    if expected == "spec":  # (Pub/Sub: the whole spec, with its channel)
        assert sent == spec and wire.unpack(sent)[2] == keys.channel.encode()
    elif isinstance(expected, list):
        assert sent == spec and wire.unpack(sent) == expected
    else:
        assert sent == expected
    # the stream is the last key whenever the model has events (the script reads it there)
    assert (call.keys[-1] == keys.changes(0)) == bool(spec)
