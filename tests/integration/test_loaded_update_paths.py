"""``save()`` of a loaded document through each of ``save.lua``'s update paths: one HMGET
of the version and recent writes alone (no index touched), with one index's entries (the
common update), or with several; a scalar index whose entry moves, one whose value is set
again unchanged, an array index whose entries partly overlap. Each leaves the entries the
meta hash lists, the version and write ids a resend and a stale save see, and one change
event naming exactly the changed fields."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call

from quantumorm import ArrayField, Document, IntField, StringField, VersionConflict, sortable
from quantumorm.backends.redis import wire
from quantumorm.backends.redis.keys import KeySpace


class Crate(Document):
    label = StringField(indexed=True)
    size = IntField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    note = StringField()

    class Meta:
        collection = "update_path_crates"


def last_event(redis_client: Any) -> dict[bytes, bytes]:
    (_, fields), = redis_client.xrevrange(KeySpace(Crate._meta).changes(0), count=1)
    return dict(fields)


def changed(event: dict[bytes, bytes]) -> list[bytes]:
    """The event's "f": the changed field names (a MessagePack array)."""
    return list(wire.unpack(event[b"f"]))


@pytest.mark.parametrize("mode", MODES)
async def test_each_update_path_leaves_entries_versions_and_events_exact(
        conn: Any, redis_client: Any, mode: str) -> None:
    await call(Crate(id="c", label="a", size=1, tags=["x", "y"], note="n0"), "save", mode)
    steps: list[tuple[dict[str, Any], list[str]]] = [
        ({"note": "n1"}, ["note"]),  # no index touched
        ({"size": 2}, ["size"]),  # one scalar entry moves
        ({"label": "b", "size": 3}, ["label", "size"]),  # two indexes
        ({"tags": ["y", "z"]}, ["tags"]),  # an array: "y" kept, "x" out, "z" in
        ({"label": "b", "tags": ["z", "y", "w"], "note": "n2"}, ["tags", "note"]),
    ]
    for values, names in steps:
        doc = await call(Crate.objects, "get", mode, id="c")
        stale = await call(Crate.objects, "get", mode, id="c")
        before = doc.version
        for name, value in values.items():
            setattr(doc, name, value)
        await call(doc, "save", mode)
        assert doc.version > before
        event = last_event(redis_client)
        assert event[b"op"] == b"update" and event[b"id"] == sortable.id_key("c")
        assert event[b"v"] == str(doc.version).encode()
        assert sorted(changed(event)) == sorted(n.encode() for n in names)
        again = await call(Crate.objects, "get", mode, id="c")
        assert (again.version, again.to_dict()) == (doc.version, doc.to_dict())
        assert_indexes_consistent(redis_client, Crate)
        stale.note = "stale"
        with pytest.raises(VersionConflict):
            await call(stale, "save", mode)
    found = await call(Crate.objects.filter(tags__contains="w", label="b", size=3), "all", mode)
    assert [d.id for d in found] == ["c"]
    assert await call(Crate.objects.filter(tags__contains="x"), "count", mode) == 0
