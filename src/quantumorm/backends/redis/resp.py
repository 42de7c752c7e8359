"""RESP framing for the commands their makers pack themselves (``Call.wire``,
``Command.wire``): a write layout or a reader keeps what a call sends alike packed, and
frames only its own items per call. The bytes must equal hiredis's ``pack_command`` of the
same command (unit tests compare them): a bulk string is ``$<length>\\r\\n<bytes>\\r\\n``,
an array ``*<count>\\r\\n`` then its items."""

from __future__ import annotations

CRLF = b"\r\n"
#: bulk string heads by length (the usual lengths: longer ones are formatted)
BULK_HEADS = [b"$%d\r\n" % n for n in range(1024)]
#: array heads by count
ARRAY_HEADS = [b"*%d\r\n" % n for n in range(256)]


def bulk_head(size: int) -> bytes:
    return BULK_HEADS[size] if size < 1024 else b"$%d\r\n" % size


def array_head(count: int) -> bytes:
    return ARRAY_HEADS[count] if count < 256 else b"*%d\r\n" % count


__all__ = ["ARRAY_HEADS", "BULK_HEADS", "CRLF", "array_head", "bulk_head"]
