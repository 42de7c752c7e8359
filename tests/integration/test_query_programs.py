"""query.lua's program argument and its exact walk's document keys, against real Redis.

* A program of up to ``wire.FLAT_TOKENS`` tokens is sent as its strings one after the other
  (no MessagePack array header), a longer one as one array: both read the same.
* An exact walk (an equality on one index, or the id index) builds each document key from
  the id key after the value: when the first and the last id keys of the walk start alike
  (all numeric, or none), every escaped id starts at the same byte; numeric and other ids
  under one value, in both directions and at any offset, read theirs one by one.
"""

from __future__ import annotations

from typing import Any

import pytest

from quantumorm import Document, IntField, StringField, sortable
from quantumorm.backends.redis import wire


class Tile(Document):
    name = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "qp_tiles"


#: ids of three kinds: numeric ones, others, and both under one name
IDS = {"digits": [str(i) for i in range(1, 40)],
       "words": [f"w{i:02d}" for i in range(1, 40)] + ["a b", "x:y", "\u00e9t\u00e9"],
       "mixed": [str(i) for i in range(100, 130)] + [f"m{i:02d}" for i in range(30)]}


def _natural(id: str) -> bytes:  # (the id index's order)
    return sortable.id_key(id)


async def _load() -> dict[str, str]:
    names = {}
    docs = []
    for name, ids in IDS.items():
        for i, id in enumerate(ids):
            names[id] = name
            docs.append(Tile(id=id, name=name, n=i))
    await Tile.objects.bulk_create(docs)
    return names


def test_short_programs_are_flat_and_long_ones_an_array() -> None:
    short = [b"WALK", b"2", b"0", b"0", b"[ a\x00", b"( a\x00\xff", b"1", b"0", b"T", b"0",
             b"0", b"x" * 40]
    flat = wire.program(short)
    assert flat[0] == 0xA4 and flat == wire.pack(short)[1:]
    assert wire.unpack(wire.array_header(len(short)) + flat) == short
    long = [b"%d" % i for i in range(wire.FLAT_TOKENS + 1)]
    assert wire.program(long) == wire.pack(long)
    assert wire.unpack(wire.program(long)) == long
    edge = long[:-1]
    assert wire.program(edge) == wire.pack(edge)[3:]  # (a 16-bit count: 3 header bytes)


async def test_exact_walks_read_every_kind_of_id(conn: Any) -> None:
    names = await _load()
    for name, ids in IDS.items():
        want = sorted(ids, key=_natural)
        got = await Tile.objects.filter(name=name).all()
        assert [t.id for t in got] == want
        assert all(t.name == name and t.n == ids.index(t.id) for t in got)
        for offset, limit in ((0, 1), (1, 3), (25, 10), (len(ids) - 1, 5)):
            page = await Tile.objects.filter(name=name).offset(offset).limit(limit).all()
            assert [t.id for t in page] == want[offset:offset + limit]
        got = await Tile.objects.filter(name=name).order_by("-id").all()
        assert [t.id for t in got] == want[::-1]
        assert await Tile.objects.filter(name=name).count() == len(ids)
    # the id index walked whole, and in pages that start and end in either kind of id
    everything = sorted(names, key=_natural)
    assert [t.id for t in await Tile.objects.all()] == everything
    assert [t.id for t in await Tile.objects.order_by("-id").all()] == everything[::-1]
    for offset in (0, 60, 68, 69, 70, 100):
        page = await Tile.objects.filter().offset(offset).limit(12).all()
        assert [t.id for t in page] == everything[offset:offset + 12]


@pytest.mark.parametrize("values", [10, wire.FLAT_TOKENS - 20, wire.FLAT_TOKENS + 50, 1000])
async def test_programs_of_any_length_answer_alike(conn: Any, values: int) -> None:
    names = await _load()
    wanted = ["digits", "mixed"] + [f"absent{i}" for i in range(values - 2)]
    got = await Tile.objects.filter(name__in=wanted).all()
    want = sorted((id for id, name in names.items() if name in ("digits", "mixed")),
                  key=_natural)
    assert [t.id for t in got] == want
    assert await Tile.objects.filter(name__in=wanted, n__lt=5).count() == 10


async def test_walks_and_filters_out_of_id_order_read_every_kind_of_id(conn: Any) -> None:
    # (an index walk in value order, and candidates filtered on the server: their id keys
    # in no id order, all numeric or not)
    names = await _load()
    values = {id: (name, IDS[name].index(id)) for id, name in names.items()}
    for low, high in ((0, 3), (0, 40), (30, 45), (35, 60)):
        got = await Tile.objects.filter(n__gte=low, n__lt=high).order_by("n").all()
        want = sorted((id for id, (_, n) in values.items() if low <= n < high),
                      key=lambda id: (values[id][1], _natural(id)))
        assert [t.id for t in got] == want
        for name in IDS:
            got = await Tile.objects.filter(n__gte=low, n__lt=high).exclude(
                name=name).all()
            assert [t.id for t in got] == sorted(
                (id for id, (other, n) in values.items() if low <= n < high and other != name),
                key=_natural)
    only = await Tile.objects.filter(name="digits", n__gte=2).order_by("n").all()
    assert [t.id for t in only] == IDS["digits"][2:]
