"""The ``Meta.cache`` option, checked at class creation.

::

    class Meta:
        backend = "sqlite"
        cache = {"connection": "cache", "ttl": 300, "mode": "aside"}

Keys: ``connection`` (the name of a Redis connection, required), ``ttl`` (seconds a cached
document lives, required), ``mode`` (``"aside"``, the default: writes invalidate; or
``"write-through"``: writes put the new document in the cache), ``negative_ttl`` (seconds a
"does not exist" answer is cached; default None: never), ``partitions`` (cache keys are
spread over this many Redis Cluster hash tags; default 1), ``lease_ms`` (how long a reader
that missed holds the right to fill, and how long other readers of that id wait for it;
default 1000), ``write_guard_ms`` (how long a write in progress keeps readers of its ids
away from the cache if the writer dies; default 10000).

This module imports nothing from the rest of the package, so :mod:`quantumorm.options` can
import it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError

#: most cache partitions (hash tags) a model may spread its entries over
MAX_PARTITIONS = 1024


class CacheMode(enum.Enum):
    """What a write through the ORM does to the cache after the primary committed."""

    ASIDE = "aside"  # the entry is invalidated; the next read fills it
    WRITE_THROUGH = "write-through"  # the entry becomes the written document


@dataclass(frozen=True)
class CacheSettings:
    connection: str
    ttl: float
    mode: CacheMode = CacheMode.ASIDE
    negative_ttl: float | None = None
    partitions: int = 1
    lease_ms: int = 1000
    write_guard_ms: int = 10_000

    @property
    def ttl_ms(self) -> int:
        return max(1, round(self.ttl * 1000))

    @property
    def negative_ttl_ms(self) -> int | None:
        return None if self.negative_ttl is None else max(1, round(self.negative_ttl * 1000))


_KNOWN = ("connection", "ttl", "mode", "negative_ttl", "partitions", "lease_ms",
          "write_guard_ms")


def _seconds(where: str, name: str, value: Any, optional: bool) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(f"{where}: cache {name!r} must be a positive number of "
                                 f"seconds{' or None' if optional else ''} (got {value!r})")
    return float(value)


def _count(where: str, name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(f"{where}: cache {name!r} must be an int in {low}..{high} "
                                 f"(got {value!r})")
    return value


def parse_cache(where: str, raw: Any) -> CacheSettings | None:
    """``Meta.cache`` as settings (None when the model is not cached); every mistake is a
    ConfigurationError naming the model (``where``) and the key."""
    if raw is None:
        return None
    if isinstance(raw, CacheSettings):
        return raw
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: cache must be a dict such as {{'connection': "
                                 f"'cache', 'ttl': 300}} (got {raw!r})")
    unknown = set(raw) - set(_KNOWN)
    if unknown:
        raise ConfigurationError(f"{where}: unknown cache option(s) "
                                 f"{', '.join(sorted(map(str, unknown)))} "
                                 f"(known: {', '.join(_KNOWN)})")
    connection = raw.get("connection")
    if not isinstance(connection, str) or not connection:
        raise ConfigurationError(f"{where}: cache 'connection' must name a Redis connection "
                                 f"(got {connection!r})")
    if "ttl" not in raw:
        raise ConfigurationError(f"{where}: cache 'ttl' is required (seconds an entry lives: "
                                 "the bound on staleness when a writer outside the ORM "
                                 "changes the primary)")
    ttl = _seconds(where, "ttl", raw["ttl"], optional=False)
    assert ttl is not None
    mode_name = raw.get("mode", CacheMode.ASIDE.value)
    try:
        mode = mode_name if isinstance(mode_name, CacheMode) else CacheMode(mode_name)
    except ValueError:
        raise ConfigurationError(
            f"{where}: cache 'mode' must be one of "
            f"{', '.join(repr(m.value) for m in CacheMode)} (got {mode_name!r})") from None
    return CacheSettings(
        connection=connection,
        ttl=ttl,
        mode=mode,
        negative_ttl=_seconds(where, "negative_ttl", raw.get("negative_ttl"), optional=True),
        partitions=_count(where, "partitions", raw.get("partitions", 1), 1, MAX_PARTITIONS),
        lease_ms=_count(where, "lease_ms", raw.get("lease_ms", 1000), 1, 600_000),
        write_guard_ms=_count(where, "write_guard_ms", raw.get("write_guard_ms", 10_000), 1,
                              3_600_000),
    )
