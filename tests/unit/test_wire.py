"""The MessagePack arrays that carry lists of byte strings to the Lua scripts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quantumorm.backends.redis import wire


@given(st.lists(st.binary(max_size=300), max_size=40))
def test_round_trip(items: list[bytes]) -> None:
    assert wire.unpack(wire.pack(items)) == items


@pytest.mark.parametrize("count", [0, 15, 16, 65535, 65536])
def test_array_headers_at_their_limits(count: int) -> None:
    items = [b"x"] * count
    assert wire.unpack(wire.pack(items)) == items


@pytest.mark.parametrize("size", [0, 31, 32, 255, 256, 65535, 65536])
def test_string_headers_at_their_limits(size: int) -> None:
    item = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert wire.unpack(wire.pack([item])) == [item]


@pytest.mark.parametrize("data", [b"", b"\x91", b"\x91\xa3ab", b"\x90\x00", b"\x81\xa1a\xa1b"])
def test_malformed_data_is_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        wire.unpack(data)


@pytest.mark.parametrize("size", [0, 31, 32, 255, 256, 65535, 65536])
def test_an_item_is_packed_as_in_an_array(size: int) -> None:
    item = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert wire.pack([b"a", item, b"b"]) == b"\x93" + b"".join(
        wire.item(token) for token in (b"a", item, b"b"))


@given(st.lists(st.binary(max_size=300), max_size=40))
def test_items_are_an_array_less_its_header(items: list[bytes]) -> None:
    """wire.items: the strings one after another, as a script's table constructor
    ``{cmsgpack.unpack(arg)}`` gathers them (save.lua's and insert.lua's pairs and
    quadruples)."""
    packed = wire.items(items)
    assert wire.pack(items) == wire.array_header(len(items)) + packed
    assert wire.unpack_items(packed) == items


@pytest.mark.parametrize("size", [0, 31, 32, 255, 256, 65535, 65536])
def test_items_at_their_string_headers_limits(size: int) -> None:
    item = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert wire.unpack_items(wire.items([b"a", item])) == [b"a", item]


@pytest.mark.parametrize("data", [b"\x91\xa1a", b"\xa3ab", b"\x00"])
def test_malformed_items_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        wire.unpack_items(data)
