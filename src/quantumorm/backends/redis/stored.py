"""What a document key holds: the document's version between two NUL bytes, then the
document as Python stored it (its JSON, byte-exact, or compressed: ``compression.py``).

The write scripts store it so (``versioned()`` in ``lua/_prelude.lua``), so that a read of
the key (a query's MGET, a get) brings the version with the document and no meta hash is
read per row. The meta hash keeps the version too (``v``): compare-and-set reads it there,
and :mod:`.verify` reports a document whose two versions differ. A document stored before
versions were kept in it starts with its JSON (``{``) or the compression marker (0xFF);
its version is the meta hash's, which the scripts then return beside it.

Format 3 (``bench/format3.md``; read here, written by no writer of this release) starts
with 0x01: ``\x01<version>\0<W>\0<payload>``, ``W`` the recent write ids (no NUL, possibly
empty; skipped, not read: their form is for format 3's writers to fix and check, so that
a denser form stays readable here). A reader tells the formats apart by the first byte:
0x00 format 2, 0x01 format 3, anything else (``{``, 0xFF) format 1.

Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from ... import compression
from ...errors import CorruptDocumentError

#: the first byte of a document key that carries its version
VERSIONED = b"\x00"
#: the first byte of a format-3 document key: its version, then its recent write ids
HEADED = b"\x01"


class DamagedVersion(ValueError):
    """A document key's value whose version (between its two NUL bytes) is not what the
    scripts write: plain ASCII digits, no sign, blank or leading zero ("+13", " 13",
    "-1", "1_3" would all read as a number to ``int``)."""


def split(stored: bytes, version: Any = None) -> tuple[int, bytes]:
    """The version and the document (JSON or compressed) of a document key's value;
    ``version`` is the one read beside it (from the meta hash), used when the value
    carries none. ValueError if the value starts a version (or, format 3, the write ids
    after it) it does not end; :class:`DamagedVersion` (a ValueError) if the version is
    not plain digits."""
    if stored[:1] != VERSIONED:
        if stored[:1] != HEADED:
            return int(version or 0), stored
        end = stored.index(b"\x00", 1)
        start = stored.index(b"\x00", end + 1) + 1  # (after W, which is not read here)
    else:
        end = stored.index(b"\x00", 1)
        start = end + 1
    digits = stored[1:end]
    # (plain digits, ^[1-9][0-9]*$ as bad_version in lua/_prelude.lua reads a meta hash's:
    # int() also reads "+13", " 13", "13 ", "013" and "1_3"; with a digit first and last
    # and no "_", it refuses anything else, with no call made for a good version)
    # (find(), not ``in``: CPython 3.11's ``bytes in bytes`` makes and clears a TypeError)
    if 48 < stored[1] < 58 and 47 < stored[end - 1] < 58 and digits.find(b"_") < 0:
        try:
            return int(digits), stored[start:]
        except ValueError:
            pass
    raise DamagedVersion(f"the version {digits[:24]!r} it carries is not plain digits "
                             "(at most 16)")


def header(stored: bytes) -> tuple[int, bytes, bytes] | None:
    """A format-3 value's version, recent write ids (W, as ``header_of`` in
    ``lua/_prelude.lua`` reads them: not checked here, see :func:`.writeids.version_in_header`)
    and payload; None for a value of format 1 or 2. ValueError (:class:`DamagedVersion` for
    the version) when its header does not read."""
    if stored[:1] != HEADED:
        return None
    end = stored.index(b"\x00", 1)
    w_end = stored.index(b"\x00", end + 1)
    digits = stored[1:end]
    if not (48 < stored[1] < 58 and digits.isdigit() and len(digits) <= 16):
        raise DamagedVersion(f"the version {digits[:24]!r} it carries is not plain digits "
                             "(at most 16)")
    return int(digits), stored[end + 1:w_end], stored[w_end + 1:]


def payload(stored: bytes) -> bytes:
    """The document of a document key's value without its version (and, format 3, its
    write ids), whatever the version holds (``payload_of`` in ``lua/_prelude.lua``);
    ValueError if the value starts a version (or write ids) it does not end. For readers
    that take the version from the meta hash."""
    if stored[:1] != VERSIONED:
        if stored[:1] != HEADED:
            return stored
        return stored[stored.index(b"\x00", stored.index(b"\x00", 1) + 1) + 1:]
    return stored[stored.index(b"\x00", 1) + 1:]


def document(stored: bytes, model: str, id: str) -> dict[str, Any]:
    """The document (a JSON object) of a document key's value, whatever its version holds
    (for readers that take the version from the meta hash: reindex, repartition); a value
    that does not read (a version not ended, a compressed body that does not decompress,
    JSON that is not an object) is :class:`CorruptDocumentError` naming it."""
    try:
        data = json.loads(compression.decompress(payload(stored), model, id))
    except ValueError as exc:  # (JSONDecodeError and UnicodeDecodeError are ValueErrors)
        raise CorruptDocumentError(model, id, f"does not read ({exc})") from exc
    if not isinstance(data, dict):
        raise CorruptDocumentError(model, id, "not a JSON object")
    return data


def versioned(version: int, payload: bytes) -> bytes:
    """What the scripts store for ``payload`` at ``version`` (for tools and tests)."""
    return b"\x00%d\x00%s" % (version, payload)
