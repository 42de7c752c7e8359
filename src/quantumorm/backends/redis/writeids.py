"""Write ids: the 16 hex digits each write script call carries, by which a write sent again
(its reply lost) is recognised as applied (``lua/_write.lua``, the meta hash's "r").

A write id only has to differ from the other writes to the same document (its last few);
it is no secret. They come from a private generator seeded from the system's random source
(``os.urandom``) and seeded again in a forked child, so two processes never share a
sequence, and no user call of ``random.seed()`` reaches it: 64 random bits per write, with
no system call per write as ``os.urandom`` makes (a read by id or an update by id is a few
tens of microseconds of client work; that call was one or two of them). A bulk insert's
batch takes its write ids from one ``os.urandom`` read instead (``WriteLayout.insert_many``).

The reseed in a child relies on the fork running Python's at-fork hooks, as ``os.fork``,
``multiprocessing`` and every extension that follows CPython's rules for forking
(``PyOS_AfterFork_Child``) do. A child forked without them would repeat its parent's ids,
and a resend check could then take another process's write for its own.
"""

from __future__ import annotations

import os
import random
from typing import Any

from ...errors import CorruptDocumentError
from ...sortable import unescape_id
from . import stored
from .translation import damaged_meta

_source = random.Random()  # (seeded from os.urandom)
_bits = _source.getrandbits
#: write_id()'s source of random bits, for a caller that makes write ids in line
#: (``"%016x" % bits(64)``: one call fewer per write); the same Random, reseeded in a
#: forked child
bits = _bits

if hasattr(os, "register_at_fork"):  # (not on Windows, which does not fork)
    # (a child would otherwise repeat its parent's ids; seed() with no argument reads
    # os.urandom)
    os.register_at_fork(after_in_child=_source.seed)


def write_id() -> str:
    """A new write id: 16 lowercase hex digits."""
    return "%016x" % _bits(64)


def version_written(recent: Any, write_id: bytes, meta_key: str) -> int | None:
    """The version the write ``write_id`` gave the document whose meta hash ``meta_key``
    keeps ``recent`` (its "r": per write, newest first, the write id, then the version in
    16 zero-padded digits, as ``store_taken`` in ``lua/_write.lua`` writes it), or None
    when it is not among them. :class:`DamagedMetaError` when its version does not read
    (int() would read "+13" or " 13" as 13)."""
    held = bytes(recent or b"")
    for i in range(0, len(held), 32):  # (aligned, as applied_in() in _write.lua looks)
        if held[i:i + 16] == write_id:
            version = held[i + 16:i + 32]
            if len(version) != 16 or not version.isdigit() or not version.strip(b"0"):
                raise damaged_meta(meta_key, "r")
            return int(version)
    return None


def version_in_header(recent: bytes, version: int, write_id: bytes) -> int | None:
    """The version the write ``write_id`` gave a format-3 document whose header holds
    ``version`` and the recent writes ``recent`` (its W: the newest write's id alone, its
    version the header's, then per older write the id and its version in 16 zero-padded
    digits, as ``headed()`` in ``lua/_write.lua`` writes it), or None when it is not among
    them. ValueError when W is not of that form (``header_of`` in ``lua/_prelude.lua``
    refuses it too)."""
    held = bytes(recent or b"")
    if held and (len(held) < 16 or (len(held) - 16) % 32
                 or held.translate(None, b"0123456789abcdef")):
        raise ValueError(f"recent write ids {held[:48]!r} are not 16 + 32k hex digits")
    for i in range(32, len(held), 32):  # (each older write's version, as header_of reads it)
        older = held[i:i + 16]
        if not older.isdigit() or not older.strip(b"0"):
            raise ValueError(f"recent write version {older!r}")
    if held[:16] == write_id:
        return version
    for i in range(16, len(held), 32):  # (aligned, as written_in() in _prelude.lua looks)
        if held[i:i + 16] == write_id:
            return int(held[i + 16:i + 32])  # (checked above)
    return None


def version_in_document(document: Any, recent: Any, write_id: bytes, doc_key: str,
                        meta_key: str) -> int | None:
    """The version the write ``write_id`` gave the document stored as ``document`` (the
    document key's value, None if none), whose meta hash ``meta_key`` keeps ``recent`` (its
    "r", None if none): a format-3 document's from its header's W (its meta hash, if any, is
    a sweep record without "r"), any other from "r" (:func:`version_written`, unchanged).
    A format-3 header that does not read is :class:`CorruptDocumentError` naming the
    document (``header_of`` in ``lua/_prelude.lua`` refuses it too): never a guess."""
    if document is not None and bytes(document[:1]) == stored.HEADED:
        try:
            head = stored.header(bytes(document))
            assert head is not None
            return version_in_header(head[1], head[0], write_id)
        except ValueError as exc:
            tag, _, escaped = doc_key.rpartition(":d:")
            try:
                id = unescape_id(escaped)
            except (ValueError, UnicodeDecodeError):
                id = escaped
            raise CorruptDocumentError(tag.strip("{}").rpartition(":")[0] or tag, id,
                                       f"its format-3 header does not read ({exc})") from exc
    return version_written(recent, write_id, meta_key)


__all__ = ["version_in_document", "version_in_header", "version_written", "write_id"]
