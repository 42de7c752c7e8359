"""Order-preserving byte encodings (quantumorm.sortable): the invariants every index, filter,
sort and cursor relies on, checked exactly and with hypothesis properties."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from quantumorm import sortable
from quantumorm.sortable import (
    FALSE,
    NULL,
    TRUE,
    UPPER,
    encode_bool,
    encode_date,
    encode_datetime,
    encode_number,
    encode_str,
    encode_str_prefix,
    escape_id,
    id_from_key,
    id_key,
    pack_list,
    split_member,
    unescape_id,
    unpack_list,
)

UTC = dt.timezone.utc

# -- strategies ----------------------------------------------------------------------------

BIG = [0, 1, -1, 2**53 - 1, 2**53, 2**53 + 1, -(2**53), -(2**53) - 1, 2**63, 2**64 - 1,
       2**64, 2**64 + 1, -(2**64), -(2**64) - 1, 10**38, 10**39, 10**100, -(10**100),
       10**100 + 1, 999, 1000, 1001, 99, 100]
ints = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.sampled_from(BIG),
    st.sampled_from(BIG).flatmap(lambda b: st.integers(b - 3, b + 3)),
)
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1e-310,
                     1.7976931348623157e308, -1.7976931348623157e308, 0.1, 0.30000000000000004,
                     1e16, 1e22, 1e23, 2.0**53, 2.0**53 + 2, 1.0, -1.0]),
)


@st.composite
def decimals_tuple(draw: st.DrawFn) -> Decimal:
    """Decimals with many digits, trailing zeros and far exponents (within the encodable range)."""
    sign = draw(st.integers(0, 1))
    digits = draw(st.lists(st.sampled_from([0, 0, 1, 2, 5, 9]), min_size=1, max_size=60))
    exponent = draw(st.one_of(st.integers(-30, 30), st.integers(-10**6, 10**6)))
    return Decimal((sign, tuple(digits), exponent))


decimals = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False),
    decimals_tuple(),
    st.sampled_from([Decimal("1"), Decimal("1.00"), Decimal("1.0"), Decimal("-0"),
                     Decimal("0E+10"), Decimal("0.000"), Decimal("1E+3"), Decimal("1000"),
                     Decimal("-1.50"), Decimal("-1.5"), Decimal("0.1"), Decimal("0.10"),
                     Decimal("1." + "0" * 50 + "1"), Decimal("-1." + "0" * 50 + "1")]),
)
# a small alphabet with NUL, \x01, \xff (as a code point), non-ASCII and astral characters, so
# equal prefixes and escaped NULs are frequent
dense_text = st.text(alphabet=st.sampled_from(["a", "b", "\x00", "\x01", "\xff", "é", "😀", "~"]),
                     max_size=6)
texts = st.one_of(st.text(), dense_text)


def fixed_offsets() -> st.SearchStrategy[dt.timezone]:
    return st.integers(-(24 * 3600 - 1), 24 * 3600 - 1).map(
        lambda s: dt.timezone(dt.timedelta(seconds=s)))


@st.composite
def aware_datetimes(draw: st.DrawFn) -> dt.datetime:
    value = draw(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31,
                                                                                    23, 59, 59,
                                                                                    999999)))
    tz = draw(st.one_of(st.just(UTC), fixed_offsets(),
                        st.sampled_from([dt.timezone(dt.timedelta(hours=5, minutes=30)),
                                         dt.timezone(dt.timedelta(hours=-8))])))
    aware = value.replace(tzinfo=tz)
    try:
        aware.astimezone(UTC)
    except OverflowError:
        assume(False)
    return aware


# (name, strategy, encoder) for every value type
TYPES: list[tuple[str, st.SearchStrategy[Any], Callable[[Any], bytes]]] = [
    ("int", ints, encode_number),
    ("float", floats, encode_number),
    ("decimal", decimals, encode_number),
    ("int+decimal", st.one_of(ints, decimals), encode_number),
    ("str", texts, encode_str),
    ("datetime", aware_datetimes(), encode_datetime),
    ("date", st.dates(), encode_date),
    ("bool", st.booleans(), encode_bool),
]
TYPE_IDS = [t[0] for t in TYPES]


def _sign(x: int) -> int:
    return (x > 0) - (x < 0)


def _cmp(a: Any, b: Any) -> int:
    return (a > b) - (a < b)


# -- order and equality --------------------------------------------------------------------


@pytest.mark.parametrize(("name", "values", "encode"), TYPES, ids=TYPE_IDS)
def test_order_and_equality_are_preserved(name: str, values: Any, encode: Any) -> None:
    @settings(max_examples=400)
    @given(values, values)
    def check(a: Any, b: Any) -> None:
        ea, eb = encode(a), encode(b)
        assert (a < b) == (ea < eb), (a, b, ea, eb)
        assert (a == b) == (ea == eb), (a, b, ea, eb)
        assert _cmp(a, b) == _cmp(ea, eb)

    check()


@pytest.mark.parametrize(("name", "values", "encode"), TYPES, ids=TYPE_IDS)
def test_sorting_by_encoding_sorts_the_values(name: str, values: Any, encode: Any) -> None:
    @settings(max_examples=150)
    @given(st.lists(values, max_size=12))
    def check(items: list[Any]) -> None:
        by_bytes = sorted(items, key=encode)
        assert all(by_bytes[i] <= by_bytes[i + 1] for i in range(len(by_bytes) - 1))

    check()


@pytest.mark.parametrize(("name", "values", "encode"), TYPES, ids=TYPE_IDS)
def test_every_encoding_ends_with_nul_and_sorts_after_null(
        name: str, values: Any, encode: Any) -> None:
    @settings(max_examples=200)
    @given(values)
    def check(value: Any) -> None:
        encoded = encode(value)
        assert encoded.endswith(b"\x00")
        assert NULL < encoded
        assert not encoded.startswith(NULL)

    check()


@pytest.mark.parametrize(("name", "values", "encode"), TYPES, ids=TYPE_IDS)
def test_isolation_range_holds_exactly_one_value(name: str, values: Any, encode: Any) -> None:
    """``[enc, enc + b'\\xff')`` contains the encoding of no other value, and no index member
    (value encoding + id key) of another value, whatever the id."""

    @settings(max_examples=400)
    @given(values, values, st.text(min_size=1, max_size=8))
    def check(a: Any, b: Any, some_id: str) -> None:
        low = encode(a)
        high = low + UPPER
        member = encode(b) + id_key(some_id)
        in_range = low <= member < high
        assert in_range == (a == b), (a, b, member)
        assert (low <= encode(b) < high) == (a == b)

    check()


def test_null_member_range_is_isolated() -> None:
    members = [NULL + id_key(i) for i in ["1", "abc", "ü", "x:{y}"]]
    assert all(NULL <= m < NULL + UPPER for m in members)
    for other in [FALSE, TRUE, encode_number(0), encode_number(-(10**100)), encode_str(""),
                  encode_str("\x00"), encode_datetime(dt.datetime(1, 1, 1, tzinfo=UTC))]:
        assert not (NULL <= other + id_key("1") < NULL + UPPER)


def test_booleans_and_null() -> None:
    assert sortable.encode_null() == NULL
    assert encode_bool(False) == FALSE and encode_bool(True) == TRUE
    assert NULL < FALSE < TRUE
    assert FALSE != TRUE


# -- numbers -------------------------------------------------------------------------------


NUMBER_ORDER = [
    -(2**64) - 1, -(2**64), -(2**53) - 1, -(2**53), Decimal("-1E+10"), -1000, -999,
    Decimal("-1.01"), -1, Decimal("-0.5"), -5e-324, 0, Decimal("1E-400"), 5e-324, 0.1,
    Decimal("0.1000000000000000000000000001"), 1, Decimal("1." + "0" * 50 + "1"), 2, 9, 10,
    99, 100, 2**53, 2**53 + 1, 2**64, 2**64 + 1, 1e300, 10**400,
]


def test_number_table_is_strictly_increasing() -> None:
    encoded = [encode_number(v) for v in NUMBER_ORDER]
    for i in range(len(NUMBER_ORDER) - 1):
        assert encoded[i] < encoded[i + 1], (NUMBER_ORDER[i], NUMBER_ORDER[i + 1])


@pytest.mark.parametrize(("a", "b"), [
    (0, 0.0), (0.0, -0.0), (0, Decimal("-0")), (0, Decimal("0E+10")), (0, Decimal("0.000")),
    (1, Decimal("1.00")), (Decimal("1"), Decimal("1.00")), (1, 1.0), (1000, Decimal("1E+3")),
    (Decimal("-1.50"), Decimal("-1.5")), (Decimal("0.10"), Decimal("0.1")), (-1, -1.0),
    (2**53, float(2**53)), (Decimal(2**64), 2**64),
])
def test_equal_numbers_encode_alike(a: Any, b: Any) -> None:
    assert encode_number(a) == encode_number(b)


@pytest.mark.parametrize(("a", "b"), [
    (2**53, 2**53 + 1), (2**64, 2**64 + 1), (-(2**64) - 1, -(2**64)), (-(2**53) - 1, -(2**53)),
    (10**100, 10**100 + 1), (-5e-324, 0.0), (0.0, 5e-324), (0.1, 0.30000000000000004),
    (Decimal("1.000000000000000000000000000000001"),
     Decimal("1.000000000000000000000000000000002")),
    (Decimal("-0.12"), Decimal("-0.1")), (Decimal("-0.123"), Decimal("-0.12")),
    (Decimal("0.12"), Decimal("0.123")), (Decimal("1E-1000000"), Decimal("1E-999999")),
    (Decimal("9E+999999"), Decimal("1E+1000000")), (1.7976931348623157e308, 10**400),
])
def test_distinct_numbers_are_strictly_ordered(a: Any, b: Any) -> None:
    assert a < b
    assert encode_number(a) < encode_number(b)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), Decimal("NaN"),
                                 Decimal("Infinity"), Decimal("-Infinity"), Decimal("sNaN")])
def test_non_finite_numbers_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        encode_number(bad)


@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_not_numbers(value: bool) -> None:
    with pytest.raises(TypeError):
        encode_number(value)


@pytest.mark.parametrize("value", [Decimal("1E+5000000000"), Decimal("1E-5000000002"),
                                   Decimal("-1E+5000000000")])
def test_exponents_beyond_the_encodable_range_are_refused(value: Decimal) -> None:
    with pytest.raises(ValueError):
        encode_number(value)


@given(ints)
def test_negation_reverses_order(n: int) -> None:
    assume(n != 0)
    assert (encode_number(n) < encode_number(0)) == (n < 0)
    assert (encode_number(-n) < encode_number(n)) == (n > 0)


# -- strings -------------------------------------------------------------------------------


@pytest.mark.parametrize("smaller,larger", [
    ("", "\x00"), ("a", "a\x00"), ("a\x00", "a\x00\x00"), ("a\x00", "a\x01"), ("a\x00b", "a\x01"),
    ("a", "ab"), ("ab", "b"), ("Z", "a"), ("~", "\x7f"), ("\x7f", "é"), ("é", "😀"),
    ("\uffff", "😀"), ("a\x00\xff", "a\x01"),
])
def test_string_table_order(smaller: str, larger: str) -> None:
    assert smaller < larger
    assert encode_str(smaller) < encode_str(larger)


def test_string_encoding_escapes_nul() -> None:
    assert encode_str("") == b"\x20\x00"
    assert encode_str("a\x00b") == b"\x20a\x00\xffb\x00"
    assert encode_str("é") == b"\x20" + "é".encode() + b"\x00"


@settings(max_examples=500)
@given(texts, texts)
@example("a", "a\x00")
@example("a\x00", "a")
@example("", "")
@example("\x00", "")
def test_prefix_encoding_bounds_exactly_the_strings_with_that_prefix(prefix: str, s: str) -> None:
    low = encode_str_prefix(prefix)
    high = low + UPPER
    encoded = encode_str(s)
    assert (low <= encoded < high) == s.startswith(prefix), (prefix, s)
    assert encoded.startswith(low) == s.startswith(prefix)
    # and with an id key behind it (what the index actually holds)
    assert (low <= encoded + id_key("7") < high) == s.startswith(prefix)


def test_prefix_encoding_has_no_terminator() -> None:
    assert encode_str_prefix("ab") == encode_str("ab")[:-1]
    assert encode_str_prefix("") == sortable.STRING_TAG


# -- datetimes -----------------------------------------------------------------------------


def _tz(hours: int, minutes: int = 0) -> dt.timezone:
    return dt.timezone(dt.timedelta(hours=hours, minutes=minutes))


def test_same_instant_in_different_offsets_encodes_alike() -> None:
    a = dt.datetime(2024, 1, 1, 0, 0, tzinfo=UTC)
    b = dt.datetime(2024, 1, 1, 5, 30, tzinfo=_tz(5, 30))
    c = dt.datetime(2023, 12, 31, 16, 0, tzinfo=_tz(-8))
    assert a == b == c
    assert encode_datetime(a) == encode_datetime(b) == encode_datetime(c)


def test_datetimes_compare_as_instants_to_the_microsecond() -> None:
    base = dt.datetime(2024, 1, 1, 5, 30, tzinfo=_tz(5, 30))
    later_local_but_earlier = dt.datetime(2024, 1, 1, 3, 0, tzinfo=_tz(4))  # 23:00 UTC
    assert later_local_but_earlier < base
    assert encode_datetime(later_local_but_earlier) < encode_datetime(base)
    one_us = base + dt.timedelta(microseconds=1)
    assert encode_datetime(base) < encode_datetime(one_us)


def test_datetime_extremes_have_fixed_width() -> None:
    first = dt.datetime(1, 1, 1, tzinfo=UTC)
    last = dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert encode_datetime(first) == b"\x30" + b"00010101000000000000" + b"\x00"
    assert encode_datetime(last) == b"\x30" + b"99991231235959999999" + b"\x00"
    assert len(encode_datetime(first)) == len(encode_datetime(last))
    assert encode_datetime(first) < encode_datetime(dt.datetime(1000, 1, 1, tzinfo=UTC))
    assert encode_datetime(dt.datetime(999, 12, 31, tzinfo=UTC)) < encode_datetime(
        dt.datetime(1000, 1, 1, tzinfo=UTC))


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_datetime(dt.datetime(2024, 1, 1))


# -- member layout: value encodings + id key -------------------------------------------------


@settings(max_examples=400)
@given(texts, texts, st.text(min_size=1, max_size=6), st.text(min_size=1, max_size=6))
def test_member_order_is_value_then_id(a: str, b: str, id_a: str, id_b: str) -> None:
    """An index member ``enc(value) + id_key(id)`` sorts like the pair (value, natural id)."""
    ma, mb = encode_str(a) + id_key(id_a), encode_str(b) + id_key(id_b)
    pair_order = _cmp((encode_str(a), id_key(id_a)), (encode_str(b), id_key(id_b)))
    assert _cmp(ma, mb) == pair_order
    assert split_member(ma) == (encode_str(a), id_key(id_a))


@given(st.lists(st.one_of(ints, decimals), min_size=1, max_size=3), st.text(min_size=1))
def test_compound_members_split_at_the_last_nul(values: list[Any], some_id: str) -> None:
    encodings = b"".join(encode_number(v) for v in values)
    assert split_member(encodings + id_key(some_id)) == (encodings, id_key(some_id))


# -- ids -----------------------------------------------------------------------------------

ID_SPECIALS = st.text(alphabet=st.sampled_from(list(":{}*% \x00\n%é😀-_.~aZ09")), min_size=1,
                      max_size=12)
any_ids = st.one_of(st.text(min_size=1), ID_SPECIALS, st.integers(0, 10**45).map(str))


def test_natural_id_order() -> None:
    ordered = ["0", "1", "2", "9", "10", "11", "99", "100", "9" * 39, "-1", "01", "10a", "A",
               "a", "abc", "b"]
    keys = [id_key(i) for i in ordered]
    assert keys == sorted(keys)
    assert id_key("2") < id_key("10") < id_key("abc")


@given(st.integers(0, 10**39 - 1), st.integers(0, 10**39 - 1))
def test_numeric_ids_sort_numerically(a: int, b: int) -> None:
    assert _cmp(a, b) == _cmp(id_key(str(a)), id_key(str(b)))


@given(st.integers(0, 10**39 - 1), st.text(min_size=1))
def test_numeric_ids_sort_before_other_ids(n: int, other: str) -> None:
    assume(not re.fullmatch(r"0|[1-9][0-9]{0,38}", other))
    assert id_key(str(n)) < id_key(other)


@settings(max_examples=500)
@given(any_ids)
@example("x}:i:age")
@example("{other}")
@example("*")
@example(":")
@example("\x00")
@example("%")
@example("%25")
@example("0")
@example("1" * 39)
@example("1" * 40)
@example("00")
def test_id_key_round_trips_and_has_no_nul(some_id: str) -> None:
    key = id_key(some_id)
    assert b"\x00" not in key
    assert not key.startswith(b"\xff")
    assert key[:1] in (b"\x01", b"\x02")
    assert id_from_key(key) == some_id


@settings(max_examples=500)
@given(any_ids)
@example("a:b{c}*d%e f")
@example("%41")
def test_escape_id(some_id: str) -> None:
    escaped = escape_id(some_id)
    assert escaped.isascii()
    assert re.fullmatch(r"(?:[A-Za-z0-9._~-]|%[0-9A-F]{2})*", escaped), escaped
    without_escapes = re.sub(r"%[0-9A-F]{2}", "", escaped)
    assert not set(without_escapes) & set(":{}*%")
    assert not any(ord(c) < 0x20 for c in escaped)
    assert unescape_id(escaped) == some_id


@pytest.mark.parametrize(("raw", "escaped"), [
    ("abc-_.~XYZ09", "abc-_.~XYZ09"), (":", "%3A"), ("{x}", "%7Bx%7D"), ("*", "%2A"),
    ("%", "%25"), (" ", "%20"), ("\x00", "%00"), ("é", "%C3%A9"),
])
def test_escape_id_table(raw: str, escaped: str) -> None:
    assert escape_id(raw) == escaped
    assert unescape_id(escaped) == raw


@given(any_ids, any_ids)
def test_distinct_ids_have_distinct_keys(a: str, b: str) -> None:
    assert (a == b) == (id_key(a) == id_key(b))
    assert (a == b) == (escape_id(a) == escape_id(b))


# -- netstrings ------------------------------------------------------------------------------


@given(st.lists(st.binary()))
@example([])
@example([b""])
@example([b"", b""])
@example([b"1:x", b":", b"\x00\xff"])
def test_pack_list_round_trips(items: list[bytes]) -> None:
    packed = pack_list(items)
    assert unpack_list(packed) == items


def test_pack_list_layout() -> None:
    assert pack_list([b"ab", b"", b"x:y"]) == b"2:ab0:3:x:y"


_NUMERIC_FORM = re.compile(r"(?:0|[1-9][0-9]{0,38})\Z")


@given(st.one_of(st.text(max_size=45), st.from_regex(r"[0-9]{0,42}", fullmatch=True),
                 st.sampled_from(["0", "00", "01", "9" * 39, "1" * 40, "١٢", "²", "1\n",
                                  "12 ", "+1", "-1", ""])))
@example("1" + "0" * 38)
def test_id_key_numeric_form_is_the_regex(id: str) -> None:
    """id_key tests a numeric id with str methods: exactly the canonical decimal form of up
    to 39 ASCII digits (no other Unicode digits, no leading zero, no trailing newline)."""
    key = id_key(id)
    if _NUMERIC_FORM.match(id):
        assert key == b"\x01" + bytes([0x20 + len(id)]) + id.encode()
    else:
        assert key[:1] == b"\x02"
        assert id_from_key(key) == id
