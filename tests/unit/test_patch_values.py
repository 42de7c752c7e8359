"""An update by id's ``patch.lua`` call (``WriteLayout.patches``) sends each field
apart: its key text and its value text, as the document encoder writes them inside a
document, so that the script compares and splices text without parsing a fragment."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest

from quantumorm import (
    ArrayField,
    BooleanField,
    Document,
    EnumField,
    FloatField,
    IntField,
    JSONField,
    StringField,
)
from quantumorm.backends.redis import wire, writes
from quantumorm.backends.redis.calls import PatchCall
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.engine.contract import Expiry, encode_document


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Patched(Document):
    n = IntField(indexed=True, db_field="count")
    ratio = FloatField()
    flag = BooleanField(indexed=True)
    title = StringField()
    tags = ArrayField(StringField())
    level = EnumField(Level)
    extra = JSONField()

    class Meta:
        collection = "unit_patch_values"


def constants(packed: bytes) -> list[bytes | int]:
    """patch.lua's ARGV[1] as it reads it: MessagePack strings and non-negative integers (a
    positive fixint, or a uint 16, 32 or 64), nothing else, one after another, or one
    MessagePack array of them (past writes.STREAM_MAX items)."""
    if packed[0] & 0xF0 == 0x90 or packed[0] == 0xDC:
        count, pos = (packed[0] & 0x0F, 1) if packed[0] != 0xDC else (
            int.from_bytes(packed[1:3], "big"), 3)
    else:  # (one after another: the first, the size limit, a non-negative integer)
        assert packed[0] < 0x80 or packed[0] in (0xCD, 0xCE, 0xCF)
        count, pos = -1, 0
    out: list[bytes | int] = []
    while count < 0 and pos < len(packed) or len(out) < count:
        head = packed[pos]
        if head < 0x80:
            out.append(head)
            pos += 1
        elif head in (0xCD, 0xCE, 0xCF):
            width = {0xCD: 2, 0xCE: 4, 0xCF: 8}[head]
            out.append(int.from_bytes(packed[pos + 1:pos + 1 + width], "big"))
            pos += 1 + width
        else:  # (a string: its header and bytes, as wire.pack writes them)
            size, at = ((head & 0x1F, 1) if head & 0xE0 == 0xA0 else
                        (packed[pos + 1], 2) if head == 0xD9 else
                        (int.from_bytes(packed[pos + 1:pos + 3], "big"), 3) if head == 0xDA
                        else (int.from_bytes(packed[pos + 1:pos + 5], "big"), 5))
            assert head & 0xE0 == 0xA0 or head in (0xD9, 0xDA, 0xDB)
            out.append(packed[pos + at:pos + at + size])
            pos += at + size
    assert pos == len(packed)
    return out


def parts(call: PatchCall) -> dict[str, Any]:
    """A patch call's arguments as patch.lua reads them (its ARGV[1]): of its constants
    after the model's (size limit, layout, events, every index's meta field), the event's
    "f" when every value changes, the counts, the key texts, the names, the meta fields and
    the touched indexes' quadruples; then the expiry, the value texts and lists, the id key
    and the write id. The size
    limit, the counts and each quadruple's KEYS position and pair number are numbers."""
    (sent,) = call.call().args
    limit, layout, maxlen, document, channel, manifests, f, n, k, j, *rest = constants(sent)
    assert type(limit) is int and type(n) is int and type(k) is int and type(j) is int
    # (after the quadruples, the plain pattern: b"" but for a patch of one field)
    assert len(rest) == 2 * n + k + 4 * j + 2 + n + k + 2 and len(call.values) == n + k
    assert rest[2 * n + k + 4 * j + 1:] == [str(call.expiry).encode(), *call.values,
                                            call.id_key, call.write_id.encode()]
    assert constants(call.constants) == [limit, layout, maxlen, document, channel, manifests,
                                         f, n, k, j, *rest[:2 * n + k + 4 * j + 1]]
    keys, names, fields = rest[:n], rest[n:2 * n], rest[2 * n:2 * n + k]
    quads = rest[2 * n + k:2 * n + k + 4 * j]
    texts, lists = call.values[:n], call.values[n:]
    return {"f": f, "members": list(zip(keys, texts, names, strict=True)),
            "pairs": list(zip(fields, lists, strict=True)),
            "indexes": [tuple(quads[i:i + 4]) for i in range(0, 4 * j, 4)],
            "plain": rest[2 * n + k + 4 * j],
            "model": [limit, layout, maxlen, document, channel, manifests]}


def sent(values: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    fields = Patched._meta.fields
    storage = {fields[name].db_name: fields[name].to_storage(value)
               for name, value in values.items()}
    layout = writes.WriteLayout(Patched._meta, KeySpace(Patched._meta))
    (call,) = layout.patches(["x"], values, storage, Expiry.KEEP)
    return [(key, text) for key, text, _ in parts(call)["members"]]


def in_document(values: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """Each member's key and value text in the document the encoder writes."""
    fields = Patched._meta.fields
    out = []
    for name in (name for name in fields if name in values):  # (field order)
        db_name = fields[name].db_name
        text = encode_document({db_name: fields[name].to_storage(values[name])})
        key = json.dumps(db_name).encode()
        assert text.startswith(b"{" + key + b":") and text.endswith(b"}")
        out.append((key, text[len(key) + 2:-1]))
    return out


def test_each_value_is_the_text_a_document_holds() -> None:
    for n in (0, -7, 2**53 + 1, -(2**70), 10**30):
        assert sent({"n": n}) == in_document({"n": n}) == [(b'"count"', str(n).encode())]
    cases: list[dict[str, Any]] = [
        {"ratio": 0.1}, {"ratio": 1e-05}, {"ratio": 1e16}, {"ratio": -0.0},
        {"flag": True}, {"flag": False}, {"title": 'é "q" \\ \n {x}'}, {"title": None},
        {"tags": ["a", "b,c", ""]}, {"level": Level.HIGH}, {"extra": {"z": [1, {"y": "]"}]}},
        {"n": 3, "title": "t", "flag": False, "extra": None}]
    for values in cases:
        assert sent(values) == in_document(values), values


def test_members_go_in_field_order_with_their_stored_names() -> None:
    keys = [key for key, _ in sent({"title": "t", "n": 1, "flag": True})]
    assert keys == [b'"count"', b'"flag"', b'"title"']


def test_names_pairs_and_indexes_as_the_script_reads_them() -> None:
    """Each member's attribute name (an event's "f"), the indexed fields' meta field pairs
    and the touched indexes, each naming its KEYS position and its pair."""
    values = {"title": "t", "n": 1, "flag": True}
    fields = Patched._meta.fields
    storage = {fields[name].db_name: fields[name].to_storage(value)
               for name, value in values.items()}
    layout = writes.WriteLayout(Patched._meta, KeySpace(Patched._meta))
    (call,) = layout.patches(["x"], values, storage, Expiry.KEEP)
    got = parts(call)
    assert [name for _, _, name in got["members"]] == [b"n", b"flag", b"title"]
    assert wire.unpack(got["f"]) == [b"n", b"flag", b"title"]
    assert [meta for meta, _ in got["pairs"]] == [b"f:count", b"f:flag"]
    positions = {index.name: 6 + i for i, index in enumerate(Patched._meta.indexes)}
    # (the last item: the index's member among the members, its kind code, its name)
    assert [(position, pair) for position, pair, _, _ in got["indexes"]] == [
        (positions[name.decode().split(" ", 2)[2]], number) for number, (_, _, _, name) in
        enumerate(got["indexes"], start=1)]
    assert [named.split(b" ", 2)[:2] for _, _, _, named in got["indexes"]] == [
        [b"1", b"int"], [b"2", b"bool"]]
    assert call.call().script == "patch"
    # what every patch of the model sends alike, the expiry, the three value texts, the
    # two lists, the id key and the write id travel in one argument
    # (of every index, its meta field and its key's name after the partition's tag: what
    # a purge or a sweep builds the keys not sent of)
    assert got["model"] == [layout.max_document_bytes, b"",
                            *writes.events_flat(Patched._meta, layout.keys),
                            wire.pack([b"f:count", b"i:count", b"f:flag", b"i:flag"])]
    assert len(call.call().args) == 1
    layout.layout = b"7"  # (the schema read again: the layout the calls carry is the new one)
    (again,) = layout.patches(["x"], values, storage, Expiry.KEEP)
    assert parts(again)["model"][1] == b"7" and parts(again)["members"] == got["members"]
    keys = call.call().keys
    assert keys[5:] == (*call.index_keys, *call.event_keys) and call.event_keys  # (events on)


class Indexed(Document):
    n = IntField(indexed=True)
    title = StringField(indexed=True)
    flag = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    extra = JSONField()

    class Meta:
        collection = "unit_patch_entries"


def entries(layout: writes.WriteLayout, values: dict[str, Any]) -> tuple[bytes, ...]:
    fields = Indexed._meta.fields
    storage = {fields[name].db_name: fields[name].to_storage(value)
               for name, value in values.items()}
    (call,) = layout.patches(["x"], values, storage, Expiry.KEEP)
    return (call.constants, *call.values)


def test_a_one_field_patch_remembers_what_it_sends_as_computed() -> None:
    """What a one-field patch remembers by value (its value text and index entries) is what
    a layout that has seen nothing computes: for values seen again, for equal values of
    other types (1, True and "1" in one field, True and 1 in a field of each), for nulls
    and arrays (not remembered)."""
    keys = KeySpace(Indexed._meta)
    memo = writes.WriteLayout(Indexed._meta, keys)
    seq: list[dict[str, Any]] = [
        {"n": 1}, {"flag": True}, {"n": 1}, {"flag": True}, {"n": None}, {"title": "1"},
        {"title": "é" * 300}, {"title": "é" * 300}, {"n": -(2**70)}, {"n": 2**53 + 1},
        {"tags": ["a", "b"]}, {"tags": ["a", "b"]}, {"n": 1, "title": "t"}, {"n": 1},
        {"flag": False}, {"title": None}, {"title": ""}, {"extra": 1}, {"extra": True},
        {"extra": "1"}, {"extra": 1.0}, {"extra": None}]
    for values in seq * 2:
        fresh = writes.WriteLayout(Indexed._meta, keys)
        assert entries(memo, values) == entries(fresh, values), values
    remembered = {name: memo._patch_by[frozenset({name})][3] for name in ("n", "flag", "extra")}
    assert (int, 1) in remembered["n"] and (bool, True) in remembered["flag"]
    assert {(int, 1), (bool, True), "1"} <= set(remembered["extra"])
    assert not any(sum(map(len, members)) > 256 for memo_of in remembered.values()
                   for members in memo_of.values())


def test_the_event_items_are_the_specs_apart() -> None:
    """patch.lua reads the change-event spec's items apart (``events_flat``): the same items
    ``events_spec`` packs, and three empty ones for a model without events."""

    class Streamed(Document):
        n = IntField()

        class Meta:
            collection = "unit_patch_streamed"
            changes_document = True

    class Published(Document):
        n = IntField()

        class Meta:
            collection = "unit_patch_published"
            changes = False
            publish = True

    class Silent(Document):
        n = IntField()

        class Meta:
            collection = "unit_patch_silent"
            changes = False

    for model in (Patched, Streamed, Published):
        keys = KeySpace(model._meta)
        assert list(writes.events_flat(model._meta, keys)) == wire.unpack(
            writes.events_spec(model._meta, keys)), model
    keys = KeySpace(Silent._meta)
    assert writes.events_spec(Silent._meta, keys) == b""
    assert writes.events_flat(Silent._meta, keys) == (b"", b"", b"")


def test_an_integer_is_packed_in_messagepacks_smallest_unsigned_form() -> None:
    for value, head in [(0, b"\x00"), (127, b"\x7f"), (128, b"\xcd"), (65535, b"\xcd"),
                        (65536, b"\xce"), (2**32 - 1, b"\xce"), (2**32, b"\xcf"),
                        (2**64 - 1, b"\xcf")]:
        packed = wire.integer(value)
        assert packed.startswith(head)
        assert constants(wire.array_header(1) + packed) == [value]
    for bad in (-1, 2**64):
        with pytest.raises(ValueError, match="unsigned 64-bit"):
            wire.integer(bad)


def test_constants_go_one_after_another_up_to_stream_max_then_as_one_array() -> None:
    """patch.lua gathers its constants with one table constructor when they come one after
    another (cmsgpack fills an array's table item by item from an empty one, resized as it
    grows), and reads one MessagePack array past writes.STREAM_MAX items (values returned
    at once overflow Lua's C stack past about 8,000); the first item, the size limit, starts
    with none of an array's first bytes."""
    layout = writes.WriteLayout(Patched._meta, KeySpace(Patched._meta))
    (call,) = layout.patches(["x"], {"n": 1}, {"count": 1}, Expiry.KEEP)
    assert not (call.constants[0] & 0xF0 == 0x90 or call.constants[0] in (0xDC, 0xDD))
    assert call.constants.startswith(wire.integer(layout.max_document_bytes))
    assert constants(call.constants)[0] == layout.max_document_bytes
    for count in (1, writes.STREAM_MAX - 1, writes.STREAM_MAX):
        items: list[bytes | int] = [2**20, *[b"x"] * (count - 1)]
        packed = writes._pack_constants(items)
        assert packed.startswith(b"\xce") and constants(packed) == items
    for count in (writes.STREAM_MAX + 1, 5000):
        items = [0, *[b"x"] * (count - 1)]
        packed = writes._pack_constants(items)
        assert packed.startswith(wire.array_header(count)) and constants(packed) == items
