"""The rules of DateField, EnumField, EmailField, URLField and the untyped ListField, without
a store (the contract suite runs them on every backend)."""

from __future__ import annotations

import datetime as dt
import enum

import pytest

from quantumorm import (
    ConfigurationError,
    DateField,
    EmailField,
    EnumField,
    ListField,
    URLField,
)
from quantumorm.fields import FieldValueError
from quantumorm.fields.structured import JSONField


@pytest.mark.parametrize("address", [
    "a@b", "user.name+tag@example.com", "\"john doe\"@example.com", "\"a@b\"@example.org",
    "user@[192.168.0.1]", "user@localhost", "ünïcode@bücher.de", "x@xn--bcher-kva.de",
    "!#$%&'*+-/=?^_`{|}~@example.com", "Mixed.Case@Example.COM",
])
def test_email_accepts_valid_addresses(address: str) -> None:
    assert EmailField().validate(address) == (address, [])


@pytest.mark.parametrize("address", ["", "plain", "a@", "@b", " a@b", "a@b ", "a@b c",
                                     "a@b\tc"])
def test_email_refuses_what_is_not_text_at_domain(address: str) -> None:
    assert EmailField().validate(address)[1]


@pytest.mark.parametrize("url", [
    "http://example.com", "https://example.com/a/b?c=d#e", "HTTPS://EXAMPLE.COM",
    "https://user:pw@host:8080/", "https://[::1]:8000/", "https://bücher.de/ü",
])
def test_url_accepts_absolute_urls(url: str) -> None:
    assert URLField().validate(url) == (url, [])


@pytest.mark.parametrize("url", ["", "example.com", "//example.com", "https://", "https:x",
                                 "ftp://h/", "https://a b/", "mailto:a@b", "https://[::1/"])
def test_url_refuses_others(url: str) -> None:
    assert URLField().validate(url)[1]


def test_url_schemes_are_configurable() -> None:
    field = URLField(schemes=["ftp", "SFTP"])
    assert field.validate("sftp://h/")[1] == [] and field.validate("http://h/")[1]
    with pytest.raises(ConfigurationError):
        URLField(schemes="http")
    with pytest.raises(ConfigurationError):
        URLField(schemes=[])


def test_date_field_rules() -> None:
    field = DateField()
    assert field.clean("2024-02-29") == dt.date(2024, 2, 29)
    for bad in ("2023-02-29", "20240229", "2024-02-29T00:00", dt.datetime(2024, 1, 1), 5):
        with pytest.raises(FieldValueError):
            field.clean(bad)
    assert field.sort_key(dt.date(1, 1, 1)) < field.sort_key(dt.date(9999, 12, 31))


class Mixed(enum.Enum):
    A = "a"
    B = 2


class Numbers(enum.IntEnum):
    ONE = 1
    TWO = 2


def test_enum_field_rules() -> None:
    assert EnumField(Numbers).clean(2) is Numbers.TWO
    assert EnumField(Numbers).sortable and not EnumField(Mixed).sortable
    with pytest.raises(FieldValueError):
        EnumField(Numbers).clean(True)  # True == 1, but it is not a Numbers value
    with pytest.raises(ConfigurationError):
        EnumField(int)  # type: ignore[type-var]
    bad = enum.Enum("Bad", {"X": (1, 2)})
    with pytest.raises(ConfigurationError):
        EnumField(bad)
    assert EnumField(Mixed).sort_key(Mixed.A) != EnumField(Mixed).sort_key(Mixed.B)


def test_untyped_list_holds_json_values() -> None:
    field = ListField()
    assert isinstance(field.field, JSONField) and not field.indexable
    assert field.clean([1, "a", {"k": [True]}]) == [1, "a", {"k": [True]}]
    with pytest.raises(ConfigurationError):
        ListField(indexed=True)
