"""Aggregates (``Count``, ``Sum``, ``Avg``, ``Min``, ``Max``) and their reference semantics.

``qs.aggregate(total=Sum("price"), n=Count())`` is checked against the model when it is
called (an unknown field, or ``Sum`` of a string, raises :class:`QueryError` there), and
computed here, in Python, over the cleaned values of the matching documents: the same code
is the reference the tests compare every backend with, and what ``distinct()`` and
``item_frequencies()`` use.

Exactness: ``Sum`` of integers is a Python int (no overflow), of Decimals an exact Decimal
(added without rounding, whatever the context's precision), of floats ``math.fsum`` (the
correctly rounded sum, independent of the order the documents arrive in). ``Avg`` is a
float for integer and float fields (``Sum / Count``, correctly rounded from the exact sum)
and a Decimal for Decimal fields (the exact sum divided in the current decimal context:
28 significant digits by default). ``Min``/``Max`` compare by the field's sort key, the
order indexes and ``order_by`` use. Nulls are skipped by every aggregate but ``Count()``;
over no values ``Count`` is 0 and the others None.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar

from .. import sortable
from ..errors import QueryError, UnknownFieldError
from ..fields.scalar import DecimalField, FloatField, IntField
from ..fields.structured import ArrayField
from . import paths
from .nodes import ID

if TYPE_CHECKING:
    from ..fields.base import Field
    from ..options import ModelOptions

#: what an aggregate, ``distinct()`` or ``item_frequencies()`` gives back: a value of a
#: sortable field (or an array field's element), a count, a sum, an average, or None
Value = int | float | Decimal | str | bool | dt.datetime | dt.date | uuid.UUID | None

#: a context in which Decimal addition is exact (it only grows the precision it needs)
_EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN,
                         traps=[decimal.Inexact, decimal.InvalidOperation])

_NUMERIC = (IntField, FloatField, DecimalField)


@dataclass(frozen=True)
class Aggregate:
    """One aggregate over a field's values (``Count()`` alone: over documents)."""

    field: str | None = None

    #: the name in messages and result keys' defaults
    name: ClassVar[str] = "aggregate"
    #: whether the field must be an int, float or Decimal field
    numeric: ClassVar[bool] = False

    def check(self, model: str, options: ModelOptions) -> None:
        """Refuse, naming model and field, an aggregate its field cannot take."""
        if self.field is None:
            if type(self) is not Count:
                raise QueryError(f"{self.name}() needs a field name")
            return
        if not isinstance(self.field, str):
            raise QueryError(f"{self.name}() takes a field name (got {self.field!r})")
        if self.field == ID:
            if self.numeric:
                raise QueryError(f"{model}: {self.name}() of the id is not defined")
            return
        if options.is_key_name(self.field):  # an int primary key: the ids as numbers
            return
        field = options.fields.get(self.field)
        if field is None or paths.is_path(self.field):  # (not into embedded documents)
            raise UnknownFieldError(model, self.field, paths.stored_names(options))
        if self.numeric and not isinstance(field, _NUMERIC):
            raise QueryError(f"{model}.{self.field}: {self.name}() needs an integer, float or "
                             f"decimal field (got a {field.type_name} field)")
        if not self.numeric and type(self) is not Count and not field.sortable:
            raise QueryError(f"{model}.{self.field}: {self.name}() needs a field with an "
                             f"order (got a {field.type_name} field)")

    def compute(self, options: ModelOptions, documents: Sequence[Mapping[str, Any]]) -> Value:
        raise NotImplementedError

    def _values(self, documents: Sequence[Mapping[str, Any]]) -> list[Any]:
        assert self.field is not None
        return [v for v in (doc.get(self.field) for doc in documents) if v is not None]


@dataclass(frozen=True)
class Count(Aggregate):
    """``Count()``: how many documents; ``Count("field")``: how many have a non-null value."""

    name: ClassVar[str] = "Count"

    def compute(self, options: ModelOptions, documents: Sequence[Mapping[str, Any]]) -> int:
        if self.field is None:
            return len(documents)
        return len(self._values(documents))


@dataclass(frozen=True)
class Sum(Aggregate):
    """The sum of a numeric field's non-null values (None if there are none): an int for an
    int field, an exact Decimal for a Decimal field, a correctly rounded float for a float
    field (an infinity when the exact sum is beyond the largest float)."""

    name: ClassVar[str] = "Sum"
    numeric: ClassVar[bool] = True

    def compute(self, options: ModelOptions, documents: Sequence[Mapping[str, Any]]) -> Value:
        values = self._values(documents)
        if not values:
            return None
        return exact_sum(_field(options, self.field), values)


@dataclass(frozen=True)
class Avg(Aggregate):
    """The mean of a numeric field's non-null values (None if there are none): a float (the
    exact mean, rounded once), or a Decimal for a Decimal field (rounded in the current
    decimal context)."""

    name: ClassVar[str] = "Avg"
    numeric: ClassVar[bool] = True

    def compute(self, options: ModelOptions, documents: Sequence[Mapping[str, Any]]) -> Value:
        values = self._values(documents)
        if not values:
            return None
        field = _field(options, self.field)
        total = exact_sum(field, values)
        if isinstance(field, DecimalField):
            assert isinstance(total, Decimal)
            return total / len(values)  # (rounded once, in the caller's decimal context)
        if isinstance(field, FloatField):  # (the exact mean, rounded once)
            return _to_float(_exact_fraction(values) / len(values))
        return _to_float(Fraction(int(total), len(values)))


@dataclass(frozen=True)
class Min(Aggregate):
    """The smallest non-null value of a field with an order (None if there are none)."""

    name: ClassVar[str] = "Min"

    def compute(self, options: ModelOptions, documents: Sequence[Mapping[str, Any]]) -> Value:
        values = self._values(documents)
        if not values:
            return None
        return min(values, key=sort_key(options, self.field))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Max(Aggregate):
    """The largest non-null value of a field with an order (None if there are none)."""

    name: ClassVar[str] = "Max"

    def compute(self, options: ModelOptions, documents: Sequence[Mapping[str, Any]]) -> Value:
        values = self._values(documents)
        if not values:
            return None
        return max(values, key=sort_key(options, self.field))  # type: ignore[no-any-return]


def _field(options: ModelOptions, name: str | None) -> Field[Any]:
    assert name is not None and name != ID
    key = options.primary_key()
    if key is not None and name == key.name:
        return key
    return options.fields[name]


def exact_sum(field: Field[Any], values: Sequence[Any]) -> int | float | Decimal:
    if isinstance(field, DecimalField):
        return _decimal_sum(values)
    if isinstance(field, FloatField):
        try:
            return math.fsum(values)  # (correctly rounded, unless a partial sum overflows)
        except OverflowError:
            return _to_float(_exact_fraction(values))
    total: int = sum(values)
    return total


def _exact_fraction(values: Sequence[float]) -> Fraction:
    """The exact sum of floats (each one a dyadic rational)."""
    return sum((Fraction(value) for value in values), Fraction(0))


def _to_float(value: Fraction) -> float:
    """``value`` correctly rounded to a float; beyond the largest float, an infinity of its
    sign, as IEEE rounding gives."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _decimal_sum(values: Sequence[Decimal]) -> Decimal:
    total = Decimal(0)
    for value in values:
        total = _EXACT.add(total, value)
    return total


def sort_key(options: ModelOptions, name: str | None) -> Any:
    """The key ordering a field's values (an array field's: its elements') as indexes do."""
    assert name is not None
    if name == ID:
        return sortable.id_key
    key = options.primary_key()
    if key is not None and name == key.name:
        return key.sort_key
    field = options.fields[name]
    if isinstance(field, ArrayField):
        return field.field.sort_key
    return field.sort_key


def check_spread(model: str, options: ModelOptions, name: str, what: str) -> None:
    """Refuse ``distinct``/``item_frequencies`` of a field without an order (a JSON field,
    an array of arrays): their values could not be grouped by key."""
    if not isinstance(name, str):
        raise QueryError(f"{what}() takes a field name (got {name!r})")
    if name == ID or options.is_key_name(name):
        return
    field = options.fields.get(name)
    if field is None or paths.is_path(name):  # (not into embedded documents)
        raise UnknownFieldError(model, name, paths.stored_names(options))
    element = field.field if isinstance(field, ArrayField) else field
    if not element.sortable:
        raise QueryError(f"{model}.{name}: {what}() needs a field whose values have an order "
                         f"(got a {field.type_name} field)")


def _spread(options: ModelOptions, name: str, documents: Iterable[Mapping[str, Any]]
            ) -> Iterable[Any]:
    """The field's values, one per document (None for null), an array's elements each."""
    array = isinstance(options.fields.get(name), ArrayField)
    for doc in documents:
        value = doc.get(name)
        if array and value is not None:
            yield from value
        else:
            yield value


def frequencies(options: ModelOptions, name: str, documents: Iterable[Mapping[str, Any]]
                ) -> dict[Value, int]:
    """Value -> how many times it occurs (an array counts each element; a null array or
    value counts as None), in the field's order with None first. Values equal by sort key
    (``Decimal("0.10")`` and ``Decimal("0.1")``) are one entry, keyed by the first seen."""
    key = sort_key(options, name)
    counts: dict[bytes | None, list[Any]] = {}
    for value in _spread(options, name, documents):
        k = None if value is None else key(value)
        entry = counts.get(k)
        if entry is None:
            counts[k] = [value, 1]
        else:
            entry[1] += 1
    ordered = sorted(counts.items(), key=lambda item: (item[0] is not None, item[0] or b""))
    return {value: n for _, (value, n) in ordered}


def distinct(options: ModelOptions, name: str, documents: Iterable[Mapping[str, Any]]
             ) -> list[Value]:
    """The field's distinct non-null values (an array's distinct elements), in its order."""
    return [value for value in frequencies(options, name, documents) if value is not None]
