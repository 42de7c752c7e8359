"""The backend a cached model's operations see: the primary's, with the cache around it.

:class:`CachedBackend` implements the backend contract by composing the primary backend's
operations with the cache store's (:mod:`.reads`, :mod:`.writes`). Every write path of the
engine (save, delete, update and delete by query, bulk, atomic field operations,
transactions) goes through :meth:`write` or :meth:`transact`, so none can skip the cache's
invalidation; reads by id (get, get_many, reload, ``get(id=...)``) go through the cache.
Every other operation is the primary's own, through an explicit list: an operation this
class does not know (e.g. the Redis backend's in-place ``update_fields``) is absent, so the
engine takes its general path, which writes through :meth:`write`.

Cache failures never fail an operation (:meth:`guarded`): they count against the cache
server's circuit breaker (:mod:`.state`), and the operation goes on with the primary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from .. import logs
from ..engine.contract import Backend, Row, WriteRequest, WriteResult
from ..engine.drive import Op
from ..errors import (
    AuthenticationError,
    BackendError,
    CorruptDocumentError,
    PermissionDeniedError,
    UnsafeEvictionPolicy,
    UnsupportedOperation,
    WrongTypeError,
)
from ..options import ModelOptions
from ..query.lookups import Lookup
from ..query.nodes import ID, Condition, QuerySpec
from . import reads, writes
from .dispatch import FAILED, on_cache
from .entries import CacheKeys, new_token
from .state import OwedSnapshot, ServerState
from .stats import counters
from .store import CacheStore

T = TypeVar("T")

#: errors of the cache server that are its configuration or its data, not its absence:
#: raised, since going on without the cache would hide them for good
RAISED = (AuthenticationError, PermissionDeniedError, UnsafeEvictionPolicy, WrongTypeError,
          CorruptDocumentError)

#: the primary's operations a cached model uses as they are
_PRIMARY_OPS = frozenset({
    "allocate_ids", "explain", "change_positions", "read_changes", "create_group",
    "read_group", "group_pending", "ack_changes", "claim_changes", "reindex", "verify",
    "repair"})


class CachedBackend:
    def __init__(self, primary: Backend, store: CacheStore, state: ServerState,
                 reading: bool = True) -> None:
        self.primary, self.store, self.state = primary, store, state
        #: False for ``cached(False)``: reads go to the primary (writes still invalidate)
        self.reading = reading
        self.name = primary.name
        self.capabilities = primary.capabilities
        self.max_document_bytes = primary.max_document_bytes

    def __getattr__(self, name: str) -> Any:
        if name in _PRIMARY_OPS:
            return getattr(self.primary, name)
        raise AttributeError(name)

    def keys(self, options: ModelOptions) -> CacheKeys:
        return options.state_for(self.store, lambda: CacheKeys(options))

    # -- the cache steps, each allowed to fail ------------------------------------------------

    def guarded(self, options: ModelOptions, op: Op[T]) -> Op[T]:
        """``op`` on the cache; :data:`FAILED` if the breaker is open or it failed."""
        breaker = self.state.breaker
        if not breaker.allow():
            op.close()
            return FAILED  # type: ignore[no-any-return]
        try:
            result = yield from on_cache(op)
        except BackendError as error:
            if isinstance(error, RAISED):
                breaker.abandon()
                raise
            # (the class only: a server's message can quote keys, which hold ids)
            logs.cache.warning("cache operation failed model=%s error=%s server=%s",
                               options.model_name, type(error).__name__,
                               self.state.breaker.server)
            breaker.failure()
            counters(options).add(errors=1)
            return FAILED  # type: ignore[no-any-return]
        except BaseException:  # cancelled, closed, or not the server's doing: no verdict
            breaker.abandon()
            raise
        breaker.success()
        return result

    def owe(self, options: ModelOptions, ids: list[str], token: str = "",
            versions: dict[str, int] | None = None) -> None:
        """Record that ``ids`` (and the query generation) could not be invalidated;
        ``token``: the write's mark, left there by its ``cache_begin`` (``versions``: what
        it wrote per id)."""
        self.state.owe(self.keys(options).generation, ids, can_drop=self.store.can_drop,
                       token=token, versions=versions)

    def settled(self, options: ModelOptions) -> Op[bool]:
        """Pay what this process owes the model's cache (see :mod:`.state`) before reading
        it; False if that failed (then the cache must not be read)."""
        keys = self.keys(options)
        owed = self.state.owed(keys.generation)
        if owed is None:
            return True
        done = yield from self.guarded(options, self._paying(options, keys, owed))
        if done is FAILED:
            return False
        self.state.paid(keys.generation, owed)
        return True

    def _paying(self, options: ModelOptions, keys: CacheKeys, owed: OwedSnapshot) -> Op[bool]:
        assert options.cache is not None
        ttl_ms = options.cache.ttl_ms
        if owed.everything:
            yield from self.store.drop(keys.pattern, keys.generation, new_token(), ttl_ms)
        # a write whose finish failed: its token leaves its slots and the generation's
        # mark, as its cache_finish would have (the write has completed)
        for token, versions in owed.by_token().items():
            groups = [[(keys.entry(id), versions[id], b"") for id in group]
                      for group in keys.by_partition(list(versions))]
            yield from self.store.finish(groups, token, ttl_ms, ttl_ms, keys.generation,
                                         new_token())
        if not owed.everything:
            expected = owed.expected()
            tombstones = [[(keys.entry(id), expected[id]) for id in group]
                       for group in keys.by_partition(list(expected))]
            yield from self.store.invalidate(tombstones, ttl_ms,
                                             keys.generation if owed.generation else None,
                                             new_token())
        return True

    # -- the contract -------------------------------------------------------------------------

    def get_many(self, options: ModelOptions, ids: Sequence[str]) -> Op[list[Row | None]]:
        return (yield from reads.get_many(self, options, list(ids)))

    def write(self, options: ModelOptions,
              requests: Sequence[WriteRequest]) -> Op[list[WriteResult]]:
        return (yield from writes.written(
            self, options, requests, lambda rs: self.primary.write(options, rs)))

    def transact(self, options: ModelOptions, checks: Sequence[tuple[str, int]],
                 requests: Sequence[WriteRequest]) -> Op[list[WriteResult]]:
        return (yield from writes.written(
            self, options, requests, lambda rs: self.primary.transact(options, checks, rs)))

    def query(self, options: ModelOptions, spec: QuerySpec) -> Op[list[Row]]:
        id = _one_id(spec)
        if id is None or not self.reading:
            if id is not None:
                counters(options).add(bypassed=1)
            return (yield from self.primary.query(options, spec))
        if spec.limit == 0:
            return []
        (row,) = yield from reads.get_many(self, options, [id])
        return [] if row is None else [row]

    def count(self, options: ModelOptions, spec: QuerySpec) -> Op[int]:
        return (yield from self.primary.count(options, spec))

    def exists(self, options: ModelOptions, spec: QuerySpec) -> Op[bool]:
        return (yield from self.primary.exists(options, spec))

    def drop_collection(self, options: ModelOptions) -> Op[int]:
        """The primary's, then every key of the model's cache (on a standalone or Sentinel
        cache: the keys are found with SCAN; refused before anything is dropped on a
        cluster)."""
        if not self.store.can_drop:
            raise UnsupportedOperation(self.name, "drop_collection of a model cached on a "
                                       "Redis Cluster")
        assert options.cache is not None
        dropped = yield from self.primary.drop_collection(options)
        keys = self.keys(options)
        done = yield from self.guarded(
            options, self.store.drop(keys.pattern, keys.generation, new_token(),
                                     options.cache.ttl_ms))
        if done is FAILED:
            self.state.owe(keys.generation, [], everything=True)
        return dropped


def _one_id(spec: QuerySpec) -> str | None:
    """The id of ``filter(id=x)`` with no offset or keyset position (``get(id=x)``,
    ``filter(id=x).first()``), which the document cache answers; else None."""
    where = spec.where
    if (isinstance(where, Condition) and where.field == ID and where.lookup is Lookup.EXACT
            and not spec.offset and spec.after is None):
        return str(where.value)
    return None

