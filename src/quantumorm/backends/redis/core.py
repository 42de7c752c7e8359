"""What every part of the Redis backend stands on: a model's state on a connection (its
keys, write layout, stored schema and planner), reading the schema at first use, and the
resend of a plan that a script refused because the schema changed under it.

:class:`BackendCore` is the base of the reading and writing halves of
:class:`~.backend.RedisBackend` (``reader.py``, ``writer.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from weakref import ref as _ref
from typing import Any, TypeVar

from ... import logs
from ...engine.drive import Op
from ...errors import PermissionDeniedError, SchemaMismatchError
from ...options import ModelOptions
from ...schema import Schema
from . import schemas, writes
from .calls import PreflightCall, QueryCall, QueryMode
from .commands import Call, RedisPlan
from .keys import KeySpace
from .planner import Plan, Planner
from .replies import layout_refused, preflight_refusal

T = TypeVar("T")

#: how often an operation reads the schema again and retries when a script says its
#: partition has seen a newer layout (each time, another process changed the schema)
LAYOUT_ATTEMPTS = 5
#: the largest offset or limit a query script is given as is (see query_plan)
MAX_BOUND = 2**53
#: the most query.lua calls a plan keeps (see query_plan): first pages of one layout, each
#: of one call per partition (the planner caches hundreds of plans per model; every kept
#: call is a few more objects for the garbage collector to walk)
SENT_CALLS = 8
#: the (mode, offset, limit) whose query.lua arguments a model's state keeps
QUERY_HEADS = 64


class ModelState:
    """What one connection knows of one model: its keys, write layout, stored schema (read
    at first use) and the planner for the indexes that schema says are ready."""

    __slots__ = ("options", "keys", "planner", "planned_with", "writes", "schema",
                 "_query_layout", "_query_heads")

    def __init__(self, options: ModelOptions, max_document_bytes: int) -> None:
        self.options = options
        self.keys = KeySpace(options)
        self.planner = Planner(options)
        self.writes = writes.WriteLayout(options, self.keys, max_document_bytes)
        self.schema: Schema | None = None
        self.planned_with: frozenset[str] | None = None
        self._query_layout: list[tuple[tuple[str, ...], str, str]] | None = None
        #: query.lua's KEYS and first arguments per partition, by (mode, offset, limit,
        #: the plan's reach)
        self._query_heads: dict[tuple[QueryMode, int, int | None, int],
                                list[tuple[tuple[str, ...], tuple[str, ...]]]] = {}

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

    def _heads(self, mode: QueryMode, offset: int, limit: int | None, reach: int
               ) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
        """Per partition: the KEYS of a query.lua call and its arguments before the program
        (:class:`QueryCall`'s), kept per (mode, offset, limit, reach) for a few of them.
        The KEYS are the id index and the indexes up to the plan's ``reach`` (the last its
        program names: :attr:`Plan.reach`), then the state hash and the TTL schedule."""
        verify = "1" if self.options.ttl else "0"
        # (Lua numbers are doubles: past 2**53 a bound reaches Redis as "9.2e+18" and is
        # refused; no partition holds that many documents, so larger bounds mean "all")
        first = str(min(offset, MAX_BOUND))
        last = str(-1 if limit is None or limit > MAX_BOUND else limit)
        heads = []
        for keys, doc_prefix, meta_prefix in self.query_layout():
            if reach < len(keys) - 2:
                keys = (*keys[:reach], *keys[-2:])
            call = QueryCall(keys, doc_prefix, meta_prefix, mode, first, last, verify, b"",
                             b"").call()
            heads.append((call.keys, call.args[:-2]))
        if len(self._query_heads) >= QUERY_HEADS:
            self._query_heads.clear()  # (many offsets: pages of an offset pagination)
        self._query_heads[(mode, offset, limit, reach)] = heads
        return heads

    def query_layout(self) -> list[tuple[tuple[str, ...], str, str]]:
        """Per partition: the KEYS of a query.lua call and its document and meta prefixes."""
        if self._query_layout is None:
            keys = self.keys
            self._query_layout = [
                ((keys.ids(p), *keys.indexes(p), keys.state(p), keys.ttl(p)),
                 keys.doc_prefix(p), keys.meta_prefix(p))
                for p in range(keys.partitions)]
        return self._query_layout

    def query_plan(self, plan: Plan, mode: QueryMode, offset: int, limit: int | None) -> RedisPlan:
        """One ``query.lua`` call per partition, in one round trip. A first page's calls are
        kept on ``plan``, which the planner caches: a query asked again with the same mode,
        limit and layout is sent as it was (no more than :data:`SENT_CALLS` calls per plan:
        other pages of an offset pagination, and plans of many partitions, are made each
        time)."""
        layout = self.writes.layout
        key = (mode, limit, layout)
        sent = plan.sent
        if offset == 0 and sent is not None:
            made = sent.get(key)
            if made is not None:
                return made
        program = plan.program
        reach = plan.reach
        heads = self._query_heads.get((mode, offset, limit, reach))
        if heads is None:
            heads = self._heads(mode, offset, limit, reach)
        # (QueryCall(...).call() of each partition, from the arguments kept for the mode,
        # offset and limit: most plans made here are new, a query of new values)
        # (a program that reads values also sends Plan.derivable: query.lua's ARGV[9])
        derivable = plan.rows_derivable if mode == "rows" else plan.derivable
        if len(heads) == 1:  # (one partition: no loop)
            keys, head = heads[0]
            made = RedisPlan((Call("query", keys, (*head, program, layout, *derivable)),),
                             read_only=True)
        else:
            made = RedisPlan(tuple([Call("query", keys, (*head, program, layout, *derivable))
                                    for keys, head in heads]), read_only=True)
        if offset == 0:
            # (first; or the schema was read again: the calls kept carry an old layout,
            # and would never be asked again)
            if sent is None or any(kept[2] != layout for kept in sent):
                sent = plan.sent = {}
            if (len(sent) + 1) * len(made.steps) <= SENT_CALLS:
                sent[key] = made
        return made


class BackendCore:
    """The Redis backend's state per model, and the schema checks every operation shares."""

    name = "redis"

    def __init__(self, max_document_bytes: int = writes.DEFAULT_MAX_DOCUMENT_BYTES,
                 max_block: float = 1.0, cluster: bool = False) -> None:
        self.max_document_bytes = max_document_bytes
        #: on Redis Cluster a command may name keys of one slot only (stream reads split)
        self.cluster = cluster
        #: longest blocking stream read, in seconds (half the socket timeout)
        self.max_block = max_block

    def _state(self, options: ModelOptions) -> ModelState:
        # (state_for's lookup in line, every operation asks: the options' weak map read by
        # the weak reference it is keyed by, as WeakKeyDictionary.get reads it, with no
        # call of state_for nor of get, and no closure made)
        states: Any = options.__dict__.get("_states")
        if states is not None:
            state: ModelState | None = states.data.get(_ref(self))
            if state is not None:
                return state
        return options.state_for(self, lambda: ModelState(options, self.max_document_bytes))

    def prepare(self, options: ModelOptions, refresh: bool = False) -> Op[ModelState]:
        """The model's state, its stored schema reconciled with the declaration at first use
        (one round trip; then none). ``refresh``: read the schema again, because a script
        found that its partition has seen a newer layout (an index was added, built or
        dropped since this connection read it)."""
        state = self._state(options)
        if state.schema is None:
            yield from self._preflight(state)
        if refresh:
            logs.redis.warning("layout refused: the schema changed in another process; "
                               "reading it again model=%s layout=%s", options.model_name,
                               state.schema and state.schema.layout)
        if state.schema is None or refresh:
            state.use((yield from schemas.register(
                options, state.keys, lambda: self.before_schema_change(options))))
        return state

    def before_schema_change(self, options: ModelOptions) -> Op[None]:
        """What runs before a change of the model's stored schema is stored (see
        schemas.py): the two-phase commit's (:class:`~.twophase.TwoPhase`) settles the
        transactions holding locks in the model's partitions."""
        yield from ()

    def _preflight(self, state: ModelState) -> Op[None]:
        """Refuse, before anything is written, a user whose ACL would stop a script
        half-way through a write (``preflight.lua``; the rule to grant: ``acl.acl_rule``)."""
        keys, options = state.keys, state.options
        index = keys.index(0, options.indexes[0].name) if options.indexes else keys.ids(0)
        streams = state.writes.event_keys(0)
        call = PreflightCall(
            keys.doc(0, "_"), keys.meta(0, "_"), keys.ids(0), keys.ttl(0), keys.state(0),
            keys.trash(0, "_"), keys.sequence if options.partitions == 1 else keys.ids(0),
            index, streams, "1" if streams else "0",
            keys.channel if options.publish else "").call()
        (reply,) = yield RedisPlan((call,), read_only=True)
        refused = preflight_refusal(reply)
        if refused:
            raise PermissionDeniedError(
                f"{options.model_name}: the Redis user may not run {refused}; "
                "grant it QuantumORM's rule: quantumorm.backends.redis.acl.acl_rule("
                f"{options.namespace!r}) (see the README, Connections)")

    def _ask(self, options: ModelOptions,
             make: Callable[[ModelState], tuple[T, RedisPlan]]) -> Op[tuple[T, list[Any]]]:
        """Send the plan that ``make`` builds from the model's state. When a partition has
        seen a newer schema layout than the one it was planned with (an index added, built
        or dropped since), its script refused before doing anything: read the schema
        again, plan again and send it again."""
        state = self._state(options)
        if state.schema is None:  # (first use; after it, no generator to run)
            state = yield from self.prepare(options)
        for _attempt in range(LAYOUT_ATTEMPTS):
            made, plan = make(state)
            replies = yield plan
            for reply in replies:  # (a loop, not any(generator): no call per reply)
                if layout_refused(reply):
                    break
            else:
                return made, replies
            state = yield from self.prepare(options, refresh=True)
        raise unsettled(options)


def unsettled(options: ModelOptions) -> SchemaMismatchError:
    return SchemaMismatchError(
        f"{options.model_name}: the collection's schema kept changing under this operation "
        f"({LAYOUT_ATTEMPTS} times); another process is changing the model's declaration")
