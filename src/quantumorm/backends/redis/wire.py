"""How lists of byte strings travel to the Lua scripts: as one MessagePack argument (an array,
or a query program's strings one after the other: :func:`program`).

Redis' Lua has a C MessagePack decoder (``cmsgpack.unpack``): a program of a few dozen
tokens decodes about three times faster than a netstring parser written in Lua, and one
argument costs the client less to send than many. Only arrays of byte strings are encoded
(msgpack ``str`` types carry raw bytes, which Lua strings are).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

_FIXSTR = [bytes([0xA0 | size]) for size in range(32)]
_STR8 = [b"\xd9" + bytes([size]) for size in range(256)]
_FIXARRAY = [bytes([0x90 | count]) for count in range(16)]


def pack(items: Sequence[bytes]) -> bytes:
    out = [array_header(len(items))]
    fixstr = _FIXSTR
    out += [fixstr[len(item)] + item if len(item) < 32 else _header(len(item)) + item
            for item in items]
    return b"".join(out)


def items(values: Sequence[bytes]) -> bytes:
    """The strings ``values`` packed one after another, not as an array (:func:`pack`
    without its header): a script gathers them by one table constructor,
    ``{cmsgpack.unpack(arg)}``, whose array is sized once, where cmsgpack fills an array's
    table one item at a time from an empty one."""
    fixstr = _FIXSTR
    return b"".join([fixstr[len(item)] + item if len(item) < 32 else _header(len(item)) + item
                     for item in values])


#: the most tokens a query program (:func:`program`) is sent flat: ``query.lua`` decodes its
#: strings onto Lua's stack, which holds a few thousand values at most
FLAT_TOKENS = 256


def program(items: Sequence[bytes]) -> bytes:
    """A query program for ``query.lua``: its strings one after the other, without an
    array's header (``{cmsgpack.unpack(s)}`` there decodes them onto the stack into one
    table: half the server instructions of an array, whose table the decoder fills item by
    item, for a program of a dozen tokens); more than :data:`FLAT_TOKENS` of them, one
    array (:func:`pack`)."""
    if len(items) > FLAT_TOKENS:
        return pack(items)
    fixstr = _FIXSTR
    return b"".join([fixstr[len(item)] + item if len(item) < 32 else _header(len(item)) + item
                     for item in items])


def item(token: bytes) -> bytes:
    """One string of a :func:`pack` array, as it is packed there (a plan's template packs
    its value tokens alone, between runs of packed constants)."""
    return str_header(len(token)) + token


def array_header(count: int) -> bytes:
    """The header :func:`pack` gives an array of ``count`` items (what writers that pack
    items one by one put first)."""
    if count < 16:
        return _FIXARRAY[count]
    if count < 65536:
        return b"\xdc" + struct.pack(">H", count)
    return b"\xdd" + struct.pack(">I", count)


def integer(value: int) -> bytes:
    """A non-negative integer as MessagePack's smallest form of it (``cmsgpack.unpack``
    gives the script the number itself: no text for ``tonumber()`` to parse)."""
    if 0 <= value < 128:
        return bytes((value,))
    if 0 <= value < 65536:
        return b"\xcd" + struct.pack(">H", value)
    if 0 <= value < 1 << 32:
        return b"\xce" + struct.pack(">I", value)
    if 0 <= value < 1 << 64:
        return b"\xcf" + struct.pack(">Q", value)
    raise ValueError(f"{value} is not an unsigned 64-bit integer")


def str_header(size: int) -> bytes:
    """The header :func:`pack` gives a string of ``size`` bytes."""
    return _FIXSTR[size] if size < 32 else _header(size)


def str_header_table() -> list[bytes]:
    """The headers of strings of 0 to 31 bytes, by size (what :func:`str_header` gives)."""
    return list(_FIXSTR)


def _header(size: int) -> bytes:  # (of a string of 32 bytes or more)
    if size < 256:
        return _STR8[size]
    if size < 65536:
        return b"\xda" + struct.pack(">H", size)
    return b"\xdb" + struct.pack(">I", size)


def text(value: object) -> str:
    """A reply value (bytes, or an int from the server) as a string."""
    return value.decode() if isinstance(value, bytes) else str(value)


def unpack_items(data: bytes) -> list[bytes]:
    """Inverse of :func:`items` (for tests and tools); raises ValueError on anything else."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        # (each string read as an array of one: unpack() checks its header and length)
        kind = data[pos]
        if kind & 0xE0 == 0xA0:
            end = pos + 1 + (kind & 0x1F)
        elif kind in (0xD9, 0xDA, 0xDB):
            width = {0xD9: 1, 0xDA: 2, 0xDB: 4}[kind]
            end = pos + 1 + width + int.from_bytes(data[pos + 1:pos + 1 + width], "big")
        else:
            raise ValueError(f"not a MessagePack string (byte {kind:#x})")
        out += unpack(_FIXARRAY[1] + data[pos:end])
        pos = end
    return out


def unpack(data: bytes) -> list[bytes]:
    """Inverse of :func:`pack` (for tests and tools); raises ValueError on anything else."""
    def read(pos: int, size: int) -> tuple[bytes, int]:
        if pos + size > len(data):
            raise ValueError("truncated MessagePack array")
        return data[pos:pos + size], pos + size

    def length(pos: int, fmt: str, size: int) -> tuple[int, int]:
        raw, pos = read(pos, size)
        return int(struct.unpack(fmt, raw)[0]), pos

    if not data:
        raise ValueError("empty MessagePack data")
    head, pos = data[0], 1
    if head & 0xF0 == 0x90:
        count = head & 0x0F
    elif head == 0xDC:
        count, pos = length(pos, ">H", 2)
    elif head == 0xDD:
        count, pos = length(pos, ">I", 4)
    else:
        raise ValueError(f"not a MessagePack array (first byte {head:#x})")
    items = []
    for _ in range(count):
        tag, pos = read(pos, 1)
        kind = tag[0]
        if kind & 0xE0 == 0xA0:
            size = kind & 0x1F
        elif kind == 0xD9:
            size, pos = length(pos, ">B", 1)
        elif kind == 0xDA:
            size, pos = length(pos, ">H", 2)
        elif kind == 0xDB:
            size, pos = length(pos, ">I", 4)
        else:
            raise ValueError(f"not a MessagePack string (byte {kind:#x})")
        item, pos = read(pos, size)
        items.append(item)
    if pos != len(data):
        raise ValueError("trailing bytes after the MessagePack array")
    return items
