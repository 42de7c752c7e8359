"""Prometheus: a collector that exports :func:`quantumorm.metrics.snapshot` at each scrape
(``pip install quantumorm[prometheus]``)::

    from quantumorm import metrics
    from quantumorm.metrics import prometheus

    metrics.enable()
    prometheus.register()          # into prometheus_client's default registry

The metric names, types and labels are listed in :mod:`quantumorm.metrics`. Nothing is
counted twice: the collector keeps no state, it reads the snapshot when scraped.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    REGISTRY,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from . import snapshot
from .records import MetricsSnapshot

PREFIX = "quantumorm"
OPERATION_LABELS = ["model", "operation", "backend"]
POOL_LABELS = ["connection", "backend", "pool"]


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


def _operations(found: MetricsSnapshot) -> Iterator[Metric]:
    total = CounterMetricFamily(f"{PREFIX}_operations", "ORM operations run",
                                labels=OPERATION_LABELS)
    errors = CounterMetricFamily(f"{PREFIX}_operation_errors",
                                 "ORM operations that raised, by exception class",
                                 labels=[*OPERATION_LABELS, "type"])
    trips = CounterMetricFamily(f"{PREFIX}_operation_round_trips",
                                "Round trips to the store made by ORM operations",
                                labels=OPERATION_LABELS)
    duration = HistogramMetricFamily(f"{PREFIX}_operation_duration_seconds",
                                     "How long ORM operations took", labels=OPERATION_LABELS)
    for stats in found.operations:
        labels = [stats.model, stats.operation, stats.backend]
        total.add_metric(labels, stats.count)
        trips.add_metric(labels, stats.round_trips)
        for kind, n in sorted(stats.errors.items()):
            errors.add_metric([*labels, kind], n)
        duration.add_metric(labels, [(_bound(bound), n) for bound, n in stats.duration.buckets],
                            stats.duration.sum)
    yield from (total, errors, trips, duration)


def _exchanges(found: MetricsSnapshot) -> Iterator[Metric]:
    retries = CounterMetricFamily(f"{PREFIX}_retries", "Plans sent again, by the error that "
                                  "caused it", labels=["reason"])
    for reason, n in sorted(found.retries.items()):
        retries.add_metric([reason], n)
    yield retries
    yield CounterMetricFamily(f"{PREFIX}_script_reloads",
                              "Lua scripts loaded again after NOSCRIPT", value=found.script_reloads)
    yield CounterMetricFamily(f"{PREFIX}_slot_relearns", "Redis Cluster slot maps learnt again",
                              value=found.slot_relearns)


def _pools(found: MetricsSnapshot) -> Iterator[Metric]:
    connections = GaugeMetricFamily(f"{PREFIX}_pool_connections",
                                    "Open pooled connections, by state",
                                    labels=[*POOL_LABELS, "state"])
    size = GaugeMetricFamily(f"{PREFIX}_pool_max_connections",
                             "The most connections a pool may open", labels=POOL_LABELS)
    waiting = GaugeMetricFamily(f"{PREFIX}_pool_waiting",
                                "Callers waiting for a free pooled connection now",
                                labels=POOL_LABELS)
    waits = CounterMetricFamily(f"{PREFIX}_pool_waits",
                                "Requests that had to wait for a pooled connection",
                                labels=POOL_LABELS)
    for pool in found.pools:
        labels = [pool.connection, pool.backend, pool.pool]
        connections.add_metric([*labels, "in_use"], pool.in_use)
        connections.add_metric([*labels, "idle"], pool.idle)
        size.add_metric(labels, pool.size)
        if pool.waiting is not None:
            waiting.add_metric(labels, pool.waiting)
        if pool.waits is not None:
            waits.add_metric(labels, pool.waits)
    yield from (connections, size, waiting, waits)


def _cache(found: MetricsSnapshot) -> Iterator[Metric]:
    requests = CounterMetricFamily(f"{PREFIX}_cache_requests", "Cache reads, by result",
                                   labels=["model", "kind", "result"])
    fills = CounterMetricFamily(f"{PREFIX}_cache_fills", "Cache fills, stored or refused "
                                "(refused: it would have been stale)",
                                labels=["model", "kind", "result"])
    bypassed = CounterMetricFamily(f"{PREFIX}_cache_bypassed",
                                   "Ids read from the primary without the cache",
                                   labels=["model"])
    invalidations = CounterMetricFamily(f"{PREFIX}_cache_invalidations",
                                        "Cache slots made tombstones by writes",
                                        labels=["model"])
    errors = CounterMetricFamily(f"{PREFIX}_cache_errors",
                                 "Cache operations that failed (served without the cache)",
                                 labels=["model"])
    for model, stats in sorted(found.cache.items()):
        requests.add_metric([model, "document", "hit"], stats.hits)
        requests.add_metric([model, "document", "miss"], stats.misses)
        requests.add_metric([model, "query", "hit"], stats.query_hits)
        requests.add_metric([model, "query", "miss"], stats.query_misses)
        fills.add_metric([model, "document", "stored"], stats.fills)
        fills.add_metric([model, "document", "refused"], stats.refused_fills)
        fills.add_metric([model, "query", "stored"], stats.query_fills)
        fills.add_metric([model, "query", "refused"], stats.query_refused)
        bypassed.add_metric([model], stats.bypassed)
        invalidations.add_metric([model], stats.invalidations)
        errors.add_metric([model], stats.errors)
    yield from (requests, fills, bypassed, invalidations, errors)


class QuantumCollector(Collector):
    """Yields QuantumORM's metric families from a fresh snapshot at every scrape."""

    def collect(self) -> Iterator[Metric]:
        found = snapshot()
        yield from _operations(found)
        yield from _exchanges(found)
        yield from _pools(found)
        yield from _cache(found)


_registered: dict[int, QuantumCollector] = {}


def register(registry: CollectorRegistry | None = None) -> QuantumCollector:
    """Add QuantumORM's collector to ``registry`` (prometheus_client's default one if None)
    and return it; registering again into the same registry returns the same collector."""
    target = REGISTRY if registry is None else registry
    found = _registered.get(id(target))
    if found is None:
        found = _registered[id(target)] = QuantumCollector()
        target.register(found)
    return found


def unregister(registry: CollectorRegistry | None = None) -> None:
    """Remove the collector :func:`register` added to ``registry``, if any."""
    target = REGISTRY if registry is None else registry
    found = _registered.pop(id(target), None)
    if found is not None:
        target.unregister(found)


__all__ = ["QuantumCollector", "register", "unregister"]
