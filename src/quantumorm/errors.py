"""The exception hierarchy: every error QuantumORM raises is one of these.

Errors carry the context a caller needs to act on them (model, field, value, versions) as
attributes, not only in the message, and backend errors keep the driver's exception as
``__cause__``. Nothing here imports a driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class QuantumORMError(Exception):
    """Base class of every error raised by QuantumORM."""


# -- declaring models and connections -------------------------------------------------------


class ConfigurationError(QuantumORMError):
    """A model, field, Meta option or connection is declared wrongly.

    Raised at class creation or at ``create_connection()``, never later.
    """


class ConnectionNotFound(ConfigurationError):
    """No connection is registered under the requested name (or no default is set)."""


# -- values ---------------------------------------------------------------------------------


#: the key of :attr:`ValidationError.errors` for a message about no one field
NON_FIELD_ERRORS = "__all__"


class ValidationError(QuantumORMError, ValueError):
    """One or more field values are invalid.

    ``errors`` maps each field name to the list of messages for that field, so a form or an
    API can report every problem at once. A message alone (``ValidationError("...")``, as a
    model's ``clean()`` raises for a rule over several fields) is kept under
    :data:`NON_FIELD_ERRORS`.
    """

    def __init__(self, errors: dict[str, list[str]] | str, model: str | None = None) -> None:
        if isinstance(errors, str):
            errors = {NON_FIELD_ERRORS: [errors]}
        self.errors = {name: list(msgs) for name, msgs in errors.items()}
        self.model = model
        parts = ["; ".join(msgs) if name == NON_FIELD_ERRORS else f"{name}: {'; '.join(msgs)}"
                 for name, msgs in self.errors.items()]
        prefix = f"{model}: " if model else ""
        super().__init__(prefix + " | ".join(parts))


class FieldValueError(ValueError):
    """Raised by a field's ``clean()`` for one value; the message completes "'<field>' ...".

    Not a :class:`QuantumORMError`: it never leaves QuantumORM. A save collects these into a
    :class:`ValidationError`, a query turns one into a :class:`QueryError`. A custom field
    raises it from ``clean()``."""


class UnknownFieldError(QuantumORMError, TypeError):
    """A field name that the model does not declare was used."""

    def __init__(self, model: str, name: str, known: list[str]) -> None:
        self.model, self.field = model, name
        super().__init__(
            f"{model} has no field {name!r} (fields: {', '.join(sorted(known)) or 'none'})"
        )


# -- queries --------------------------------------------------------------------------------


class QueryError(QuantumORMError, ValueError):
    """A query cannot be built: unknown lookup, lookup not valid for the field, bad value."""


class DoesNotExist(QuantumORMError, LookupError):
    """``get()`` or ``reload()`` found no document.

    Every model class gets its own subclass, ``Model.DoesNotExist``.
    """


class MultipleObjectsReturned(QuantumORMError, LookupError):
    """``get()`` matched more than one document.

    Every model class gets its own subclass, ``Model.MultipleObjectsReturned``.
    """


class InvalidOperation(QuantumORMError):
    """The operation is not valid in the document's or queryset's current state."""


class TransactionError(InvalidOperation):
    """A transaction cannot do what was asked: its documents span several partitions or
    models (one atomic script cannot reach them), or it was used after it ended."""


class UnsupportedOperation(QuantumORMError):
    """The backend does not support this feature; names the backend and the feature."""

    def __init__(self, backend: str, feature: str, detail: str = "") -> None:
        self.backend, self.feature = backend, feature
        msg = f"backend {backend!r} does not support {feature}"
        super().__init__(f"{msg}: {detail}" if detail else msg)


# -- writes ---------------------------------------------------------------------------------


class WriteError(QuantumORMError):
    """A write was refused by a check before anything was written."""


class VersionConflict(WriteError):
    """A compare-and-set write found another version than the one it was based on.

    ``actual`` is ``None`` when the document no longer exists.
    """

    def __init__(self, model: str, id: str, expected: int, actual: int | None) -> None:
        self.model, self.id, self.expected, self.actual = model, id, expected, actual
        now = "it was deleted" if actual is None else f"it is at version {actual}"
        super().__init__(f"{model} {id!r}: expected version {expected}, but {now}")


class DocumentLocked(VersionConflict):
    """A write (or a transaction's prepare) met a document locked by another transaction
    that is prepared and still undecided (a two-phase commit across partitions, before its
    deadline). A conflict like any other: retried by ``run_transaction`` and
    ``update_with_retry``; the lock is gone once that transaction commits or aborts (by its
    deadline at the latest). ``holder``: the key of that transaction's record."""

    def __init__(self, model: str, id: str, expected: int, holder: str) -> None:
        VersionConflict.__init__(self, model, id, expected, None)
        self.holder = holder
        self.args = (f"{model} {id!r} is locked by the undecided transaction {holder!r}; "
                     "try again once it has committed or aborted",)


class WatchConflict(WriteError):
    """A WATCH/MULTI/EXEC block saw its watched keys change on every attempt."""

    def __init__(self, attempts: int, keys: tuple[str, ...]) -> None:
        self.attempts, self.keys = attempts, keys
        super().__init__(f"watched keys {', '.join(keys)} changed during each of "
                         f"{attempts} attempt(s)")


class DuplicateIdError(WriteError):
    """An insert used an id that already exists in the collection."""

    def __init__(self, model: str, id: str) -> None:
        self.model, self.id = model, id
        super().__init__(f"{model} {id!r} already exists")


class UniqueViolation(WriteError):
    """A write would give a unique index a second document with the same value."""

    def __init__(self, model: str, index: str, id: str, other_id: str | None) -> None:
        self.model, self.index, self.id, self.other_id = model, index, id, other_id
        who = f" (held by {other_id!r})" if other_id is not None else ""
        super().__init__(f"{model} {id!r}: unique index {index!r} already has this value{who}")


class DocumentTooLargeError(WriteError):
    """The encoded document is larger than the connection's ``max_document_bytes``.

    From ``bulk_create``, which checks every document before it writes any, ``positions``
    maps the position of each document above the limit to its size (``id`` and ``size`` are
    those of the first); nothing was written. Empty for a single write.
    """

    def __init__(self, model: str, id: str | None, size: int, limit: int,
                 positions: dict[int, int] | None = None) -> None:
        self.model, self.id, self.size, self.limit = model, id, size, limit
        self.positions = dict(positions or {})
        message = (f"{model} {id if id is not None else '<new>'!r}: document is {size} "
                   f"bytes, above the limit of {limit} (max_document_bytes)")
        if self.positions:
            shown = ", ".join(str(p) for p in list(self.positions)[:10])
            more = ", ..." if len(self.positions) > 10 else ""
            message = (f"{model}: {len(self.positions)} document(s) above the limit of {limit}"
                       f" bytes (max_document_bytes) at position(s) {shown}{more}; nothing "
                       f"was written; first: {message}")
        super().__init__(message)


class BulkWriteError(WriteError):
    """Some documents of a bulk write failed; the others were written.

    ``errors`` lists ``(position, exception)`` pairs; ``written`` holds the documents that
    were stored.
    """

    def __init__(self, errors: list[tuple[int, Exception]], written: list[Any]) -> None:
        self.errors, self.written = errors, written
        first = errors[0][1] if errors else None
        super().__init__(
            f"{len(errors)} of {len(errors) + len(written)} documents failed; first: {first}"
        )


# -- the backend ----------------------------------------------------------------------------


class BackendError(QuantumORMError):
    """The store failed or refused an operation. ``__cause__`` holds the driver's error."""


class BackendConnectionError(BackendError):
    """The store cannot be reached, or the connection broke."""


class BackendTimeoutError(BackendConnectionError):
    """A connect or socket timeout expired; the outcome of a write is unknown."""


class PoolExhaustedError(BackendConnectionError):
    """Every connection of the pool is in use and none came free in time."""


class WriteOutcomeUnknown(BackendConnectionError):
    """The connection broke after a write was sent; it was sent again and refused because
    the document had moved on, so whether the first attempt was applied cannot be told
    (a document keeps its last four write ids). Nothing was applied twice; reload the
    document before deciding what to do."""

    def __init__(self, model: str, id: Any, refusal: Exception) -> None:
        self.model, self.id, self.refusal = model, id, refusal
        super().__init__(f"{model} {id!r}: the connection broke after the write was sent, "
                         f"and the resent write was refused ({refusal}); whether the first "
                         "attempt was applied is unknown")


class ServerBusyError(BackendError):
    """The server was running a script or function past its busy threshold
    (``busy-reply-threshold``, formerly ``lua-time-limit``) and refused the command without
    running it (a BUSY reply). ``outcome_unknown`` is False when that was the operation's
    only attempt at its first step: nothing was applied. It is True when an earlier attempt
    was sent and got no reply, or a step ran before the refusal (an earlier batch, or the
    write whose WAIT was refused): reload before deciding. The script ends on its own, or
    an administrator stops it (SCRIPT KILL, or FUNCTION KILL, for one that has not written
    yet)."""

    #: whether a write may have been applied all the same
    outcome_unknown: bool = False


class ServerBusyAfterTimeout(ServerBusyError, BackendTimeoutError):
    """A write got no reply within ``socket_timeout``, was sent again, and the server
    refused the resend with BUSY: it is still running a script, which may be the write's
    first attempt. Whether the write was applied, or will be when that script ends, is
    unknown (``outcome_unknown`` is True); it is never applied twice (a resent write
    recognises its own earlier application). Reload the document before deciding what to
    do."""

    outcome_unknown = True


class AuthenticationError(BackendError):
    """The store rejected the credentials."""


class PermissionDeniedError(BackendError):
    """The store's access control refused a command or key (Redis ACL NOPERM)."""


class ReplicationError(BackendError):
    """A write was applied on the master but not confirmed by ``wait_replicas`` replicas in
    time (so a failover now could lose it). Saves and transactions that write a document are
    sent again automatically (they recognise their own earlier application); this error
    means the replicas still did not confirm, or the write was a delete."""


class TransactionCommitted(BackendError):
    """A transaction across partitions or models was decided committed (its record says
    so), then applying it failed here (a connection broke, a replica did not acknowledge,
    a partition refused): it is NOT to be retried, it will be applied whole by whoever
    meets its locks next (a reader, a writer) or by the sweeper. ``record``: the key of its
    record; ``cause``: what failed. Also raised when the connection broke while the
    decision itself was being taken (``decided`` False): it may then be committed or
    aborted, never partly, and either way settles by its record alone."""

    def __init__(self, record: str, cause: BaseException, decided: bool = True) -> None:
        self.record, self.cause, self.decided = record, cause, decided
        what = ("was committed; applying it did not finish here" if decided else
                "was being decided when the connection broke: it is committed or aborted")
        super().__init__(f"the transaction {record!r} {what} ({cause}); do not retry it: "
                         "readers, writers and the sweeper settle it by its record")


class TransactionVersionsUnknown(TransactionCommitted):
    """A transaction across partitions or models was committed and applied (by this client,
    or by a reader, writer or the sweeper that met its locks first), but the versions it
    wrote are no longer known here: its apply's reply was lost, and what the apply left
    behind (kept ten times the transaction's timeout, at least a minute) and the documents'
    recent write ids have moved on since. Its writes are in the store; the documents this
    client holds keep their old versions, so read them again before saving them. Not to be
    retried."""

    def __init__(self, record: str) -> None:
        super().__init__(record, TransactionError(
            "it was applied, but the versions it wrote are no longer known"))
        self.args = (f"the transaction {record!r} was committed and applied, but the "
                     "versions it wrote are no longer known: read its documents again before "
                     "saving them; do not retry it",)


class TransactionUniqueConflict(TransactionCommitted):
    """A transaction across partitions or models was committed and applied, except some of
    its writes: a unique index added to their model between its prepare and its apply (a
    deploy while it was in flight) found their value taken by a write outside it. Those
    documents kept what they held (never two holders of a unique value); everything else
    was written and no lock is left. Each left-out write is recorded where
    ``Model.objects.verify()`` reports it (``transaction_conflicts``). ``conflicts``: (model,
    id, index name, holder id) per write left out. Not to be retried."""

    def __init__(self, record: str, conflicts: Sequence[tuple[str, str, str, str]]) -> None:
        self.conflicts = list(conflicts)
        shown = "; ".join(f"{model} {id!r}: {index} held by {holder!r}"
                          for model, id, index, holder in self.conflicts)
        super().__init__(record, TransactionError(f"unique values taken meanwhile: {shown}"))
        self.args = (f"the transaction {record!r} was committed and applied except writes "
                     f"whose unique value was taken meanwhile ({shown}): those documents "
                     "kept what they held (recorded for verify()); do not retry it",)


class TransactionsUnsettled(BackendError):
    """A read met locks of two-phase commits (transactions across partitions or models)
    and, each of ``rounds`` times it was sent again, another transaction's apply landed
    while it ran: rather than an answer that could hold half a transaction, this error.
    Reading again later is safe."""

    def __init__(self, model: str, rounds: int) -> None:
        self.model, self.rounds = model, rounds
        super().__init__(f"a read of {model} met two-phase commits being applied {rounds} "
                         "times in a row; read again")


class OutOfMemoryError(BackendError):
    """The store is above its memory limit and refused the write."""


class WrongTypeError(BackendError):
    """A key the ORM owns holds data of another type (written by someone else)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


class CorruptDocumentError(BackendError):
    """A stored document cannot be decoded (it was not written by QuantumORM)."""

    def __init__(self, model: str, id: str, detail: str) -> None:
        self.model, self.id = model, id
        super().__init__(f"{model} {id!r}: stored document is corrupt: {detail}")


class DamagedMetaError(CorruptDocumentError):
    """A document's meta hash (its version and the record of its index entries, which its
    writes read) holds a field that does not read: the write was refused with nothing
    written (its key holding another type is a :class:`WrongTypeError` naming the key, as
    for every key a write reads). The document itself is intact; ``repair()`` rebuilds the
    meta hash and the index entries from it, and the document works again."""

    def __init__(self, model: str, id: str, key: str, field: str | None) -> None:
        self.key, self.field = key, field
        where = f"field {field!r} of its meta hash {key!r}" if field else f"meta hash {key!r}"
        super().__init__(model, id, f"{where} does not read; Model.objects.repair() "
                                    "rebuilds it from the document")


class DamagedStateError(DamagedMetaError):
    """A partition's state hash (``{namespace:collection:pN}:state``) holds a ``layout``
    (the newest schema layout the partition has seen) that does not read: every script
    that checks the caller's layout against it refuses, with nothing written.
    ``repair()`` writes it again from the stored schema. ``key`` and ``field`` name it;
    ``model`` is the collection (a script does not know the model's class), ``id`` is ""."""

    def __init__(self, model: str, key: str, field: str) -> None:
        self.key, self.field = key, field
        self.model, self.id = model, ""
        BackendError.__init__(
            self, f"{model}: field {field!r} of the partition state hash {key!r} does not "
                  "read; Model.objects.repair() writes it again from the stored schema")


class DamagedTransactionError(DamagedMetaError):
    """A two-phase commit's record (``{namespace:2pc:txid}:r``) holds a field that does not
    read: its ``deadline`` (ms since the epoch, plain digits), its ``state`` or its
    ``parts`` (its partitions' lock hashes and intent keys); or an
    intent (``field`` "intent": what the transaction writes in a partition, ``key`` its
    key) that does not unpack, or is stored without its locks. Deciding the undecided
    transaction by its deadline (a commit, or a recovery asking whether it expired) is
    refused with nothing changed; an abort needs no deadline and still works. Nothing of an
    undecided transaction is applied, so deleting the record aborts it (a missing record
    counts as aborted: the next reader, writer or sweep of its documents releases its
    locks); it also expires by itself, soon after its real deadline. A committed one's
    damaged intent keeps its partition locked until the intent is put back (a settle then
    finishes the transaction) or deleted (that partition's writes given up). ``key`` and
    ``field`` name it; ``model`` and ``id`` are "" (a record spans models)."""

    def __init__(self, key: str, field: str) -> None:
        self.key, self.field = key, field
        self.model, self.id = "", ""
        if field == "intent":
            message = (f"the two-phase commit intent {key!r} (what its transaction writes in "
                       "that partition) does not read: the committed transaction cannot be "
                       "applied there; its record and that partition's locks are kept (its "
                       "documents' writers are refused likewise) until the intent is put "
                       "back, or deleted to give up that partition's writes")
        elif field == "deadline":
            message = (f"field 'deadline' of the two-phase commit record {key!r} does not "
                       "read: the transaction cannot be decided by its deadline; deleting "
                       "the record aborts it (none of it was applied)")
        elif field == "parts":
            message = (f"field 'parts' of the two-phase commit record {key!r} (its "
                       "partitions) does not read: the transaction cannot be settled; its "
                       "record and its locks are kept, and nothing was decided, applied or "
                       "released by this attempt")
        else:
            message = (f"field {field!r} of the two-phase commit record {key!r} does not "
                       "read: nothing of the transaction was applied nor released")
        BackendError.__init__(self, message)


class DamagedSchemaError(DamagedMetaError):
    """A collection's stored schema (the hash ``{namespace:collection}:schema``) holds a
    field that does not read (missing, not a number, not the JSON the schema writes), or
    its key holds another type: the model's first use, reindex(), verify(), repair() and the
    tools refuse the collection, with nothing written. The documents are intact; deleting
    the schema hash makes the next first use store the model's declaration again (its
    indexes building if there is data: ``Model.objects.reindex()`` builds them). ``key``
    and ``field`` name it (``field`` is None when the key holds another type: then the
    error is a :class:`WrongTypeSchemaError`, also a :class:`WrongTypeError`, as another
    type at any key the ORM owns is); ``model`` is the collection, ``id`` is ""."""

    def __init__(self, model: str, key: str, field: str | None, detail: str = "") -> None:
        self.key, self.field = key, field
        self.model, self.id = model, ""
        where = (f"field {field!r} of the stored schema {key!r} does not read"
                 if field is not None else f"the stored schema key {key!r} is not a hash")
        BackendError.__init__(
            self, f"{model}: {where}{f' ({detail})' if detail else ''}; delete it and run "
                  "Model.objects.reindex(): the schema is stored again from the model")


class WrongTypeSchemaError(DamagedSchemaError, WrongTypeError):
    """The stored schema's key (``{namespace:collection}:schema``) holds another type than
    a hash: a :class:`DamagedSchemaError` (the collection refused at every entry point,
    nothing written; ``field`` is None) and a :class:`WrongTypeError` (``key`` names it),
    so either ``except`` catches it."""

    key: str

    def __init__(self, model: str, key: str) -> None:
        DamagedSchemaError.__init__(self, model, key, None)


class CodecUnavailableError(BackendError):
    """A stored document is compressed with a codec whose package is not installed in this
    process (see ``Meta.compress``), so it cannot be read here.

    ``codec`` is the codec ("zstd" or "lz4"), ``package`` the module it needs and ``extra``
    the extra that installs it (``pip install 'quantumorm[zstd]'``); ``model`` and ``id``
    name the document when known. Nothing is wrong with the stored bytes.
    """

    def __init__(self, codec: str, package: str, extra: str, model: str | None = None,
                 id: str | None = None) -> None:
        self.codec, self.package, self.extra = codec, package, extra
        self.model, self.id = model, id
        where = f"{model} {id!r}: stored document" if model is not None else "a stored document"
        super().__init__(
            f"{where} is compressed with {codec}, whose package ({package}) is not installed: "
            f"pip install 'quantumorm[{extra}]'")


class UnsafeEvictionPolicy(BackendError):
    """The Redis server's ``maxmemory-policy`` may evict any key (``allkeys-*``).

    Found from the server at the connection's first use (not at ``create_connection()``,
    which stays offline), so it is a backend error rather than a configuration error.
    ``policy`` is the server's policy and ``server`` its ``host:port``.
    """

    def __init__(self, policy: str, server: str) -> None:
        self.policy, self.server = policy, server
        super().__init__(
            f"Redis at {server} has maxmemory-policy {policy}: an allkeys-* policy evicts any "
            "key when memory runs short, so a document, its meta hash and its index entries "
            "can disappear independently, and queries then return wrong results. Safe "
            "policies: noeviction (writes fail with OutOfMemoryError instead), or volatile-* "
            "(only keys with an expiry are evicted, which QuantumORM treats like an early "
            "expiry of a document with a TTL). To use this server anyway, knowing the risk: "
            "create_connection(..., allow_eviction=True)")


class SchemaMismatchError(QuantumORMError):
    """The model's declaration cannot be used with the collection's stored schema (see
    :mod:`quantumorm.schema`): an older declaration than the one stored, another partition
    count, or a storage format this version does not know. Raised at the model's first use
    on a connection, before anything is written."""


class SchemaChangeBlocked(SchemaMismatchError):
    """A change of a collection's stored schema (an index added, dropped, built or rebuilt:
    a new declaration's first use, ``reindex()``) was refused because transactions across
    partitions or models kept holding locks in its partitions: those met were settled (a
    committed one applied, an undecided one waited for until its deadline), and new ones
    came each time. ``transactions``: the record keys of those met last. Nothing was
    changed; run it again when the model's two-phase commits pause."""

    def __init__(self, model: str, transactions: Sequence[str]) -> None:
        self.model, self.transactions = model, tuple(transactions)
        super().__init__(
            f"{model}: its stored schema was not changed: transactions across partitions "
            f"kept locking its documents ({', '.join(self.transactions)}); run it again "
            "when they pause (a schema change waits for those in flight)")


class SyncInAsyncContext(InvalidOperation):
    """A blocking (``_sync``) call was made from the thread that runs an asyncio event loop.

    It would block the whole loop (every other task stalls until the store answers), so it
    is refused before anything is sent. Await the async method instead (``await
    doc.save()`` for ``doc.save_sync()``), or move the blocking call to a worker thread
    (``await asyncio.to_thread(doc.save_sync)``). To allow it anyway (a script that knows
    nothing else runs on its loop, a notebook), set the environment variable
    ``QUANTUMORM_ALLOW_SYNC_IN_LOOP=1``. ``call`` names what was called.
    """

    def __init__(self, call: str) -> None:
        self.call = call
        super().__init__(
            f"{call} was called from the thread running an asyncio event loop, and would "
            "block it: every other task on the loop would stall until it returned. Await the "
            "async method instead (e.g. `await doc.save()` for `doc.save_sync()`, `async for` "
            "/ `async with` for `for` / `with`), or run the blocking call in a thread (`await "
            "asyncio.to_thread(...)`). To allow it anyway, set QUANTUMORM_ALLOW_SYNC_IN_LOOP=1.")


# -- references (see quantumorm.fields.reference) -------------------------------------------


class NotLoaded(InvalidOperation):
    """A reference's document (``post.author.value``) or a reverse side (``author.posts``)
    was read before it was loaded: reading a reference never does I/O. Load it with the
    query (``select_related("author")`` / ``prefetch_related("posts")``) or on its own
    (``await post.author.fetch()``)."""


class DeleteDenied(InvalidOperation):
    """A delete was refused, before anything was deleted, because documents still refer to
    the document(s) through a reference declared ``on_delete=DENY``. ``model`` is the
    referenced model, ``referencing`` the referencing model and ``field`` its field,
    ``count`` how many referencing documents were found."""

    def __init__(self, model: str, referencing: str, field: str, count: int) -> None:
        self.model, self.referencing, self.field, self.count = model, referencing, field, count
        super().__init__(
            f"cannot delete {model}: {count} {referencing} document(s) refer to it through "
            f"{referencing}.{field} (on_delete=DENY); delete or re-point them first")
