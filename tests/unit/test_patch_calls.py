"""``WriteLayout.patch_calls``, the update by id's hot path, makes the very ``Call`` records
``patches()``'s ``PatchCall.call()`` makes (but for each call's new write id), on one
partition and on several, with change events or none, for a field remembered by value (its
first patch and its next ones), for several fields and for a schema layout changed between
two patches."""

from __future__ import annotations

from typing import Any

import pytest

try:
    import hiredis
except ImportError:  # (redis-py's own packer writes the same bytes)
    hiredis = None  # type: ignore[assignment]

from quantumorm import Document, IntField, StringField
from quantumorm.backends.redis import writes
from quantumorm.backends.redis.commands import Call
from quantumorm.backends.redis.reloads import step_args
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.engine.contract import Expiry


class OnePart(Document):
    n = IntField(indexed=True)
    title = StringField()

    class Meta:
        collection = "unit_patch_calls_one"


class Parted(Document):
    n = IntField(indexed=True)
    title = StringField(indexed=True)

    class Meta:
        collection = "unit_patch_calls_parted"
        partitions = 4
        changes = False


def _plain(call: Call) -> tuple[Any, ...]:
    """A call without its write id (the last 16 bytes of its one argument, a MessagePack
    string of 16 characters: new for every call)."""
    (argument,) = call.args
    assert argument[-17] == 0xB0 and len(argument[-16:].decode()) == 16
    return (call.script, call.keys, argument[:-16])


def _packed(command: tuple[Any, ...]) -> bytes:
    """RESP of a command, as hiredis's pack_command and redis-py's packer write it."""
    items = [str(item).encode() if not isinstance(item, bytes) else item for item in command]
    packed = b"*%d\r\n" % len(items) + b"".join(b"$%d\r\n%s\r\n" % (len(item), item)
                                               for item in items)
    if hiredis is not None:
        assert hiredis.pack_command(command) == packed
    return packed


@pytest.mark.parametrize("model", [OnePart, Parted])
@pytest.mark.parametrize("values", [{"n": 5}, {"title": "x"}, {"n": 7, "title": "y"},
                                    {"title": None}, {"title": "\u00e9" * 600},
                                    {"title": "é" + "x" * 1100}])
@pytest.mark.parametrize("expire", [Expiry.KEEP, Expiry.PERSIST, 60000])
def test_patch_calls_are_the_records_calls(model: type[Document], values: dict[str, Any],
                                           expire: Expiry | int) -> None:
    fields = model._meta.fields
    storage = {fields[name].db_name: fields[name].to_storage(value)
               for name, value in values.items()}
    layout = writes.WriteLayout(model._meta, KeySpace(model._meta))
    # (numeric ids, whose keys patch_calls makes in line, and ids that only look numeric:
    # a leading zero, 40 digits, non-ASCII digits, a sign)
    ids = ["1", "22", "abc", "a b%", "333", "0", "007", "9" * 39, "1" * 40, "\u0661\u0662",
           "-1", "+1", "x" * 1500, "\u00e9" * 400]
    for layout_stamp in (b"", b"", b"7", b"7"):  # (first and remembered; a new layout)
        layout.layout = layout_stamp
        made = layout.patch_calls(ids, values, storage, expire)
        expected = [record.call() for record in layout.patches(ids, values, storage, expire)]
        assert type(made) is tuple and len(made) == len(ids)
        assert [_plain(call) for call in made] == [_plain(call) for call in expected]
        assert len({call.args[0][-16:] for call in made}) == len(ids)
        for call in made:  # (its RESP bytes: what hiredis packs of its EVALSHA command)
            assert call.wire == _packed(step_args(call))
    for id in ids:  # (one id: the update by id's own path)
        (call,) = layout.patch_calls([id], values, storage, expire)
        (record,) = layout.patches([id], values, storage, expire)
        assert _plain(call) == _plain(record.call())
        assert call.wire == _packed(step_args(call))
    if model is Parted:  # (the ids fall on more than one partition)
        assert len({call.keys[2] for call in made}) > 1
