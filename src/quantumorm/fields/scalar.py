"""Scalar fields: strings, integers, floats, booleans, Decimals and UUIDs.

Each is a ``Field[T]`` of its Python type. Decimal and UUID fields also accept the other
forms their ``clean()`` converts (ints and numeric strings, UUID strings): their type-only
``__get__``/``__set__`` say so, for assignments and for expressions such as
``Order.total >= 100``.
"""

from __future__ import annotations

import math
import re
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from numbers import Integral
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .. import sortable
from ..errors import ConfigurationError, FieldValueError
from ..query.lookups import KIND_LOOKUPS, FieldKind
from .base import EQUALITY, MISSING, ORDERED, Field, check_bound, is_size, plain_checks, show

if TYPE_CHECKING:
    from ..query.expressions import FieldRef
    from .base import Holder

N = TypeVar("N", int, float, Decimal)


class StringField(Field[str]):
    """Text. Comparisons and ordering follow Unicode code points (UTF-8 byte order).

    Args:
        min_length: the least number of characters.
        max_length: the most characters.
        regex: a pattern the whole value must match (``re.fullmatch``).
    """

    lookups = KIND_LOOKUPS[FieldKind.TEXT]
    type_name = "string"

    def __init__(
        self,
        *,
        min_length: int | None = None,
        max_length: int | None = None,
        regex: str | re.Pattern[str] | None = None,
        **options: Any,
    ) -> None:
        self.min_length = check_bound("min_length", min_length, is_size)
        self.max_length = check_bound("max_length", max_length, is_size)
        if min_length is not None and max_length is not None and min_length > max_length:
            raise ConfigurationError(f"min_length {min_length} > max_length {max_length}")
        if regex is not None and not isinstance(regex, (str, re.Pattern)):
            raise ConfigurationError(f"regex must be a pattern string (got {regex!r})")
        try:
            self.regex = re.compile(regex) if isinstance(regex, str) else regex
        except re.error as exc:
            raise ConfigurationError(f"invalid regex {regex!r}: {exc}") from None
        super().__init__(**options)

    def clean(self, value: Any) -> str:
        if not isinstance(value, str):
            raise FieldValueError(f"must be a string (got {show(value)})")
        if not value.isascii():  # lone surrogates have no UTF-8 form (ASCII: no need to look)
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise FieldValueError(f"must be valid Unicode (got {show(value)})") from None
        return value

    def _check(self, value: str) -> str:
        if self.min_length is not None and len(value) < self.min_length:
            raise FieldValueError(f"must be at least {self.min_length} characters "
                                  f"(got {show(value)})")
        if self.max_length is not None and len(value) > self.max_length:
            raise FieldValueError(f"must be at most {self.max_length} characters "
                                  f"(got {len(value)}: {show(value)})")
        if self.regex is not None and not self.regex.fullmatch(value):
            raise FieldValueError(f"must match {self.regex.pattern!r} (got {show(value)})")
        return value

    def quick_clean(self) -> Callable[[Any], Any] | None:
        if self.regex is not None or not plain_checks(self, StringField):
            return None
        if self.min_length is None and self.max_length is None:
            return ascii_text
        low = self.min_length or 0
        high = sys.maxsize if self.max_length is None else self.max_length

        def quick(value: Any) -> Any:
            if type(value) is str and value.isascii() and low <= len(value) <= high:
                return value
            return MISSING
        return quick

    def sort_key(self, value: str) -> bytes:
        return sortable.encode_str(value)


def ascii_text(value: Any) -> Any:
    """``StringField.quick_clean`` of a field without constraints: ASCII text is valid
    Unicode (no lone surrogates), so it is its own cleaned value."""
    return value if type(value) is str and value.isascii() else MISSING


def _bool(value: Any) -> Any:
    return value if type(value) is bool else MISSING


class _NumberField(Field[N]):
    lookups = ORDERED
    type_name = "number"

    def __init__(
        self, *, min_value: Any = None, max_value: Any = None, **options: Any
    ) -> None:
        self.min_value = None if min_value is None else self._bound("min_value", min_value)
        self.max_value = None if max_value is None else self._bound("max_value", max_value)
        if (
            self.min_value is not None
            and self.max_value is not None
            and self.min_value > self.max_value
        ):
            raise ConfigurationError(f"min_value {min_value!r} > max_value {max_value!r}")
        super().__init__(**options)

    def _bound(self, name: str, value: Any) -> Any:
        try:
            return self.clean(value)
        except FieldValueError as exc:
            raise ConfigurationError(f"{name} {exc}") from None

    def _check(self, value: Any) -> Any:
        if self.min_value is not None and value < self.min_value:
            raise FieldValueError(f"must be >= {self.min_value} (got {show(value)})")
        if self.max_value is not None and value > self.max_value:
            raise FieldValueError(f"must be <= {self.max_value} (got {show(value)})")
        return value

    def sort_key(self, value: Any) -> bytes:
        return sortable.encode_number(value)

    def _quick_range(self, kind: type, low: Any, high: Any) -> Callable[[Any], Any]:
        """A quick_clean taking values of exactly the type ``kind`` from ``low`` to ``high``
        (the field's bounds where it has them)."""
        if self.min_value is not None:
            low = self.min_value
        if self.max_value is not None:
            high = self.max_value

        def quick(value: Any) -> Any:
            return value if type(value) is kind and low <= value <= high else MISSING
        return quick


#: Python refuses to turn longer integers into text (sys.get_int_max_str_digits), so JSON
#: could not store them
MAX_INT_DIGITS = 4300
_INT_LIMIT = 10**MAX_INT_DIGITS
#: the ints an ``IntField(primary_key=True)`` takes: the ids ordered numerically
#: (:func:`quantumorm.sortable.id_key`)
MAX_INT_ID = 10**39


class IntField(_NumberField[int]):
    """An integer of up to 4300 digits; exact in storage, indexes and comparisons.

    ``IntField(primary_key=True)``: the document's id, as an int from 0 to 10**39 - 1 (the
    ids that sort numerically)."""

    type_name = "integer"
    can_be_primary_key = True

    def _check(self, value: Any) -> Any:
        value = super()._check(value)
        if self.primary_key and not 0 <= value < MAX_INT_ID:
            raise FieldValueError(f"must be from 0 to 10**39 - 1 as a primary key "
                                  f"(got {show(value)})")
        return value

    def quick_clean(self) -> Callable[[Any], Any] | None:
        if self.primary_key or not plain_checks(self, IntField):
            return None
        # (the bounds are ints within the digit limit: clean() made them)
        return self._quick_range(int, 1 - _INT_LIMIT, _INT_LIMIT - 1)

    def clean(self, value: Any) -> int:
        if type(value) is int:  # (the common case, without the abstract class check)
            number = value
        elif isinstance(value, bool) or not isinstance(value, Integral):
            raise FieldValueError(f"must be an integer (got {show(value)})")
        else:
            number = int(value)
        if abs(number) >= _INT_LIMIT:
            raise FieldValueError(f"must have at most {MAX_INT_DIGITS} digits")
        return number


class FloatField(_NumberField[float]):
    """A finite float (NaN and infinities are rejected: they have no JSON form)."""

    type_name = "float"

    def quick_clean(self) -> Callable[[Any], Any] | None:
        if not plain_checks(self, FloatField):
            return None
        # (a finite float is its own float(); NaN fails every comparison)
        return self._quick_range(float, -sys.float_info.max, sys.float_info.max)

    def clean(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FieldValueError(f"must be a number (got {show(value)})")
        try:
            result = float(value)
        except OverflowError:
            raise FieldValueError(f"is too large for a float (got {show(value)})") from None
        if not math.isfinite(result):
            raise FieldValueError(f"must be finite (got {show(value)})")
        return result


class DecimalField(_NumberField[Decimal]):
    """An exact decimal, stored as its string so no digit is lost.

    Accepts ``Decimal``, ``int`` and numeric strings. Floats are refused: they are not exact
    (pass ``Decimal(str(x))`` if rounding to the float's repr is intended).
    """

    type_name = "decimal"

    if TYPE_CHECKING:
        @overload
        def __get__(self, instance: None, owner: type[Any]) -> FieldRef[Decimal | int | str]:
            ...

        @overload
        def __get__(self, instance: Holder, owner: type[Any]) -> Decimal | None: ...

        def __get__(self, instance: Holder | None, owner: type[Any]) -> Any: ...

        def __set__(self, instance: Holder, value: Decimal | int | str | None) -> None: ...

    def clean(self, value: Any) -> Decimal:
        if isinstance(value, bool) or isinstance(value, float):
            raise FieldValueError(f"must be a Decimal, int or numeric string (got {show(value)})")
        if isinstance(value, (int, str)):
            try:
                value = Decimal(value)
            except InvalidOperation:
                raise FieldValueError(f"must be a decimal number (got {show(value)})") from None
        if not isinstance(value, Decimal):
            raise FieldValueError(f"must be a Decimal (got {show(value)})")
        if not value.is_finite():
            raise FieldValueError(f"must be finite (got {show(value)})")
        try:
            sortable.encode_number(value)
        except ValueError:
            raise FieldValueError(f"has an exponent out of range (got {show(value)})") from None
        return value

    def to_storage(self, value: Decimal | None) -> str | None:
        return None if value is None else str(value)

    def from_storage(self, raw: Any) -> Decimal | None:
        return None if raw is None else Decimal(raw)

    def loader(self) -> Callable[[Any], Any] | None:
        if type(self).from_storage is DecimalField.from_storage:
            return Decimal
        return super().loader()


class BooleanField(Field[bool]):
    """``True`` or ``False`` (no truthy coercion)."""

    lookups = EQUALITY
    type_name = "boolean"

    def quick_clean(self) -> Callable[[Any], Any] | None:
        return _bool if plain_checks(self, BooleanField) else None

    def clean(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise FieldValueError(f"must be True or False (got {show(value)})")
        return value

    def sort_key(self, value: bool) -> bytes:
        return sortable.encode_bool(value)


class UUIDField(Field[uuid.UUID]):
    """A UUID; accepts ``uuid.UUID`` or its string forms, stored as canonical lowercase hex."""

    lookups = EQUALITY
    type_name = "uuid"

    if TYPE_CHECKING:
        @overload
        def __get__(self, instance: None, owner: type[Any]) -> FieldRef[uuid.UUID | str]: ...

        @overload
        def __get__(self, instance: Holder, owner: type[Any]) -> uuid.UUID | None: ...

        def __get__(self, instance: Holder | None, owner: type[Any]) -> Any: ...

        def __set__(self, instance: Holder, value: uuid.UUID | str | None) -> None: ...

    def clean(self, value: Any) -> uuid.UUID:
        if isinstance(value, uuid.UUID):
            return value
        if isinstance(value, str):
            try:
                return uuid.UUID(value)
            except ValueError:
                pass
        raise FieldValueError(f"must be a UUID (got {show(value)})")

    def to_storage(self, value: uuid.UUID | None) -> str | None:
        return None if value is None else str(value)

    def from_storage(self, raw: Any) -> uuid.UUID | None:
        return None if raw is None else uuid.UUID(raw)

    def loader(self) -> Callable[[Any], Any] | None:
        if type(self).from_storage is UUIDField.from_storage:
            return uuid.UUID
        return super().loader()

    def sort_key(self, value: uuid.UUID) -> bytes:
        return sortable.encode_str(str(value))
