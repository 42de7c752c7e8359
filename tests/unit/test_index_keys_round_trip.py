"""Format 3's client entries (bench/format3.md, section 6 step 2): a write that sends the
entries of the document it loaded relies on ``index_keys(load(dump(v))) == index_keys(v)``
for every built-in kind: the entries a loaded value gives are those its writer made. Dump
is the stored JSON (``to_storage``, the ORM's codec), load is what a read does with it
(``loader()``, as documents are loaded, and ``from_storage``)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantumorm import jsoncodec
from quantumorm.fields import (
    ArrayField,
    BooleanField,
    DateField,
    DateTimeField,
    DecimalField,
    EmailField,
    EmbeddedDocument,
    EmbeddedDocumentField,
    EnumField,
    Field,
    FloatField,
    IntField,
    JSONField,
    ReferenceField,
    StringField,
    URLField,
    UUIDField,
)


class Colour(enum.Enum):
    RED = "red"
    ODD = 'a"\\\x00é'


class Size(enum.IntEnum):
    SMALL = 1
    HUGE = 10**30


class Mixed(enum.Enum):
    YES = True
    HALF = 0.5
    NAME = "name"
    WHOLE = 3
    TINY = 1e-7


class Address(EmbeddedDocument):
    city = StringField()
    zip = IntField()
    at = DateTimeField()


_TEXT = st.text()
_OFFSETS = st.one_of(
    st.none(), st.just(dt.timezone.utc),
    st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(
        lambda m: dt.timezone(dt.timedelta(minutes=m))),
    # (offsets that are not whole minutes: converted to UTC by clean())
    st.integers(-(24 * 3600 - 1), 24 * 3600 - 1).map(
        lambda s: dt.timezone(dt.timedelta(seconds=s))),
    st.timedeltas(-dt.timedelta(hours=23), dt.timedelta(hours=23)).map(dt.timezone))
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                           allow_infinity=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8)

KINDS: dict[str, tuple[Field[Any], st.SearchStrategy[Any]]] = {
    "str": (StringField(), _TEXT),
    "email": (EmailField(), st.builds(lambda a: f"{a.strip() or 'x'}@example.org", _TEXT)),
    "url": (URLField(), st.from_regex(r"https://[a-z]{1,8}/[^\s]{0,8}", fullmatch=True)),
    "ref": (ReferenceField("Target"), st.text(min_size=1) | st.integers(0, 10**30)),
    "int": (IntField(), st.integers() | st.integers(-10**60, 10**60)),
    "float": (FloatField(), st.floats(allow_nan=False, allow_infinity=False)
              | st.integers(-10**20, 10**20)),
    "decimal": (DecimalField(), st.decimals(allow_nan=False, allow_infinity=False)
                | st.integers() | st.sampled_from(["-0", "1E+5", "0.000", "1e-7", "1_000"])),
    "bool": (BooleanField(), st.booleans()),
    "uuid": (UUIDField(), st.uuids() | st.uuids().map(lambda u: str(u).upper())),
    "date": (DateField(), st.dates()),
    "datetime": (DateTimeField(), st.builds(
        lambda d, z: d.replace(tzinfo=z),
        st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
        _OFFSETS)),
    "colour": (EnumField(Colour), st.sampled_from(Colour)),
    "size": (EnumField(Size), st.sampled_from(Size) | st.sampled_from([1, 10**30])),
    "mixed": (EnumField(Mixed), st.sampled_from(Mixed) | st.sampled_from([True, 0.5, 3])),
    "json": (JSONField(), _JSON),
    "embedded": (EmbeddedDocumentField(Address), st.builds(
        lambda c, z, t: Address(city=c, zip=z, at=t), st.none() | _TEXT,
        st.none() | st.integers(), st.none() | st.datetimes(
            min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
            timezones=st.just(dt.timezone(dt.timedelta(hours=-3)))))),
}


def _round_trips(field: Field[Any], value: Any) -> bool:
    """Checks a valid value; whether it was one."""
    cleaned, errors = field.validate(value)
    if errors:
        return False
    want = field.index_keys(cleaned)
    for plain in (False, True):
        encode = jsoncodec.encode_plain if plain else jsoncodec.encode
        # (a member of a document, as stored: the whole document is decoded)
        raw = jsoncodec.decode(encode({"x": field.to_storage(cleaned)}))["x"]
        loader = field.loader()
        loaded = raw if raw is None or loader is None else loader(raw)
        assert field.index_keys(loaded) == want, (value, raw, loaded)
        assert field.index_keys(field.from_storage(raw)) == want, (value, raw)
    return True


@pytest.mark.parametrize("name", sorted(KINDS))
@settings(max_examples=150)
@given(data=st.data())
def test_a_loaded_value_has_the_entries_of_the_value_stored(name: str,
                                                            data: st.DataObject) -> None:
    field, values = KINDS[name]
    _round_trips(field, data.draw(st.none() | values))


@pytest.mark.parametrize("name", sorted(set(KINDS) - {"json", "embedded"}))
@settings(max_examples=60)
@given(data=st.data())
def test_so_has_an_array_of_them(name: str, data: st.DataObject) -> None:
    field, values = KINDS[name]
    pool = data.draw(st.lists(values, min_size=1, max_size=4))
    _round_trips(ArrayField(field), data.draw(st.lists(st.sampled_from(pool), max_size=8)))


@pytest.mark.parametrize("field, value", [
    (FloatField(), -0.0), (FloatField(), 1e16), (FloatField(), 1.5e-7), (FloatField(), 5e-324),
    (DecimalField(), Decimal("-0E-7")), (DecimalField(), Decimal("1.500E+10")),
    (DateTimeField(), dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(
        seconds=1, microseconds=500)))),
    (DateTimeField(), dt.datetime(9999, 12, 31, 23, 0, tzinfo=dt.timezone(dt.timedelta(
        minutes=90)))),
    (DateTimeField(), "2024-01-31T12:30:00.5Z"), (UUIDField(), uuid.UUID(int=0).hex.upper()),
    (StringField(), "\x00\ud7ff\ue000\U0010ffff"), (IntField(), -(10**4299)),
    (ArrayField(FloatField()), [0.0, -0.0, 1, 1.0]),
    (ArrayField(DecimalField()), ["1", "1.0", "1.00E+0"]),
])
def test_edges_round_trip(field: Field[Any], value: Any) -> None:
    assert _round_trips(field, value)
