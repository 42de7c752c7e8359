"""Metrics: one in-process source, read three ways (this API, Prometheus, OpenTelemetry).

Off by default, and then free: nothing is installed, and running an operation costs one
attribute check (:mod:`quantumorm.engine.observe`). :func:`enable` counts every ORM
operation (``save``, ``get``, ``all``, ``count``... of every model, sync and async) until
:func:`disable`; :func:`snapshot` returns what was counted, as frozen records
(:mod:`.records`) with ``to_dict()``; :func:`reset` starts again from zero.

What a snapshot holds, and the Prometheus names it is exported under
(:func:`quantumorm.metrics.prometheus.register`; ``quantumorm[prometheus]``):

=====================================================  =========  ============================
Prometheus name                                        type       labels
=====================================================  =========  ============================
``quantumorm_operations_total``                        counter    model, operation, backend
``quantumorm_operation_errors_total``                  counter    model, operation, backend,
                                                                  type
``quantumorm_operation_duration_seconds``              histogram  model, operation, backend
``quantumorm_operation_round_trips_total``             counter    model, operation, backend
``quantumorm_retries_total``                           counter    reason
``quantumorm_script_reloads_total``                    counter    (none)
``quantumorm_slot_relearns_total``                     counter    (none)
``quantumorm_pool_connections``                        gauge      connection, backend, pool,
                                                                  state (in_use, idle)
``quantumorm_pool_max_connections``                    gauge      connection, backend, pool
``quantumorm_pool_waiting``                            gauge      connection, backend, pool
``quantumorm_pool_waits_total``                        counter    connection, backend, pool
``quantumorm_cache_requests_total``                    counter    model, kind (document,
                                                                  query), result (hit, miss)
``quantumorm_cache_fills_total``                       counter    model, kind, result
                                                                  (stored, refused)
``quantumorm_cache_bypassed_total``                    counter    model
``quantumorm_cache_invalidations_total``               counter    model
``quantumorm_cache_errors_total``                      counter    model
=====================================================  =========  ============================

An operation that raised counts in ``operations_total`` and, by exception class name, in
``operation_errors_total``. ``round_trips`` are the plans an operation sent, plus one per
retry and two per script reload. Retries are counted by the error that caused them
(``ConnectionError``, ``TryAgainError``, ``SerializationFailure``...); a Sentinel or cluster
failover shows as retries and slot relearns. Pools and cache counters are read when a
snapshot is taken (the cache counts even while metrics are off).

On demand, never in a snapshot (they ask the server): :func:`stream_stats` (each change
stream's length and each consumer group's lag) and :func:`memory_usage` (sampled
``MEMORY USAGE``), with ``_sync`` twins.

Traces: :func:`quantumorm.metrics.otel.instrument` (``quantumorm[otel]``): a span per
operation. The slow-operation log: :func:`slow_log` or ``QUANTUMORM_SLOW_MS`` (read at
import): a WARNING on logger ``quantumorm.slow`` for each operation that took at least
that long, with its plans summarised (names of commands, scripts and SQL, no values).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from ..cache.stats import CacheStats
from ..cache.stats import every as every_cache
from ..engine.drive import OpFactory
from ..errors import ConfigurationError, UnsupportedOperation
from ..registry import connections
from .records import (
    BUCKETS,
    GroupLag,
    Histogram,
    MemoryUsage,
    MetricsSnapshot,
    OperationStats,
    PoolSnapshot,
    StreamStats,
)
from .watch import SLOW_LOGGER, WATCH, sync

#: the slow-operation threshold in milliseconds, read when this package is imported
SLOW_MS_VARIABLE = "QUANTUMORM_SLOW_MS"


def enable() -> None:
    """Count every operation from now on (what was counted before is kept)."""
    WATCH.recording = True
    sync()


def disable() -> None:
    """Stop counting (the counts are kept until :func:`reset`)."""
    WATCH.recording = False
    sync()


def enabled() -> bool:
    return WATCH.recording


def reset() -> None:
    """Forget every operation counted, retry, reload and relearn (not the cache's own
    counters: ``Model.objects.cache_stats()`` and its reset own those)."""
    WATCH.recorder.reset()


def snapshot() -> MetricsSnapshot:
    """What was counted, the pools of every registered connection now, and each cached
    model's cache counters."""
    operations, retries, reloads, relearns = WATCH.recorder.read()
    return MetricsSnapshot(WATCH.recording, operations, retries, reloads, relearns,
                           pool_snapshots(), cache_snapshots())


def pool_snapshots() -> tuple[PoolSnapshot, ...]:
    rows = []
    for connection in connections():
        reader = getattr(connection.store, "pool_stats", None)
        for row in reader() if reader is not None else ():
            rows.append(PoolSnapshot(connection.name, connection.kind, row.pool, row.size,
                                     row.open, row.in_use, row.idle, row.waiting, row.waits))
    return tuple(rows)


def cache_snapshots() -> dict[str, CacheStats]:
    """Each model's cache counters, by model name (models whose cache was used)."""
    return {options.model_name: stats for options, stats in every_cache()}


def slow_log(threshold_ms: float | None) -> None:
    """Log operations that take at least ``threshold_ms`` milliseconds (a WARNING on logger
    ``quantumorm.slow``); None stops it. Works whether metrics are on or off; while it is
    set, every operation is timed."""
    if threshold_ms is not None and (isinstance(threshold_ms, bool) or not isinstance(
            threshold_ms, (int, float)) or not threshold_ms >= 0):
        raise ConfigurationError(
            f"slow_log threshold_ms must be a number >= 0 or None (got {threshold_ms!r})")
    WATCH.slow = None if threshold_ms is None else threshold_ms / 1000
    sync()


def slow_threshold_ms() -> float | None:
    return None if WATCH.slow is None else WATCH.slow * 1000


# -- on demand: change streams and memory -----------------------------------------------------


def _usage(model: type[Any], name: str, *args: Any) -> OpFactory[Any]:
    options = model._meta

    def build(backend: Any) -> Any:
        method = getattr(backend, name, None)
        if method is None:
            raise UnsupportedOperation(backend.name, name)
        return method(options, *args)
    return build


def _streams(rows: list[tuple[str, int, list[dict[str, Any]]]]) -> list[StreamStats]:
    return [StreamStats(partition, length, tuple(
        GroupLag(g["name"], g["consumers"], g["pending"], g["lag"]) for g in groups))
        for partition, (_key, length, groups) in enumerate(rows)]


async def stream_stats(model: type[Any]) -> list[StreamStats]:
    """Each partition's change stream of ``model``: its length and every consumer group's
    pending entries and lag (Redis; two round trips)."""
    rows = await model._connection().arun(_usage(model, "stream_stats"), model.objects,
                                          "stream_stats")
    return _streams(rows)


def stream_stats_sync(model: type[Any]) -> list[StreamStats]:
    """The blocking twin of :func:`stream_stats`."""
    rows = model._connection().run(_usage(model, "stream_stats"), model.objects, "stream_stats")
    return _streams(rows)


def _check_samples(samples: int) -> None:
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive int (got {samples!r})")


def _memory(model: type[Any], found: dict[str, Any]) -> MemoryUsage:
    sampled, documents = found["sampled"], found["documents"]
    mean = found["document_bytes"] / sampled if sampled else 0.0
    return MemoryUsage(model._meta.model_name, documents, sampled, mean,
                       round(mean * documents), found["structure_bytes"])


async def memory_usage(model: type[Any], samples: int = 100) -> MemoryUsage:
    """``model``'s collection memory on Redis: ``samples`` documents picked at random and
    measured with ``MEMORY USAGE``, scaled by the document count, plus the collection's
    shared keys (see :class:`~.records.MemoryUsage`; three round trips)."""
    _check_samples(samples)
    found = await model._connection().arun(_usage(model, "memory_usage", samples),
                                           model.objects,
                                           "memory_usage")
    return _memory(model, found)


def memory_usage_sync(model: type[Any], samples: int = 100) -> MemoryUsage:
    """The blocking twin of :func:`memory_usage`."""
    _check_samples(samples)
    found = model._connection().run(_usage(model, "memory_usage", samples), model.objects,
                                    "memory_usage")
    return _memory(model, found)


def _slow_from_environment() -> None:
    value = os.environ.get(SLOW_MS_VARIABLE, "").strip()
    if not value:
        return
    try:
        slow_log(float(value))
    except (ValueError, ConfigurationError):
        warnings.warn(f"${SLOW_MS_VARIABLE} must be a number of milliseconds >= 0 "
                      f"(got {value!r}); the slow-operation log stays off", stacklevel=2)


_slow_from_environment()

__all__ = ["BUCKETS", "SLOW_LOGGER", "SLOW_MS_VARIABLE", "GroupLag", "Histogram",
           "MemoryUsage", "MetricsSnapshot", "OperationStats", "PoolSnapshot", "StreamStats",
           "cache_snapshots", "disable", "enable", "enabled", "memory_usage",
           "memory_usage_sync", "pool_snapshots", "reset", "slow_log", "slow_threshold_ms",
           "snapshot", "stream_stats", "stream_stats_sync"]
