"""What :func:`quantumorm.metrics.snapshot` and the on-demand readers return: frozen,
typed records with ``to_dict()`` (plain values, ready for ``json.dumps``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..cache.stats import CacheStats

#: the latency histogram's upper bounds, in seconds (Prometheus-style; +Inf is implied)
BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                              0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Histogram:
    """Durations: ``buckets`` pairs each upper bound (seconds; ``inf`` last) with how many
    durations were at most that (cumulative, as Prometheus exposes them)."""

    buckets: tuple[tuple[float, int], ...]
    count: int
    sum: float


@dataclass(frozen=True)
class OperationStats:
    """One model's operation on one backend: how often it ran, ``errors`` by exception
    class name (an operation that raised counts in ``count`` and in ``errors``), its
    duration, and ``round_trips``: plans sent, one more per retry and two per script reload
    (the load and the resend)."""

    model: str
    operation: str
    backend: str
    count: int
    errors: dict[str, int]
    duration: Histogram
    round_trips: int


@dataclass(frozen=True)
class PoolSnapshot:
    """One pool of one registered connection (see :class:`quantumorm.engine.observe.PoolStats`
    for the counts; ``waiting``/``waits`` are None where the driver does not say)."""

    connection: str
    backend: str
    pool: str
    size: int
    open: int
    in_use: int
    idle: int
    waiting: int | None
    waits: int | None


@dataclass(frozen=True)
class MetricsSnapshot:
    """Everything counted in this process since :func:`~quantumorm.metrics.enable` (or the
    last :func:`~quantumorm.metrics.reset`). ``pools`` and ``cache`` are read when the
    snapshot is taken (the cache counts even while metrics are off)."""

    enabled: bool
    operations: tuple[OperationStats, ...]
    retries: dict[str, int]
    script_reloads: int
    slot_relearns: int
    pools: tuple[PoolSnapshot, ...]
    cache: dict[str, CacheStats] = field(default_factory=dict)

    def operation(self, model: str, operation: str, backend: str | None = None
                  ) -> OperationStats | None:
        """The stats of one model's operation (on ``backend``, or the first found)."""
        for stats in self.operations:
            if stats.model == model and stats.operation == operation and (
                    backend is None or stats.backend == backend):
                return stats
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain values, ready for ``json.dumps`` (the last bucket's bound is ``"+Inf"``)."""
        out = asdict(self)
        for stats in out["operations"]:
            stats["duration"]["buckets"] = [
                ["+Inf" if bound == float("inf") else bound, n]
                for bound, n in stats["duration"]["buckets"]]
        return out


@dataclass(frozen=True)
class GroupLag:
    """A consumer group of a change stream: ``pending`` entries delivered and not yet
    acknowledged, ``lag`` entries not yet delivered (None when the server cannot tell:
    entries were trimmed or deleted past the group's position)."""

    name: str
    consumers: int
    pending: int
    lag: int | None


@dataclass(frozen=True)
class StreamStats:
    """One partition's change stream: its length (XLEN) and consumer groups."""

    partition: int
    length: int
    groups: tuple[GroupLag, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MemoryUsage:
    """A collection's memory on the server. ``documents``: how many there are; ``sampled``:
    how many were measured (``MEMORY USAGE`` of their document and meta keys, picked at
    random); ``bytes_per_document``: their mean; ``document_bytes``: that mean times
    ``documents`` (an estimate unless every document was sampled); ``structure_bytes``:
    the id sets, indexes, expiry schedules, state hashes and change streams, each measured
    (by the server's own sampling of 5 nested values); ``total_bytes``: both."""

    model: str
    documents: int
    sampled: int
    bytes_per_document: float
    document_bytes: int
    structure_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.document_bytes + self.structure_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_bytes": self.total_bytes}


__all__ = ["BUCKETS", "GroupLag", "Histogram", "MemoryUsage", "MetricsSnapshot",
           "OperationStats", "PoolSnapshot", "StreamStats"]
