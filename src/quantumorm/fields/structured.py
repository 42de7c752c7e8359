"""Fields with structure: timezone-aware datetimes, free-form JSON, and typed arrays."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from .. import sortable
from ..errors import ConfigurationError
from ..query.lookups import Lookup
from .base import ORDERED, Field, FieldValueError, is_size


class DateTimeField(Field):
    """A point in time, kept timezone-aware.

    The rule for naive values: a naive ``datetime`` is taken to be in UTC and gets
    ``tzinfo=UTC``. Aware values keep their UTC offset in storage (ISO 8601), and compare and
    sort by their UTC instant, to the microsecond. ISO 8601 strings are accepted.
    """

    lookups = ORDERED
    type_name = "datetime"

    def clean(self, value: Any) -> dt.datetime:
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value)
            except ValueError:
                raise FieldValueError(f"must be an ISO 8601 datetime (got {value!r})") from None
        if not isinstance(value, dt.datetime):
            raise FieldValueError(f"must be a datetime (got {value!r})")
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        try:
            value.astimezone(dt.timezone.utc)
        except OverflowError:
            raise FieldValueError(f"is out of range in UTC (got {value!r})") from None
        result: dt.datetime = value
        return result

    def to_storage(self, value: dt.datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    def from_storage(self, raw: Any) -> dt.datetime | None:
        return None if raw is None else dt.datetime.fromisoformat(raw)

    def sort_key(self, value: dt.datetime) -> bytes:
        return sortable.encode_datetime(value)


class JSONField(Field):
    """Any JSON value (dict, list, string, finite number, bool); stored as is.

    Not indexable nor sortable; ``exact``/``ne`` compare whole values.
    """

    lookups = frozenset({Lookup.EXACT, Lookup.NE, Lookup.ISNULL})
    indexable = False
    sortable = False
    type_name = "json"

    def clean(self, value: Any) -> Any:
        _check_json(value, "value")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise FieldValueError(f"must be JSON-serialisable ({exc}) (got {value!r})") from None
        return value

    def sort_key(self, value: Any) -> bytes:
        # Equality only: canonical JSON text, so {"a": 1, "b": 2} == {"b": 2, "a": 1}.
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return sortable.encode_str(canonical)


DictField = JSONField


def _check_json(value: Any, where: str) -> None:
    """Only values that read back as they were written: str keys, no tuples or sets."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise FieldValueError(f"{where} has a non-string key {key!r} (JSON keys are "
                                      "strings; it would read back changed)")
            _check_json(item, f"{where}[{key!r}]")
    elif isinstance(value, list):
        for position, item in enumerate(value):
            _check_json(item, f"{where}[{position}]")
    elif not (value is None or isinstance(value, (str, bool, int, float))):
        raise FieldValueError(f"{where} is not a JSON value (got {value!r})")


class ArrayField(Field):
    """A list of values of one field type: ``ArrayField(StringField(max_length=20))``.

    ``contains`` tests membership of one element and is served by the field's index (one
    entry per distinct element). ``exact``/``ne`` compare whole lists. Elements may not be
    ``None``.
    """

    lookups = frozenset({Lookup.EXACT, Lookup.NE, Lookup.CONTAINS, Lookup.ISNULL})
    sortable = False

    def __init__(self, field: Field, *, min_items: int | None = None,
                 max_items: int | None = None, **options: Any) -> None:
        if isinstance(field, type) and issubclass(field, Field):
            field = field()
        if not isinstance(field, Field):
            raise ConfigurationError(f"ArrayField needs a field instance (got {field!r})")
        # one index entry per element needs elements that have one sort key each
        self.indexable = field.indexable and not isinstance(field, ArrayField)
        if not self.indexable and (options.get("indexed") or options.get("unique")):
            raise ConfigurationError("an indexed ArrayField needs scalar elements")
        for name, bound in (("min_items", min_items), ("max_items", max_items)):
            if bound is not None and not is_size(bound):
                raise ConfigurationError(f"{name} must be a non-negative int (got {bound!r})")
        if min_items is not None and max_items is not None and min_items > max_items:
            raise ConfigurationError(f"min_items {min_items} > max_items {max_items}")
        self.field = field
        self.min_items, self.max_items = min_items, max_items
        self.type_name = f"array of {field.type_name}"
        super().__init__(**options)

    def clean(self, value: Any) -> list[Any]:
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
            raise FieldValueError(f"must be a list (got {value!r})")
        items = []
        for position, item in enumerate(value):
            if item is None:
                raise FieldValueError(f"item {position} must not be None")
            cleaned, errors = self.field.validate(item)
            if errors:
                raise FieldValueError(f"item {position} {errors[0]}")
            items.append(cleaned)
        return items

    def _check(self, value: list[Any]) -> list[Any]:
        if self.min_items is not None and len(value) < self.min_items:
            raise FieldValueError(f"must have at least {self.min_items} items (got {len(value)})")
        if self.max_items is not None and len(value) > self.max_items:
            raise FieldValueError(f"must have at most {self.max_items} items (got {len(value)})")
        return value

    def clean_element(self, value: Any) -> Any:
        cleaned, errors = self.field.validate(value)
        if errors or value is None:
            raise FieldValueError(errors[0] if errors else "element must not be None")
        return cleaned

    def to_storage(self, value: list[Any] | None) -> list[Any] | None:
        return None if value is None else [self.field.to_storage(v) for v in value]

    def from_storage(self, raw: Any) -> list[Any] | None:
        return None if raw is None else [self.field.from_storage(v) for v in raw]

    def sort_key(self, value: list[Any]) -> bytes:
        # Whole-list equality: the element keys in order (no terminator ambiguity, each ends
        # with \x00 and escapes its own \x00 bytes).
        return b"\x40" + b"".join(self.field.sort_key(v) for v in value) + sortable.END

    def index_keys(self, value: list[Any] | None) -> list[bytes]:
        if value is None:
            return [sortable.NULL]
        return sorted({self.field.sort_key(v) for v in value})


ListField = ArrayField
