"""``lua/_derive.lua`` (format 3's plan, step 2): the index entries Lua derives from a stored
member's JSON text are Python's (``field.index_keys`` of the value), or none ("fall back"),
never another. Run inside the server, on texts from the ORM's JSON codec, for every kind
``derived.derivation`` gives; the common values must never fall back."""

from __future__ import annotations

import datetime as dt
import enum
import random
import uuid
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantumorm import jsoncodec
from quantumorm.backends.redis.commands import _lua, _part
from quantumorm.backends.redis.derived import derivation
from quantumorm.backends.redis.luachunks import cold_table, prune
from quantumorm.fields import (
    ArrayField,
    BooleanField,
    DateField,
    DateTimeField,
    DecimalField,
    EmailField,
    EnumField,
    Field,
    FloatField,
    IntField,
    ReferenceField,
    StringField,
    URLField,
    UUIDField,
)

# ARGV: the kind, then member texts; a reply per text: nil, or the entries (a list)
BODY = """
local out = {}
for i = 2, #ARGV do out[i - 1] = derived_entries(ARGV[i], ARGV[1]) or false end
return out
"""
#: the script as commands.script() makes one (only the definitions in use, the rare kinds'
#: made by cold_paths()), and with the shared parts whole
CUT = prune([_part("_prelude"), _part("_derive")], BODY) + BODY
_SHARED = _lua("_prelude") + _lua("_derive")
_DECLARED, _GATHERER = cold_table(BODY, _SHARED)
WHOLE = _DECLARED + _SHARED + _GATHERER + BODY

UTC = dt.timezone.utc


class Colour(enum.Enum):
    RED = "red"
    QUOTED = 'a "b"\\c\x00'
    WIDE = "é€😀"


class Size(enum.IntEnum):
    SMALL = 1
    HUGE = 10**30
    NEGATIVE = -7


class Ratio(enum.Enum):
    HALF = 0.5
    TINY = 1.5e-7
    BIG = 1e16
    NEGATIVE_ZERO = -0.0
    WHOLE = 3


class Mixed(enum.Enum):
    YES = True
    NO = False
    NAME = "name"
    NUMBER = 2.25


SCALARS: dict[str, Field[Any]] = {
    "str": StringField(), "email": EmailField(), "url": URLField(),
    "ref": ReferenceField("Target"), "int": IntField(), "bool": BooleanField(),
    "float": FloatField(), "decimal": DecimalField(), "uuid": UUIDField(),
    "date": DateField(), "datetime": DateTimeField(), "colour": EnumField(Colour),
    "size": EnumField(Size), "ratio": EnumField(Ratio), "mixed": EnumField(Mixed),
}
FIELDS: dict[str, Field[Any]] = {
    **SCALARS, **{f"[{name}": ArrayField(field) for name, field in SCALARS.items()}}

# -- values --------------------------------------------------------------------------------

_ALPHABET = ['"', "\\", "/", "\n", "\r", "\t", "\b", "\f", "\x00", "\x01", "\x1f", "\x7f",
             "a", "Z", "0", " ", ",", "]", "[", "{", ":", "é", "€", "\u2028", "\ufeff",
             "😀", "\U0010ffff"]
_STRINGS = st.text(st.sampled_from(_ALPHABET)) | st.text()
_INTS = (st.integers() | st.integers(-10**60, 10**60)
         | st.builds(lambda d, z, s: s * d * 10**z, st.integers(0, 10**20),
                     st.integers(0, 40), st.sampled_from([1, -1]))
         | st.sampled_from([0, 2**53, 2**53 + 1, -2**53 - 1, 10**59, -(10**60 - 1),
                            2**64, -(2**63)]))
_FLOATS = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 1e16, 1.5e-7, 5e-324, -1.7976931348623157e308, 1e-5, 123456789.125, 1e22])
_DECIMALS = (st.decimals(allow_nan=False, allow_infinity=False)
             | st.sampled_from(["-0", "0E-7", "1E+5", "-1.50E-10", "0.000", "1e400", "-0.0",
                                "12345678901234567890.123456789", "7E+999999999"]).map(Decimal))
_OFFSETS = st.sampled_from([UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)),
                            dt.timezone(-dt.timedelta(hours=11)), None]) | st.integers(
    -(24 * 60 - 1), 24 * 60 - 1).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))
_DATETIMES = st.builds(lambda d, z: d.replace(tzinfo=z),
                       st.datetimes(min_value=dt.datetime(1, 1, 2),
                                    max_value=dt.datetime(9999, 12, 30)), _OFFSETS)
_EMAILS = st.builds(lambda a, b: f"{a}@{b}", st.text(min_size=1).map(str.strip),
                    st.from_regex(r"[a-zé.\-]{1,10}", fullmatch=True))
_URLS = st.builds(lambda h, p: f"https://{h}/{p}", st.from_regex(r"[a-z0-9.\-]{1,10}",
                  fullmatch=True), st.from_regex(r"[^\s]{0,10}", fullmatch=True))

STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "str": _STRINGS, "email": _EMAILS, "url": _URLS, "ref": _STRINGS.filter(bool),
    "int": _INTS, "bool": st.booleans(), "float": _FLOATS, "decimal": _DECIMALS,
    "uuid": st.uuids(), "date": st.dates(), "datetime": _DATETIMES,
    "colour": st.sampled_from(Colour), "size": st.sampled_from(Size),
    "ratio": st.sampled_from(Ratio), "mixed": st.sampled_from(Mixed),
}


def _valid(field: Field[Any], value: Any) -> tuple[bool, Any]:
    cleaned, errors = field.validate(value)
    return not errors, cleaned


def stored(field: Field[Any], cleaned: Any, plain: bool = False) -> bytes:
    """The member's text in a stored document, as a patch's plain search finds it."""
    encode = jsoncodec.encode_plain if plain else jsoncodec.encode
    document = encode({"a": 1, "x": field.to_storage(cleaned), "z": None})
    start = document.index(b',"x":') + 5
    end = document.rindex(b',"z":null}')
    return document[start:end]


def expected(field: Field[Any], cleaned: Any) -> list[bytes]:
    return sorted(field.index_keys(cleaned))


def derive(client: redis.Redis, kind: str, texts: list[bytes], text: str = CUT
           ) -> list[list[bytes] | None]:
    out: list[list[bytes] | None] = []
    for start in range(0, len(texts), 500):
        reply = client.eval(text, 0, kind, *texts[start:start + 500])
        out += [None if r is None else sorted(r) for r in reply]
    return out


def may_fall_back(name: str, cleaned: Any) -> bool:
    """Values whose entries Lua is allowed not to derive: none (every value of a kind
    derivation() names is derived; kept for a kind that would have exceptions)."""
    return False


def check(client: redis.Redis, name: str, values: Iterable[Any], script: str = CUT
          ) -> Counter[str]:
    """Lua's entries of each valid value against Python's; counts derived / fell back."""
    field = FIELDS[name]
    kind = derivation(field)
    assert kind is not None, name
    cleaned = [c for ok, c in (_valid(field, v) for v in values) if ok]
    texts = [stored(field, c) for c in cleaned]
    counts: Counter[str] = Counter()
    for value, text, got in zip(cleaned, texts, derive(client, kind, texts, script),
                                strict=True):
        counts["may fall back"] += may_fall_back(name, value)
        if got is None:
            assert may_fall_back(name, value), (name, value, text)
            counts["fell back"] += 1
        else:
            assert got == expected(field, value), (name, value, text, got)
            counts["derived"] += 1
    return counts


def array_values(name: str) -> st.SearchStrategy[Any]:
    element = STRATEGIES[name]
    # (few distinct elements, so that duplicates are common)
    pools = st.lists(element, min_size=1, max_size=4)
    return st.none() | pools.flatmap(lambda pool: st.lists(st.sampled_from(pool), max_size=8))


# -- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FIELDS))
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_lua_derives_python_s_entries_or_none(redis_client: redis.Redis, name: str,
                                              data: st.DataObject) -> None:
    strategy = (array_values(name[1:]) if name.startswith("[")
                else st.none() | STRATEGIES[name])
    values = data.draw(st.lists(strategy, max_size=40))
    check(redis_client, name, values)


_EDGE_STRINGS = [
    "", " ", '"', "\\", '\\"', '"\\', "\x00", "a\x00b", "\x00\xff", "\n\r\t\b\f", "\x01\x1f",
    "\x7f", "/", "</script>", "é", "€", "😀", "\U0010ffff", "\u2028\u2029", "\ufeff",
    "\\u0041", '","', "[1,2]", "null", "true", "0", "-0", "a" * 1000, "é" * 300,
]
EDGES: dict[str, list[Any]] = {
    "str": _EDGE_STRINGS, "ref": _EDGE_STRINGS[1:],
    "email": ["a@b", '"q\\"@x.y', "\x00@z", "é@é"],
    "url": ["https://x/", 'http://a/"b"\\', "https://é.example/€"],
    "int": [0, 1, -1, 9, 10, -10, 100, 10**9 - 1, 10**9, 10**10, 2**53, 2**53 + 1,
            -(2**53) - 1, 2**63, -(2**64), 10**59, 10**60 - 1, -(10**60), 12 * 10**58,
            int("9" * 4300), -int("1" + "0" * 4299)],
    "bool": [True, False],
    "float": [0.0, -0.0, 1.0, -1.0, 0.1, 1e16, 1e-5, 1.5e-7, 1e22, 1e23, 5e-324,
              2.2250738585072014e-308, 1.7976931348623157e308, -1.7976931348623157e308,
              123456789012345680.0, 0.30000000000000004, 2.0**53, -(2.0**53) - 2],
    "decimal": ["0", "-0", "0.000", "-0E+3", "0E-7", "1", "-1", "1.50", "1E+5", "1e5",
                "-1.5E-10", "0.001", "00012.3400", "12345678901234567890.1234567890",
                "1E-4999999999", "1E+4999999998", "9" * 500, "-" + "1" * 300 + ".5"],
    "uuid": [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1),
             uuid.UUID("12345678-1234-5678-1234-567812345678")],
    "date": [dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(2024, 2, 29),
             dt.date(2000, 2, 29), dt.date(1900, 2, 28), "0999-01-01"],
    "datetime": [dt.datetime(1, 1, 1, tzinfo=UTC), dt.datetime(9999, 12, 31, 23, 59, 59,
                                                                999999, tzinfo=UTC),
                 dt.datetime(2024, 2, 29, 12, 0, 0, 1, tzinfo=UTC),
                 dt.datetime(2024, 2, 29, 12, 0), "2024-01-31T12:30:00Z",
                 "2024-01-31T12:30:00.5+00:00", "2024-01-31T12:30:00+05:30",
                 dt.datetime(2024, 1, 1, tzinfo=dt.timezone(dt.timedelta(seconds=1))),
                 # (offsets carrying the instant over a day, a month, a leap day, a year)
                 "2024-01-01T00:30:00+01:00", "2023-12-31T23:30:00.000001-00:31",
                 "2024-03-01T00:10:00+00:30", "2023-03-01T00:10:00+00:30",
                 "2024-02-28T23:59:59.999999-23:59", "2024-02-29T00:00:00+23:59",
                 "2100-03-01T05:00:00+06:00", "2000-02-29T20:00:00-04:00",
                 "0001-01-01T23:00:00+22:00", "9999-12-31T01:00:00-22:59",
                 "2024-04-30T22:00:00-02:00", "2024-05-01T01:00:00+01:00:00"],
    "colour": list(Colour), "size": list(Size), "ratio": list(Ratio), "mixed": list(Mixed),
}


@pytest.mark.parametrize("script", ["cut", "whole"])
def test_edge_values_of_every_kind_are_derived_exactly(redis_client: redis.Redis,
                                                       script: str) -> None:
    text = CUT if script == "cut" else WHOLE
    for name, values in EDGES.items():
        counts = check(redis_client, name, [None, *values], text)
        field = SCALARS[name]
        # (arrays: empty, every edge value, each twice, and one of each value)
        arrays = [[], values, values + values[::-1], *([v, v] for v in values)]
        arrays = [a for a in arrays if _valid(ArrayField(field), a)[0]]
        counts += check(redis_client, f"[{name}", [None, *arrays], text)
        assert counts["fell back"] == counts["may fall back"], (name, counts)


def test_the_plain_encoder_s_texts_too(redis_client: redis.Redis) -> None:
    # (orjson writes the plain documents when it is installed: the same bytes, checked)
    for name in ("str", "int", "float", "bool", "[str", "[int", "[float"):
        field = FIELDS[name]
        values = EDGES[name.lstrip("[")]
        if name.startswith("["):
            values = [values, values[:3] * 2]
        cleaned = [_valid(field, v)[1] for v in values]
        assert [stored(field, c, plain=True) for c in cleaned] == [
            stored(field, c) for c in cleaned]


def test_texts_python_does_not_write_are_not_derived(redis_client: redis.Redis) -> None:
    """Texts in any other form than the one the ORM writes for the kind, or not one value
    of the kind at all: nil (never a guess)."""
    refused = {
        "int": ["", "-0", "01", "+1", "1.0", "1e3", " 1", "1 ", "0x10", "true", '"1"', "-",
                "1-", "١", "[1]", "nan"],
        # (a raw control character is refused in an escaped string only: see _derive.lua)
        "str": ['"', '"a', 'a"', '"a"b"', '"\\"', '"\\x41"', '"\\u004"', '"\\ud800"',
                '"\\udc00"', '"\\ud800\\u0041"', '"\\n\x00"', '"\\t\nb"', '"\\/\x1f"', "1",
                "true", "[]", "'a'", '"a" '],
        "bool": ["True", "1", '"true"', "tru", "false "],
        "number": ["", "01", "-01", "1.", ".5", "1e", "1e+", "+1", "Infinity", "NaN",
                   "-Infinity", '"1"', "1.5.5", "1e999999999999", "1_0", "0x1"],
        "decimal": ['"1_000"', '"+1"', '".5"', '"1."', '"Infinity"', '"NaN"', '"sNaN"',
                    '" 1"', "1", '"1E+99999999999"', '"1E+5000000000"', '"1e5e5"'],
        "uuid": ['"12345678-1234-5678-1234-56781234567G"', '"12345678123456781234567812345678"',
                 '"12345678-1234-5678-1234-56781234567A"', '"{12345678-1234-5678-1234-'
                 '567812345678}"', "1"],
        "date": ['"2024-02-30"', '"2023-02-29"', '"1900-02-29"', '"0000-01-01"',
                 '"2024-13-01"', '"2024-00-10"', '"2024-1-01"', '"20240101"',
                 '"2024-01-01T00:00:00+00:00"', "20240101"],
        "datetime": ['"2024-01-01T00:00:00Z"', '"2024-01-01T00:00:00"',
                     '"2024-01-01T24:00:00+00:00"', '"2024-01-01T00:60:00+00:00"',
                     '"2024-01-01T00:00:60+00:00"', '"2024-01-01T00:00:00.5+00:00"',
                     '"2024-01-01 00:00:00+00:00"',
                     '"2024-01-01T00:00:00+24:00"', '"2024-02-30T00:00:00+00:00"',
                     '"2024-01-01T00:00:00+00:00:00"', '"2024-01-01"',
                     '"2024-01-01T00:00:00+01:00:30"', '"2024-01-01T00:00:00+05:60"',
                     '"2024-01-01T00:00:001234567+01:00"', '"2024-01-01T00:00:00.123+01:00"',
                     '"2024-01-01T00:00:00+0100"', '"0001-01-01T00:30:00+01:00"',
                     '"9999-12-31T23:30:00-01:00"', '"2024-01-01T00:00:00.1234567+01:00"'],
        "[int": ["[", "]", "[1,]", "[,1]", "[1,,2]", "[1 ,2]", "[1, 2]", "[[1]]", "[null]",
                 "[1,null]", "[1]]", "[[1]", '["1"]', "{}", "[1,2", "1,2]"],
        "[str": ['["a",]', '["a""b"]', '["a",1]', '["a\\"]', '["a"]]', "[null]",
                 '["a","b\\"]', '[["a"]]', '["a",null]', '["a",["b"]]', '{"a":"b"}',
                 '["a"] ]x', '["a",{}]', '["\\"a]', '["a\\u00"]', '[" ","\\ud800"]'],
    }
    for kind, texts in refused.items():
        for script in (CUT, WHOLE):
            got = derive(redis_client, kind, [t.encode() for t in texts], script)
            assert all(g is None for g in got), [(t, g) for t, g in zip(texts, got,
                                                                         strict=True) if g]
    # (texts Python reads though it does not write them: the entries of what it reads)
    field = DateTimeField()
    texts = ['"2024-01-01T00:00:00-00:00"', '"2024-01-01T00:00:00.000000-00:00"',
             '"2024-01-01T00:00:00.000000+05:00"']
    assert derive(redis_client, "datetime", [t.encode() for t in texts]) == [
        field.index_keys(field.from_storage(jsoncodec.decode(t.encode()))) for t in texts]
    # (blanks in an array of strings without escapes: read as json reads them, by cjson)
    for script in (CUT, WHOLE):
        assert derive(redis_client, "[str", [b'[ "a"]', b'["b" ,"a"\t,"b"]'], script) == [
            [b" a\x00"], [b" a\x00", b" b\x00"]]


def test_kinds_not_derived_have_no_code() -> None:
    from quantumorm.fields import JSONField

    class Odd(float):
        def __repr__(self) -> str:
            return "odd"

    class Custom(StringField):
        pass

    class OddEnum(enum.Enum):
        ODD = Odd(1.5)

    for field in (JSONField(), Custom(), EnumField(OddEnum), ArrayField(Custom()),
                  ArrayField(JSONField()), ArrayField(ArrayField(IntField()))):
        assert derivation(field) is None, field
    assert derivation(ArrayField(EnumField(Colour))) == "[enum"


def test_common_values_never_fall_back(redis_client: redis.Redis) -> None:
    """Many seeded random values of every kind: each derived, and derived exactly (the
    counts, per kind, are what the report quotes)."""
    rng = random.Random(13)
    counts: dict[str, Counter[str]] = {}
    for name in sorted(FIELDS):
        base = name.lstrip("[")
        values = [_random(rng, base) for _ in range(600)]
        if name.startswith("["):
            values = [[rng.choice(values) for _ in range(rng.randrange(6))]
                      for _ in range(300)]
        counts[name] = check(redis_client, name, values)
        assert counts[name]["derived"] >= 250 and not counts[name]["fell back"], (
            name, counts[name])
    print({name: dict(c) for name, c in counts.items()})


def _random(rng: random.Random, name: str) -> Any:
    """A seeded random value of the kind (the common values and the edges' neighbours)."""
    def text() -> str:
        return "".join(rng.choice(_ALPHABET if rng.random() < 0.3 else "abcdefgh XYZ")
                       for _ in range(rng.randrange(12)))

    if name in ("str", "ref"):
        return text() or "x"
    if name == "email":
        return (text().strip() or "x") + "@example.org"
    if name == "url":
        return "https://example.org/" + "".join(c for c in text() if not c.isspace())
    if name == "int":
        digits = rng.randrange(1, 61)
        return rng.choice([1, -1]) * rng.randrange(10**digits) * 10 ** rng.choice([0, 0, 3])
    if name == "bool":
        return rng.random() < 0.5
    if name == "float":
        return rng.choice([rng.uniform(-1e6, 1e6), rng.random() * 10.0 ** rng.randrange(-30, 30),
                           float(rng.randrange(-1000, 1000)), -0.0])
    if name == "decimal":
        return Decimal(rng.randrange(-10**20, 10**20)).scaleb(rng.randrange(-30, 30))
    if name == "uuid":
        return uuid.UUID(int=rng.getrandbits(128))
    if name == "date":
        return dt.date.fromordinal(rng.randrange(1, dt.date.max.toordinal()))
    if name == "datetime":
        instant = (dt.datetime(1970, 1, 1, tzinfo=UTC)
                   + dt.timedelta(microseconds=rng.randrange(-10**16, 10**17)))
        minutes = rng.choice([0, 0, rng.randrange(-1439, 1440)])
        return instant.astimezone(dt.timezone(dt.timedelta(minutes=minutes)))
    return rng.choice(list({"colour": Colour, "size": Size, "ratio": Ratio,
                            "mixed": Mixed}[name]))
