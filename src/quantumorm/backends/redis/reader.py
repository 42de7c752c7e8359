"""The reading half of the Redis backend: documents by id (MGET: a document key carries its
version; ``fetch.lua`` for documents stored before it did), queries, counts and existence
(``query.lua``, ``count.lua``), and a document's remaining time to live.

A query is one ``query.lua`` call per partition, pipelined in one round trip; with several
partitions each returns its window in order, with its rows' sort keys, and
:func:`.results.merge` merges them. When the windows would bring many more documents than
the query returns (many partitions, a large limit), the partitions send only ids, versions
and sort keys, and a second round trip fetches the documents the merge kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from ...engine.contract import Row
from ...engine.drive import Op
from ...options import ModelOptions
from ...query.lookups import Lookup
from ...query.nodes import FALSE, ID, Condition, Or, QuerySpec
from ...sortable import escape_id
from . import results
from .calls import CountCall, FetchCall, QueryMode
from .commands import Command, RedisPlan
from .core import ModelState
from .keys import KeySpace
from .planner import Plan
from .resp import BULK_HEADS
from .replies import COUNT_EXPIRING, COUNT_OUTDATED
from .twophase import Settling, TwoPhase, flag_key

#: rounds of a two-phase query (see Reader.query) whose fetched rows changed after they were
#: ranked, before the one-phase merge is used instead
TWO_PHASE_ATTEMPTS = 2
T = TypeVar("T")
#: the rows a one-phase merge would read, send and throw away, from which two phases pay
#: (measured with bench/bench_partitions.py)
TWO_PHASE_SPARED = 512


#: the first element of a query.lua reply wrapped for locks (see locked_reply)
LOCKED = (b"LOCKED", "LOCKED")


def locked_reply(reply: Any) -> bool:
    """Whether a query.lua reply is wrapped as {"LOCKED", answer, holders}: its partition
    has locks of two-phase commits, held by those transactions (a list: a reply of rows
    holds none, and the escaped id of its first row may be "LOCKED")."""
    return (isinstance(reply, list) and len(reply) == 3 and reply[0] in LOCKED
            and isinstance(reply[2], list))


def on_primary(make: Callable[[ModelState], tuple[T, RedisPlan]]
               ) -> Callable[[ModelState], tuple[T, RedisPlan]]:
    """``make``, its plans answered by the master (a query asked again after settling
    two-phase commits: a replica may not have what was settled)."""
    def made(state: ModelState) -> tuple[T, RedisPlan]:
        result, plan = make(state)
        return result, replace(plan, primary=True)
    return made


def two_phase_pays(partitions: int, window: int | None) -> bool:
    """Whether an ordered query of ``window`` rows over ``partitions`` partitions should rank
    first and then fetch only the winners' documents: one more round trip, against the
    (P - 1) x window documents a one-phase merge reads, sends and throws away."""
    return window is not None and (partitions - 1) * window >= TWO_PHASE_SPARED


#: MGET's command heads by count of document keys
_MGET_HEADS = [b"*%d\r\n$4\r\nMGET\r\n" % (n + 2) for n in range(256)]
#: per partition's document key prefix: its lock flag's key, and that key as RESP's last
#: bulk string of a read by id's MGET
_MGET_PARTS: dict[str, tuple[str, bytes]] = {}


def _mget_parts(prefix: str, flag: str) -> tuple[str, bytes]:
    if len(_MGET_PARTS) >= 4096:
        _MGET_PARTS.clear()
    packed = flag.encode()
    parts = _MGET_PARTS[prefix] = flag, b"$%d\r\n%s\r\n" % (len(packed), packed)
    return parts


def mget_command(keys: KeySpace, ids: list[str]) -> Command:
    """The ``MGET`` of the documents ``ids`` of a model of one partition and of its lock
    flag, with its RESP bytes (``Command.wire``) made from the partition's parts kept
    packed."""
    prefix = keys.partition(0).doc_prefix
    known = _MGET_PARTS.get(prefix)
    if known is None:
        known = _mget_parts(prefix, flag_key(keys.tag(0)))
    flag, tail = known
    names = [prefix + escape_id(id) for id in ids]
    count = len(names)
    heads, out = BULK_HEADS, [_MGET_HEADS[count] if count < 256 else
                               b"*%d\r\n$4\r\nMGET\r\n" % (count + 2)]
    for name in names:
        packed = name.encode()
        out += (heads[n] if (n := len(packed)) < 1024 else b"$%d\r\n" % n, packed, b"\r\n")
    out.append(tail)
    return Command(("MGET", *names, flag), b"".join(out))


class Reader(TwoPhase):
    def get_many(self, options: ModelOptions, ids: Sequence[str],
                 settling: Settling | None = None) -> Op[list[Row | None]]:
        """One MGET per partition involved, in one round trip: a document key carries its
        version (see :mod:`.stored`). Documents stored before it did are read again with
        their meta hashes' versions, atomically (``fetch.lua``), in a second round trip.
        ``settling``: the rounds of a read sent again after settling two-phase commits
        (:meth:`settle_round`), from the master (a replica may not have what was settled)."""
        state = self._state(options)
        if state.schema is None:  # (first use; after it, no generator to run)
            state = yield from self.prepare(options)
        keys = state.keys
        found: dict[str, Row | None] = {}
        older: dict[int, list[str]] = {}
        # each MGET also reads its partition's lock flag (twophase.py): a document locked
        # by a transaction that is committed but not yet applied is read after applying it
        locked: dict[int, list[str]] = {}
        seen: dict[int, list[Any]] = {}  # (what the MGET read of those partitions)
        if keys.partitions == 1:  # the common case: one MGET, nothing to group
            if not ids:
                return []
            members = list(dict.fromkeys(ids)) if len(ids) > 1 else list(ids)
            (reply,) = yield RedisPlan((mget_command(keys, members),), read_only=True,
                                       primary=settling is not None)
            if reply.pop() is not None:
                locked[0] = members
                seen[0] = list(reply)
            stale: list[str] = []
            results.documents(options, members, reply, found, stale)
            if stale:
                older[0] = stale
        else:
            by_partition: dict[int, list[str]] = {}
            for id in dict.fromkeys(ids):
                by_partition.setdefault(keys.partition_of(id), []).append(id)
            if not by_partition:
                return []
            commands = []
            for partition, members in by_partition.items():
                prefix = keys.partition(partition).doc_prefix
                commands.append(Command(("MGET", *[prefix + escape_id(id) for id in members],
                                         flag_key(keys.tag(partition)))))
            replies = yield RedisPlan(tuple(commands), read_only=True,
                                      primary=settling is not None)
            for (partition, members), reply in zip(by_partition.items(), replies, strict=True):
                if reply.pop() is not None:
                    locked[partition] = members
                    seen[partition] = list(reply)
                stale = []
                results.documents(options, members, reply, found, stale)
                if stale:
                    older[partition] = stale
        if locked and (yield from self.settle_for_readers(options, locked, seen)):
            settling = yield from self.settle_round(options, settling)
            return (yield from self.get_many(options, ids, settling))
        if older:
            found.update((yield from self._fetch(options, older, settling is not None)))
        return [found[id] for id in ids]

    def _fetch(self, options: ModelOptions, by_partition: dict[int, list[str]],
               primary: bool = False) -> Op[dict[str, Row | None]]:
        """Documents with their meta hashes' versions, one ``fetch.lua`` call per
        partition (each an atomic read of both), in one round trip."""
        keys = self._state(options).keys
        calls = []
        for partition, members in by_partition.items():
            shared, key_list = keys.partition(partition), []
            for id in members:
                escaped = escape_id(id)
                key_list += [shared.doc_prefix + escaped, shared.meta_prefix + escaped]
            calls.append(FetchCall(key_list).call())
        replies = yield RedisPlan(tuple(calls), read_only=True, primary=primary)
        found: dict[str, Row | None] = {}
        for members, reply in zip(by_partition.values(), replies, strict=True):
            for position, id in enumerate(members):  # flat pairs: JSON or nil, version
                raw = reply[2 * position]
                found[id] = None if raw is None else results.row(
                    options, id, reply[2 * position + 1], raw)
        return found

    def query(self, options: ModelOptions, spec: QuerySpec) -> Op[list[Row]]:
        # (the operation itself, not a generator around it: one frame less per step)
        return self.query_loaded(options, spec, Row)

    def query_loaded(self, options: ModelOptions, spec: QuerySpec,
                     load: Callable[[str, int, dict[str, Any]], T]) -> Op[list[T]]:
        """:meth:`query`'s rows, each as ``load(id, version, data)`` makes it: a model's
        loader (``Document._loader``) gets its documents made straight from the reply of
        a single partition, with no :class:`Row` made and read in between (the engine's
        ``fetch_loaded``); a merge of partitions, or rows ordered in Python, are rows
        first, then loaded."""
        where = spec.where
        if (type(where) is Or and not where.children) or spec.limit == 0:  # (FALSE, no call)
            return []
        if isinstance(where, Condition) and where.field == ID and where.lookup in (
                Lookup.EXACT, Lookup.IN):
            # by id: GETs (one round trip), no script; ordering and slicing in Python
            ids = [where.value] if where.lookup is Lookup.EXACT else list(where.value)
            found = yield from self.get_many(options, ids)
            rows = [row for row in found if row is not None]
            if len(rows) <= 1 and spec.after is None:  # (arrange's own shortcut, inline)
                return results.made(rows[spec.offset:][:spec.limit], load)
            return results.made(results.arrange(options, spec, rows), load)
        single = options.partitions == 1
        two_phase = not single and two_phase_pays(options.partitions, spec.window)

        def make(state: ModelState) -> tuple[Plan, RedisPlan]:
            plan = state.planner.plan(spec)
            if not plan.server_order:
                return plan, state.query_plan(plan, QueryMode.ROWS, 0, None)
            if single:
                return plan, state.query_plan(plan, QueryMode.ROWS, spec.offset, spec.limit)
            # each partition's window, in order and with its sort keys, to merge (without
            # the documents when only the winners' are to be fetched)
            mode = QueryMode.SORTKEYS if two_phase else QueryMode.KEYED
            return plan, state.query_plan(plan, mode, 0, spec.window)

        rounds = 0
        while True:
            # after TWO_PHASE_ATTEMPTS rounds whose rows changed between the phases, the
            # one-phase merge: its rows are each partition's own snapshot
            two_phase = two_phase and rounds < TWO_PHASE_ATTEMPTS
            rounds += 1
            plan, replies = yield from self._ask_settled(options, make)
            if not plan.server_order:
                return results.made(results.arrange(
                    options, spec, [row for reply in replies
                                    for row in results.rows(options, reply)],
                    plan.residual), load)
            if single:
                return results.rows(options, replies[0], load)
            if not two_phase:
                return results.made(results.merge(options, spec, replies), load)
            winners = yield from self._winners(options, results.merge_keys(spec, replies))
            if winners is not None:
                return results.made(winners, load)

    def _ask_settled(self, options: ModelOptions, make: Callable[[ModelState], tuple[
            T, RedisPlan]]) -> Op[tuple[T, list[Any]]]:
        """:meth:`_ask` for query.lua calls (one per partition, in partition order). A
        partition with locks of two-phase commits answers {"LOCKED", answer, holders}: the
        committed transactions holding them are applied (:meth:`settle_partitions`) and
        the query is asked again, also when one of those holders is gone by then (applied
        in between); an undecided one changed nothing, and the answer stands. Asked again
        from the master, after a growing pause, until the time :meth:`settle_round` allows
        has passed: then TransactionsUnsettled (never an answer that could hold half a
        transaction)."""
        settling: Settling | None = None
        ask = make
        while True:
            made, replies = yield from self._ask(options, ask)
            for reply in replies:  # (locked_reply's test inline: no call per reply)
                if (isinstance(reply, list) and len(reply) == 3 and reply[0] in LOCKED
                        and isinstance(reply[2], list)):
                    break
            else:
                return made, replies
            flagged = [p for p, reply in enumerate(replies) if locked_reply(reply)]
            if not flagged:
                return made, replies
            then = [replies[p][2] for p in flagged]
            replies = [reply[1] if locked_reply(reply) else reply for reply in replies]
            if not (yield from self.settle_partitions(options, flagged, then)):
                return made, replies
            settling = yield from self.settle_round(options, settling)
            ask = on_primary(make)

    def _winners(self, options: ModelOptions,
                 ranked: list[tuple[str, int]]) -> Op[list[Row] | None]:
        """The second phase of a two-phase query: the documents of the rows the merge of the
        partitions' sort keys kept. None when one of them is no longer at the version that
        was ranked (written, deleted or expired in between): its place could be wrong, and
        the query runs again."""
        found = yield from self.get_many(options, [id for id, _ in ranked])
        rows = []
        for row, (_, version) in zip(found, ranked, strict=True):
            if row is None or row.version != version:
                return None
            rows.append(row)
        return rows

    def count(self, options: ModelOptions, spec: QuerySpec) -> Op[int]:
        where = spec.where
        if (type(where) is Or and not where.children) or spec.limit == 0:  # (FALSE, no call)
            return 0
        total = yield from self._matches(options, spec, QueryMode.COUNT)
        total = max(0, total - spec.offset)
        return total if spec.limit is None else min(total, spec.limit)

    def exists(self, options: ModelOptions, spec: QuerySpec) -> Op[bool]:
        if spec.where == FALSE or spec.limit == 0:
            return False
        if spec.offset or spec.limit is not None:
            n = yield from self.count(options, spec)
            return n > 0
        found = yield from self._matches(options, spec, QueryMode.EXISTS)
        return found > 0

    def _matches(self, options: ModelOptions, spec: QuerySpec, mode: QueryMode) -> Op[int]:
        """How many documents match (``exists``: 0 or 1), ignoring offset and limit."""
        if spec.after is None and (spec.order or spec.offset or spec.limit is not None):
            spec = QuerySpec(spec.where)  # order is irrelevant to a count
        state = self._state(options)
        if state.schema is None:  # (first use; after it, no generator to run)
            state = yield from self.prepare(options)
        plan = state.planner.plan(spec, counting=True)
        if plan.residual is not None or not plan.server_order:  # (query() checks the layout)
            rows = yield from self.query(options, QuerySpec(spec.where, spec.order, 0, None,
                                                            spec.after))
            return min(len(rows), 1) if mode is QueryMode.EXISTS else len(rows)
        driver = plan.count_driver
        if driver.exact and spec.after is None and driver.kind in ("RANGE", "ALL"):
            # while no document can expire the index is the truth: count its entries
            # (count.lua answers -1 if some can, and query.lua then checks each one)
            layout = state.writes.layout
            counting = plan.counting
            if counting is None or counting[0] != layout:  # (made once per plan and layout)
                counting = plan.counting = (layout, self._count_plan(state, plan))
            counts = [int(c) for c in (yield counting[1])]
            if COUNT_OUTDATED in counts:  # planned with an outdated schema: plan again
                yield from self.prepare(options, refresh=True)
                return (yield from self._matches(options, spec, mode))
            if COUNT_EXPIRING not in counts:
                total = sum(counts)
                return min(total, 1) if mode is QueryMode.EXISTS else total
        _, replies = yield from self._ask_settled(options, lambda state: (None, state.query_plan(
            state.planner.plan(spec, counting=True), mode, 0, None)))
        total = sum(int(r) for r in replies)
        return min(total, 1) if mode is QueryMode.EXISTS else total

    @staticmethod
    def _count_plan(state: ModelState, plan: Plan) -> RedisPlan:
        """The ``count.lua`` calls of an exact RANGE or ALL plan, one per partition."""
        driver, keys, layout = plan.count_driver, state.keys, state.writes.layout
        bounds = plan.bounds
        # (the planner's KEYS positions of query.lua: 1 the id index, 2.. the indexes)
        index = -1 if driver.kind == "ALL" else state.planner.keypos[driver.indexes[0]] - 2
        calls = []
        for partition in range(state.options.partitions):
            shared = keys.partition(partition)
            calls.append(CountCall(shared.ttl, shared.ids if index < 0
                                   else shared.indexes[index], shared.state, layout,
                                   bounds).call())
        return RedisPlan(tuple(calls), read_only=True)

    def time_to_live(self, options: ModelOptions, id: str) -> Op[float | None]:
        """Seconds until the document expires (0.0 once it is gone); None if it never does."""
        keys = self._state(options).keys
        (ms,) = yield RedisPlan((Command(("PTTL", keys.doc(keys.partition_of(id), id))),),
                                read_only=True)
        ms = int(ms)
        return None if ms == -1 else max(ms, 0) / 1000
