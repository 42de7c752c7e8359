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
latest state of everything it read (serializable for its read set). Nothing is locked, so a
conflict is reported at commit; :meth:`Connection.run_transaction` re-runs a function on
conflicts, a bounded number of times.

One transaction is one atomic operation of the backend; on Redis that is one script, which
reaches one hash slot: all documents must belong to one model and one partition (every
document of a model with ``partitions = 1``). Anything else raises
:class:`~quantumorm.errors.TransactionError` rather than committing part of the work.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from . import signals
from .cache import routing as cache_routing
from .engine import ops
from .engine.contract import Backend, WriteRequest
from .engine.drive import Op
from .errors import TransactionError, UnsupportedOperation, VersionConflict
from .fields.base import MISSING
from .query.expressions import clean_id
from .registry import connection_for
from .vocabulary import Vocabulary

if TYPE_CHECKING:
    from .connection import Connection
    from .document import Document

D = TypeVar("D", bound="Document")
T = TypeVar("T")


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

    def __init__(self, connection: Connection) -> None:
        if not connection.backend.capabilities.transactions:
            raise UnsupportedOperation(connection.kind, "transactions")
        self.connection = connection
        self.model: type[Document] | None = None
        self.reads: dict[str, int] = {}  # id -> version read (0: absent)
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
        elif model is not self.model:
            raise TransactionError(
                f"a transaction covers documents of one model (one atomic write); it holds "
                f"{self.model.__name__} and was given {model.__name__}")

    def get(self, backend: Backend, model: type[D], id: Any) -> Op[D | None]:
        self.bind(model)
        id = clean_id(id, ValueError, f"{model.__name__} id")
        (row,) = yield from backend.get_many(model._meta, [id])
        version = 0 if row is None else row.version
        seen = self.reads.setdefault(id, version)
        if seen != version:  # it changed between two reads of this transaction
            raise VersionConflict(model.__name__, id, seen, version or None)
        return None if row is None else model.from_storage(row.id, row.version, row.data)

    def save(self, doc: Document, ttl: Any) -> None:
        self.bind(type(doc))
        ops._check_whole(doc)
        expire = ops.expiry(self.connection.backend, doc._meta, ttl)
        signals.pre_save.send(type(doc), document=doc)
        data = doc.clean()
        request = ops._request(doc, data, expire)
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
            if other is not doc and doc.id is not None and other.id == doc.id:
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
        written = {request.id for _, _, request in self.writes.values()}
        checks = [(id, version) for id, version in self.reads.items() if id not in written]
        entries = list(self.writes.values())
        results = yield from backend.transact(self.model._meta, checks,
                                              [request for _, _, request in entries])
        for (doc, data, request), result in zip(entries, results, strict=True):
            if request.kind == "delete":
                doc._version, doc._stored = 0, None
                signals.post_delete.send(type(doc), document=doc, deleted=True)
            else:
                assert data is not None
                ops._applied(doc, data, result)
                signals.post_save.send(type(doc), document=doc,
                                       created=request.kind == "insert")

    def rollback(self) -> None:
        if self.state is TxState.OPEN:
            self.state = TxState.ROLLED_BACK
        self.writes.clear()


class Transaction:
    """An asyncio transaction: ``async with conn.transaction() as tx``. Commits when the
    block ends normally, discards its queued writes when it raises."""

    def __init__(self, connection: Connection) -> None:
        self._work = _Work(connection)

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

    def __init__(self, connection: Connection) -> None:
        self._work = _Work(connection)

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
              attempts: int) -> T:
    _check_attempts(attempts)
    for attempt in range(attempts):
        try:
            async with Transaction(connection) as tx:
                result = await fn(tx)
            return result
        except VersionConflict:
            if attempt + 1 == attempts:
                raise
    raise AssertionError("unreachable")


def run_sync(connection: Connection, fn: Callable[[SyncTransaction], T], attempts: int) -> T:
    _check_attempts(attempts)
    for attempt in range(attempts):
        try:
            with SyncTransaction(connection) as tx:
                result = fn(tx)
            return result
        except VersionConflict:
            if attempt + 1 == attempts:
                raise
    raise AssertionError("unreachable")
