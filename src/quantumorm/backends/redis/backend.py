"""The Redis backend: the contract of :mod:`quantumorm.engine.contract` as Redis operations.

Each method is an operation (a generator yielding :class:`RedisPlan` objects); it never
performs I/O. The class is assembled from its halves, one job each: ``core.py`` (a model's
state, the stored schema, resends after a schema change), ``reader.py`` (documents by id,
queries, counts; rows decoded and merged in ``results.py``), ``writer.py`` (write batching,
transactions, lost-reply settling, expiry) and ``explain.py``; change events, maintenance
and dropping a collection are here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...engine.contract import Capabilities, Explanation
from ...engine.drive import Op
from ...errors import UnsupportedOperation
from ...maintenance import Progress, ReindexReport, RepairReport, VerifyReport
from ...options import ModelOptions
from ...query.nodes import QuerySpec
from . import changes, reindex, repair, usage, verify
from .calls import QueryMode
from .commands import Command, RedisPlan
from .core import ModelState
from .explain import explanation
from .lookup_plans import LOOKUPS
from .planner import Plan
from .reader import Reader
from .writer import Writer

if TYPE_CHECKING:
    from ...document import Document
    from ...events import ChangeEvent

CAPABILITIES = Capabilities(
    # what the planner serves (from an index, in query.lua or as Python residue), by
    # construction
    lookups=frozenset(LOOKUPS),
    index_kinds=frozenset({"equality", "range", "prefix", "array-membership", "null",
                           "compound", "unique"}),
    ordering=True,
    keyset_pagination=True,
    unique_indexes=True,
    ttl=True,
    partitions=True,
    change_events=True,
    transactions=True,
)


class RedisBackend(Writer, Reader):
    name = "redis"
    capabilities = CAPABILITIES

    def explain(self, options: ModelOptions, spec: QuerySpec) -> Op[Explanation]:
        def make(state: ModelState) -> tuple[tuple[ModelState, Plan], RedisPlan]:
            plan = state.planner.plan(spec)
            return (state, plan), state.query_plan(plan, QueryMode.PLAN, 0, None)

        (state, plan), replies = yield from self._ask(options, make)
        return explanation(options, state, spec, plan, replies)

    # -- change events (reading; the write scripts append them) -----------------------------

    def change_positions(self, options: ModelOptions, since: Any) -> Op[list[str]]:
        return (yield from changes.positions(self._state(options).keys, since))

    def read_changes(self, model: type[Document], after: list[str], count: int,
                     block: float) -> Op[tuple[list[ChangeEvent[Any]], list[str]]]:
        keys = self._state(model._meta).keys
        return (yield from changes.read(model, keys, after, count, min(block, self.max_block),
                                        self.cluster))

    def create_group(self, options: ModelOptions, group: str, start: str) -> Op[None]:
        yield from changes.create_group(self._state(options).keys, group, start)

    def read_group(self, model: type[Document], group: str, consumer: str, count: int,
                   block: float, after: list[str] | None
                   ) -> Op[tuple[list[ChangeEvent[Any]], list[str] | None]]:
        keys = self._state(model._meta).keys
        return (yield from changes.read_group(model, keys, group, consumer, count,
                                              min(block, self.max_block), after, self.cluster))

    def group_pending(self, options: ModelOptions, group: str) -> Op[int]:
        return (yield from changes.pending(self._state(options).keys, group))

    def ack_changes(self, options: ModelOptions, group: str,
                    events: Sequence[ChangeEvent[Any]]) -> Op[int]:
        return (yield from changes.ack(self._state(options).keys, group, events))

    def claim_changes(self, model: type[Document], group: str, consumer: str,
                      min_idle: float, count: int) -> Op[list[ChangeEvent[Any]]]:
        keys = self._state(model._meta).keys
        return (yield from changes.claim(model, keys, group, consumer, min_idle, count))

    # -- maintenance -------------------------------------------------------------------------

    def reindex(self, model: type[Document], batch: int,
                progress: Progress | None) -> Op[ReindexReport]:
        """Build the indexes that are building (or rebuild all), online: see reindex.py."""
        return (yield from reindex.reindex(self, model, batch, progress))

    def verify(self, model: type[Document], batch: int,
               progress: Progress | None) -> Op[VerifyReport]:
        """Check documents, meta hashes and index entries against each other: verify.py."""
        return (yield from verify.verify(self, model, batch, progress))

    def repair(self, model: type[Document], batch: int,
               progress: Progress | None) -> Op[RepairReport]:
        """Fix what verify() finds (each fix checked again atomically): repair.py."""
        return (yield from repair.repair(self, model, batch, progress))

    def drop_collection(self, options: ModelOptions) -> Op[int]:
        if self.cluster:  # SCAN walks one node: it would leave the other masters' keys
            raise UnsupportedOperation(self.name, "drop_collection on Redis Cluster")
        keys = self._state(options).keys
        counts = yield RedisPlan(tuple(Command(("ZCARD", keys.ids(p)))
                                       for p in range(options.partitions)), read_only=True)
        for pattern in keys.patterns():
            cursor = 0
            while True:
                cursor, found = (yield RedisPlan(
                    (Command(("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)),),
                    read_only=True))[0]
                if found:
                    yield RedisPlan((Command(("UNLINK", *found)),), idempotent=True)
                if int(cursor) == 0:
                    break
        return sum(int(c) for c in counts)

    # -- on-demand usage (quantumorm.metrics: stream_stats, memory_usage) ---------------------

    def stream_stats(self, options: ModelOptions) -> Op[list[tuple[str, int, list[Any]]]]:
        return (yield from usage.stream_stats(self._state(options).keys))

    def memory_usage(self, options: ModelOptions, samples: int) -> Op[dict[str, Any]]:
        return (yield from usage.memory_usage(self._state(options).keys, samples))
