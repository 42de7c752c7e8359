"""Order-preserving byte encodings of values: the single definition of how values compare.

Every comparison QuantumORM makes (index ranges in Redis, post-filters, in-memory sorting,
keyset cursors) compares these byte strings, so all paths agree to the bit. The encodings are
exact: integers of any size and Decimals keep every digit, floats compare by their exact
value, datetimes compare as UTC instants to the microsecond.

Invariants (the Redis index layout and its Lua scripts rely on them):

* ``a < b`` as Python values  <=>  ``encode(a) < encode(b)`` as bytes, within one field type;
  ``None`` sorts before every value.
* Every encoding ends with ``\\x00`` and is never a prefix of another encoding followed by
  anything but ``\\xff``. So ``[enc, enc + b"\\xff")`` is exactly "this value", whatever follows.
* :func:`id_key` encodings contain no ``\\x00`` and never start with ``\\xff``, so an index
  member ``value_encoding + id_key`` splits at its last ``\\x00``.
"""

from __future__ import annotations

import datetime as _dt
from decimal import Decimal

NULL = b"\x01\x00"
FALSE = b"\x02\x00"
TRUE = b"\x03\x00"
_NEG, _ZERO, _POS = b"\x10", b"\x14\x00", b"\x18"
STRING_TAG = b"\x20"
DATETIME_TAG = b"\x30"
DATE_TAG = b"\x31"
END = b"\x00"
UPPER = b"\xff"  # exclusive upper bound suffix: "everything that starts with this prefix"

_EXP_BIAS = 5_000_000_000
_EXP_WIDTH = 10
_DIGIT_FLIP = bytes.maketrans(b"0123456789", b"9876543210")


def encode_null() -> bytes:
    return NULL


def encode_bool(value: bool) -> bytes:
    return TRUE if value else FALSE


def encode_number(value: int | float | Decimal) -> bytes:
    """Encode a finite number so that byte order is numeric order, exactly.

    A float is taken at its shortest round-trip decimal (``repr``), which preserves order
    and equality between floats; ints and Decimals are exact. ``1``, ``1.0`` and
    ``Decimal("1.00")`` encode alike, as they compare equal in Python.
    """
    if isinstance(value, bool):
        raise TypeError("booleans are not numbers here")
    if type(value) is int:  # the common case, without a Decimal (same bytes)
        if value == 0:
            return _ZERO
        text = str(-value if value < 0 else value)
        body = (str(len(text) + _EXP_BIAS).zfill(_EXP_WIDTH) + text.rstrip("0")).encode()
        if value < 0:
            return _NEG + body.translate(_DIGIT_FLIP) + b"~" + END
        return _POS + body + END
    if isinstance(value, float):
        dec = Decimal(repr(value))
    elif isinstance(value, int):
        dec = Decimal(value)
    else:
        dec = value
    if not dec.is_finite():
        raise ValueError(f"cannot encode non-finite number {value!r}")
    sign, digits, exponent = dec.as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits)).lstrip("0")
    if not text:
        return _ZERO
    stripped = text.rstrip("0")
    # value = 0.<stripped> * 10**position
    position = len(digits) + exponent - (len(digits) - len(text))
    biased = position + _EXP_BIAS
    if not 0 <= biased < 10**_EXP_WIDTH:
        raise ValueError(f"number out of the encodable range: {value!r}")
    body = str(biased).zfill(_EXP_WIDTH).encode() + stripped.encode()
    if sign:
        # Larger magnitude must sort first: flip every digit, and end with a byte above any
        # digit so that a longer mantissa (a larger magnitude) sorts before its prefix.
        return _NEG + body.translate(_DIGIT_FLIP) + b"~" + END
    return _POS + body + END


def encode_str(value: str) -> bytes:
    """UTF-8 bytes (code point order), ``\\x00`` escaped as ``\\x00\\xff``, then ``\\x00``."""
    return STRING_TAG + value.encode("utf-8").replace(b"\x00", b"\x00\xff") + END


def decode_str(key: bytes) -> str:
    """The string whose :func:`encode_str` is ``key``."""
    if key[:1] != STRING_TAG or key[-1:] != END:
        raise ValueError(f"not a string sort key: {key!r}")
    return key[1:-1].replace(b"\x00\xff", b"\x00").decode("utf-8")


def encode_str_prefix(prefix: str) -> bytes:
    """The encoding shared by every string that starts with ``prefix`` (no terminator)."""
    return STRING_TAG + prefix.encode("utf-8").replace(b"\x00", b"\x00\xff")


def encode_datetime(value: _dt.datetime) -> bytes:
    """An aware datetime as its UTC instant, fixed width, microsecond precision."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware to be encoded")
    utc = value.astimezone(_dt.timezone.utc)
    stamp = "%04d%02d%02d%02d%02d%02d%06d" % (
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond
    )
    return DATETIME_TAG + stamp.encode() + END


def encode_date(value: _dt.date) -> bytes:
    """A calendar date (not a datetime), fixed width: ``YYYYMMDD``."""
    return DATE_TAG + b"%04d%02d%02d" % (value.year, value.month, value.day) + END


# -- ids ----------------------------------------------------------------------------------

_SAFE_ID_BYTES = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"
)
_SAFE_ID_BYTES_DELETED = bytes(sorted(_SAFE_ID_BYTES))  # (for bytes.translate)
#: a numeric id's key before its digits, by the number of digits (the write layout reads
#: it too: it makes a numeric id's key in line on its hot paths)
NUMERIC_PREFIXES = [b"\x01" + bytes([0x20 + size]) for size in range(40)]


def escape_id(id: str) -> str:
    """Percent-encode every byte of the UTF-8 id outside ``[A-Za-z0-9-_.~]``.

    The result cannot contain ``:`` ``{`` ``}`` ``*`` ``%`` or control bytes, so it can sit in
    a key name without changing the key's hash slot or reaching another key.
    """
    raw = id.encode("utf-8")
    if not raw.translate(None, _SAFE_ID_BYTES_DELETED):  # (one C call, not one per byte)
        return id
    return "".join(chr(b) if b in _SAFE_ID_BYTES else f"%{b:02X}" for b in raw)


def unescape_id(escaped: str) -> str:
    out = bytearray()
    i = 0
    while i < len(escaped):
        ch = escaped[i]
        if ch == "%":
            out.append(int(escaped[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(ch))
            i += 1
    return out.decode("utf-8")


def id_key(id: str) -> bytes:
    """The natural-order key of an id: numeric ids numerically first, then the others.

    ``"2" < "10" < "abc"``. Canonical decimal ids of up to 39 digits are numeric; the layout
    (``\\x01``, ``chr(0x20 + len)``, digits) is mirrored by the insert script that allocates ids.
    """
    # (canonical: "0" or 1 to 39 ASCII digits not starting with 0, the regex
    # (?:0|[1-9][0-9]{0,38})\Z, tested with str methods: a third of the regex's time, and
    # every write by id asks)
    size = len(id)
    if size < 40 and id.isdigit() and id.isascii() and (size == 1 or id[0] != "0"):
        return NUMERIC_PREFIXES[size] + id.encode()
    return b"\x02" + escape_id(id).encode()


def id_from_key(key: bytes) -> str:
    if key[:1] == b"\x01":
        return key[2:].decode()
    return unescape_id(key[1:].decode())


def split_member(member: bytes) -> tuple[bytes, bytes]:
    """Split an index member into (value encodings, id key) at its last ``\\x00``."""
    cut = member.rindex(b"\x00") + 1
    return member[:cut], member[cut:]


# -- netstrings: how lists of encodings are kept where Lua can read them --------------------


def pack_list(items: list[bytes]) -> bytes:
    """``len:bytes`` repeated; binary safe and trivial to parse in Lua."""
    return b"".join([b"%d:%s" % (len(item), item) for item in items])


def unpack_list(data: bytes) -> list[bytes]:
    """Inverse of :func:`pack_list`; raises ValueError on anything it did not produce."""
    items, pos = [], 0
    while pos < len(data):
        colon = data.index(b":", pos)
        digits = data[pos:colon]
        if not digits.isdigit() or len(digits) > 12:
            raise ValueError(f"bad list item length {digits!r}")
        size = int(digits)
        end = colon + 1 + size
        if end > len(data):
            raise ValueError("list item runs past the end")
        items.append(data[colon + 1 : end])
        pos = end
    return items
