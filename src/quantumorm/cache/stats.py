"""Per-model cache counters, and the snapshot ``Model.objects.cache_stats()`` returns.

Counters live on the model's options (one set per model class, in this process) and are
updated under a lock: readers and writers of one model run on many threads.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, fields
from typing import Any

from ..options import ModelOptions


@dataclass(frozen=True)
class CacheStats:
    """What the cache did for one model in this process since it started (or since
    :func:`reset`). Documents: ``hits`` (entries and cached absences served), ``misses``
    (ids loaded from the primary after the cache had no entry), ``fills`` (entries stored
    by readers), ``refused_fills`` (fills refused because a write began or finished after
    the reader's lease: what would have been stale), ``waits`` (rounds a reader waited for
    another reader's load), ``bypassed`` (ids read from the primary without the cache:
    ``cached(False)``, the cache unreachable, or a write in progress), ``invalidations``
    (slots a write made tombstones), ``write_through`` (entries a write stored),
    ``errors`` (cache operations that failed; reads and writes went on without it).
    Queries: ``query_hits``, ``query_misses``, ``query_fills``, ``query_refused``."""

    hits: int = 0
    misses: int = 0
    fills: int = 0
    refused_fills: int = 0
    waits: int = 0
    bypassed: int = 0
    invalidations: int = 0
    write_through: int = 0
    errors: int = 0
    query_hits: int = 0
    query_misses: int = 0
    query_fills: int = 0
    query_refused: int = 0

    @property
    def hit_ratio(self) -> float:
        """Hits over hits and misses (0.0 before the first read)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


_NAMES = tuple(f.name for f in fields(CacheStats))


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(_NAMES, 0)

    def add(self, **counts: int) -> None:
        with self._lock:
            values = self._values
            for name, n in counts.items():
                values[name] += n

    def snapshot(self) -> CacheStats:
        with self._lock:
            return CacheStats(**self._values)

    def reset(self) -> None:
        with self._lock:
            self._values = dict.fromkeys(_NAMES, 0)


#: every model's counters, for metrics, by id of the options (held weakly: a model made at
#: run time goes with its counters; the options, a dataclass holding dicts, are unhashable)
_every: dict[int, tuple[weakref.ref[ModelOptions], Counters]] = {}


def counters(options: ModelOptions) -> Counters:
    """The model's counters (made on first use; kept on its options, like the registry's
    per-model checks, so a model made at run time takes them with it)."""
    found: Any = options.__dict__.get("_cache_counters")
    if found is None:
        with _every_lock:
            found = options.__dict__.setdefault("_cache_counters", Counters())
            _every[id(options)] = (weakref.ref(options), found)
    assert isinstance(found, Counters)
    return found


_every_lock = threading.Lock()


def every() -> list[tuple[ModelOptions, CacheStats]]:
    """Each model's cache statistics, for the models whose counters exist."""
    out = []
    with _every_lock:
        for key, (ref, counter) in list(_every.items()):
            options = ref()
            if options is None or options.__dict__.get("_cache_counters") is not counter:
                del _every[key]  # (gone: its id may be another model's now)
            else:
                out.append((options, counter))
    return [(options, counter.snapshot()) for options, counter in out]
