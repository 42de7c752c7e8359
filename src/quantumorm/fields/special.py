"""Fields with a narrower meaning than their storage: calendar dates, enumerations, e-mail
addresses and URLs.

``DateField`` stores an ISO date (``"2024-01-31"``) and sorts as a date; ``EnumField`` stores
its members' values and orders by them when they are all strings or all numbers;
``EmailField`` and ``URLField`` are strings with a deliberately simple check (see each), so
that no valid address is refused.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload
from urllib.parse import urlsplit

from .. import sortable
from ..errors import ConfigurationError, FieldValueError
from .base import EQUALITY, ORDERED, Field, show
from .scalar import StringField

if TYPE_CHECKING:
    from ..query.expressions import FieldRef
    from .base import Holder

En = TypeVar("En", bound=enum.Enum)

# the one ISO 8601 date form every Python version's date.fromisoformat reads alike
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})\Z", re.ASCII)


class DateField(Field[dt.date]):
    """A calendar date (``datetime.date``), stored as its ISO text ``YYYY-MM-DD``; ordered.

    Accepts a ``date`` or an ISO ``YYYY-MM-DD`` string. A ``datetime`` is refused rather than
    cut to its date (the time would be lost silently): pass ``value.date()``.
    """

    lookups = ORDERED
    type_name = "date"

    if TYPE_CHECKING:
        @overload
        def __get__(self, instance: None, owner: type[Any]) -> FieldRef[dt.date | str]: ...

        @overload
        def __get__(self, instance: Holder, owner: type[Any]) -> dt.date | None: ...

        def __get__(self, instance: Holder | None, owner: type[Any]) -> Any: ...

        def __set__(self, instance: Holder, value: dt.date | str | None) -> None: ...

    def clean(self, value: Any) -> dt.date:
        if isinstance(value, str):
            match = _ISO_DATE.match(value)
            try:
                if match is None:
                    raise ValueError(value)
                return dt.date(*map(int, match.groups()))
            except ValueError:
                raise FieldValueError(f"must be an ISO date YYYY-MM-DD (got {show(value)})"
                                      ) from None
        if isinstance(value, dt.datetime):
            raise FieldValueError(f"must be a date, not a datetime (got {show(value)}; "
                                  "pass its .date())")
        if not isinstance(value, dt.date):
            raise FieldValueError(f"must be a date (got {show(value)})")
        return value

    def to_storage(self, value: dt.date | None) -> str | None:
        return None if value is None else value.isoformat()

    def from_storage(self, raw: Any) -> dt.date | None:
        return None if raw is None else dt.date.fromisoformat(raw)

    def loader(self) -> Callable[[Any], Any] | None:
        if type(self).from_storage is DateField.from_storage:
            return dt.date.fromisoformat
        return super().loader()

    def sort_key(self, value: dt.date) -> bytes:
        return sortable.encode_date(value)


class EnumField(Field[En]):
    """A member of an ``enum.Enum``, stored as its value: ``EnumField(Status)``.

    The values must be JSON scalars (strings, finite numbers, booleans). When they are all
    strings or all numbers, the field is ordered by value (ranges, ``order_by``); otherwise
    (booleans, or a mix) it takes equality lookups only. Documents and queries accept a
    member or its value (``Status.ACTIVE`` or ``"active"``); a loaded document holds members.
    """

    def __init__(self, enum_type: type[En], **options: Any) -> None:
        if not (isinstance(enum_type, type) and issubclass(enum_type, enum.Enum)):
            raise ConfigurationError(f"EnumField needs an Enum class (got {enum_type!r})")
        values = [member.value for member in enum_type]
        if not values:
            raise ConfigurationError(f"EnumField: {enum_type.__name__} has no members")
        for value in values:
            if not (isinstance(value, (str, bool, int))
                    or isinstance(value, float) and math.isfinite(value)):
                raise ConfigurationError(
                    f"EnumField: {enum_type.__name__} values must be strings, finite numbers "
                    f"or booleans (got {value!r})")
        self.enum = enum_type
        self._texts = all(isinstance(v, str) for v in values)
        self._numbers = all(not isinstance(v, (bool, str)) for v in values)
        # per field, not per class: the enum's values decide whether it is ordered
        if not (self._texts or self._numbers):
            self.lookups = EQUALITY  # type: ignore[misc]
            self.sortable = False
        else:
            self.lookups = ORDERED  # type: ignore[misc]
        self.type_name = f"enum {enum_type.__name__}"
        super().__init__(**options)

    def clean(self, value: Any) -> En:
        if isinstance(value, self.enum):
            return value
        # a bool is a number to Python (True == 1): only a boolean-valued enum takes one
        if isinstance(value, bool) and not any(isinstance(m.value, bool) for m in self.enum):
            raise FieldValueError(f"must be a {self.enum.__name__} (got {show(value)})")
        try:
            member = self.enum(value)
        except (ValueError, TypeError):
            allowed = ", ".join(repr(m.value) for m in self.enum)
            raise FieldValueError(f"must be a {self.enum.__name__} value: one of {allowed} "
                                  f"(got {show(value)})") from None
        return member

    def to_storage(self, value: En | None) -> Any:
        return None if value is None else value.value

    def from_storage(self, raw: Any) -> En | None:
        return None if raw is None else self.enum(raw)

    def loader(self) -> Callable[[Any], Any] | None:
        if type(self).from_storage is EnumField.from_storage:
            return self.enum
        return super().loader()

    def sort_key(self, value: En) -> bytes:
        raw = value.value
        if isinstance(raw, str):
            return sortable.encode_str(raw)
        if isinstance(raw, bool):
            return sortable.encode_bool(raw)
        return sortable.encode_number(raw)


class EmailField(StringField):
    """An e-mail address, checked by one simple rule rather than a pattern that would refuse
    valid addresses: text, an ``@``, then a domain, where the text before the last ``@`` is
    not empty, and the domain is not empty and has no whitespace. No surrounding whitespace.
    Kept as written (no case folding: the local part may be case-sensitive)."""

    type_name = "email"

    def _check(self, value: str) -> str:
        value = super()._check(value)
        local, at, domain = value.rpartition("@")
        if (not at or not local or not domain or value != value.strip()
                or any(c.isspace() for c in domain)):
            raise FieldValueError(f"must be an e-mail address, text@domain (got {show(value)})")
        return value


class URLField(StringField):
    """An absolute URL: a scheme from ``schemes`` (default ``http`` and ``https``, compared
    without case), ``://`` and a non-empty host part, and no whitespace anywhere (a URL
    carries spaces as ``%20``). Kept as written."""

    type_name = "url"

    def __init__(self, *, schemes: tuple[str, ...] | list[str] = ("http", "https"),
                 **options: Any) -> None:
        if isinstance(schemes, str) or not all(isinstance(s, str) and s for s in schemes) \
                or not schemes:
            raise ConfigurationError(f"schemes must be a list of scheme names (got {schemes!r})")
        self.schemes = tuple(s.lower() for s in schemes)
        super().__init__(**options)

    def _check(self, value: str) -> str:
        value = super()._check(value)
        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None
        if (parts is None or parts.scheme.lower() not in self.schemes or not parts.netloc
                or not value.lower().startswith(parts.scheme.lower() + "://")
                or any(c.isspace() for c in value)):
            schemes = ", ".join(self.schemes)
            raise FieldValueError(f"must be a URL with a host and one of the schemes {schemes} "
                                  f"(got {show(value)})")
        return value
