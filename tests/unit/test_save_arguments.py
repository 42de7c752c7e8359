"""The arguments of a single write's ``save.lua`` call (``WriteLayout.save``): an insert sends
the meta field pairs its meta hash keeps as the bulk insert packs them (its memo: format 3,
every pair for a document with an expiry, its sweep record, else the listed indexes'; format
2, every pair) and, per index, its value encodings as one MessagePack array the script
decodes at once; an update sends the pairs of
the fields it changed and no such array (the script parses the pairs)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from resp_support import resp

from quantumorm import (
    ArrayField,
    BooleanField,
    DateTimeField,
    DecimalField,
    Document,
    IntField,
    StringField,
    sortable,
)
from quantumorm.backends.redis import wire, writes
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.engine.contract import Expiry, WriteRequest


class Item(Document):
    s = StringField(indexed=True)
    n = IntField(indexed=True)
    d = DecimalField(indexed=True)
    b = BooleanField(indexed=True)
    t = DateTimeField()
    tags = ArrayField(StringField(), indexed=True)

    class Meta:
        collection = "save_arguments_items"
        namespace = "unit"
        indexes = [{"fields": ["s", "n"], "unique": True}, ("b", "s")]


T = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
ROWS: list[dict[str, Any]] = [
    {"s": "a", "n": 1, "d": Decimal("1.5"), "b": True, "t": T, "tags": ["x", "y", "x"]},
    {"s": None, "n": 2, "b": None, "tags": []},  # (a null part: not held unique)
    {"s": "a", "n": -(10**30), "d": Decimal("0"), "b": False, "tags": ["é", "a\x00", ""]},
    {"s": "long " * 60, "n": 0, "tags": ["long " * 60, "y"]},
]


def _request(kind: str, row: dict[str, Any], changed: frozenset[str] | None,
             id: str | None = None, expire: Expiry | int = Expiry.KEEP) -> WriteRequest:
    doc = Item(**row)
    data = doc.clean()
    return WriteRequest(kind, id, 0 if kind == "insert" else 5, data, doc._values(), changed,
                        expire, b"{}")


def _unpack(packed: bytes) -> list[Any]:
    """A MessagePack array of strings or of arrays of strings (what wire.pack makes)."""
    out, pos = _item(packed, 0)
    assert pos == len(packed)
    return out


def _stream(packed: bytes) -> list[Any]:
    """MessagePack values one after another (not an array)."""
    out, pos = [], 0
    while pos < len(packed):
        item, pos = _item(packed, pos)
        out.append(item)
    return out


def _flat(packed: bytes) -> list[Any]:
    """insert_many.lua's flat form of an insert's entries (per index its count, then its
    encodings) as one list per index."""
    items, out, pos = _stream(packed), [], 0
    while pos < len(items):
        count = items[pos]
        assert isinstance(count, int)
        out.append(items[pos + 1:pos + 1 + count])
        pos += 1 + count
    return out


def _item(data: bytes, pos: int) -> tuple[Any, int]:
    head = data[pos]
    if head <= 0x7F:  # (a positive fixint: a count of the flat form)
        return head, pos + 1
    if head in (0xCC, 0xCD):
        size = 1 if head == 0xCC else 2
        return int.from_bytes(data[pos + 1:pos + 1 + size], "big"), pos + 1 + size
    if head & 0xF0 == 0x90 or head == 0xDC:
        count, pos = ((head & 0x0F, pos + 1) if head != 0xDC
                      else (int.from_bytes(data[pos + 1:pos + 3], "big"), pos + 3))
        items = []
        for _ in range(count):
            item, pos = _item(data, pos)
            items.append(item)
        return items, pos
    if head & 0xE0 == 0xA0:
        size, pos = head & 0x1F, pos + 1
    elif head == 0xD9:
        size, pos = data[pos + 1], pos + 2
    elif head == 0xDA:
        size, pos = int.from_bytes(data[pos + 1:pos + 3], "big"), pos + 3
    else:
        raise AssertionError(f"unexpected MessagePack byte {head:#x}")
    return data[pos:pos + size], pos + size


@pytest.mark.parametrize("format", [3, 2])
@pytest.mark.parametrize("expire", [Expiry.KEEP, 60_000], ids=["no-expiry", "expiry"])
@pytest.mark.parametrize("id", [None, "7"])
def test_an_insert_sends_its_kept_pairs_and_the_entries_of_every_index(
        id: str | None, expire: Expiry | int, format: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writes, "NEW_FORMAT", format)
    layout = writes.WriteLayout(Item._meta, KeySpace(Item._meta))
    assert not layout.listed()  # (every index of Item is derived)
    for _pass in range(2):  # (the second pass: from the bulk memo)
        for row in ROWS:
            request = _request("insert", row, None, id, expire)
            call = layout.save(request)
            values = request.values
            assert values is not None
            pairs, _ = layout.all_entries(values)
            # (the pairs one after another, not an array: insert.lua passes them on to
            # the meta hash's HSET as they unpack); format 3 without an expiry keeps no
            # meta hash here (no listed index)
            if format == 3 and expire is Expiry.KEEP:
                assert call.values == b""
            else:
                assert _stream(call.values) == pairs
                assert wire.pack(pairs).endswith(call.values)
            assert call.format2 == (format == 2)
            # per index, in the order of the touched indexes (every index: index order),
            # the encodings that its pair holds as netstrings (insert_many.lua's flat form)
            members = _flat(call.members)
            described = _stream(call.touched)
            assert len(members) == len(described) // 4 == len(Item._meta.indexes)
            by_field = dict(zip(pairs[::2], pairs[1::2], strict=True))
            for i, index in enumerate(Item._meta.indexes):
                assert described[4 * i] == b"%d" % (7 + i)
                expected = writes.index_members(Item._meta, index, values)
                assert members[i] == expected
                assert sortable.unpack_list(by_field[described[4 * i + 1]]) == expected
            # the unique compound index (s, n) is held unique only without a null part
            position = [index.name for index in Item._meta.indexes].index("s__n")
            assert described[4 * position + 2] == (b"1" if values.get("s") is not None
                                                   else b"0")


def test_an_update_sends_the_changed_pairs_only_and_no_entry_array() -> None:
    layout = writes.WriteLayout(Item._meta, KeySpace(Item._meta))
    request = _request("update", ROWS[0], frozenset({"n"}), "7")
    call = layout.save(request)
    assert call.members == b""
    assert request.values is not None
    s_n = Item._meta.indexes[5]
    assert call.values == wire.items([
        b"f:n", sortable.pack_list(Item._meta.fields["n"].index_keys(request.values["n"])),
        b"x:s__n", sortable.pack_list(writes.index_members(Item._meta, s_n, request.values))])
    # the indexes of "n": the field's own and the unique compound one
    described = _stream(call.touched)
    assert described[1::4] == [b"f:n", b"x:s__n"]


class Plain(Document):
    s = StringField(indexed=True)
    n = IntField(indexed=True)
    f = BooleanField(indexed=True)

    class Meta:
        collection = "save_arguments_plain"
        namespace = "unit"


def test_a_one_field_update_sends_the_pair_the_general_path_packs_remembered_or_not() -> None:
    """An update of one indexed field to a plain value (in no compound index) takes its
    packed pair from a memo by (field, type, value): the same bytes as packed afresh, for
    every field and value, the first time and from the memo, and never another field's or
    another type's (1 and True, "1" and 1)."""
    layout = writes.WriteLayout(Plain._meta, KeySpace(Plain._meta))
    fields = Plain._meta.fields
    cases = [("n", v) for v in (1, 0, -5, 10**30, None)] + [
        ("s", v) for v in ("1", "", "é", "long " * 60, None)] + [
        ("f", v) for v in (True, False, None)]
    for _pass in range(2):
        for name, value in cases:
            doc = Plain(id="7", **{name: value})
            request = WriteRequest("update", "7", 5, doc.clean(), doc._values(),
                                   frozenset({name}), Expiry.KEEP, b"{}")
            call = layout.save(request)
            meta_name = b"f:" + name.encode()
            assert call.values == wire.items([
                meta_name, sortable.pack_list(fields[name].index_keys(value))]), (name, value)
            assert call.members == b"" and _stream(call.touched)[1::4] == [meta_name]


def test_an_insert_into_a_model_with_no_unique_index_sends_no_quadruples() -> None:
    """insert.lua then reads every index in KEYS order, none enforced: nothing to unpack.
    A model with a unique index (Item) sends them; so does any update (it touches some)."""
    plain = writes.WriteLayout(Plain._meta, KeySpace(Plain._meta))
    doc = Plain(s="a", n=1, f=True)
    insert = plain.save(WriteRequest("insert", None, 0, doc.clean(), doc._values(), None,
                                     Expiry.KEEP, b"{}"))
    assert insert.touched == b"" and len(_flat(insert.members)) == len(Plain._meta.indexes)
    update = plain.save(WriteRequest("update", "7", 5, doc.clean(), doc._values(),
                                     frozenset({"n"}), Expiry.KEEP, b"{}"))
    assert _stream(update.touched)[1::4] == [b"f:n"]
    # (an update of every field, changed=None, touches every index: save.lua reads them)
    every = plain.save(WriteRequest("update", "7", 5, doc.clean(), doc._values(), None,
                                    Expiry.KEEP, b"{}"))
    assert len(_stream(every.touched)) == 4 * len(Plain._meta.indexes)
    item = writes.WriteLayout(Item._meta, KeySpace(Item._meta))
    described = _stream(item.save(_request("insert", ROWS[0], None)).touched)
    assert described[::4] == [b"%d" % (7 + i) for i in range(len(Item._meta.indexes))]


class Spread(Document):
    n = IntField(indexed=True)

    class Meta:
        collection = "save_arguments_spread"
        namespace = "unit"
        partitions = 4


@pytest.mark.parametrize("model", [Item, Spread])
def test_a_single_writes_keys_and_id_key_are_the_key_spaces(model: type[Document]) -> None:
    """The document and meta keys and the id key of a save of a known id (a numeric one made
    in line) are the key space's and sortable.id_key's, for ids that are numeric and ids
    that only look so (a leading zero, 40 digits, non-ASCII digits, a sign)."""
    keys = KeySpace(model._meta)
    layout = writes.WriteLayout(model._meta, keys)
    for id in ["1", "0", "22", "9" * 39, "1" * 40, "007", "\u0661\u0662", "-1", "+1", "a b%"]:
        for kind in ("insert", "update"):
            doc = model(id=id)
            request = WriteRequest(kind, id, 0 if kind == "insert" else 5, doc.clean(),
                                   doc._values(), None, Expiry.KEEP, b"{}")
            call = layout.save(request)
            partition = keys.partition_of(id)
            assert call.document_key == keys.doc(partition, id), id
            assert call.meta_key == keys.meta(partition, id), id
            assert call.id_key == sortable.id_key(id), id
            assert call.ids_key == keys.partition(partition).ids
            assert len(call.write_id) == 16 and int(call.write_id, 16) >= 0


class Quiet(Document):
    n = IntField(indexed=True)
    s = StringField(indexed=True)

    class Meta:
        collection = "save_arguments_quiet"
        namespace = "unit"
        changes = False


#: a model of 240 indexes: its save's command has more than 255 items (a RESP array head
#: past the table of heads)
Wide = type("Wide", (Document,), {
    "n": IntField(indexed=True), "s": StringField(indexed=True),
    **{f"i{k}": IntField(indexed=True) for k in range(238)},
    "Meta": type("Meta", (), {"collection": "unit_wide", "namespace": "unit"})})


@pytest.mark.parametrize("model", [Item, Spread, Quiet, Wide])
def test_a_single_saves_wire_is_its_commandsresp(model: type[Document]) -> None:
    """The RESP bytes a single save carries (Call.wire, sent in place of packing its EVALSHA
    command) are its command's, for inserts (id allocated or known) and updates of some
    fields or all (of a document loaded as format 2, or as format 3: its entries as
    ARGV[16]), with and without members, an expiry, a layout changed between saves."""
    from quantumorm.backends.redis.headed import Headed
    from quantumorm.backends.redis.reloads import step_args

    layout = writes.WriteLayout(model._meta, KeySpace(model._meta))
    rows = ROWS if model is Item else [{"n": 1, "s": "a"}, {"n": None}, {"n": 5, "s": "é" * 700}]
    names = [name for name in rows[0] if name in model._meta.fields]
    for stamp in (b"", b"", b"3", b"3"):
        layout.layout = stamp
        for row in rows:
            doc = model(**{k: v for k, v in row.items() if k in model._meta.fields})
            data = doc.clean()
            ids: list[str | None] = ["1", "007", "a b%", "x" * 1500, "é" * 400]
            if model._meta.partitions == 1:
                ids.append(None)
            for id in ids:
                for kind, changed in [("insert", None), ("update", None),
                                      ("update", frozenset(names[:1])),
                                      ("update", frozenset(names))]:
                    if id is None and kind != "insert":
                        continue
                    versions = [0] if kind == "insert" else [5, Headed.of(5, data)]
                    for expire in (Expiry.KEEP, Expiry.PERSIST, 60000):
                        for version in versions:
                            request = WriteRequest(kind, id, version, data, doc._values(),
                                                   changed, expire, b'{"x":1}')
                            call = layout.save(request).call()
                            assert call.wire is not None
                            assert call.wire == resp(step_args(call)), (kind, id, changed)


@pytest.mark.parametrize("model", [Item, Spread, Quiet, Wide])
def test_a_deletes_wire_is_its_commandsresp(model: type[Document]) -> None:
    """The RESP bytes a delete carries (Call.wire) are its EVALSHA command's, for ids that
    need escaping or are long, with an expected version or none (or one of a document
    loaded as format 3, whose entries it sends as ARGV[7]), a soft delete or not, a layout
    changed between deletes, with change events and without, one partition or several."""
    from quantumorm.backends.redis.headed import Headed
    from quantumorm.backends.redis.reloads import step_args

    layout = writes.WriteLayout(model._meta, KeySpace(model._meta))
    row = ROWS[0] if model is Item else {"n": 1, "s": "a"}
    loaded = Headed.of(7, model(**{k: v for k, v in row.items()
                                   if k in model._meta.fields}).clean())
    for stamp in (b"", b"", b"3", b"3", b"12"):
        layout.layout = stamp
        for id in ("1", "007", "a b%", "{x}", "\x00\r\n*3", "x" * 1500, "é" * 400,
                   "9" * 39, "9" * 40):
            for expected in (0, 5, 10**18, loaded):
                for expire in (Expiry.KEEP, 60000, 1):
                    call = layout.delete(WriteRequest("delete", id, expected,
                                                      expire=expire)).call()
                    assert call.wire is not None
                    assert call.wire == resp(step_args(call)), (id, expected, expire)
