"""A bulk insert's meta field pairs (``WriteLayout.bulk_values``, which remembers the
encodings of values it has seen) are byte for byte those of ``all_entries``: for every kind
of indexed field, for values seen again (equal values of other types: 1.0, -0.0, an IntEnum
member), and after its memo has started again."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Any

import pytest

from quantumorm import (
    ArrayField,
    BooleanField,
    DateTimeField,
    DecimalField,
    Document,
    EmbeddedDocument,
    EmbeddedDocumentField,
    EnumField,
    FloatField,
    IntField,
    StringField,
)
from quantumorm.backends.redis import wire, writes
from quantumorm.backends.redis.keys import KeySpace


class Color(enum.IntEnum):
    RED = 1
    BLUE = 2


class Address(EmbeddedDocument):
    city = StringField()


class Everything(Document):
    s = StringField(indexed=True)
    n = IntField(indexed=True)
    f = FloatField(indexed=True)
    d = DecimalField(indexed=True)
    b = BooleanField(indexed=True)
    t = DateTimeField(indexed=True)
    c = EnumField(Color, indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    numbers = ArrayField(IntField(), indexed=True)
    address = EmbeddedDocumentField(Address)

    class Meta:
        collection = "bulk_values_everything"
        namespace = "unit"
        indexes = [{"fields": ["s", "n"], "unique": True}, ("b", "t"), "address__city",
                   {"fields": ["s"], "casefold": True}]


T = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)

ROWS: list[dict[str, Any]] = [
    {"s": "a", "n": 1, "f": 1.0, "d": Decimal("1.00"), "b": True, "t": T, "c": Color.RED,
     "tags": ["x", "y", "x"], "numbers": [3, 1, 3], "address": Address(city="P")},
    {"s": "A", "n": 1, "f": -0.0, "d": Decimal("0"), "b": False, "t": None,
     "c": Color.BLUE, "tags": ["X", "x"], "numbers": [], "address": None},
    {"s": None, "n": None, "f": 0.0, "d": None, "b": None, "c": None, "tags": None,
     "numbers": [0, -1], "address": Address(city=None)},
    {"s": "a\x00b", "n": -(10**30), "f": 1e300, "d": Decimal("-2.5"), "b": True, "t": T,
     "tags": ["é", "a\x00", ""], "numbers": [2**70]},
    {"s": "", "n": 0, "f": 2.5, "tags": ["y"], "numbers": [1, 1]},
    {"s": "long " * 100, "n": 0, "f": 2.5, "tags": ["long " * 100, "y"], "numbers": [1]},
]


def _cleaned(row: dict[str, Any]) -> dict[str, Any]:
    doc = Everything(**row)
    doc.clean()
    return doc._values()


def _expected(layout: writes.WriteLayout, values: dict[str, Any]) -> tuple[bytes, ...]:
    """What bulk_values gives: the pairs of all_entries packed one after another (the items
    of a packed array, without its header: insert_many.lua unpacks them straight into
    HSET's arguments), its lenient positions, and per index its entries (those the pairs
    hold for it), each a packed array, in one array."""
    pairs, lenient = layout.all_entries(values)
    indexes = layout.options.indexes
    assert len(indexes) < 16  # (a one-byte array header)
    members = bytes([0x90 | len(indexes)]) + b"".join(
        wire.pack(writes.index_members(layout.options, index, values)) for index in indexes)
    packed = wire.pack(pairs)
    return packed[len(wire.array_header(len(pairs))):], members, wire.pack(lenient)


def _flat(layout: writes.WriteLayout, values: dict[str, Any]) -> bytes:
    out = b""
    for index in layout.options.indexes:
        entries = writes.index_members(layout.options, index, values)
        packed = wire.pack(entries)
        assert len(entries) < 16  # (a one-byte count, a one-byte array header)
        out += bytes([len(entries)]) + packed[1:]
    return out


@pytest.mark.parametrize("limit", [writes._MEMO_LIMIT, 1, 3])
def test_bulk_values_are_all_entries_packed(limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writes, "_MEMO_LIMIT", limit)
    layout = writes.WriteLayout(Everything._meta, KeySpace(Everything._meta))
    rows = [_cleaned(row) for row in ROWS]
    lenient_seen = set()
    for _pass in range(3):  # (seen again: from the memo; a limit of 1 starts it again)
        for values in rows:
            got, expected = layout.bulk_values(values), _expected(layout, values)
            assert got == expected
            # insert_many.lua's flat form: per index its count, then its entries
            assert layout.bulk_values(values, True) == (
                expected[0], _flat(layout, values), expected[2])
            lenient_seen.add(got[2])
    assert len(lenient_seen) == 2  # (the unique compound index: held unique, and not)
    assert all(len(memo) <= limit for _, _, _, memo, _ in layout._memos)
    # a long value is not remembered (its encodings would make the memo hold megabytes)
    assert all(len(piece) <= writes._MEMO_BYTES for _, _, _, memo, _ in layout._memos
               for piece, _, _ in memo.values())


def test_bulk_values_without_compound_indexes() -> None:
    class Plain(Document):
        tags = ArrayField(StringField(), indexed=True)
        n = IntField(indexed=True)
        floats = ArrayField(FloatField(), indexed=True)  # (not remembered: floats)

        class Meta:
            collection = "bulk_values_plain"
            namespace = "unit"

    layout = writes.WriteLayout(Plain._meta, KeySpace(Plain._meta))
    for row in ({"tags": ["b", "a"], "n": 1}, {"tags": ["a", "b"], "n": 1}, {"n": 2},
                {"tags": ["a"] * 40, "n": None}, {"floats": [1.5, -0.0, 0.0, 1.5]},
                {"tags": [f"a rather long tag {i}" for i in range(40)], "floats": []},
                # (an array's headers on both sides of a table's edge: its netstring list
                # under 32 bytes, under 256, longer; 15 and 16 entries)
                *[{"tags": [f"t{i:02d}" for i in range(count)]} for count in (4, 5, 15, 16, 60)]):
        doc = Plain(**row)
        doc.clean()
        assert layout.bulk_values(doc._values()) == _expected(layout, doc._values())


class Flat(Document):
    s = StringField(indexed=True)
    n = IntField(indexed=True)
    f = FloatField(indexed=True)
    b = BooleanField(indexed=True)
    c = EnumField(Color, indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    numbers = ArrayField(IntField(), indexed=True)

    class Meta:
        collection = "bulk_members_flat"
        namespace = "unit"


class Unindexed(Document):
    s = StringField()

    class Meta:
        collection = "bulk_members_unindexed"
        namespace = "unit"


@pytest.mark.parametrize("limit", [writes._MEMO_LIMIT, 1])
def test_bulk_members_are_bulk_values_flat(limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's entries made field by field (bulk_members: a model without compound
    indexes, whose documents keep no pairs) are each document's bulk_values (flat), in
    columns of one type or of several, with values seen before, and long ones (the arrays
    form past _FLAT_BYTES)."""
    monkeypatch.setattr(writes, "_MEMO_LIMIT", limit)
    rows: list[dict[str, Any]] = [
        {k: v for k, v in row.items() if k in Flat._fields} for row in ROWS]
    rows += [{"s": f"s{i % 3}", "n": i % 4, "f": 1.5, "b": i % 2 == 0, "c": Color.RED,
              "tags": ["b", "a", "b"], "numbers": [True and 2, 1]} for i in range(8)]
    rows += [{"tags": [f"a long tag {i:04d} " * 3 for i in range(120)]}]
    for model, batch in ((Flat, rows), (Flat, rows[6:]), (Unindexed, [{"s": "a"}, {}])):
        values = [_cleaned_as(model, row) for row in batch]
        layout = writes.WriteLayout(model._meta, KeySpace(model._meta))
        expected = [layout.bulk_values(v, True)[1] for v in values]
        for _pass in range(2):
            fresh = writes.WriteLayout(model._meta, KeySpace(model._meta))
            assert fresh.bulk_members(values) == expected
            assert layout.bulk_members(values) == expected  # (from its memo)


def _cleaned_as(model: type[Document], row: dict[str, Any]) -> dict[str, Any]:
    doc = model(**row)
    doc.clean()
    return doc._values()
