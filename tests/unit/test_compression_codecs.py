"""The codecs of ``Meta.compress`` (quantumorm.compression), with no server: the stored form,
round trips around the threshold, the option's checks, and a reader without a codec's
package."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantumorm import (
    CodecUnavailableError,
    ConfigurationError,
    CorruptDocumentError,
    Document,
    StringField,
    jsoncodec,
)
from quantumorm import compression as c
from quantumorm.compression import Codec, CodecInfo, Compression

CODECS = list(Codec)


def text_document(size: int) -> bytes:
    """Compact JSON of exactly ``size`` bytes that reads like real text (so it compresses)."""
    words = ("order", "customer", "shipped", "Berlin", "invoice", "status", "pending",
             "quantity", "product", "Zürich", "note", "delivered")
    title = " ".join(words[(n * 7) % len(words)] + str(n % 13) for n in range(size // 4 + 8))
    doc = {"id": 42, "tags": ["a", "b"], "title": ""}
    bare = len(jsoncodec.encode(doc))
    doc["title"] = title.encode()[:max(0, size - bare)].decode("utf-8", "ignore")
    raw = jsoncodec.encode(doc)
    while len(raw) < size:  # (a cut inside "ü" lost a byte)
        doc["title"] += "x"
        raw = jsoncodec.encode(doc)
    return raw


@pytest.fixture
def absent(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make a codec's package unimportable, the way a process without the extra sees it:
    its module name points at a module that does not exist (nothing imported is mocked)."""
    def make(codec: Codec) -> None:
        info = c.CODECS[codec]
        monkeypatch.setitem(c.CODECS, codec,
                            CodecInfo(info.id, f"quantumorm_absent_{codec}", info.package,
                                      info.extra))
    return make


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("delta", [-1, 0, 1, 1000])
def test_round_trip_around_the_threshold(codec: Codec, delta: int) -> None:
    compress = Compression(codec, min_size=512)
    raw = text_document(512 + delta)
    assert len(raw) == 512 + delta
    stored = compress.encode(raw)
    if delta < 0:
        assert stored == raw  # below the threshold: stored as it is
    else:
        assert stored[:1] == c.MARKER and stored[1:2] == c.CODECS[codec].id
        assert len(stored) < len(raw)
        assert c.codec_of(stored) is codec
    assert c.decompress(stored) == raw
    assert c.decode_document(stored, "M", "1") == json.loads(raw)


@pytest.mark.parametrize("codec", CODECS)
def test_what_does_not_shrink_stays_as_it_is(codec: Codec) -> None:
    tiny = b'{"a":1}'
    assert Compression(codec, min_size=1).encode(tiny) == tiny  # larger compressed: as is
    noisy = jsoncodec.encode({"b": base64.b64encode(os.urandom(3000)).decode()})
    stored = Compression(codec, min_size=1).encode(noisy)
    assert len(stored) <= len(noisy)  # (compressed only if that is smaller)
    assert c.decompress(stored) == noisy


@pytest.mark.parametrize("codec", CODECS)
@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=3000))
def test_any_json_round_trips(codec: Codec, text: str) -> None:
    raw = jsoncodec.encode({"t": text, "again": text})
    stored = Compression(codec, min_size=1).encode(raw)
    assert c.decompress(stored) == raw
    assert not c.compressed(raw)  # JSON never starts with the marker


def test_the_marker_never_starts_json_or_utf8() -> None:
    with pytest.raises(UnicodeDecodeError):
        c.MARKER.decode("utf-8")
    with pytest.raises(ValueError):
        jsoncodec.decode(c.MARKER + b"z{}")  # a reader that predates compression: an error


def test_uncompressed_bytes_pass_through() -> None:
    raw = b'{"a":[1,2]}'
    assert c.decompress(raw) is raw
    assert c.codec_of(raw) is None
    assert c.stored(None, raw) is raw


@pytest.mark.parametrize("codec", CODECS)
def test_a_damaged_payload_is_corrupt(codec: Codec) -> None:
    stored = Compression(codec, min_size=1).encode(text_document(4000))
    damaged = stored[:2] + bytes(b ^ 0x5A for b in stored[2:40]) + stored[40:]
    with pytest.raises(CorruptDocumentError) as caught:
        c.decode_document(damaged, "Order", "7")
    assert caught.value.model == "Order" and caught.value.id == "7"


@pytest.mark.parametrize("codec", [Codec.ZSTD, Codec.LZ4])
def test_a_damaged_size_is_refused_before_anything_is_allocated(codec: Codec) -> None:
    stored = bytearray(Compression(codec, min_size=1).encode(text_document(4000)))
    if codec is Codec.LZ4:
        stored[2:6] = (1 << 31).to_bytes(4, "little")
    else:  # frame: magic (4 bytes), descriptor (size field: 4 bytes, flag 0b10), size
        stored[6] = (stored[6] & 0x3F) | 0x80
        stored[7:11] = (3 << 30).to_bytes(4, "little")
    with pytest.raises(CorruptDocumentError, match="states a size above 1 GiB"):
        c.decompress(bytes(stored), "Order", "7")


@pytest.mark.parametrize("codec", CODECS)
def test_a_truncated_payload_is_corrupt(codec: Codec) -> None:
    stored = Compression(codec, min_size=1).encode(text_document(4000))
    with pytest.raises(CorruptDocumentError):
        c.decompress(stored[:len(stored) // 2], "Order", "7")


def test_a_zlib_payload_inflating_past_the_cap_is_refused(monkeypatch: Any) -> None:
    # zlib states no size up front: the cap is checked while inflating
    monkeypatch.setattr(c, "MAX_DOCUMENT", 1000)
    stored = Compression(Codec.ZLIB, min_size=1).encode(text_document(4000))
    with pytest.raises(CorruptDocumentError, match="inflates above"):
        c.decompress(stored, "Order", "7")


def test_an_unknown_codec_id_is_corrupt() -> None:
    with pytest.raises(CorruptDocumentError, match="unknown compression codec id"):
        c.decompress(c.MARKER + b"?payload", "Order", "7")
    with pytest.raises(CorruptDocumentError):
        c.decompress(c.MARKER, "Order", "7")


@pytest.mark.parametrize("codec", [Codec.ZSTD, Codec.LZ4])
def test_reading_without_the_package_names_the_extra(codec: Codec, absent: Any) -> None:
    stored = Compression(codec, min_size=1).encode(text_document(2000))  # (installed here)
    absent(codec)
    with pytest.raises(CodecUnavailableError) as caught:
        c.decode_document(stored, "Order", "o1")
    error = caught.value
    extra = "zstd" if codec is Codec.ZSTD else "lz4"
    assert (error.codec, error.extra, error.model, error.id) == (codec, extra, "Order", "o1")
    assert error.package == ("zstandard" if codec is Codec.ZSTD else "lz4")
    assert f"pip install 'quantumorm[{extra}]'" in str(error)
    assert "Order 'o1'" in str(error)
    # zlib needs nothing, and documents of the other codecs stay readable
    other = Compression(Codec.ZLIB, min_size=1).encode(text_document(2000))
    assert c.decompress(other) == text_document(2000)


def test_the_best_codec_installed(absent: Any) -> None:
    assert c.best_codec() is Codec.ZSTD  # (the test extra installs both)
    absent(Codec.ZSTD)
    assert c.best_codec() is Codec.LZ4
    assert c.from_meta("M.Meta", True) == Compression(Codec.LZ4, c.DEFAULT_MIN_SIZE)
    absent(Codec.LZ4)
    assert c.best_codec() is Codec.ZLIB
    assert c.from_meta("M.Meta", {"min_size": 10}) == Compression(Codec.ZLIB, 10)
    with pytest.raises(ConfigurationError, match=r"pip install 'quantumorm\[zstd\]'"):
        c.from_meta("M.Meta", {"codec": "zstd"})


@pytest.mark.parametrize("value, expected", [
    (None, None), (False, None),
    (True, Compression(Codec.ZSTD, c.DEFAULT_MIN_SIZE)),
    ({}, Compression(Codec.ZSTD, c.DEFAULT_MIN_SIZE)),
    ({"codec": "lz4"}, Compression(Codec.LZ4, c.DEFAULT_MIN_SIZE)),
    ({"codec": "zlib", "min_size": 1}, Compression(Codec.ZLIB, 1)),
    ({"min_size": 4096}, Compression(Codec.ZSTD, 4096)),
])
def test_option_values(value: Any, expected: Compression | None) -> None:
    assert c.from_meta("M.Meta", value) == expected


@pytest.mark.parametrize("value, message", [
    ("zstd", "compress must be True, False, or a dict"),
    (1, "compress must be True, False, or a dict"),
    ({"level": 3}, "unknown compress option"),
    ({"min_size": 0}, "'min_size' must be a positive int"),
    ({"min_size": True}, "'min_size' must be a positive int"),
    ({"min_size": "1k"}, "'min_size' must be a positive int"),
    ({"codec": "brotli"}, "'codec' must be one of 'zstd', 'lz4', 'zlib'"),
    ({"codec": None, "min_size": -5}, "'min_size' must be a positive int"),
])
def test_option_refusals_name_the_model(value: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        type("Bad", (Document,), {"__module__": __name__, "name": StringField(),
                                  "Meta": type("Meta", (), {"compress": value})})
    assert str(caught.value).startswith("Bad.Meta: ")


def test_models_get_it_in_their_options_and_subclasses_inherit_it() -> None:
    class Base(Document):
        class Meta:
            abstract = True
            compress = {"codec": "lz4", "min_size": 64}

    class Child(Base):
        text = StringField()

    class Plain(Document):
        text = StringField()

    assert Child._meta.compress == Compression(Codec.LZ4, 64)
    assert Plain._meta.compress is None


def test_importing_quantumorm_loads_no_codec_package() -> None:
    code = ("import sys, quantumorm\n"
            "class M(quantumorm.Document):\n"
            "    class Meta:\n"
            "        compress = True\n"
            "print(sorted(m for m in ('zstandard', 'lz4') if m in sys.modules))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert out.strip() == "[]"
