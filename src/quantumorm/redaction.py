"""Keeping secrets out of messages and reprs: the one place that redacts them.

A URL's password (``redis://user:secret@host``, ``redis://:secret@host``) and the values of
options whose name says they are secret (``password``, ``sentinel_password``,
``ssl_password``, ``?password=`` in a query string...) are replaced by ``***`` wherever
QuantumORM shows a URL or options: error messages, ``repr()`` of connections, options and
topologies. Redaction is conservative: it works on malformed URLs too (no scheme, a
password holding ``/`` or ``#``), hiding everything between the scheme and the last ``@``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "***"

_SECRET_NAME = re.compile(r"pass|secret|token|credential", re.IGNORECASE)
_SECRET_QUERY = re.compile(r"((?:^|[?&;])[^=&;#]*(?:pass|secret|token)[^=&;#]*=)[^&;#]*",
                           re.IGNORECASE)


def secret_name(name: str) -> bool:
    """Whether an option called ``name`` holds a secret (its value is never shown)."""
    return bool(_SECRET_NAME.search(name))


def redact_url(url: object) -> str:
    """``url`` as text with its password, and any secret query value, replaced by ``***``.

    ``redis://alice:s3cret@host:6379/0`` -> ``redis://alice:***@host:6379/0``;
    ``redis://:s3cret@host`` -> ``redis://:***@host``; userinfo without a ``:`` (which some
    write for a bare password) is hidden whole. Anything but a ``str`` is shown by type.
    """
    if not isinstance(url, str):
        return f"<{type(url).__name__}>"
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    if "@" in rest:
        userinfo, _, tail = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:{MASK}@{tail}" if colon and "/" not in user else f"{MASK}@{tail}"
    return scheme + sep + _SECRET_QUERY.sub(lambda m: m.group(1) + MASK, rest)


def redact_value(name: str, value: Any) -> Any:
    """``value``, or ``***`` when the option ``name`` holds a secret."""
    return MASK if secret_name(name) and value is not None else value


def redacted_repr(obj: object, fields: Iterable[tuple[str, Any]]) -> str:
    """``Class(name=value, ...)`` with URLs and secret values redacted (for ``__repr__``)."""
    parts = []
    for name, value in fields:
        if name == "url":
            shown: Any = redact_url(value)
        elif name == "extra":  # pass-through options: (name, value) pairs
            shown = tuple((key, redact_value(key, item)) for key, item in value)
        else:
            shown = redact_value(name, value)
        parts.append(f"{name}={shown!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"


__all__ = ["MASK", "redact_url", "redact_value", "redacted_repr", "secret_name"]
