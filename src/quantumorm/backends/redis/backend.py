"""The Redis backend: the contract of :mod:`quantumorm.backends.base` as Redis operations.

Each method is an operation (a generator yielding :class:`RedisPlan` objects); it never
performs I/O. A query is one ``query.lua`` call per partition, pipelined in one round trip;
rows from several partitions are merged here with the same sort keys the script uses.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterator, Sequence
from functools import cmp_to_key
from itertools import islice
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

from ... import sortable
from ...engine.drive import Op
from ...errors import (
    BackendConnectionError,
    CorruptDocumentError,
    DuplicateIdError,
    PermissionDeniedError,
    SchemaMismatchError,
    TransactionError,
    UnsupportedOperation,
    VersionConflict,
    WriteOutcomeUnknown,
)
from ...maintenance import Progress, ReindexReport, RepairReport, VerifyReport
from ...options import ModelOptions
from ...query import evaluate
from ...query.lookups import Lookup
from ...query.nodes import FALSE, ID, Condition, Node, QuerySpec
from ...schema import Schema
from ..base import Capabilities, Explanation, Row, WriteRequest, WriteResult
from . import changes, schemas, wire, writes
from .commands import Call, Command, RedisPlan
from .keys import KeySpace
from .lookup_plans import LOOKUPS
from .planner import Plan, Planner

if TYPE_CHECKING:
    from ...document import Document
    from ...events import ChangeEvent

T = TypeVar("T")

#: rounds of fresh auto ids for inserts whose allocated id a user had already taken
AUTO_ID_ATTEMPTS = 5
#: how many of the last allocated ids are searched for an insert whose reply was lost
SETTLE_WINDOW = 1024
#: how often an operation reads the schema again and retries when a script says its
#: partition has seen a newer layout (each time, another process changed the schema)
LAYOUT_ATTEMPTS = 5

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


class _ModelState:
    """What one connection knows of one model: its keys, write layout, stored schema (read
    at first use) and the planner for the indexes that schema says are ready."""

    __slots__ = ("options", "keys", "planner", "planned_with", "writes", "schema",
                 "_query_layout")

    def __init__(self, options: ModelOptions, max_document_bytes: int) -> None:
        self.options = options
        self.keys = KeySpace(options)
        self.planner = Planner(options)
        self.writes = writes.WriteLayout(options, self.keys, max_document_bytes)
        self.schema: Schema | None = None
        self.planned_with: frozenset[str] | None = None
        self._query_layout: list[tuple[tuple[str, ...], tuple[str, str]]] | None = None

    def use(self, schema: Schema) -> None:
        """Plan with the indexes ``schema`` says are ready; send its layout with every call
        (a script refuses one older than its partition has seen: see ``_prelude.lua``)."""
        if self.planned_with is None or schema.ready() != self.planned_with:
            ready = schema.ready()
            every = frozenset(i.name for i in self.options.indexes)
            self.planner = Planner(self.options, None if ready >= every else ready)
            self.planned_with = ready
        self.schema = schema
        self.writes.layout = str(schema.layout).encode()

    def query_layout(self) -> list[tuple[tuple[str, ...], tuple[str, str]]]:
        """Per partition: the KEYS of a query.lua call and its key prefixes."""
        if self._query_layout is None:
            keys = self.keys
            self._query_layout = [
                ((keys.ids(p), *keys.indexes(p), keys.state(p), keys.ttl(p)),
                 (keys.doc_prefix(p), keys.meta_prefix(p)))
                for p in range(keys.partitions)]
        return self._query_layout


class RedisBackend:
    name = "redis"
    capabilities = CAPABILITIES

    def __init__(self, max_document_bytes: int = writes.DEFAULT_MAX_DOCUMENT_BYTES,
                 max_block: float = 1.0, cluster: bool = False) -> None:
        self.max_document_bytes = max_document_bytes
        #: on Redis Cluster a command may name keys of one slot only (stream reads split)
        self.cluster = cluster
        #: longest blocking stream read, in seconds (half the socket timeout)
        self.max_block = max_block

    def _state(self, options: ModelOptions) -> _ModelState:
        return options.state_for(self, lambda: _ModelState(options, self.max_document_bytes))

    def prepare(self, options: ModelOptions, refresh: bool = False) -> Op[_ModelState]:
        """The model's state, its stored schema reconciled with the declaration at first use
        (one round trip; then none). ``refresh``: read the schema again, because a script
        found that its partition has seen a newer layout (an index was added, built or
        dropped since this connection read it)."""
        state = self._state(options)
        if state.schema is None:
            yield from self._preflight(state)
        if state.schema is None or refresh:
            state.use((yield from schemas.register(options, state.keys)))
        return state

    def _preflight(self, state: _ModelState) -> Op[None]:
        """Refuse, before anything is written, a user whose ACL would stop a script
        half-way through a write (``preflight.lua``; the rule to grant: ``acl.acl_rule``)."""
        keys, options = state.keys, state.options
        index = keys.index(0, options.indexes[0].name) if options.indexes else keys.ids(0)
        streams = state.writes.event_keys(0)
        call = Call("preflight", (
            keys.doc(0, "_"), keys.meta(0, "_"), keys.ids(0), keys.ttl(0), keys.state(0),
            keys.trash(0, "_"), keys.sequence if options.partitions == 1 else keys.ids(0),
            index, *streams), ("1" if streams else "0",
                               keys.channel if options.publish else ""))
        (refused,) = yield RedisPlan((call,), read_only=True)
        if wire.text(refused):
            raise PermissionDeniedError(
                f"{options.model_name}: the Redis user may not run {wire.text(refused)}; "
                "grant it QuantumORM's rule: quantumorm.backends.redis.acl.acl_rule("
                f"{options.namespace!r}) (see the README, Connections)")

    # -- writes ----------------------------------------------------------------------------

    def allocate_ids(self, options: ModelOptions, count: int) -> Op[list[str]]:
        keys = self._state(options).keys
        (last,) = yield RedisPlan((Command(("INCRBY", keys.sequence, count)),), idempotent=True)
        return [str(n) for n in range(int(last) - count + 1, int(last) + 1)]

    def write(self, options: ModelOptions,
              requests: Sequence[WriteRequest]) -> Op[list[WriteResult]]:
        yield from self.prepare(options)
        pending = list(range(len(requests)))
        results: list[WriteResult | None] = [None] * len(requests)
        requests = list(requests)
        auto = {i for i, r in enumerate(requests) if r.kind == "insert" and r.id is None}
        # One insert with P == 1 allocates its id inside the script (one round trip);
        # otherwise ids come first, in one INCRBY. A counter value a user already took as an
        # id makes that insert fail with "exists": it gets the next free value and retries.
        stale_layouts = 0
        for _attempt in range(AUTO_ID_ATTEMPTS + LAYOUT_ATTEMPTS):
            missing = [i for i in pending if i in auto and requests[i].id is None]
            if missing and not (len(requests) == 1 and options.partitions == 1):
                ids = yield from self.allocate_ids(options, len(missing))
                for position, new_id in zip(missing, ids, strict=True):
                    requests[position] = requests[position].with_id(new_id)
            batches = self._batches(options, [requests[i] for i in pending], pending)
            calls = [call for call, _ in batches]
            # saves may be resent after a broken connection (each recognises its own earlier
            # application by its write id); not deletes (no write id survives them) nor an
            # insert that allocates its id (it is looked up instead)
            allocating = len(calls) == 1 and calls[0].script == "save" and not calls[0].args[2]
            resendable = not allocating and all(c.script != "delete" for c in calls)
            try:
                sent = yield RedisPlan(tuple(calls), idempotent=resendable)
            except BackendConnectionError:
                if not allocating:
                    raise
                sent = yield from self._settle_allocating(options, calls[0])
            resent = getattr(sent, "resent", False)
            replies: list[Any] = []
            for (_, members), reply in zip(batches, sent, strict=True):
                if len(members) > 1 and not writes.layout_refused(reply):
                    replies += reply
                else:  # one request, or a batch refused whole
                    replies += [reply] * len(members)
            order = [i for _, members in batches for i in members]
            retry, stale = [], []
            for i, reply in zip(order, replies, strict=True):
                if writes.layout_refused(reply):
                    stale.append(i)  # nothing written: send it again with the new schema
                    continue
                result = writes.result(options, requests[i], reply)
                if resent and isinstance(result.error, (VersionConflict, DuplicateIdError)):
                    result = WriteResult(result.id, None, WriteOutcomeUnknown(
                        options.model_name, requests[i].id, result.error))
                if i in auto and isinstance(result.error, DuplicateIdError):
                    retry.append(i)
                    requests[i] = requests[i].with_id(None)
                else:
                    results[i] = result
            if stale:
                stale_layouts += 1
                if stale_layouts > LAYOUT_ATTEMPTS:
                    raise _unsettled(options)
                yield from self.prepare(options, refresh=True)
            if not retry and not stale:
                break
            pending = sorted(retry + stale)
        return [r if r is not None else WriteResult(None, None, DuplicateIdError(
            options.model_name, "<new>")) for r in results]

    def _settle_allocating(self, options: ModelOptions, call: Call) -> Op[list[Any]]:
        """The connection broke around an insert that allocates its own id: find out
        whether it was applied (its write id in the meta hash of one of the ids allocated
        last) before sending it again, so that it is never stored twice."""
        keys = self._state(options).keys
        write_id = call.args[4].encode() if isinstance(call.args[4], str) else call.args[4]
        # (asked of the master, never a replica that may lag: hence not read_only)
        (last,) = yield RedisPlan((Command(("GET", keys.sequence)),), idempotent=True)
        newest = int(last or 0)
        candidates = [str(n) for n in range(newest, max(0, newest - SETTLE_WINDOW), -1)]
        seen = yield RedisPlan(tuple(Command(("HGET", keys.meta(0, id), "r"))
                                     for id in candidates), idempotent=True)
        for id, recent in zip(candidates, seen, strict=True):
            for i in range(0, len(recent or b""), 32):  # (write id, version): see _write.lua
                if bytes(recent[i:i + 16]) == write_id:
                    return [[b"OK", int(recent[i + 16:i + 32]), sortable.id_key(id)]]
        # not among the ids allocated last: not applied, so sending it again is safe
        again = yield RedisPlan((call,))
        return list(again)

    def transact(self, options: ModelOptions, checks: Sequence[tuple[str, int]],
                 requests: Sequence[WriteRequest]) -> Op[list[WriteResult]]:
        """Version checks and writes in one atomic ``tx.lua`` call: all applied or none.
        Every document must be in one partition (one script, one slot)."""
        state = yield from self.prepare(options)
        requests = list(requests)
        missing = [i for i, r in enumerate(requests) if r.id is None]
        if missing:
            if options.partitions > 1:
                raise TransactionError(
                    f"{options.model_name} has {options.partitions} partitions: a new "
                    "document in a transaction needs an id, so that its partition is known")
            ids = yield from self.allocate_ids(options, len(missing))
            for i, new_id in zip(missing, ids, strict=True):
                requests[i] = requests[i].with_id(new_id)
        every_id = [id for id, _ in checks] + [r.id for r in requests if r.id is not None]
        partitions = {state.keys.partition_of(id) for id in every_id}
        if len(partitions) > 1:
            raise TransactionError(
                f"a transaction's documents must share one partition; these {options.model_name}"
                f" ids are spread over partitions {sorted(partitions)} (Meta.partitions = "
                f"{options.partitions}): {', '.join(map(repr, every_id[:10]))}")
        if not every_id:
            return []
        partition = partitions.pop()
        # resendable when it writes a document: tx.lua then recognises an earlier attempt
        resendable = any(r.kind != "delete" for r in requests)
        _, sent = yield from self._ask(options, lambda state: (None, RedisPlan(
            (state.writes.tx_call(partition, list(checks), requests),),
            idempotent=resendable)))
        try:
            return writes.tx_results(options, list(checks), requests, sent[0])
        except (VersionConflict, DuplicateIdError) as refusal:
            if getattr(sent, "resent", False):
                raise WriteOutcomeUnknown(options.model_name, requests[0].id, refusal) from None
            raise

    def _batches(self, options: ModelOptions, requests: list[WriteRequest],
                 positions: list[int]) -> list[tuple[Call, list[int]]]:
        """Script calls for the requests, and which request positions each one serves:
        inserts with known ids go together, one ``insert_many`` call per partition; every
        other write is its own call."""
        state = self._state(options)
        calls: list[tuple[Call, list[int]]] = []
        grouped: dict[tuple[int, str], list[tuple[int, WriteRequest]]] = {}
        for position, request in zip(positions, requests, strict=True):
            if request.kind == "insert" and request.id is not None and len(requests) > 1:
                group = (state.keys.partition_of(request.id), request.expire)
                grouped.setdefault(group, []).append((position, request))
            elif request.kind == "delete":
                calls.append((state.writes.delete_call(request), [position]))
            else:
                calls.append((state.writes.save_call(request), [position]))
        for (partition, _expire), members in grouped.items():
            if len(members) == 1:
                position, request = members[0]
                calls.append((state.writes.save_call(request), [position]))
            else:
                call = state.writes.insert_many_call(partition, [r for _, r in members])
                calls.append((call, [p for p, _ in members]))
        return calls

    # -- reads -----------------------------------------------------------------------------

    def get_many(self, options: ModelOptions, ids: Sequence[str]) -> Op[list[Row | None]]:
        """One ``fetch.lua`` call per partition involved, in one round trip."""
        keys = (yield from self.prepare(options)).keys
        by_partition: dict[int, list[str]] = {}
        for id in dict.fromkeys(ids):
            by_partition.setdefault(keys.partition_of(id), []).append(id)
        if not by_partition:
            return []
        calls = []
        for partition, members in by_partition.items():
            key_list = []
            for id in members:
                key_list += [keys.doc(partition, id), keys.meta(partition, id)]
            calls.append(Call("fetch", tuple(key_list), ()))
        replies = yield RedisPlan(tuple(calls), read_only=True)
        found: dict[str, Row | None] = {}
        for members, reply in zip(by_partition.values(), replies, strict=True):
            for position, id in enumerate(members):
                raw, version = reply[2 * position], reply[2 * position + 1]
                found[id] = None if raw is None else _row(options, id, version, raw)
        return [found[id] for id in ids]

    def _query_calls(self, state: _ModelState, plan: Plan, mode: str, offset: int,
                     limit: int | None) -> RedisPlan:
        window = (mode, str(offset), str(-1 if limit is None else limit),
                  "1" if state.options.ttl else "0", plan.program, state.writes.layout)
        calls = tuple(Call("query", keys, prefixes + window)
                      for keys, prefixes in state.query_layout())
        return RedisPlan(calls, read_only=True)

    def _ask(self, options: ModelOptions,
             make: Callable[[_ModelState], tuple[T, RedisPlan]]) -> Op[tuple[T, list[Any]]]:
        """Send the plan that ``make`` builds from the model's state. When a partition has
        seen a newer schema layout than the one it was planned with (an index added, built
        or dropped since), its script refused before doing anything: read the schema
        again, plan again and send it again."""
        state = yield from self.prepare(options)
        for _attempt in range(LAYOUT_ATTEMPTS):
            made, plan = make(state)
            replies = yield plan
            if not any(writes.layout_refused(reply) for reply in replies):
                return made, replies
            state = yield from self.prepare(options, refresh=True)
        raise _unsettled(options)

    def query(self, options: ModelOptions, spec: QuerySpec) -> Op[list[Row]]:
        if spec.where == FALSE or spec.limit == 0:
            return []
        where = spec.where
        if isinstance(where, Condition) and where.field == ID and where.lookup in (
                Lookup.EXACT, Lookup.IN):
            # by id: GETs (one round trip), no script; ordering and slicing in Python
            ids = [where.value] if where.lookup is Lookup.EXACT else list(where.value)
            found = yield from self.get_many(options, ids)
            return _arrange(options, spec, [row for row in found if row is not None])
        single = options.partitions == 1

        def make(state: _ModelState) -> tuple[Plan, RedisPlan]:
            plan = state.planner.plan(spec)
            if plan.server_order:
                offset, limit = (spec.offset, spec.limit) if single else (0, spec.window)
            else:
                offset, limit = 0, None
            return plan, self._query_calls(state, plan, "rows", offset, limit)

        plan, replies = yield from self._ask(options, make)
        if plan.server_order and single:
            return _rows(options, replies[0])
        if not plan.server_order:
            return _arrange(options, spec, [row for reply in replies
                                            for row in _rows(options, reply)], plan.residual)
        return _merge(options, spec, replies)

    def count(self, options: ModelOptions, spec: QuerySpec) -> Op[int]:
        if spec.where == FALSE or spec.limit == 0:
            return 0
        total = yield from self._matches(options, spec, "count")
        total = max(0, total - spec.offset)
        return total if spec.limit is None else min(total, spec.limit)

    def exists(self, options: ModelOptions, spec: QuerySpec) -> Op[bool]:
        if spec.where == FALSE or spec.limit == 0:
            return False
        if spec.offset or spec.limit is not None:
            n = yield from self.count(options, spec)
            return n > 0
        found = yield from self._matches(options, spec, "exists")
        return found > 0

    def _matches(self, options: ModelOptions, spec: QuerySpec, mode: str) -> Op[int]:
        """How many documents match (``exists``: 0 or 1), ignoring offset and limit."""
        if spec.after is None:
            spec = QuerySpec(spec.where)  # order is irrelevant to a count
        state = yield from self.prepare(options)
        plan = state.planner.plan(spec, counting=True)
        if plan.residual is not None or not plan.server_order:  # (query() checks the layout)
            rows = yield from self.query(options, QuerySpec(spec.where, spec.order, 0, None,
                                                            spec.after))
            return min(len(rows), 1) if mode == "exists" else len(rows)
        driver = plan.driver
        if driver.exact and spec.after is None and driver.kind in ("RANGE", "ALL"):
            # while no document can expire the index is the truth: count its entries
            # (count.lua answers -1 if some can, and query.lua then checks each one)
            keys = state.keys
            bounds = tuple(bound for pair in driver.ranges for bound in pair)
            calls = tuple(
                Call("count", (keys.ttl(p), keys.ids(p) if driver.kind == "ALL"
                               else keys.index(p, driver.indexes[0]), keys.state(p)),
                     (state.writes.layout, *bounds))
                for p in range(options.partitions))
            counts = [int(c) for c in (yield RedisPlan(calls, read_only=True))]
            if -2 in counts:  # planned with an outdated schema: plan again
                yield from self.prepare(options, refresh=True)
                return (yield from self._matches(options, spec, mode))
            if -1 not in counts:
                total = sum(counts)
                return min(total, 1) if mode == "exists" else total
        _, replies = yield from self._ask(options, lambda state: (None, self._query_calls(
            state, state.planner.plan(spec, counting=True), mode, 0, None)))
        total = sum(int(r) for r in replies)
        return min(total, 1) if mode == "exists" else total

    def explain(self, options: ModelOptions, spec: QuerySpec) -> Op[Explanation]:
        def make(state: _ModelState) -> tuple[tuple[_ModelState, Plan], RedisPlan]:
            plan = state.planner.plan(spec)
            return (state, plan), self._query_calls(state, plan, "plan", 0, None)

        (state, plan), replies = yield from self._ask(options, make)
        chosen, exact = wire.text(replies[0][0]), replies[0][2] == 1
        estimate = sum(int(reply[1]) for reply in replies)
        keys = self._state(options).keys
        indexes = tuple(dict.fromkeys(
            name for name in options.indexes_by_name() if f":i:{name} " in chosen + " "
            or f":i:{name})" in chosen or f":i:{name}," in chosen))
        walks_ids = chosen.startswith("WALK") and chosen.endswith(keys.ids(0))
        scanned = chosen.startswith("ALL") or walks_ids
        strategy = {"WALK": "index walk (in order)", "RANGE": "index range",
                    "IDS": "id lookup", "ALL": "scan", "UNION": "union of index ranges"}[
            chosen.split(" ")[0].split("(")[0]]
        if walks_ids:
            strategy = "scan (in id order)"
        if plan.server_order:
            ordering = "server, by index walk" if chosen.startswith("WALK") else "server, sorted"
        else:
            ordering = "client, Python sort"
        return Explanation(
            backend=self.name,
            strategy=strategy,
            indexes=indexes,
            scanned=scanned,
            server_filter="none" if plan.server_filter == "TRUE"
            else "none (the driver yields exactly the matches)" if exact
            else plan.server_filter,
            client_filter=None if plan.residual is None else repr(plan.residual),
            ordering=ordering,
            details={"candidates considered": plan.driver.label,
                     "estimated candidates": estimate,
                     "partitions": options.partitions,
                     **_building(state)},
        )

    # -- expiry ----------------------------------------------------------------------------

    def expire(self, options: ModelOptions, id: str, ttl: float | None) -> Op[bool]:
        """Give the document an expiry in ``ttl`` seconds (None: none); False if it is gone."""
        keys = self._state(options).keys
        p = keys.partition_of(id)
        how = "persist" if ttl is None else str(max(1, round(ttl * 1000)))
        (done,) = yield RedisPlan((Call("expire", (keys.doc(p, id), keys.ttl(p)),
                                        (sortable.id_key(id), how)),), idempotent=True)
        return bool(done)

    def time_to_live(self, options: ModelOptions, id: str) -> Op[float | None]:
        """Seconds until the document expires (0.0 once it is gone); None if it never does."""
        keys = self._state(options).keys
        (ms,) = yield RedisPlan((Command(("PTTL", keys.doc(keys.partition_of(id), id))),),
                                read_only=True)
        ms = int(ms)
        return None if ms == -1 else max(ms, 0) / 1000

    def sweep(self, options: ModelOptions, limit: int) -> Op[int]:
        """Purge the leftovers of up to ``limit`` expired documents per partition."""
        _, replies = yield from self._ask(options, lambda state: (None, RedisPlan(
            tuple(state.writes.sweep_call(p, limit) for p in range(options.partitions)),
            idempotent=True)))
        return sum(int(reply[0]) for reply in replies)

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
        from . import reindex

        return (yield from reindex.reindex(self, model, batch, progress))

    def verify(self, model: type[Document], batch: int,
               progress: Progress | None) -> Op[VerifyReport]:
        """Check documents, meta hashes and index entries against each other: verify.py."""
        from . import verify

        return (yield from verify.verify(self, model, batch, progress))

    def repair(self, model: type[Document], batch: int,
               progress: Progress | None) -> Op[RepairReport]:
        """Fix what verify() finds (each fix checked again atomically): repair.py."""
        from . import repair

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




def _unsettled(options: ModelOptions) -> SchemaMismatchError:
    return SchemaMismatchError(
        f"{options.model_name}: the collection's schema kept changing under this operation "
        f"({LAYOUT_ATTEMPTS} times); another process is changing the model's declaration")


def _building(state: _ModelState) -> dict[str, str]:
    """explain()'s note on indexes queries may not use yet."""
    building = state.schema.building() if state.schema is not None else ()
    if not building:
        return {}
    return {"indexes building": f"{', '.join(building)} (not used until built: run "
                                f"{state.options.model_name}.objects.reindex())"}


_DECODER = json.JSONDecoder()


def _row(options: ModelOptions, id: str, version: Any, raw: bytes) -> Row:
    try:
        data = _DECODER.decode(raw.decode("utf-8"))
    except ValueError as exc:
        raise CorruptDocumentError(options.model_name, id, f"invalid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CorruptDocumentError(options.model_name, id, "not a JSON object")
    return Row(id, int(version or 0), data)


def _rows(options: ModelOptions, reply: list[Any]) -> list[Row]:
    return [
        _row(options, sortable.id_from_key(bytes(reply[i])), reply[i + 1], reply[i + 2])
        for i in range(0, len(reply), 3)
    ]


def _merge(options: ModelOptions, spec: QuerySpec, replies: list[Any]) -> list[Row]:
    """Merge the partitions' windows (each already in order) and slice. Lazily: the merge
    stops at offset + limit, and only the rows it reaches are decoded and placed (with P
    windows of n rows it looks at about P + n of them, not P x n)."""
    descending = evaluate.directions(spec.order)
    key: Any
    reverse = False
    if not any(descending) or all(descending):
        key, reverse = tuple, all(descending)  # byte tuples compare as the positions do
    else:
        key = cmp_to_key(lambda a, b: evaluate.compare_keys(a, b, descending))
    loaders = [name for name in dict.fromkeys(o.field for o in spec.order) if name != ID]

    def placed(reply: list[Any]) -> Iterator[tuple[Any, Row]]:
        for i in range(0, len(reply), 3):
            row = _row(options, sortable.id_from_key(bytes(reply[i])), reply[i + 1],
                       reply[i + 2])
            values: dict[str, Any] = {ID: row.id}
            for name in loaders:  # only what the ordering needs
                values[name] = options.read_value(name, row.data)
            yield key(evaluate.sort_keys(options, spec.order, values)), row

    end = None if spec.limit is None else spec.offset + spec.limit
    merged = heapq.merge(*(placed(reply) for reply in replies), key=itemgetter(0),
                         reverse=reverse)
    return [row for _, row in islice(merged, end)][spec.offset:]


def _arrange(options: ModelOptions, spec: QuerySpec, rows: list[Row],
             residual: Node | None = None) -> list[Row]:
    """Filter (``residual``), order, apply the keyset position and slice, in Python."""
    if len(rows) <= 1 and residual is None and spec.after is None:
        return rows[spec.offset:][:spec.limit]  # nothing to order
    descending = evaluate.directions(spec.order)
    keyed = []
    for row in rows:
        values = _values(options, row)
        if residual is not None and not evaluate.matches(options, residual, values):
            continue
        keyed.append((evaluate.sort_keys(options, spec.order, values), row))
    if spec.after is not None:
        keyed = [(k, r) for k, r in keyed if evaluate.compare_keys(k, spec.after, descending) > 0]
    ordered = [row for _, row in evaluate.sort_rows(keyed, lambda item: item[0], descending)]
    end = None if spec.limit is None else spec.offset + spec.limit
    return ordered[spec.offset:end]


def _values(options: ModelOptions, row: Row) -> dict[str, Any]:
    values: dict[str, Any] = {"id": row.id}
    for name in options.fields:
        values[name] = options.read_value(name, row.data)
    return values


