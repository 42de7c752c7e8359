"""Compression of stored documents (``Meta.compress``, Redis): the codecs, the stored form,
and the check of the option.

A compressed document is stored as one marker byte (:data:`MARKER`, 0xFF), one codec id
byte (:class:`Codec`), then the codec's payload. 0xFF never occurs in UTF-8 text, so it
never begins a stored JSON document (they begin with ``{``): any stored value is recognised
by its first byte, whatever the model's setting says now, and turning compression on or off
never makes a stored document unreadable. A reader that predates compression sees invalid
JSON there and raises CorruptDocumentError: an error, never a wrong answer.

* ``zstd`` (the ``zstd`` extra: ``zstandard``), level 3 with a content checksum;
* ``lz4`` (the ``lz4`` extra: ``lz4``), its block format with the size stored;
* ``zlib`` (the standard library), level 1 with its Adler-32 checksum: always available.
  Level 1 because zlib is slow: level 6 shrinks text-like 20 KB documents by another
  ~12% for three times the CPU (bench/bench_compression.py); zstd does better than both.

``zstandard`` and ``lz4`` are imported here only, when a document first needs them (class
creation only asks whether they are installed): ``import quantumorm`` never loads them.
Reading a document whose codec's package is missing raises
:class:`~quantumorm.errors.CodecUnavailableError`, naming the extra to install.

Compression changes the stored bytes only: the JSON inside is the one an uncompressed write
stores, byte for byte, and what the scripts read (versions, index entries) lives outside
the document. The Lua scripts never look inside a document, except a "patch" update
(``filter(id=x).update()``) of one left uncompressed: ``patch.lua`` refuses a compressed one
(``{"COMPRESSED"}``, nothing written) and the update reads and rewrites it instead.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import jsoncodec
from .errors import CodecUnavailableError, ConfigurationError, CorruptDocumentError
from .vocabulary import Vocabulary

#: the first byte of a compressed document (never the first byte of UTF-8 text)
MARKER = b"\xff"
#: ``compress = True`` compresses documents of at least this many bytes of JSON. Below it
#: the saving is small against what a document costs anyway (its meta hash, id and index
#: entries: ~700 B with two indexes): 3% of the memory of a 200 B document with zstd, for
#: ~10% more latency per get and save; 36% of a 2 KB one (bench/bench_compression.py)
DEFAULT_MIN_SIZE = 1024
#: what a dict ``Meta.compress`` may hold
OPTION_KEYS = frozenset({"codec", "min_size"})


class Codec(Vocabulary):
    """A compression codec; the best installed is chosen in this order."""

    ZSTD = "zstd"
    LZ4 = "lz4"
    ZLIB = "zlib"


@dataclass(frozen=True)
class CodecInfo:
    """How a codec is stored and found: its id byte (after :data:`MARKER`), the module
    that implements it (None: the standard library's zlib), the package that provides it
    and the extra that installs that."""

    id: bytes
    module: str | None
    package: str | None
    extra: str | None


#: the codecs' stored ids and packages; tests point ``module`` at an absent module to check
#: the error a reader without the package gets (the table is read at each first use)
CODECS: dict[Codec, CodecInfo] = {
    Codec.ZSTD: CodecInfo(b"z", "zstandard", "zstandard", "zstd"),
    Codec.LZ4: CodecInfo(b"4", "lz4.block", "lz4", "lz4"),
    Codec.ZLIB: CodecInfo(b"d", None, None, None),
}
_BY_ID = {info.id[0]: codec for codec, info in CODECS.items()}

ZSTD_LEVEL = 3
ZLIB_LEVEL = 1
#: the largest document a payload may say it holds: zstd and lz4 payloads state their size
#: and the decompressor allocates it, so a damaged size field is refused as corrupt instead
#: of allocating gigabytes (documents are far smaller: see max_document_bytes, 16 MB)
MAX_DOCUMENT = 1 << 30


@dataclass(frozen=True)
class _Functions:
    compress: Callable[[bytes], bytes]
    #: (given the payload as a view of the stored bytes: no copy of it)
    decompress: Callable[[memoryview], bytes]
    #: what ``decompress`` raises for bytes that are not a payload of the codec
    errors: tuple[type[BaseException], ...]


def _zlib_decompress(data: memoryview) -> bytes:
    # (zlib states no size up front: inflate at most MAX_DOCUMENT bytes, then refuse)
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_DOCUMENT)
    if inflater.unconsumed_tail:
        raise ValueError("the payload inflates above 1 GiB")
    if not inflater.eof:
        raise zlib.error("the payload is truncated")
    return out


_ZLIB = _Functions(lambda data: zlib.compress(data, ZLIB_LEVEL), _zlib_decompress,
                   (zlib.error, ValueError))
#: the functions of each codec module loaded so far, by module name
_loaded: dict[str, _Functions] = {}
_loading = threading.Lock()


def _zstd(module: Any) -> _Functions:
    # zstandard's compressor and decompressor objects are not thread-safe: one per thread
    local = threading.local()

    def compress(data: bytes) -> bytes:
        compressor = getattr(local, "compressor", None)
        if compressor is None:
            compressor = local.compressor = module.ZstdCompressor(level=ZSTD_LEVEL,
                                                                  write_checksum=True)
        out: bytes = compressor.compress(data)
        return out

    def decompress(data: memoryview) -> bytes:
        if module.frame_content_size(data) > MAX_DOCUMENT:
            raise ValueError("the payload states a size above 1 GiB")
        decompressor = getattr(local, "decompressor", None)
        if decompressor is None:
            decompressor = local.decompressor = module.ZstdDecompressor()
        out: bytes = decompressor.decompress(data)
        return out

    return _Functions(compress, decompress, (module.ZstdError, ValueError))


def _lz4(module: Any) -> _Functions:
    def decompress(data: memoryview) -> bytes:
        # (the block starts with the size it holds, little-endian: see MAX_DOCUMENT)
        if int.from_bytes(data[:4], "little") > MAX_DOCUMENT:
            raise ValueError("the payload states a size above 1 GiB")
        return bytes(module.decompress(data))

    return _Functions(lambda data: bytes(module.compress(data, store_size=True)),
                      decompress, (module.LZ4BlockError, ValueError))


_MAKERS: dict[Codec, Callable[[Any], _Functions]] = {Codec.ZSTD: _zstd, Codec.LZ4: _lz4}


def functions(codec: Codec, model: str | None = None, id: str | None = None) -> _Functions:
    """The codec's functions, its package imported on first use; CodecUnavailableError
    (naming ``model`` and ``id`` when given) if it is not installed."""
    info = CODECS[codec]
    if info.module is None:
        return _ZLIB
    found = _loaded.get(info.module)
    if found is not None:
        return found
    assert info.package is not None and info.extra is not None
    with _loading:
        try:
            module = importlib.import_module(info.module)
        except ImportError:
            raise CodecUnavailableError(codec, info.package, info.extra, model, id) from None
        found = _loaded[info.module] = _MAKERS[codec](module)
    return found


def installed(codec: Codec) -> bool:
    """Whether the codec's package can be imported (without importing it)."""
    module = CODECS[codec].module
    if module is None:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # (a parent package is missing: "lz4" for "lz4.block")
        return False


def best_codec() -> Codec:
    """zstd if installed, else lz4 if installed, else zlib."""
    return next(codec for codec in Codec if installed(codec))


@dataclass(frozen=True)
class Compression:
    """A model's compression: documents whose JSON has at least ``min_size`` bytes are
    stored compressed with ``codec`` (when that makes them smaller)."""

    codec: Codec
    min_size: int = DEFAULT_MIN_SIZE

    def encode(self, raw: bytes) -> bytes:
        """The stored form of the document JSON ``raw``: compressed, or ``raw`` itself when
        it is below ``min_size`` or does not shrink."""
        if len(raw) < self.min_size:
            return raw
        packed = functions(self.codec).compress(raw)
        if len(packed) + 2 >= len(raw):
            return raw
        return MARKER + CODECS[self.codec].id + packed


def stored(compression: Compression | None, raw: bytes) -> bytes:
    """The stored form of the document JSON ``raw`` under a model's setting (None: off)."""
    return raw if compression is None else compression.encode(raw)


def compressed(raw: bytes) -> bool:
    """Whether stored bytes are a compressed document."""
    return raw[:1] == MARKER


def codec_of(raw: bytes) -> Codec | None:
    """The codec of a compressed document (None: not compressed, or an unknown codec id)."""
    if not compressed(raw) or len(raw) < 2:
        return None
    return _BY_ID.get(raw[1])


def decompress(raw: bytes, model: str | None = None, id: str | None = None) -> bytes:
    """The document JSON of stored bytes: ``raw`` itself unless it is compressed.
    CorruptDocumentError if the payload does not decompress (or names no known codec),
    CodecUnavailableError if its codec's package is not installed here."""
    if raw[:1] != MARKER:
        return raw
    codec = codec_of(raw)
    shown_model, shown_id = model or "?", id or "?"
    if codec is None:
        raise CorruptDocumentError(shown_model, shown_id,
                                   f"unknown compression codec id {bytes(raw[1:2])!r}")
    codec_functions = functions(codec, model, id)
    try:
        return codec_functions.decompress(memoryview(raw)[2:])
    except codec_functions.errors as exc:
        raise CorruptDocumentError(shown_model, shown_id,
                                   f"{codec} payload does not decompress ({exc})") from exc


def decode_document(raw: bytes, model: str, id: str) -> dict[str, Any]:
    """A stored document (compressed or not) as its data; CorruptDocumentError if it is not
    a JSON object, CodecUnavailableError (see :func:`decompress`)."""
    text = decompress(raw, model, id)
    try:
        data = jsoncodec.decode(text)
    except ValueError as exc:
        raise CorruptDocumentError(model, id, f"invalid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CorruptDocumentError(model, id, "not a JSON object")
    return data


def from_meta(where: str, value: Any) -> Compression | None:
    """``Meta.compress`` checked: False or None (off), True (the best codec installed,
    :data:`DEFAULT_MIN_SIZE`), or a dict with ``codec`` ("zstd", "lz4", "zlib"; default
    the best installed) and/or ``min_size`` (bytes of JSON, at least 1). A codec whose
    package is not installed is refused here, naming the extra."""
    if value is None or value is False:
        return None
    if value is True:
        return Compression(best_codec())
    if not isinstance(value, dict):
        raise ConfigurationError(
            f"{where}: compress must be True, False, or a dict with 'codec' and/or "
            f"'min_size' (got {value!r})")
    unknown = set(value) - OPTION_KEYS
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown compress option(s) {', '.join(sorted(map(repr, unknown)))} "
            f"(known: 'codec', 'min_size')")
    min_size = value.get("min_size", DEFAULT_MIN_SIZE)
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 1:
        raise ConfigurationError(
            f"{where}: compress 'min_size' must be a positive int of bytes (got {min_size!r})")
    name = value.get("codec")
    if name is None:
        return Compression(best_codec(), min_size)
    if name not in tuple(Codec):
        raise ConfigurationError(
            f"{where}: compress 'codec' must be one of {', '.join(map(repr, map(str, Codec)))}"
            f" (got {name!r})")
    codec = Codec(name)
    if not installed(codec):
        info = CODECS[codec]
        raise ConfigurationError(
            f"{where}: compress codec '{codec}' needs the package {info.package}, which is "
            "not installed: "
            f"pip install 'quantumorm[{info.extra}]'")
    return Compression(codec, min_size)
