"""The JSON codec of stored documents: orjson when it is installed (the ``orjson`` extra),
the standard library's ``json`` otherwise, with exactly the same results either way.

Stored bytes are compared by other processes and by the scripts, so orjson is used only
where its answer is provably the one ``json`` gives, and ``json`` answers everything else:

* **Decoding** (:func:`decode`): orjson reads integers beyond 64 bits as floats, where
  ``json`` keeps them exact. Such an integer has at least 19 digits in a row, so text with
  a run of 19 digits (a cheap byte scan; a string or a long fraction can trigger it too)
  is decoded by ``json``. Anything orjson refuses (lone surrogate escapes, ``NaN``,
  ``1e400``, invalid UTF-8) is handed to ``json`` as well, which decodes it or raises the
  error it always raised.
* **Encoding** (:func:`encode_plain`): only for a document whose values are plain JSON
  (:attr:`quantumorm.options.ModelOptions.plain_storage`: fields whose validated storage
  forms are str, int, finite float, bool, None, lists and str-keyed dicts), since orjson
  also writes values ``json`` refuses (UUIDs, enums, NaN as ``null``). orjson refuses
  integers beyond 64 bits, non-str keys and subclasses of str/int/float/dict/list (with
  ``OPT_PASSTHROUGH_SUBCLASS``): ``json`` writes those. Floats are written alike (the
  shortest repr) except below 1e-4 in magnitude, where ``json`` writes ``1e-05`` and orjson
  ``0.00001`` or ``1.5e-7``: such a float puts ``0.0000`` or ``e-`` in orjson's output,
  and a document with either byte string is written by ``json`` instead. orjson before
  3.11.7 also wrote large exponents without their ``+`` (``1e16``, where ``json`` writes
  ``1e+16``): an orjson that does is never used for encoding (:data:`ENCODER`).
* **Datetimes** (:func:`isoformat`, a ``DateTimeField``'s stored text): orjson writes a
  ``datetime`` in UTC as ``isoformat()`` does (four-digit year, microseconds when there are
  any, ``+00:00``), at a third of the cost (``isoformat`` asks the tzinfo for its offset
  through a Python-level call and formats with ``printf``); any other datetime, or an
  orjson that writes one of a few samples otherwise (:data:`DATETIMES`), is ``isoformat``'s.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

orjson: ModuleType | None
try:
    import orjson
except ImportError:  # the optional extra is not installed: the standard library does it all
    orjson = None

#: the module used when it is installed; tests set it to None to check both paths
ORJSON: ModuleType | None = orjson
#: the orjson that may encode: one that writes floats as ``json`` does (checked once here)
ENCODER: ModuleType | None = orjson if orjson is not None and (
    orjson.dumps([1e16, 1.5e300, 0.1]) == b"[1e+16,1.5e+300,0.1]") else None

_UTC = dt.timezone.utc
#: samples of what :func:`isoformat` writes: its own check of the orjson installed
_DATETIME_SAMPLES = [dt.datetime(1, 1, 1, tzinfo=_UTC),
                     dt.datetime(999, 12, 31, 23, 59, 59, 5, _UTC),
                     dt.datetime(2024, 2, 29, 12, 30, 0, 123456, _UTC, fold=1),
                     dt.datetime(9999, 12, 31, 23, 59, 59, 999999, _UTC)]
#: the orjson that may write datetimes in UTC: one that writes them as ``isoformat()``
DATETIMES: ModuleType | None = orjson if orjson is not None and all(
    orjson.dumps(d)[1:-1].decode() == d.isoformat() for d in _DATETIME_SAMPLES) else None

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_DECODER = json.JSONDecoder()
#: ASCII digits to ``0``, every other byte to ``x``: a run of 19 digits is then one ``in``
_DIGITS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x78 for byte in range(256))
_LONG_NUMBER = b"0" * 19
#: texts scanned together by batch_decoder (a text is never split: no run is missed)
_BATCH = 256
_ORJSON_OPTIONS = 0 if orjson is None else (
    orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS)


def encode(data: Any) -> bytes:
    """Compact JSON, UTF-8, no NaN (``json``): raises TypeError or ValueError
    (UnicodeEncodeError included) for what has no such form."""
    return _ENCODER.encode(data).encode()


def encode_plain(data: Any) -> bytes:
    """:func:`encode` of a value made of plain JSON types only (see the module docstring),
    through orjson when it gives the same bytes."""
    fast = ORJSON
    if fast is not None and fast is ENCODER:
        try:
            out: bytes = fast.dumps(data, option=_ORJSON_OPTIONS)
        except TypeError:  # (orjson.JSONEncodeError) json writes it, or raises its own error
            pass
        else:
            # (find(), not ``in``: on CPython 3.11 ``bytes in bytes`` first tries the operand
            # as an integer, and makes and clears a TypeError with its message every time)
            if out.find(b"0.0000") < 0 and out.find(b"e-") < 0:
                # (a copy of its length: orjson's own bytes keep the buffer it wrote into,
                # 4 KiB at least, for as long as they live, and bulk_create holds every
                # document's until it is written; the copy costs next to nothing)
                return b"".join((out, b""))
    return _ENCODER.encode(data).encode()


def isoformat(value: dt.datetime) -> str:
    """``value.isoformat()``, through orjson for a ``datetime`` (the type itself) in UTC
    when it is installed: the same text (see the module docstring)."""
    fast = ORJSON
    if fast is not None and fast is DATETIMES and type(value) is dt.datetime and (
            value.tzinfo is _UTC):
        text: str = fast.dumps(value)[1:-1].decode()
        return text
    return value.isoformat()


def decode(raw: bytes) -> Any:
    """The value of JSON text in UTF-8; raises ValueError (UnicodeDecodeError or
    JSONDecodeError, as ``json`` does) if it is not JSON."""
    fast = ORJSON
    if fast is not None and raw.translate(_DIGITS).find(_LONG_NUMBER) < 0:  # (not ``in``: above)
        try:
            return fast.loads(raw)
        except ValueError:  # (orjson.JSONDecodeError) json answers, or raises its own error
            pass
    return _DECODER.decode(raw.decode("utf-8"))


def batch_decoder(raws: Sequence[bytes]) -> Callable[[bytes], Any]:
    """A decoder of the texts ``raws`` (bytes that hold them, read together: a query's
    rows), for a loop that decodes each: orjson's own ``loads`` when no text of the batch
    has a run of 19 digits (one scan of them all, a third of the cost of one scan per
    text), else :func:`decode`. Either raises ValueError for a text orjson refuses, which
    :func:`decode` may still read (``NaN``, lone surrogates): the caller then asks it."""
    fast = ORJSON
    if fast is None:
        return decode
    if len(raws) <= _BATCH:  # (the common reply: one scan, no loop of copies)
        if b"".join(raws).translate(_DIGITS).find(_LONG_NUMBER) >= 0:
            return decode
    else:
        for start in range(0, len(raws), _BATCH):  # (a bounded copy at a time: big replies)
            if b"".join(raws[start:start + _BATCH]).translate(_DIGITS).find(_LONG_NUMBER) >= 0:
                return decode
    loads: Callable[[bytes], Any] = fast.loads
    return loads


def same(a: Any, b: Any) -> bool:
    """Whether two values are the same JSON: ``==``, except that ``1``, ``1.0`` and ``True``
    (equal to Python) differ, and ``0.0`` and ``-0.0`` too, at every depth, as their
    encodings do. Used wherever "did it change" or "is it in the list" decides a write."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(value, b[key]) for key, value in a.items())
    return bool(a == b)


def among(value: Any, values: Any) -> bool:
    """``value in values`` by :func:`same`."""
    return any(same(value, item) for item in values)
