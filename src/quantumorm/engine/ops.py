"""Every multi-step ORM operation, written once as a generator over the backend contract.

Nothing here performs I/O or knows a backend's name: operations call the backend's own
operations with ``yield from`` and are run by :mod:`quantumorm.engine.drive`. Write paths
validate everything before the first write, so bad input never reaches the store. What a
write sends of one document (its cleaned data, its request) is :mod:`.prepared`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .. import gcpause, jsoncodec, signals
from ..errors import (
    BulkWriteError,
    CorruptDocumentError,
    DocumentLocked,
    DocumentTooLargeError,
    InvalidOperation,
    UnsupportedOperation,
    ValidationError,
    VersionConflict,
)
from ..fields.base import MISSING
from ..query import evaluate
from ..query.lookups import Lookup
from ..query.nodes import ID, Condition, QuerySpec
from . import prepared
from .contract import Backend, Expiry, Patched, Row, WriteRequest, WriteResult
from .drive import Op

if TYPE_CHECKING:
    from ..document import Document

D = TypeVar("D", bound="Document")

#: The longest expiry a write takes, in seconds (about 31,700 years): its milliseconds, at
#: most 15 digits, are what the scripts accept (``tx_apply.lua`` refuses an intent with a
#: longer one; now + a longer one may reach 17 digits, which Lua sends SET ... PXAT as
#: "1e+17" on Redis 7.0).
MAX_TTL = 999_999_999_999

#: how often update/delete-where re-read and retry a document another writer changed
WHERE_RETRIES = 10


# -- one document -------------------------------------------------------------------------


def expiry(backend: Backend, options: Any, ttl: Any = MISSING) -> Expiry | int:
    """What a write does to the document's expiry: ``ttl=`` seconds if given (None: none),
    else the model's ``Meta.ttl`` (refreshed by every write), else it stays as it is."""
    if ttl is MISSING:
        if options.ttl is None:
            return Expiry.KEEP
        ttl = options.ttl
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float))
                            or not 0 < ttl <= MAX_TTL):
        raise ValueError(f"ttl must be a positive number of seconds up to {MAX_TTL} or None "
                         f"(got {ttl!r})")
    if not backend.capabilities.ttl:
        raise UnsupportedOperation(backend.name, "ttl")
    return Expiry.PERSIST if ttl is None else max(1, round(ttl * 1000))


def save(backend: Backend, doc: D, ttl: Any = MISSING) -> Op[D]:
    # (every save asks; the common answers in line, without a call: a document loaded
    # whole, no ttl= and no Meta.ttl (expiry() gives KEEP), no receiver connected to a
    # signal (its send would loop over none) -- the receivers' tuple is a snapshot, replaced
    # whole by a connect, as send reads it)
    if doc._partial is not None:
        prepared.check_whole(doc)
    options = doc._meta
    expire = (Expiry.KEEP if ttl is MISSING and options.ttl is None
              else expiry(backend, options, ttl))
    if signals.pre_save._receivers:
        signals.pre_save.send(type(doc), document=doc)
    data, changed = prepared.clean(doc)
    request = prepared.request(doc, data, expire, changed)
    if request is None:
        return doc
    (result,) = yield from backend.write(options, [request])
    prepared.applied(doc, data, result)
    if signals.post_save._receivers:
        signals.post_save.send(type(doc), document=doc, created=request.kind == "insert")
    return doc


def delete(backend: Backend, doc: Document, soft: bool = False,
           ttl: float | None = None) -> Op[bool]:
    if doc.id is None or doc._version == 0:
        raise InvalidOperation(f"{type(doc).__name__} was never saved; nothing to delete")
    if soft and ttl is None:
        raise ValueError("delete(soft=True) needs ttl=: how long the document is kept")
    if not soft and ttl is not None:
        raise ValueError("ttl= is for delete(soft=True)")
    keep = expiry(backend, doc._meta, ttl) if soft else Expiry.KEEP
    if signals.pre_delete._receivers:  # (as save: no call when no receiver is connected)
        signals.pre_delete.send(type(doc), document=doc)
    request = WriteRequest("delete", doc.id, doc._version, expire=keep)
    (result,) = yield from backend.write(doc._meta, [request])
    if result.error is not None:
        raise result.error
    doc._version, doc._stored = 0, None
    deleted = result.version is not None
    if signals.post_delete._receivers:
        signals.post_delete.send(type(doc), document=doc, deleted=deleted)
    return deleted


def expire(backend: Backend, doc: Document, ttl: float | None) -> Op[bool]:
    if doc.id is None or doc._version == 0:
        raise InvalidOperation(f"{type(doc).__name__} was never saved")
    expiry(backend, doc._meta, ttl)  # checks the value and the backend
    return (yield from backend.expire(doc._meta, doc.id, ttl))


def time_to_live(backend: Backend, doc: Document) -> Op[float | None]:
    if doc.id is None or doc._version == 0:
        raise InvalidOperation(f"{type(doc).__name__} was never saved")
    if not backend.capabilities.ttl:
        raise UnsupportedOperation(backend.name, "ttl")
    return (yield from backend.time_to_live(doc._meta, doc.id))


def sweep(backend: Backend, model: type[D], limit: int) -> Op[int]:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive int (got {limit!r})")
    if not backend.capabilities.ttl:
        raise UnsupportedOperation(backend.name, "ttl")
    return (yield from backend.sweep(model._meta, limit))


def update_with_retry(backend: Backend, doc: D, change: Callable[[D], Any],
                      attempts: int) -> Op[D]:
    """Apply ``change`` and save; on a version conflict reload and apply it again."""
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ValueError(f"attempts must be a positive int (got {attempts!r})")
    for attempt in range(attempts):
        change(doc)
        try:
            return (yield from save(backend, doc))
        except VersionConflict as conflict:
            if attempt + 1 == attempts:
                raise
            yield from wait_for(backend, type(doc), conflict)
            yield from reload(backend, doc)  # DoesNotExist if it was deleted meanwhile
    raise AssertionError("unreachable")


def reload(backend: Backend, doc: D) -> Op[D]:
    if doc.id is None:
        raise InvalidOperation(f"{type(doc).__name__} has no id; nothing to reload")
    (row,) = yield from backend.get_many(doc._meta, [doc.id])
    if row is None:
        raise type(doc).DoesNotExist(f"{type(doc).__name__} {doc.id!r} does not exist")
    fresh = type(doc).from_storage(row.id, row.version, row.data)
    doc.__dict__.update({name: fresh.__dict__[name] for name in doc._fields})
    doc._version, doc._stored, doc._partial = fresh._version, fresh._stored, None
    return doc


# -- many documents -----------------------------------------------------------------------


def bulk_create(
    backend: Backend, model: type[D], docs: Sequence[D], batch_size: int
) -> Op[list[D]]:
    """Insert new documents in batches (one round trip each, plus one for their ids).

    From :data:`~quantumorm.gcpause.PAUSE_FROM` documents, its steps run with the cyclic
    garbage collector paused, its round trips not (:func:`~quantumorm.gcpause.paused_steps`).

    Every document is validated, encoded and size-checked first, before the first batch is
    sent: if any is invalid, one ValidationError names them all (``[position].field``); if
    any is above the backend's ``max_document_bytes``, one DocumentTooLargeError lists their
    positions; either way nothing is written. Documents the store refuses (duplicate id,
    unique value) are reported together in a BulkWriteError after the others are written.
    """
    op = _bulk_create(backend, model, docs, batch_size)
    return op if len(docs) < gcpause.PAUSE_FROM else gcpause.paused_steps(op)


def _bulk_create(
    backend: Backend, model: type[D], docs: Sequence[D], batch_size: int
) -> Op[list[D]]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int (got {batch_size!r})")
    expire = expiry(backend, model._meta)
    signals.pre_bulk_create.send(model, documents=list(docs))
    problems: dict[str, list[str]] = {}
    # a backend registered before the protocol named a limit may not have one: no pre-check
    limit = getattr(backend, "max_document_bytes", None)
    oversized: dict[int, int] = {}
    # (the prepared documents as three lists, not a tuple each: every object that lives
    # through a batch is one more for the garbage collector to count and walk)
    ready: list[D] = []
    datas: list[dict[str, Any]] = []
    raws: list[bytes] = []
    # (one instance given twice would be written twice, under two auto ids, and keep only
    # the last: refused, as the positions of an instance are known only here)
    seen: dict[int, int] | None = None
    if len(set(map(id, docs))) < len(docs):  # (one C loop; the positions only if needed)
        seen = {}
    # (prepared.encode's first try, in line: its own call only for a document that does
    # not encode, to name the field)
    encode = jsoncodec.encode_plain if model._meta.plain_storage else jsoncodec.encode
    for position, doc in enumerate(docs):
        if type(doc) is not model:
            raise TypeError(f"bulk_create on {model.__name__} got {doc!r}")
        if doc._version:
            raise InvalidOperation(f"{doc!r} is already saved; bulk_create inserts new documents")
        if seen is not None:
            first = seen.setdefault(id(doc), position)
            if first != position:
                raise InvalidOperation(f"bulk_create got the same {model.__name__} instance "
                                       f"at positions {first} and {position}")
        try:
            data = doc.clean()
            try:
                raw = encode(data)
            except (TypeError, ValueError):  # (UnicodeEncodeError is a ValueError)
                raw = prepared.encode(doc, data)  # (raises the ValidationError naming it)
        except ValidationError as exc:
            for name, messages in exc.errors.items():
                problems[f"[{position}].{name}"] = messages
            continue
        if limit is not None and len(raw) > limit:
            oversized[position] = len(raw)
        ready.append(doc)
        datas.append(data)
        raws.append(raw)
    if problems:
        raise ValidationError(problems, model=model.__name__)
    if oversized:
        first = min(oversized)
        raise DocumentTooLargeError(model.__name__, docs[first].id, oversized[first],
                                    limit or 0, oversized)
    failures: list[tuple[int, Exception]] = []
    written: list[D] = []
    for start in range(0, len(ready), batch_size):
        end = start + batch_size
        # (the requests are not kept here: a backend that fills in auto ids replaces each
        # with a copy, and the first is then freed at once, not at the end of the batch)
        results = yield from backend.write(model._meta, [
            WriteRequest("insert", doc.id, 0, data, doc._values(), None, expire, raw)
            for doc, data, raw in zip(ready[start:end], datas[start:end], raws[start:end],
                                      strict=True)])
        for offset, (doc, data, result) in enumerate(zip(ready[start:end], datas[start:end],
                                                         results, strict=True)):
            if result.error is not None:
                failures.append((start + offset, result.error))
            else:  # (prepared.applied's, in line: no call per document)
                assert result.version is not None
                doc.id, doc._version, doc._stored = result.id, result.version, data
                written.append(doc)
    signals.post_bulk_create.send(model, documents=written)
    if failures:
        raise BulkWriteError(failures, written)
    return written


def get_many(backend: Backend, model: type[D], ids: Iterable[str]) -> Op[list[D | None]]:
    id_list = list(ids)
    rows = yield from backend.get_many(model._meta, id_list)
    load = model._loader()
    return [None if row is None else load(row.id, row.version, row.data) for row in rows]


def fetch(backend: Backend, model: type[D], spec: QuerySpec) -> Op[list[Row]]:
    # (the backend's own operation, not a generator around it: one frame less per step)
    return backend.query(model._meta, spec)


def fetch_loaded(backend: Backend, model: type[D], spec: QuerySpec) -> Op[list[D]]:
    """The matching documents, whole, as the model's loader makes them. A backend that can
    make them straight from its reply (``query_loaded``: Redis) is asked to; any other
    (a cached model's too: the cache knows rows only) gives rows, then loaded."""
    load = model._loader()
    loaded = getattr(backend, "query_loaded", None)
    if loaded is not None:
        # (its operation, not a generator around it)
        op: Op[list[D]] = loaded(model._meta, spec, load)
        return op
    return _loaded(backend.query(model._meta, spec), load)


def _loaded(rows_op: Op[list[Row]], load: Callable[[str, int, dict[str, Any]], D]
            ) -> Op[list[D]]:
    rows = yield from rows_op
    if len(rows) < gcpause.PAUSE_FROM:
        return [load(row.id, row.version, row.data) for row in rows]
    with gcpause.paused():  # (many documents at once: see quantumorm.gcpause)
        return [load(row.id, row.version, row.data) for row in rows]


def update_where(backend: Backend, model: type[D], spec: QuerySpec,
                 changes: dict[str, Any]) -> Op[int]:
    """Set fields on every matching document, each write compare-and-set on its version.

    A document another writer changed meanwhile is re-read and updated again if it still
    matches (at most ``WHERE_RETRIES`` times). All new values are validated first. Each
    document written fires ``pre_save``/``post_save`` (again for a document retried).

    ``filter(id=x).update(...)`` and ``filter(id__in=[...]).update(...)`` on a backend
    that can set fields in place (``update_fields``: Redis), with no
    ``pre_save``/``post_save`` receiver connected for the model and fields that
    :func:`patchable` allows: one round trip, no read; the store puts the new values in
    place of the stored ones (whatever the version), with the same store checks (types,
    unique values, layout, size), index moves and change event as a save, each document
    atomic on its own. Only the new values are validated there: the other stored fields are
    not read, so a stored value that a newer declaration would refuse (a field made
    required, a tighter ``max_length``) does not stop the update, where the read-then-save
    path raises ``ValidationError``. A refusal of some ids raises ``BulkWriteError`` with
    the documents written for the others (read after the update; a single id's document
    too large or corrupt raises its own error). With a receiver connected, the documents are
    read first, as the receivers get them. The store may also decline ids (nothing written
    to them: on Redis a model with ``Meta.compress``, or a stored document that is
    compressed), which then take the read-then-save path.
    """
    # (expiry()'s answer for a model with no Meta.ttl, without the call)
    expire = Expiry.KEEP if model._meta.ttl is None else expiry(backend, model._meta)
    ids = named_ids(spec)
    in_place = getattr(backend, "update_fields", None)
    patched = 0
    if (in_place is not None and ids
            and not ((signals.pre_save._receivers or signals.post_save._receivers)
                     and _heard(model, signals.pre_save, signals.post_save))
            and patchable(model, changes)):
        fields = model._meta.fields
        if len(changes) == 1:  # (the common patch: one field, no comprehension's frame)
            ((name, value),) = changes.items()
            field = fields[name]
            storage = {field.db_name: field.to_storage(value)}
        else:
            storage = {fields[name].db_name: fields[name].to_storage(value)
                       for name, value in changes.items()}
        outcome: Patched = yield from in_place(model._meta, ids, changes, storage, expire)
        if outcome.failures:
            if len(ids) == 1 and isinstance(outcome.failures[0][1], (
                    DocumentTooLargeError, CorruptDocumentError)):
                raise outcome.failures[0][1]
            failures = list(outcome.failures)
            if outcome.declined:  # (read and written whole, before the refusals are raised)
                try:
                    yield from update_where(backend, model, QuerySpec(
                        Condition(ID, Lookup.IN, tuple(outcome.declined))), changes)
                except BulkWriteError as refused:
                    # (their positions: those of the ids the refused documents have)
                    at = {id: position for position, id in enumerate(ids)}
                    failures += [(at.get(str(getattr(error, "id", "")),
                                         at[outcome.declined[0]]), error)
                                 for _, error in refused.errors]
            failed = {ids[position] for position, _ in failures}
            stored = yield from get_many(backend, model, [id for id in ids if id not in failed])
            raise BulkWriteError(sorted(failures, key=lambda pair: pair[0]),
                                 [doc for doc in stored if doc is not None])
        if not outcome.declined:
            return outcome.count
        patched = outcome.count
        spec = QuerySpec(Condition(ID, Lookup.IN, tuple(outcome.declined)))
    rows = yield from backend.query(model._meta, spec)
    updated = patched
    written: list[D] = []
    for _attempt in range(WHERE_RETRIES):
        requests, states = [], []
        for row in rows:
            doc = model.from_storage(row.id, row.version, row.data)
            doc.__dict__.update(changes)
            signals.pre_save.send(model, document=doc)
            data = doc.clean()
            request = prepared.request(doc, data, expire)
            if request is None:
                updated += 1  # already has the values: it matched and needs no write
                continue
            requests.append(request)
            states.append((doc, data))
        if not requests:
            return updated
        results = yield from backend.write(model._meta, requests)
        retry_ids, failures, done = _sort_results(results, states)
        updated += len(done)
        written += done
        for doc in done:
            signals.post_save.send(model, document=doc, created=False)
        stuck = yield from wait_locked(backend, model, results)
        retry_ids += [id for id in (r.error.id for r in results if isinstance(
            r.error, DocumentLocked)) if id not in stuck]
        failures += [(position, r.error) for position, r in enumerate(results)
                     if isinstance(r.error, DocumentLocked) and r.error.id in stuck]
        if failures:
            raise BulkWriteError(sorted(failures, key=lambda pair: pair[0]), written)
        if not retry_ids:
            return updated
        rows = yield from _still_matching(backend, model, spec, retry_ids)
    raise VersionConflict(model.__name__, ", ".join(r.id for r in rows), 0, None)


def named_ids(spec: QuerySpec) -> list[str] | None:
    """The ids a query names when it is nothing but ``id=x`` or ``id__in=[...]`` (no other
    condition, slice or cursor; an order changes nothing then), else None."""
    where = spec.where
    if (not isinstance(where, Condition) or where.field != ID or spec.offset
            or spec.limit is not None or spec.after is not None):
        return None
    if where.lookup is Lookup.EXACT:
        return [where.value]
    if where.lookup is Lookup.IN:
        return list(dict.fromkeys(where.value))  # (an id named twice is deleted once)
    return None


#: the key under which a model's options keep patchable()'s answers by set of fields
_PATCHABLE = type("_Patchable", (), {})()


def patchable(model: type[Any], changes: Iterable[str]) -> bool:
    """Whether ``changes`` (cleaned values by attribute name) can be put in place of the
    stored values without reading the document: the model keeps Document's own ``clean``
    (no whole-document rule), and no field changed is part of a compound index, stores
    a JSON value of several possible texts, or is what an index's derived value (an
    indexed path, a case-folded index) is computed from. Worked out once per model and
    set of fields, but for the rule, looked for every time."""
    if model._has_own_rules():  # (asked each time: a rule may be set on the class later)
        return False
    options = model._meta
    # (state_for's dict for _PATCHABLE, a module constant never freed: kept in the
    # options' own __dict__ after the first call, read with no call of state_for)
    known: dict[frozenset[str], bool] | None = options.__dict__.get("_qorm_patchable")
    if known is None:
        known = options.__dict__["_qorm_patchable"] = options.state_for(_PATCHABLE, dict)
    names = frozenset(changes)
    answer = known.get(names)
    if answer is None:
        if len(known) > 1024:
            known.clear()
        answer = known[names] = _patchable(model, names)
    return answer


def _patchable(model: type[Any], changes: frozenset[str]) -> bool:
    if model._has_own_rules():
        return False
    options = model._meta
    for index in options.indexes:
        if index.compound and any(name in changes for name in index.fields):
            return False
    if any(path.steps[0] in changes for _, path in options.derived):
        return False  # (an index keeps a value computed from it: see query.paths)
    return all(options.canonical_text(name) for name in changes)


def _heard(model: type[Any], *hooks: signals.Signal) -> bool:
    """Whether any receiver of these signals listens to ``model``."""
    # (loops, not any() of a generator: asked by every update by id; the receivers' tuple
    # itself, not the list ``receivers`` makes of it: a snapshot, replaced whole by a
    # connect or disconnect in another thread, never changed under the loop)
    for hook in hooks:
        for _, wanted in hook._receivers:
            if wanted is None or wanted is model:
                return True
    return False


def delete_where(backend: Backend, model: type[D], spec: QuerySpec) -> Op[int]:
    """Delete every matching document (compare-and-set on each version, retried like
    :func:`update_where`); each fires ``pre_delete``/``post_delete``.

    ``filter(id=x)`` or ``filter(id__in=[...])`` and nothing else, with no ``pre_delete``
    or ``post_delete`` receiver connected for the model: one round trip, no read. Each id
    is deleted whatever its version (the backend's delete without an expected version:
    on Redis ``delete.lua`` with its checks, index removals and change event, the same as
    a delete of a loaded document); the count is of the documents that existed. With a
    receiver connected, the documents are read first, as the receivers get them.
    """
    ids = named_ids(spec)
    if ids is not None and not _heard(model, signals.pre_delete, signals.post_delete):
        if not ids:
            return 0
        deleted, pending = 0, ids
        for _attempt in range(WHERE_RETRIES):
            results = yield from backend.write(
                model._meta, [WriteRequest("delete", id, 0) for id in pending])
            for result in results:
                if result.error is not None and not isinstance(result.error, DocumentLocked):
                    raise result.error
            deleted += sum(result.version is not None for result in results
                           if result.error is None)
            stuck = yield from wait_locked(backend, model, results)
            pending = [r.error.id for r in results if isinstance(r.error, DocumentLocked)]
            if stuck:
                raise BulkWriteError(
                    [(ids.index(r.id), r.error) for r in results
                     if r.error is not None and r.id in stuck], [])
            if not pending:
                return deleted
        raise VersionConflict(model.__name__, ", ".join(pending), 0, None)
    rows = yield from backend.query(model._meta, spec)
    deleted = 0
    for _attempt in range(WHERE_RETRIES):
        if not rows:
            return deleted
        docs = [model.from_storage(row.id, row.version, row.data) for row in rows]
        for doc in docs:
            signals.pre_delete.send(model, document=doc)
        requests = [WriteRequest("delete", row.id, row.version) for row in rows]
        results = yield from backend.write(model._meta, requests)
        stuck = yield from wait_locked(backend, model, results)
        if stuck:
            raise BulkWriteError([(position, r.error) for position, r in enumerate(results)
                                  if r.error is not None and r.id in stuck], [])
        retry_ids = []
        for row, doc, result in zip(rows, docs, results, strict=True):
            if isinstance(result.error, DocumentLocked) or (isinstance(
                    result.error, VersionConflict) and result.error.actual is not None):
                retry_ids.append(row.id)
            elif result.error is not None:
                raise result.error
            else:
                doc._version, doc._stored = 0, None
                gone = result.version is not None
                deleted += gone
                signals.post_delete.send(model, document=doc, deleted=gone)
        if not retry_ids:
            return deleted
        rows = yield from _still_matching(backend, model, spec, retry_ids)
    raise VersionConflict(model.__name__, ", ".join(r.id for r in rows), 0, None)


def wait_locked(backend: Backend, model: type[Any],
                results: Sequence[WriteResult]) -> Op[list[str]]:
    """Wait for the transactions holding the documents whose writes met their locks
    (:class:`~quantumorm.errors.DocumentLocked`: a two-phase commit, prepared and
    undecided) to be settled, so that the caller writes those documents again (a lock is
    neither a change nor a deletion: never skipped, never counted). The ids whose holder
    could not be settled (still pending past its deadline as seen here): the caller raises
    for them."""
    locked = [r.error for r in results if isinstance(r.error, DocumentLocked)]
    if not locked:
        return []
    wait = getattr(backend, "wait_unlocked", None)
    if wait is None:  # (only a backend with such locks reports them)
        return [error.id for error in locked]
    stuck: list[str] = yield from wait(model._meta, [(e.id, e.holder) for e in locked])
    return stuck


def wait_for(backend: Backend, model: type[Any], conflict: Exception | None) -> Op[None]:
    """Before a retry loop tries again after ``conflict``: when it is another
    transaction's lock (:class:`~quantumorm.errors.DocumentLocked`), wait until its holder
    is settled (or its deadline passed: then aborted), as trying again at once would meet
    it again; any other conflict is retried at once."""
    if isinstance(conflict, DocumentLocked):
        yield from wait_locked(backend, model, [WriteResult(conflict.id, None, conflict)])


def _sort_results(results: list[WriteResult], states: list[tuple[Any, Any]]
                  ) -> tuple[list[str], list[tuple[int, Exception]], list[Any]]:
    """Split write results into ids to retry, refusals, and the documents written."""
    retry, failures, done = [], [], []
    for position, (result, (doc, data)) in enumerate(zip(results, states, strict=True)):
        error = result.error
        if isinstance(error, DocumentLocked):
            continue  # (waited for by the caller: see wait_locked)
        if isinstance(error, VersionConflict):
            if error.actual is not None:
                retry.append(doc.id)
        elif error is not None:
            failures.append((position, error))
        else:
            prepared.applied(doc, data, result)
            done.append(doc)
    return retry, failures, done


def _still_matching(backend: Backend, model: type[D], spec: QuerySpec,
                    ids: list[str]) -> Op[list[Row]]:
    rows = yield from backend.get_many(model._meta, ids)
    options = model._meta
    out = []
    for row in rows:
        if row is None:
            continue
        doc = model.from_storage(row.id, row.version, row.data)
        if evaluate.matches(options, spec.where, doc._values()):
            out.append(row)
    return out


def count(backend: Backend, model: type[D], spec: QuerySpec) -> Op[int]:
    return backend.count(model._meta, spec)  # (as fetch: the backend's operation itself)


def exists(backend: Backend, model: type[D], spec: QuerySpec) -> Op[bool]:
    return backend.exists(model._meta, spec)
