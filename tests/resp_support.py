"""RESP of a command as hiredis's ``pack_command`` and redis-py's packer write it: what the
commands QuantumORM packs itself (``Call.wire``, ``Command.wire``) must equal."""

from __future__ import annotations

from typing import Any


def resp(command: tuple[Any, ...]) -> bytes:
    """``command``'s RESP bytes (str and int items as their text in UTF-8), checked against
    hiredis's ``pack_command`` where hiredis is installed."""
    items = [item if isinstance(item, bytes) else str(item).encode() for item in command]
    packed = b"*%d\r\n" % len(items) + b"".join(b"$%d\r\n%s\r\n" % (len(item), item)
                                               for item in items)
    try:
        from hiredis import pack_command
    except ImportError:
        return packed
    assert pack_command(command) == packed
    return packed
