"""The backend contract: what core code may ask of a store, and what a store reports back.

It lives beside the engine that drives it: the engine and the core modules depend on this
contract, and every backend (``quantumorm.backends.*``, or a third party's) implements it,
so no arrow runs from the core up to a backend package.

A backend is I/O-free: each method is an operation (a generator yielding the backend's own
plans, see :mod:`quantumorm.engine.drive`) that its executors run. Core code never branches on
a backend's name; what differs between stores is data in :class:`Capabilities`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, Protocol

from .. import jsoncodec
from ..options import ModelOptions
from ..query.lookups import Lookup
from ..query.nodes import QuerySpec
from ..vocabulary import Vocabulary
from .drive import Op

_new = object.__new__


def encode_document(data: dict[str, Any], plain: bool = False) -> bytes:
    """The stored form of a document in every backend: compact JSON, UTF-8, no NaN.

    The engine encodes each document once, when it builds the write (so that bulk_create can
    size-check every document before the first batch is sent), and the backends store those
    bytes (:attr:`WriteRequest.raw`). Field validation makes this infallible for field
    values; it raises TypeError or ValueError (UnicodeEncodeError) for anything else.

    ``plain``: every value is known to be plain JSON (the validated storage form of a model
    whose :attr:`~quantumorm.options.ModelOptions.plain_storage` is true), which lets orjson
    write it when installed (:mod:`quantumorm.jsoncodec`: the same bytes either way).
    """
    if plain:
        return jsoncodec.encode_plain(data)
    return jsoncodec.encode(data)


@dataclass(frozen=True)
class Capabilities:
    """What a backend supports, as data. Core code reads these flags, never backend names;
    each flag is read where using the feature is refused with UnsupportedOperation."""

    #: lookups queries may use (QuerySet); built-in backends derive it from their compiler's
    #: table, so it cannot drift from what they compile
    lookups: frozenset[Lookup]
    #: kinds of secondary index (a compound index needs "compound": Meta check)
    index_kinds: frozenset[str]
    #: order_by (QuerySet)
    ordering: bool = True
    #: keyset positions, ``after()`` and cursors (QuerySet)
    keyset_pagination: bool = True
    #: unique indexes (Meta check)
    unique_indexes: bool = True
    #: document expiry (Meta.ttl check, expire / ttl operations)
    ttl: bool = False
    #: Connection.transaction
    transactions: bool = False
    #: Meta.changes / publish, change feeds
    change_events: bool = False
    #: Meta.partitions > 1 (Meta check)
    partitions: bool = False
    #: anything else a backend wants to say about itself (read by no core code)
    extra: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def every_lookup(self) -> bool:
        """Whether :attr:`lookups` holds every lookup (asked by every query: the frozen
        flags' answer is kept, not worked out again per call)."""
        return self.lookups >= frozenset(Lookup)


@dataclass(frozen=True)
class Row:
    """One stored document: its id, version and storage-form data (by storage name)."""

    id: str
    version: int
    data: dict[str, Any]

    def __init__(self, id: str, version: int, data: dict[str, Any]) -> None:
        # (still frozen and hashable: the instance dict written directly, at half the cost
        # of the frozen dataclass's own __init__; one row is made per document read)
        fields = self.__dict__
        fields["id"] = id
        fields["version"] = version
        fields["data"] = data


class Expiry(Vocabulary):
    """What a write does to its document's expiry, when not "expire in n milliseconds" (an
    int). Each member is its wire string, which the Redis scripts read."""

    KEEP = "keep"  # as it is
    PERSIST = "persist"  # none


@dataclass(frozen=True)
class WriteRequest:
    """One document write. ``values`` are the cleaned Python values by attribute name."""

    kind: Literal["insert", "update", "delete"]
    id: str | None
    expected_version: int = 0
    data: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    #: attribute names whose value changed (updates); None means all
    changed: frozenset[str] | None = None
    #: the document's expiry after the write: kept, none, or milliseconds from now
    expire: Expiry | int = Expiry.KEEP
    #: ``encode_document(data)``, when the engine has encoded it already (backends encode
    #: ``data`` themselves when this is None)
    raw: bytes | None = None

    def __init__(self, kind: Literal["insert", "update", "delete"], id: str | None,
                 expected_version: int = 0, data: dict[str, Any] | None = None,
                 values: dict[str, Any] | None = None, changed: frozenset[str] | None = None,
                 expire: Expiry | int = Expiry.KEEP, raw: bytes | None = None) -> None:
        # (still frozen and hashable; written into the instance dict, where the frozen
        # dataclass's own __init__ makes one object.__setattr__ call per field: a third of
        # the cost, and a bulk insert makes two requests per document)
        fields = self.__dict__
        fields["kind"] = kind
        fields["id"] = id
        fields["expected_version"] = expected_version
        fields["data"] = data
        fields["values"] = values
        fields["changed"] = changed
        fields["expire"] = expire
        fields["raw"] = raw

    def with_id(self, id: str | None) -> WriteRequest:
        """The same write for another id (auto ids are filled in by the backend)."""
        # (a copy of the instance dict, one C call, where __init__ stores its eight fields
        # one by one: a bulk insert copies every request it allocates an id for)
        made: WriteRequest = _new(WriteRequest)
        fields = made.__dict__
        fields.update(self.__dict__)
        fields["id"] = id
        return made

    def encoded(self) -> bytes:
        """The stored bytes of the document (inserts and updates)."""
        if self.raw is not None:
            return self.raw
        assert self.data is not None
        return encode_document(self.data)


@dataclass(frozen=True)
class WriteResult:
    id: str | None
    version: int | None  # the new version; 0 after a delete; None if refused
    error: Exception | None = None

    def __init__(self, id: str | None, version: int | None,
                 error: Exception | None = None) -> None:
        # (still frozen and hashable, as Row: a bulk insert makes one result per document)
        fields = self.__dict__
        fields["id"] = id
        fields["version"] = version
        fields["error"] = error


@dataclass(frozen=True)
class Patched:
    """What a backend's in-place update of documents by id (``update_fields``) did: how many
    of the ids exist and now hold the new values; the ids it declined, written nothing to
    (to be read and written whole); and its refusals, ``(position in the ids, error)``."""

    count: int
    declined: Sequence[str]
    failures: Sequence[tuple[int, Exception]]


@dataclass(frozen=True)
class Explanation:
    """What :meth:`QuerySet.explain` returns: how the backend will answer a query."""

    backend: str
    strategy: str  # "index" | "union" | "ids" | "scan"
    indexes: tuple[str, ...]
    scanned: bool
    server_filter: str
    client_filter: str | None
    ordering: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [
            f"backend:       {self.backend}",
            f"strategy:      {self.strategy}"
            + (f" via {', '.join(self.indexes)}" if self.indexes else ""),
            "scan:          "
            + ("yes (every document of the collection is read)" if self.scanned else "no"),
            f"server filter: {self.server_filter}",
            f"client filter: {self.client_filter or 'none'}",
            f"ordering:      {self.ordering}",
        ]
        lines += [f"{k}: {v}" for k, v in self.details.items()]
        return "\n".join(lines)


class Backend(Protocol):
    name: str
    capabilities: Capabilities
    #: documents whose encoding (:func:`encode_document`) is larger are refused with
    #: DocumentTooLargeError before anything is written (bulk_create checks every document
    #: against it before its first batch)
    max_document_bytes: int

    def write(
        self, options: ModelOptions, requests: Sequence[WriteRequest]
    ) -> Op[list[WriteResult]]:
        """Apply independent writes (each atomic, compare-and-set) in one round trip."""
        ...

    def transact(self, options: ModelOptions, checks: Sequence[tuple[str, int]],
                 requests: Sequence[WriteRequest]) -> Op[list[WriteResult]]:
        """For backends whose capabilities say ``transactions``: check that each (id,
        version) read is still current (version 0: still absent) and apply the writes, all
        or none; a refusal raises its typed error."""
        ...

    def allocate_ids(self, options: ModelOptions, count: int) -> Op[list[str]]:
        """Reserve ``count`` new auto ids."""
        ...

    def get_many(self, options: ModelOptions, ids: Sequence[str]) -> Op[list[Row | None]]:
        """The rows of ``ids``: one entry per id, in their order, None for an id that has
        no document (``get(id=)`` relies on it)."""
        ...

    def query(self, options: ModelOptions, spec: QuerySpec) -> Op[list[Row]]:
        """Rows matching ``spec.where``, ordered, after ``spec.after``, offset and limit applied."""
        ...

    def count(self, options: ModelOptions, spec: QuerySpec) -> Op[int]:
        """How many rows ``query`` would return (offset and limit applied)."""
        ...

    def exists(self, options: ModelOptions, spec: QuerySpec) -> Op[bool]:
        ...

    def explain(self, options: ModelOptions, spec: QuerySpec) -> Op[Explanation]:
        ...

    # expiry, for backends whose capabilities say ``ttl``:

    def expire(self, options: ModelOptions, id: str, ttl: float | None) -> Op[bool]:
        """Set (or, with None, remove) a document's expiry; False if it does not exist."""
        ...

    def time_to_live(self, options: ModelOptions, id: str) -> Op[float | None]:
        ...

    def sweep(self, options: ModelOptions, limit: int) -> Op[int]:
        """Purge what expired documents left behind; return how many were purged."""
        ...

    # change events, for backends whose capabilities say ``change_events`` (see events.py):

    def change_positions(self, options: ModelOptions, since: Any) -> Op[list[str]]:
        """Where a feed starting at ``since`` reads from, per partition."""
        ...

    def read_changes(self, model: Any, after: list[str], count: int,
                     block: float) -> Op[tuple[list[Any], list[str]]]:
        """Events after the positions (waiting up to ``block`` s), and the new positions."""
        ...

    def create_group(self, options: ModelOptions, group: str, start: str) -> Op[None]:
        ...

    def read_group(self, model: Any, group: str, consumer: str, count: int, block: float,
                   after: list[str] | None) -> Op[tuple[list[Any], list[str] | None]]:
        """New events for the consumer (``after`` None), or its own unacknowledged ones."""
        ...

    def group_pending(self, options: ModelOptions, group: str) -> Op[int]:
        ...

    def ack_changes(self, options: ModelOptions, group: str, events: Sequence[Any]) -> Op[int]:
        ...

    def claim_changes(self, model: Any, group: str, consumer: str, min_idle: float,
                      count: int) -> Op[list[Any]]:
        ...

    def drop_collection(self, options: ModelOptions) -> Op[int]:
        """Delete every document and index entry of the collection; return the count."""
        ...

    # Maintenance, optional (``QuerySet.reindex/verify/repair`` raise UnsupportedOperation
    # on a backend without them): ``reindex(model, batch, progress) -> Op[ReindexReport]``,
    # ``verify(model, batch, progress) -> Op[VerifyReport]`` and ``repair(model, batch,
    # progress) -> Op[RepairReport]``, with the reports of :mod:`quantumorm.maintenance`.


class BackendConnection(Protocol):
    """An open store: the backend plus executors that reach it."""

    backend: Backend

    def sync_executor(self) -> Any: ...

    def async_executor(self) -> Any: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...
