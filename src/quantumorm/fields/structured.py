"""Fields with structure: timezone-aware datetimes, free-form JSON, and typed arrays.

Typed as ``Field[datetime]`` (ISO strings accepted too), ``Field[Any]`` (JSON),
``Field[dict[str, Any]]`` (``DictField``, to a type checker) and ``Field[list[E]]``
(``ArrayField(StringField())`` is an ``ArrayField[str]``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .. import jsoncodec, sortable
from ..errors import ConfigurationError, FieldValueError
from ..query.lookups import KIND_LOOKUPS, FieldKind
from .base import MISSING, ORDERED, Field, is_size, plain_checks, show
from .scalar import MAX_INT_DIGITS, ascii_text

if TYPE_CHECKING:
    from ..query.expressions import FieldRef
    from .base import Holder

E = TypeVar("E")

#: How deep a JSON value may nest (each list or dict is one level; ``[[1]]`` is 2 deep).
#: Python's json module encodes and decodes nested containers by recursion, one or more
#: stack frames per level: a value ~900 levels deep is saved but then cannot be read back
#: by code that is already some frames deep (RecursionError in get() or all(), so one such
#: document breaks every query that returns it), and ~990 levels fail the save itself.
#: 100 levels leaves the reader ~900 frames of headroom under Python's default recursion
#: limit of 1000, is far deeper than real documents nest, and stays below the depth limits
#: of the other tools that read the stored JSON (SQLite's JSON functions, Lua's cjson:
#: both 1000).
MAX_JSON_DEPTH = 100

_INT_LIMIT = 10**MAX_INT_DIGITS
_MINUTE = dt.timedelta(minutes=1)
# ISO 8601 / RFC 3339 date-times, parsed by hand rather than with datetime.fromisoformat,
# whose accepted forms differ between Python versions (3.10 refuses "Z", 3.11 takes more).
# Extended (2024-01-31T12:30:00) or basic (20240131T123000) form; "T", "t" or a space
# between date and time; an optional fraction of up to 6 digits (microseconds: more would
# be rounded away silently, so it is refused); the offset "Z", "z", +HH, +HHMM, +HH:MM or
# +HH:MM:SS[.ffffff]; no offset means UTC, like a naive datetime.
_ISO_DATETIME = re.compile(r"""
    (?P<year>\d{4})-?(?P<month>\d{2})-?(?P<day>\d{2})
    (?:[Tt ](?P<hour>\d{2})(?::?(?P<minute>\d{2})(?::?(?P<second>\d{2})
        (?:[.,](?P<fraction>\d{1,6}))?)?)?
      (?:(?P<utc>[Zz])|(?P<sign>[+-])(?P<oh>\d{2})(?::?(?P<om>\d{2})(?::?(?P<os>\d{2})
        (?:\.(?P<of>\d{1,6}))?)?)?)?
    )?\Z""", re.VERBOSE | re.ASCII)


def parse_datetime(text: str) -> dt.datetime:
    """An ISO 8601 date-time string as an aware datetime (see ``_ISO_DATETIME``); raise
    ValueError if it is not one. The same on every supported Python version."""
    match = _ISO_DATETIME.match(text)
    if match is None:
        raise ValueError(f"not an ISO 8601 datetime: {text!r}")
    part = match.groupdict()

    def number(name: str) -> int:
        return int(part[name] or 0)

    tz = dt.timezone.utc
    if part["sign"] is not None:
        offset = dt.timedelta(hours=number("oh"), minutes=number("om"), seconds=number("os"),
                              microseconds=int((part["of"] or "0").ljust(6, "0")))
        tz = dt.timezone(-offset if part["sign"] == "-" else offset)  # |offset| < 24 h
    return dt.datetime(number("year"), number("month"), number("day"), number("hour"),
                       number("minute"), number("second"),
                       int((part["fraction"] or "0").ljust(6, "0")), tzinfo=tz)


class DateTimeField(Field[dt.datetime]):
    """A point in time, kept timezone-aware.

    The rule for naive values: a naive ``datetime`` is taken to be in UTC and gets
    ``tzinfo=UTC``. Aware values keep their UTC offset in storage (ISO 8601), and compare and
    sort by their UTC instant, to the microsecond.

    An offset that is not a whole number of minutes (``timezone(timedelta(seconds=1,
    microseconds=500))``, or a historical local mean time from ``zoneinfo`` such as
    +00:19:32) is converted to UTC: ISO 8601 and RFC 3339 have no such offsets, so other
    readers of the stored text could not parse it, and Python's own ``fromisoformat`` reads
    an offset under one second (``+00:00:00.000500``) as zero, so the value read back was
    off by that much while its index entry was not. The instant is kept exactly; stored
    values and query values get the same conversion, so the value read back, its index
    entry and a query on it all agree.

    ISO 8601 strings are accepted, parsed the same way on every Python version:
    ``2024-01-31T12:30:00Z`` (``Z`` or ``z``), ``+01:00`` style offsets, the basic form
    ``20240131T123000Z``, a date alone (midnight), up to 6 fraction digits; a string without
    an offset is UTC.
    """

    lookups = ORDERED
    type_name = "datetime"

    if TYPE_CHECKING:
        @overload
        def __get__(self, instance: None, owner: type[Any]) -> FieldRef[dt.datetime | str]: ...

        @overload
        def __get__(self, instance: Holder, owner: type[Any]) -> dt.datetime | None: ...

        def __get__(self, instance: Holder | None, owner: type[Any]) -> Any: ...

        def __set__(self, instance: Holder, value: dt.datetime | str | None) -> None: ...

    def quick_clean(self) -> Callable[[Any], Any] | None:
        return _utc_datetime if plain_checks(self, DateTimeField) else None

    def storer(self) -> Callable[[Any], Any] | None:
        if type(self).to_storage is DateTimeField.to_storage:
            return jsoncodec.isoformat  # (value.isoformat(), through orjson if it can)
        return super().storer()

    def clean(self, value: Any) -> dt.datetime:
        if isinstance(value, str):
            try:
                value = parse_datetime(value)
            except ValueError:
                raise FieldValueError(f"must be an ISO 8601 datetime (got {show(value)})"
                                      ) from None
        if not isinstance(value, dt.datetime):
            raise FieldValueError(f"must be a datetime (got {show(value)})")
        offset = value.utcoffset() if value.tzinfo is not None else None
        if offset is None:
            return value.replace(tzinfo=dt.timezone.utc)
        try:
            utc = value.astimezone(dt.timezone.utc)
        except OverflowError:
            raise FieldValueError(f"is out of range in UTC (got {show(value)})") from None
        result: dt.datetime = utc if offset % _MINUTE else value
        return result

    def to_storage(self, value: dt.datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    def from_storage(self, raw: Any) -> dt.datetime | None:
        return None if raw is None else dt.datetime.fromisoformat(raw)

    def loader(self) -> Callable[[Any], Any] | None:
        if type(self).from_storage is DateTimeField.from_storage:
            return dt.datetime.fromisoformat
        return super().loader()

    def sort_key(self, value: dt.datetime) -> bytes:
        return sortable.encode_datetime(value)


def _utc_datetime(value: Any) -> Any:
    """``DateTimeField.quick_clean``: a datetime in UTC is its own cleaned value, a naive
    one gets UTC (as clean() does them); any other offset is left to clean()."""
    if type(value) is dt.datetime:
        zone = value.tzinfo
        if zone is dt.timezone.utc:
            return value
        if zone is None:
            return value.replace(tzinfo=dt.timezone.utc)
    return MISSING


class JSONField(Field[Any]):
    """Any JSON value (dict, list, string, finite number, bool); stored as is.

    Refused with a ValidationError naming the field: values nested deeper than
    ``MAX_JSON_DEPTH`` (100) levels, a list or dict that contains itself, NaN and infinities,
    ints of more than 4300 digits, text with lone surrogates (in values or keys), non-string
    keys, and anything that is not a JSON type (tuples, sets, objects). ``DictField`` is the
    same field; in ``ArrayField(JSONField())`` each element gets these checks.

    Not indexable nor sortable; ``exact``/``ne`` compare whole values.
    """

    lookups = KIND_LOOKUPS[FieldKind.WHOLE]
    indexable = False
    sortable = False
    type_name = "json"

    def clean(self, value: Any) -> Any:
        _check_json(value)
        return value

    # The document's value and the stored form it is compared with at save (and the
    # stored form of a loaded document) are copies, never one object: a dict or list
    # changed in place would otherwise equal its "stored" self, and the change never be
    # saved.

    def to_storage(self, value: Any) -> Any:
        return copy_json(value)

    def from_storage(self, raw: Any) -> Any:
        return copy_json(raw)

    def loader(self) -> Callable[[Any], Any] | None:
        if type(self).from_storage is JSONField.from_storage:
            return copy_json
        return super().loader()

    def sort_key(self, value: Any) -> bytes:
        # Equality only: canonical JSON text, so {"a": 1, "b": 2} == {"b": 2, "a": 1}.
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return sortable.encode_str(canonical)


if TYPE_CHECKING:
    class DictField(JSONField):
        """A JSON object: at run time the same class as :class:`JSONField` (which takes any
        JSON value), typed for the usual case of a dict."""

        @overload
        def __get__(self, instance: None, owner: type[Any]) -> FieldRef[dict[str, Any]]: ...

        @overload
        def __get__(self, instance: Holder, owner: type[Any]) -> dict[str, Any] | None: ...

        def __get__(self, instance: Holder | None, owner: type[Any]) -> Any: ...

        def __set__(self, instance: Holder, value: dict[str, Any] | None) -> None: ...
else:
    DictField = JSONField


class _Refused(Exception):
    """A value _check_json refuses; ``path`` is filled in while it propagates up, so the
    path of a nested value is only built when there is something to report."""

    def __init__(self, message: str) -> None:  # "{where}" stands for the value's path
        self.message = message
        self.path: list[str] = []  # innermost step first

    def text(self) -> str:
        where = "value" + "".join(reversed(self.path))
        if len(where) > 80:
            where = f"{where[:60]}...{where[-15:]}"
        return self.message.replace("{where}", where)


def _check_json(value: Any) -> None:
    """Only values that read back as they were written, and that every encoder and reader
    takes: str keys, no tuples or sets, finite floats, ints Python can write as text, text
    that is valid Unicode, at most ``MAX_JSON_DEPTH`` levels and no container inside itself.

    After this, encoding the value cannot fail (JSONField does not encode it to find out).
    """
    try:
        _walk(value, 0, set())
    except _Refused as refused:
        raise FieldValueError(refused.text()) from None


def _walk(value: Any, depth: int, open_ids: set[int]) -> None:
    # hot path: one call per value; no strings are built unless something is refused
    kind = type(value)
    if kind is str or isinstance(value, str):
        if not value.isascii() and not _is_unicode(value):
            raise _Refused("{where} is not valid Unicode (a lone surrogate has no UTF-8 form; "
                           f"got {show(value)})")
    elif value is None or kind is bool or kind is float and math.isfinite(value):
        return
    elif isinstance(value, int):
        if (value >= _INT_LIMIT or value <= -_INT_LIMIT) and not isinstance(value, bool):
            raise _Refused("{where} is an integer of more than "
                           f"{MAX_INT_DIGITS} digits (Python cannot write it as JSON text)")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _Refused("{where} must be a finite number "
                           f"(got {value!r}; JSON has no NaN or infinity)")
    elif isinstance(value, (dict, list)):
        if id(value) in open_ids:
            raise _Refused("{where} contains itself (a list or dict inside itself has no "
                           "JSON form)")
        if depth >= MAX_JSON_DEPTH:
            raise FieldValueError(f"is nested deeper than {MAX_JSON_DEPTH} levels")
        open_ids.add(id(value))
        if isinstance(value, dict):
            for key, item in value.items():
                if type(key) is not str and not isinstance(key, str):
                    raise _Refused(f"{{where}} has a non-string key {show(key)} (JSON keys "
                                   "are strings; it would read back changed)")
                if not key.isascii() and not _is_unicode(key):
                    raise _Refused(f"{{where}} has a key that is not valid Unicode (a lone "
                                   f"surrogate has no UTF-8 form; got {show(key)})")
                try:
                    _walk(item, depth + 1, open_ids)
                except _Refused as refused:
                    refused.path.append(f"[{key!r}]")
                    raise
        else:
            for position, item in enumerate(value):
                try:
                    _walk(item, depth + 1, open_ids)
                except _Refused as refused:
                    refused.path.append(f"[{position}]")
                    raise
        open_ids.discard(id(value))
    else:
        raise _Refused(f"{{where}} is not a JSON value (got {show(value)})")


def copy_json(value: Any) -> Any:
    """A copy of a JSON value: its dicts and lists are new, its scalars shared."""
    kind = type(value)
    if kind is dict:
        return {key: copy_json(item) for key, item in value.items()}
    if kind is list:
        return [copy_json(item) for item in value]
    return value


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ArrayField(Field[list[E]]):
    """A list of values of one field type: ``ArrayField(StringField(max_length=20))``.

    ``contains`` tests membership of one element and is served by the field's index (one
    entry per distinct element). ``exact``/``ne`` compare whole lists. Elements may not be
    ``None``.

    Without a field (``ListField()``), the elements are any JSON values (each checked as a
    :class:`JSONField` value); ``contains`` then matches an element equal to the value as JSON
    (``1`` and ``1.0``, or ``1`` and ``True``, are different elements). Such a list cannot be
    indexed: its ``contains`` is answered by a scan.
    """

    lookups = KIND_LOOKUPS[FieldKind.ARRAY]
    sortable = False

    @overload
    def __init__(self: ArrayField[Any], field: None = None, *, min_items: int | None = None,
                 max_items: int | None = None, **options: Any) -> None: ...

    @overload
    def __init__(self, field: Field[E] | type[Field[E]], *, min_items: int | None = None,
                 max_items: int | None = None, **options: Any) -> None: ...

    def __init__(self, field: Field[E] | type[Field[E]] | None = None, *,
                 min_items: int | None = None, max_items: int | None = None,
                 **options: Any) -> None:
        if field is None:  # untyped: ``ListField()`` holds any JSON values
            field = JSONField()
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
        self.field: Field[E] = field
        self.min_items, self.max_items = min_items, max_items
        self.type_name = f"array of {field.type_name}"
        super().__init__(**options)

    def clean(self, value: Any) -> list[Any]:
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
            raise FieldValueError(f"must be a list (got {show(value)})")
        items = []
        for position, item in enumerate(value):
            if item is None:
                raise FieldValueError(f"item {position} must not be None")
            cleaned, errors = self.field.validate(item)
            if errors:
                raise FieldValueError(f"item {position} {errors[0]}")
            items.append(cleaned)
        return items

    def quick_clean(self) -> Callable[[Any], Any] | None:
        element = self.field.quick_clean()
        if (element is None or self.min_items is not None or self.max_items is not None
                or not plain_checks(self, ArrayField)):
            return None
        if element is ascii_text:
            return _ascii_texts

        def quick(value: Any) -> Any:  # (a new list, as clean() makes one)
            if type(value) is not list:
                return MISSING
            items = []
            for item in value:
                cleaned = element(item)
                if cleaned is MISSING:  # (None too)
                    return MISSING
                items.append(cleaned)
            return items
        return quick

    def storer(self) -> Callable[[Any], Any] | None:
        if type(self).to_storage is ArrayField.to_storage and self.field.storer() is None:
            return list  # (a list of its own: the stored form must not share the value's)
        return super().storer()

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

    def loader(self) -> Callable[[Any], Any] | None:
        if type(self).from_storage is not ArrayField.from_storage:
            return super().loader()
        element = self.field.loader()
        if element is None:
            return list  # a list of its own: appending to it must not change the stored one

        def load(raw: Any) -> list[Any]:
            return [None if v is None else element(v) for v in raw]
        return load

    def sort_key(self, value: list[Any]) -> bytes:
        # Whole-list equality: the element keys in order (no terminator ambiguity, each ends
        # with \x00 and escapes its own \x00 bytes).
        return b"\x40" + b"".join(self.field.sort_key(v) for v in value) + sortable.END

    def index_keys(self, value: list[Any] | None) -> list[bytes]:
        if value is None:
            return [sortable.NULL]
        return sorted({self.field.sort_key(v) for v in value})


def _ascii_texts(value: Any) -> Any:
    """``ArrayField(StringField()).quick_clean``: a list of ASCII strings, as a new list."""
    # (two C loops, not one of Python: every item a str itself, then their text ASCII,
    # which a join of strs knows as it makes it)
    if type(value) is not list or not _JUST_STR.issuperset(map(type, value)) or not (
            "".join(value).isascii()):
        return MISSING
    return value.copy()


_JUST_STR = frozenset({str})


ListField = ArrayField
