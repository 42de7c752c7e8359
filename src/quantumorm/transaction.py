"""Transactions: documents read, then written, all or nothing, with optimistic checks.

::

    async with conn.transaction() as tx:
        a = await tx.get(Account, "a")
        b = await tx.get(Account, "b")
        a.balance -= 10
        b.balance += 10
        tx.save(a)
        tx.save(b)
    # committed here: one atomic write, or VersionConflict and nothing written

Reads go to the store at once and remember each document's version (or its absence).
Writes are queued, validated when queued, and sent together at commit with a check that
every document read is still at the version read: a transaction commits only if it saw the
latest state of everything it read (serializable for its read set). Nothing is locked
while the block runs, so a conflict is reported at commit (a document locked by another
transaction's commit in progress: :class:`~quantumorm.errors.DocumentLocked`, a conflict
too); :meth:`Connection.run_transaction` re-runs a function on conflicts, a bounded number
of times, pausing a little after a lock.

A transaction may hold documents of several models. On SQLite and PostgreSQL it is one SQL
transaction. On Redis, documents of one partition of one model are committed by one script
(the fast path); documents of several partitions or models (several slots, or nodes of a
cluster) by a two-phase commit with recovery (see :mod:`quantumorm.backends.redis.twophase`):
all or nothing, even when the client dies half-way; its documents stay locked against other
writers from prepare to apply, at most ``timeout`` seconds (then it is aborted). Documents
whose models live on different connections (or behind a cache) cannot share a transaction:
:class:`~quantumorm.errors.TransactionError`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from . import signals
from .cache import routing as cache_routing
from .engine import ops, prepared
from .engine.contract import Backend, WriteRequest, WriteResult
from .engine.drive import Op
from .errors import DocumentLocked, TransactionError, UnsupportedOperation, VersionConflict
from .fields.base import MISSING
from .query.expressions import clean_id
from .registry import connection_for
from .vocabulary import Vocabulary

if TYPE_CHECKING:
    from .connection import Connection
    from .document import Document

D = TypeVar("D", bound="Document")
T = TypeVar("T")

#: how long a transaction across partitions may stay undecided (seconds): its documents are
#: locked from its prepare until it is applied, and past this it is aborted
TIMEOUT = 5.0
#: The longest timeout, in seconds (about 3,170 years): the ms a committed transaction's
#: applied marker is kept (ten timeouts) stay within the 15 digits tx_apply.lua accepts.
MAX_TIMEOUT = 99_999_999_999


class TxState(Vocabulary):
    """Where a transaction is: open, then committing and committed (or failed), or rolled
    back. Printed as the bare word ("this transaction is committed")."""

    OPEN = "open"
    COMMITTING = "committing"  # (a second commit meanwhile is refused)
    COMMITTED = "committed"
    FAILED = "failed"
    ROLLED_BACK = "rolled back"


class _Work:
    """What a transaction has read and queued; shared by the async and blocking kinds."""

    def __init__(self, connection: Connection, timeout: float = TIMEOUT) -> None:
        if not connection.backend.capabilities.transactions:
            raise UnsupportedOperation(connection.kind, "transactions")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
                0 < timeout <= MAX_TIMEOUT):
            raise ValueError(f"timeout must be a positive number of seconds up to "
                             f"{MAX_TIMEOUT} (got {timeout!r})")
        self.base = self.connection = connection
        self.timeout = float(timeout)
        self.model: type[Document] | None = None  # the first model
        self.models: list[type[Document]] = []
        # (model, id) -> version read (0: absent)
        self.reads: dict[tuple[type[Document], str], int] = {}
        self.writes: dict[int, tuple[Document, dict[str, Any] | None, WriteRequest]] = {}
        self.state = TxState.OPEN

    def bind(self, model: type[Document]) -> None:
        if self.state is not TxState.OPEN:
            raise TransactionError(f"this transaction is {self.state}")
        if self.model is None:
            connection_for(model, self.connection)  # checks the model against the backend
            # a cached model's commit goes through its cache (reads stay on the primary)
            self.connection = cache_routing.around(model, self.connection, reading=False)
            self.model = model
            self.models.append(model)
        elif model not in self.models:
            connection_for(model, self.base)
            if cache_routing.around(model, self.base, reading=False) is not self.connection:
                raise TransactionError(
                    f"{model.__name__} is written through another store than "
                    f"{self.model.__name__} (a cache in front of one of them): one transaction "
                    "commits on one store")
            self.models.append(model)

    def get(self, backend: Backend, model: type[D], id: Any) -> Op[D | None]:
        self.bind(model)
        id = clean_id(id, ValueError, f"{model.__name__} id")
        (row,) = yield from backend.get_many(model._meta, [id])
        version = 0 if row is None else row.version
        seen = self.reads.setdefault((model, id), version)
        if seen != version:  # it changed between two reads of this transaction
            raise VersionConflict(model.__name__, id, seen, version or None)
        return None if row is None else model.from_storage(row.id, row.version, row.data)

    def save(self, doc: Document, ttl: Any) -> None:
        self.bind(type(doc))
        prepared.check_whole(doc)
        expire = ops.expiry(self.connection.backend, doc._meta, ttl)
        signals.pre_save.send(type(doc), document=doc)
        data = doc.clean()
        request = prepared.request(doc, data, expire)
        if request is not None:
            self._queue(doc, data, request)

    def delete(self, doc: Document) -> None:
        self.bind(type(doc))
        if doc.id is None or doc._version == 0:
            raise TransactionError(f"{type(doc).__name__} was never saved; nothing to delete")
        signals.pre_delete.send(type(doc), document=doc)
        self._queue(doc, None, WriteRequest("delete", doc.id, doc._version))

    def _queue(self, doc: Document, data: dict[str, Any] | None, request: WriteRequest) -> None:
        if doc.id is None and doc._meta.partitions > 1:
            raise TransactionError(
                f"{type(doc).__name__} has {doc._meta.partitions} partitions: a new document "
                "in a transaction needs an id, so that its partition is known")
        for other, _, _ in self.writes.values():
            if (other is not doc and doc.id is not None and other.id == doc.id
                    and type(other) is type(doc)):
                raise TransactionError(
                    f"{type(doc).__name__} {doc.id!r} is queued twice, as two different "
                    "objects; queue one object per document")
        self.writes[id(doc)] = (doc, data, request)

    def commit(self, backend: Backend) -> Op[None]:
        if self.state is not TxState.OPEN:
            raise TransactionError(f"this transaction is {self.state}")
        self.state = TxState.COMMITTING
        try:
            yield from self._commit(backend)
        except BaseException:
            self.state = TxState.FAILED
            raise
        self.state = TxState.COMMITTED

    def _commit(self, backend: Backend) -> Op[None]:
        if self.model is None:
            return
        written = {(type(doc), request.id) for doc, _, request in self.writes.values()}
        parts = []
        every: list[tuple[Document, dict[str, Any] | None, WriteRequest]] = []
        for model in self.models:
            checks = [(id, version) for (m, id), version in self.reads.items()
                      if m is model and (m, id) not in written]
            entries = [e for e in self.writes.values() if type(e[0]) is model]
            if checks or entries:
                parts.append((model._meta, checks, [request for _, _, request in entries]))
                every += entries
        if not parts:
            return
        many = getattr(backend, "transact_many", None)
        if len(parts) == 1 and (many is None or parts[0][0].partitions == 1):
            results = yield from backend.transact(*parts[0])  # (one model, one partition)
        elif many is not None:
            done: list[list[WriteResult]] = yield from many(parts, self.timeout)
            results = [result for share in done for result in share]
        else:
            raise TransactionError(
                f"the {backend.name} backend commits a transaction on one model; this one "
                f"holds {', '.join(m.__name__ for m in self.models)}")
        for (doc, data, request), result in zip(every, results, strict=True):
            if request.kind == "delete":
                doc._version, doc._stored = 0, None
                signals.post_delete.send(type(doc), document=doc, deleted=True)
            else:
                assert data is not None
                prepared.applied(doc, data, result)
                signals.post_save.send(type(doc), document=doc,
                                       created=request.kind == "insert")

    def rollback(self) -> None:
        if self.state is TxState.OPEN:
            self.state = TxState.ROLLED_BACK
        self.writes.clear()


class Transaction:
    """An asyncio transaction: ``async with conn.transaction() as tx``. Commits when the
    block ends normally, discards its queued writes when it raises. ``timeout``: how long
    a commit across partitions may stay undecided (its documents locked), in seconds."""

    def __init__(self, connection: Connection, timeout: float = TIMEOUT) -> None:
        self._work = _Work(connection, timeout)

    async def get(self, model: type[D], id: str | int) -> D | None:
        """The document (or None), read now; its version is checked again at commit."""
        return await self._work.connection.arun(lambda b: self._work.get(b, model, id))

    def save(self, doc: Document, *, ttl: float | None = MISSING) -> None:
        """Queue an insert or update of ``doc`` (validated now, written at commit)."""
        self._work.save(doc, ttl)

    def delete(self, doc: Document) -> None:
        """Queue a delete of ``doc`` (at the version it was loaded with)."""
        self._work.delete(doc)

    async def commit(self) -> None:
        await self._work.connection.arun(self._work.commit)

    def rollback(self) -> None:
        self._work.rollback()

    async def __aenter__(self) -> Transaction:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        if kind is not None:
            self.rollback()
        elif self._work.state is TxState.OPEN:
            await self.commit()


class SyncTransaction:
    """The blocking twin: ``with conn.transaction_sync() as tx``."""

    def __init__(self, connection: Connection, timeout: float = TIMEOUT) -> None:
        self._work = _Work(connection, timeout)

    def get(self, model: type[D], id: str | int) -> D | None:
        """The document (or None), read now; its version is checked again at commit."""
        return self._work.connection.run(lambda b: self._work.get(b, model, id))

    def save(self, doc: Document, *, ttl: float | None = MISSING) -> None:
        """Queue an insert or update of ``doc`` (validated now, written at commit)."""
        self._work.save(doc, ttl)

    def delete(self, doc: Document) -> None:
        """Queue a delete of ``doc`` (at the version it was loaded with)."""
        self._work.delete(doc)

    def commit(self) -> None:
        self._work.connection.run(self._work.commit)

    def rollback(self) -> None:
        self._work.rollback()

    def __enter__(self) -> SyncTransaction:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is not None:
            self.rollback()
        elif self._work.state is TxState.OPEN:
            self.commit()


def _check_attempts(attempts: int) -> None:
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"attempts must be a positive int (got {attempts!r})")


async def run(connection: Connection, fn: Callable[[Transaction], Awaitable[T]],
              attempts: int, timeout: float = TIMEOUT) -> T:
    _check_attempts(attempts)
    for attempt in range(attempts):
        try:
            async with Transaction(connection, timeout) as tx:
                result = await fn(tx)
            return result
        except VersionConflict as conflict:
            if attempt + 1 == attempts:
                raise
            if isinstance(conflict, DocumentLocked):  # (another transaction is deciding)
                await asyncio.sleep(_backoff(attempt))
    raise AssertionError("unreachable")


def _backoff(attempt: int) -> float:
    """Seconds to wait before trying again after meeting another transaction's lock: a
    random part, so that two transactions locking each other out do not meet again."""
    return random.uniform(0.001, 0.005 * 2 ** min(attempt, 6))


def run_sync(connection: Connection, fn: Callable[[SyncTransaction], T], attempts: int,
             timeout: float = TIMEOUT) -> T:
    _check_attempts(attempts)
    for attempt in range(attempts):
        try:
            with SyncTransaction(connection, timeout) as tx:
                result = fn(tx)
            return result
        except VersionConflict as conflict:
            if attempt + 1 == attempts:
                raise
            if isinstance(conflict, DocumentLocked):  # (another transaction is deciding)
                time.sleep(_backoff(attempt))
    raise AssertionError("unreachable")
