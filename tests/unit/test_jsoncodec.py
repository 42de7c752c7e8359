"""The stored-document codec: orjson (when installed) and the standard library give the same
bytes and the same values, for every document, tricky ones included; and the fast loading
path (precomputed converters, no validation) gives what the fields' ``from_storage`` give."""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import random
import struct
import tracemalloc
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from quantumorm import (
    ArrayField,
    BooleanField,
    DateTimeField,
    DecimalField,
    Document,
    FloatField,
    IntField,
    JSONField,
    StringField,
    UUIDField,
    jsoncodec,
)
from quantumorm.engine.contract import encode_document


def reference(data: Any) -> bytes:
    """The encoding stored documents have always had."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


@pytest.fixture(params=["orjson", "json"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Each test runs with orjson (skipped where it is not installed) and without it."""
    if request.param == "orjson":
        pytest.importorskip("orjson")
        assert jsoncodec.ORJSON is not None
    else:
        monkeypatch.setattr(jsoncodec, "ORJSON", None)
    yield request.param


class Small(enum.IntEnum):
    ONE = 1


class Text(str):
    pass


class Number(float):
    pass


def _floats() -> list[float]:
    rng = random.Random(12)
    values = [0.0, -0.0, 1.0, 0.1, 1e16, 1e15, 1e17, 9007199254740993.0, 1.5e-7, 1e-5, 1e-4,
              0.0001234, 0.00009999, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
              123456789012345680.0, 12345678.9, 1e22, 1e-300]
    for _ in range(3000):
        value = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        if math.isfinite(value):
            values.append(value)
    for exponent in range(-12, 20):
        values += [10.0 ** exponent, -(10.0 ** exponent), 1.5 * 10.0 ** exponent,
                   math.nextafter(10.0 ** exponent, 0.0)]
    return values


FLOATS = _floats()
INTS = [0, -1, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1,
        10**18, -(10**18), 10**19, -(10**19), 10**400, -(10**4299)]
TEXTS = ["", "plain", "é ü ß", "日本語", "\U0001f600 astral", "\u2028\u2029", "\x7f",
         "quote \" backslash \\ slash /", "</script>", "".join(map(chr, range(32))),
         "1e-5 0.0000 inside a string", "1234567890123456789012345"]

CORPUS: list[dict[str, Any]] = [
    {},
    {"a": None, "b": True, "c": False},
    {"floats": FLOATS[:200]},
    {"ints": INTS},
    {"texts": TEXTS, **{text: text for text in TEXTS}},
    {"nested": {"a": [1, [2, {"c": [], "d": {}}]], "e": [[[[[]]]]]}, "z": -0.0},
    {"order": 1, "matters": 2, "a": 3, "Z": 4},
    {"enum": Small.ONE, "sub": Text("x"), "float_sub": Number(2.5), "key_sub": {Text("k"): 1}},
    {"unicode_keys": {"é": 1, "日本": [1.5e-7], "\U0001f600": {"x": 10**30}}},
]
CORPUS += [{"f": value, "list": [value, -value]} for value in FLOATS]
CORPUS += [{"i": value} for value in INTS]
CORPUS += [{"s": chr(code), chr(code): code}
           for code in list(range(0, 0x3000)) + list(range(0xE000, 0x10000, 7))
           + list(range(0x10000, 0x110000, 997))]


def test_encoding_is_byte_identical(codec: str) -> None:
    for data in CORPUS:
        assert jsoncodec.encode_plain(data) == reference(data), data
        assert jsoncodec.encode(data) == reference(data), data
        assert encode_document(data, plain=True) == reference(data), data


def test_encoding_refuses_what_json_refuses(codec: str) -> None:
    for bad in ({"nan": float("nan")}, {"inf": [float("inf")]}, {"surrogate": "\ud800"},
                {"set": {1}}, {"object": object()}, {"nested": [{"key": "\udfff"}]}):
        with pytest.raises((TypeError, ValueError)):
            jsoncodec.encode(bad)
    # (encode_plain is given validated values only, which are never NaN nor infinite)
    for bad in ({"surrogate": "\ud800"}, {"set": {1}}, {"object": object()},
                {"key": {"\ud800": 1}}):
        with pytest.raises((TypeError, ValueError)):
            jsoncodec.encode_plain(bad)


def test_decoding_gives_json_values(codec: str) -> None:
    for data in CORPUS:
        raw = reference(data)
        decoded = jsoncodec.decode(raw)
        expected = json.loads(raw)
        assert decoded == expected
        assert json.dumps(decoded) == json.dumps(expected)  # ints stay ints, floats floats


OTHER_PROGRAMS = [b'{"big":18446744073709551616}', b'{"neg":-9223372036854775809}',
                  b'{"big":[99999999999999999999999999999]}', b'{"a":1,"a":2}',
                  b'{"s":"\\ud800"}', b'{"inf":1E400}', b'{"nan":NaN}', b'{"tiny":1e-400}',
                  b'  {"spaced" : [ 1 , 2 ] }  ', b'{"esc":"\\u00e9\\n\\/"}', b'{"n":-0}']
INVALID = [b"{not json", b"\xff\xfe{}", b"", b'{"a":1', b"\xef\xbb\xbf{}", b'{"a":"\xff"}']


def test_decoding_of_text_written_elsewhere(codec: str) -> None:
    for raw in OTHER_PROGRAMS:
        decoded, expected = jsoncodec.decode(raw), json.loads(raw.decode())
        assert repr(decoded) == repr(expected), raw
    for raw in INVALID:
        with pytest.raises(ValueError) as error:
            jsoncodec.decode(raw)
        with pytest.raises(type(error.value)):
            json.loads(raw.decode("utf-8"))


# -- models ------------------------------------------------------------------------------


class Upper(StringField):
    def to_storage(self, value: Any) -> Any:
        return None if value is None else value.upper()


class Everything(Document):
    text = StringField()
    number = IntField()
    ratio = FloatField()
    flag = BooleanField()
    amount = DecimalField()
    key = UUIDField()
    when = DateTimeField()
    blob = JSONField()
    tags = ArrayField(StringField())
    times = ArrayField(DateTimeField())

    class Meta:
        collection = "everything"


class Custom(Document):
    text = Upper()

    class Meta:
        collection = "custom"


class CustomArray(Document):
    texts = ArrayField(Upper())

    class Meta:
        collection = "custom_array"


def test_plain_storage_is_for_built_in_fields_only() -> None:
    assert Everything._meta.plain_storage
    assert not Custom._meta.plain_storage
    assert not CustomArray._meta.plain_storage


def _everything() -> Everything:
    return Everything(
        id="e1", text="héllo", number=2**70, ratio=1.5e-7, flag=True,
        amount=Decimal("1234567890.000000000001"), key=uuid.UUID(int=7),
        when=dt.datetime(2024, 1, 31, 12, 30, 0, 123456, tzinfo=dt.timezone(
            dt.timedelta(hours=5, minutes=30))),
        blob={"a": [1, 2.5, {"b": None}], "big": 10**25, "t": "\U0001f600"},
        tags=["x", "y"], times=[dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)])


def test_documents_encode_alike(codec: str) -> None:
    doc = _everything()
    data = doc.clean()
    assert encode_document(data, plain=Everything._meta.plain_storage) == reference(data)
    doc.number, doc.ratio = 5, 2.5
    data = doc.clean()
    assert encode_document(data, plain=True) == reference(data)


class Moment(dt.datetime):
    pass


def _datetimes() -> list[dt.datetime]:
    utc = dt.timezone.utc
    rng = random.Random(4)
    low = dt.datetime.min.replace(tzinfo=utc)
    span = int((dt.datetime.max - dt.datetime.min).total_seconds()) * 10**6
    values = [low + dt.timedelta(microseconds=rng.randrange(span)) for _ in range(3000)]
    for year in (1, 9, 99, 999, 1000, 1970, 2024, 9999):
        for micro in (0, 1, 10, 999, 1000, 123456, 500000, 999999):
            values += [dt.datetime(year, 12, 31, 23, 59, 59, micro, utc, fold=fold)
                       for fold in (0, 1)]
    values += [dt.datetime(2024, 1, 31, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=5))),
                dt.datetime(2024, 1, 31, 12, 30, 0, 5), Moment(2024, 1, 1, tzinfo=utc),
                dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(0)))]
    return values


def test_datetimes_are_written_as_isoformat_writes_them(codec: str) -> None:
    """A DateTimeField's stored text (its storer: jsoncodec.isoformat, through orjson for a
    datetime in UTC) is isoformat()'s, at every year and microsecond width."""
    if codec == "orjson":  # (the orjson installed writes them alike: it is used)
        assert jsoncodec.DATETIMES is jsoncodec.ORJSON
    for value in _datetimes():
        assert jsoncodec.isoformat(value) == value.isoformat(), value
    storer = Everything._fields["times"].field.storer()  # (the element's)
    assert storer is jsoncodec.isoformat
    doc = _everything()
    doc.times = _datetimes()
    assert doc.clean()["times"] == [value.isoformat() for value in doc.times]


def test_loading_converts_exactly_without_validation(codec: str) -> None:
    doc = _everything()
    data = jsoncodec.decode(encode_document(doc.clean(), plain=True))
    loaded = Everything.from_storage("e1", 3, data)
    for name in Everything._fields:
        assert loaded.__dict__[name] == doc.__dict__[name], name
        assert type(loaded.__dict__[name]) is type(doc.__dict__[name]), name
    assert loaded.when.utcoffset() == dt.timedelta(hours=5, minutes=30)
    assert loaded.changed_fields() == []
    # the same converters as the fields' own from_storage
    for name, field in Everything._fields.items():
        assert Everything._meta.read_value(name, data) == loaded.__dict__[name]
        assert field.from_storage(data[field.db_name]) == loaded.__dict__[name]


def test_loading_keeps_stored_values_apart_from_the_document() -> None:
    """A list or dict changed in place is a change: the loaded (or saved) document does not
    share it with the stored form it is compared with."""
    stored = Everything(id="e2", blob={"a": [1]}, tags=["x"]).clean()
    loaded = Everything.from_storage("e2", 1, stored)
    loaded.blob["a"].append(2)
    loaded.tags.append("y")
    assert loaded.changed_fields() == ["blob", "tags"]
    assert stored["blob"] == {"a": [1]} and stored["tags"] == ["x"]

    saved = Everything(id="e3", blob={"a": 1})
    saved._stored, saved._version = saved.clean(), 1  # as after a save
    saved.blob["a"] = 2
    assert saved.changed_fields() == ["blob"]


def test_loading_missing_and_null_fields() -> None:
    class Later(Document):
        name = StringField()
        added = IntField(default=7)
        when = DateTimeField()
        tags = ArrayField(DateTimeField())

        class Meta:
            collection = "later"

    loaded = Later.from_storage("l1", 1, {"name": "n", "when": None, "tags": None})
    assert (loaded.name, loaded.added, loaded.when, loaded.tags) == ("n", 7, None, None)
    only = Later.from_storage("l1", 1, {"name": "n"}, frozenset({"name"}))
    assert only._partial == frozenset({"name"})


def test_a_subclass_from_storage_is_used() -> None:
    class Stamp(DateTimeField):
        def from_storage(self, raw: Any) -> Any:
            return "converted"

    class Stamped(Document):
        at = Stamp()
        ats = ArrayField(Stamp())

        class Meta:
            collection = "stamped"

    loaded = Stamped.from_storage("s1", 1, {"at": "2020-01-01T00:00:00+00:00",
                                            "ats": ["2020-01-01T00:00:00+00:00"]})
    assert (loaded.at, loaded.ats) == ("converted", ["converted"])


def test_plain_encodings_hold_no_more_memory_than_their_length() -> None:
    """orjson's bytes keep the (4 KiB or more) buffer they were written into; what
    encode_plain returns is a copy of its length (bulk_create holds one per document)."""
    data = {"name": "n" * 40, "age": 47, "tags": ["t1", "t2", "t3"], "on": True}
    expected = reference(data)
    assert jsoncodec.encode_plain(data) == expected
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = [jsoncodec.encode_plain(data) for _ in range(200)]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename")
               if stat.size_diff > 0)
    assert all(k == expected for k in kept)
    assert held < 200 * (len(expected) + 128)  # (the bytes object's header and some slack)
