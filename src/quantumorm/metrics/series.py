"""The counters: one :class:`Recorder` per process, updated once per operation.

Every update takes one lock (a ``threading.Lock``: asyncio tasks of one loop never contend
for it, and it is held for a few dictionary updates only). Measured against counters kept
per thread and merged at snapshot time (``bench/bench_metrics.py --contention``): about
0.5 µs an update against 0.2 µs from one thread, and about 2 µs against 0.2 µs from four
threads doing nothing but update. Operations take tens of microseconds, so threads seldom
meet at the lock; and with the lock a snapshot is exact (never half an update), ``reset()``
is one step, and no count is lost with a thread that ends.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from dataclasses import dataclass, field

from .records import BUCKETS, Histogram, OperationStats

#: (model, operation, backend)
Key = tuple[str, str, str]


@dataclass(slots=True)
class Series:
    count: int = 0
    seconds: float = 0.0
    round_trips: int = 0
    #: per bucket of BUCKETS, then +Inf (not cumulative: summed up in snapshots)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    errors: dict[str, int] = field(default_factory=dict)


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[Key, Series] = {}
        self._retries: dict[str, int] = {}
        self._reloads = 0
        self._relearns = 0

    def operation(self, key: Key, seconds: float, round_trips: int, error: str | None) -> None:
        slot = bisect_left(BUCKETS, seconds)  # (the first bound >= seconds: "le")
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = Series()
            series.count += 1
            series.seconds += seconds
            series.round_trips += round_trips
            series.buckets[slot] += 1
            if error is not None:
                series.errors[error] = series.errors.get(error, 0) + 1

    def retry(self, reason: str) -> None:
        with self._lock:
            self._retries[reason] = self._retries.get(reason, 0) + 1

    def script_reload(self) -> None:
        with self._lock:
            self._reloads += 1

    def slot_relearn(self) -> None:
        with self._lock:
            self._relearns += 1

    def read(self) -> tuple[tuple[OperationStats, ...], dict[str, int], int, int]:
        """The operations' stats (sorted by model, operation, backend), retries by reason,
        script reloads and slot relearns."""
        with self._lock:
            copied = [(key, series.count, series.seconds, series.round_trips,
                       list(series.buckets), dict(series.errors))
                      for key, series in self._series.items()]
            retries, reloads, relearns = dict(self._retries), self._reloads, self._relearns
        stats = []
        for (model, operation, backend), count, seconds, trips, buckets, errors in sorted(
                copied):
            running, cumulative = 0, []
            for bound, n in zip((*BUCKETS, float("inf")), buckets, strict=True):
                running += n
                cumulative.append((bound, running))
            stats.append(OperationStats(model, operation, backend, count, errors,
                                        Histogram(tuple(cumulative), count, seconds), trips))
        return tuple(stats), retries, reloads, relearns

    def reset(self) -> None:
        with self._lock:
            self._series.clear()
            self._retries.clear()
            self._reloads = self._relearns = 0


__all__ = ["Key", "Recorder", "Series"]
