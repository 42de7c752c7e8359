"""The writing half of the Redis backend: write batching, the lost-reply settling of an
insert that allocates its own id, transactions, expiry and sweeps.

:meth:`Writer.write` sends one round of script calls per round of
:func:`quantumorm.engine.autoid.write` (the auto-id retry loop every backend shares): inserts
with known ids go together, one ``insert_many`` call per partition; every other write is
its own ``insert``, ``save`` (update) or ``delete`` call. The call records come from the model's
:class:`~.writes.WriteLayout`; their replies are parsed once (:mod:`.replies`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ... import sortable
from ...engine import autoid
from ...engine.contract import Expiry, Patched, WriteRequest, WriteResult
from ...engine.drive import Op
from ...errors import (
    BackendConnectionError,
    CorruptDocumentError,
    DocumentLocked,
    DocumentTooLargeError,
    DuplicateIdError,
    TransactionError,
    VersionConflict,
    WriteOutcomeUnknown,
    WrongTypeError,
)
from ...options import ModelOptions
from . import derived, stored, wire, writes
from .calls import DeleteCall, ExpireCall, InsertManyCall, SaveCall
from .commands import Call, Command, RedisPlan
from .core import LAYOUT_ATTEMPTS, ModelState, unsettled
from .headed import Headed, entries_retry
from .replies import WriteReply, layout_refused, sweep_reply, tx_reply, write_reply
from .twophase import TwoPhase, locks_key
from .writeids import version_in_document

#: how many of the last allocated ids are searched for an insert whose reply was lost
SETTLE_WINDOW = 1024

#: update_fields' answer for one id written (or holding the values already): one record for
#: every such call, shared, so its empty sequences are tuples, which no reader can change
_ONE_PATCHED = Patched(1, (), ())

Record = SaveCall | DeleteCall | InsertManyCall


def written_whole(raw: list[Any]) -> int | None:
    """The version of the first document of an ``insert_many.lua`` batch that was written
    whole (its reply ``{"ALL", version}``: each next document has the next version), or
    None when the reply has one entry per document."""
    if len(raw) == 2 and raw[0] in (b"ALL", "ALL"):
        return int(raw[1])
    return None


def id_counter(raw: Any, key: str) -> int:
    """The value of the auto-id counter ``key`` as GET read it (0 when absent). A value that
    is not plain digits is :class:`WrongTypeError`, never a ValueError nor a number int()
    reads from it ("+13", " 13"): the counter only counts up from 0, so a sign or a blank
    means someone else wrote it (stricter than INCR, which takes "-5" and refuses "013")."""
    if raw is None:
        return 0
    text = bytes(raw)
    if not text.isdigit():
        raise WrongTypeError(f"the auto-id counter {key!r} holds {text[:40]!r}, not a "
                             "count: it was written by someone else", key)
    return int(text)


def _uniform(requests: list[WriteRequest]) -> bool:
    """Whether every request is an insert with its id, all with one expiry: what
    :meth:`Writer._batches` sends as one ``insert_many`` call per partition."""
    expire = requests[0].expire
    for request in requests:
        if request.kind != "insert" or request.id is None or request.expire != expire:
            return False
    return True


#: a model's options hold this True once a touch met a format-3 document: its touches then
#: send what expire.lua needs for one (KEYS[4..5], ARGV[3..])
_HEADED_TOUCH = "_qorm_headed_touch"


class Writer(TwoPhase):
    def allocate_ids(self, options: ModelOptions, count: int) -> Op[list[str]]:
        # (first use: the schema and the ACL preflight come before anything is written)
        keys = (yield from self.prepare(options)).keys
        (last,) = yield RedisPlan((Command(("INCRBY", keys.sequence, count)),), idempotent=True)
        return [str(n) for n in range(int(last) - count + 1, int(last) + 1)]

    def write(self, options: ModelOptions,
              requests: Sequence[WriteRequest]) -> Op[list[WriteResult]]:
        # One insert with P == 1 allocates its id inside the script (one round trip);
        # otherwise ids come first, in one INCRBY (engine/autoid.py). One write whose call
        # needs nothing before it (an update, a delete, an insert of a known id or with P ==
        # 1) takes the short path. (Not a generator itself: the loop is the operation, one
        # frame less on every step.)
        if len(requests) == 1:
            request = requests[0]
            state = self._state(options)
            if state.schema is not None and (request.kind != "insert" or request.id is not None
                                             or options.partitions == 1):
                return self._write_one(options, state, request)
        return self._write_all(options, requests)

    def _write_one(self, options: ModelOptions, state: ModelState,
                   request: WriteRequest) -> Op[list[WriteResult]]:
        """The common write, one save or delete: its call sent as :meth:`_write_all`'s first
        round would send it, and an applied reply read here, without the rounds of auto ids
        and batches. Any other outcome (a refusal, a stale layout, a prepared transaction's
        lock, a lost connection) is handed to :meth:`_write_all` as that round's, which
        judges it as always (nothing is sent twice)."""
        record: Record
        if request.kind == "delete":
            # (not resent after a broken connection: no write id survives a delete)
            record, resendable = state.writes.delete(request), False
        else:  # (resent by write id, but an insert that allocates its id: looked up instead)
            record = call = state.writes.save(request)
            resendable = bool(call.id_key)
        try:
            sent = yield RedisPlan((record.call(),), idempotent=resendable)
        except BackendConnectionError as lost:
            return (yield from self._write_all(options, [request], (record, lost)))
        raw = sent[0]
        if type(raw) is list and len(raw) > 1 and raw[0] == b"OK":  # (as writes.result reads
            # it: the version written, 0 after a delete; an allocated id's key third)
            id = request.id
            if id is None:
                id = sortable.id_from_key(bytes(raw[2]))
            if type(request.expected_version) is Headed or (
                    request.kind == "insert" and writes.NEW_FORMAT == 3):
                # (format 3, written so or kept so: headed.py)
                return [writes.result(options, request, write_reply(raw))]
            return [WriteResult(id, 0 if request.kind == "delete" else int(raw[1]))]
        return (yield from self._write_all(options, [request], (record, sent)))

    def _write_all(self, options: ModelOptions, requests: Sequence[WriteRequest],
                   given: tuple[Record, list[Any] | BackendConnectionError] | None = None
                   ) -> Op[list[WriteResult]]:
        """Every write of :meth:`write`. ``given``: the call of the one request and the
        outcome of its first round, which :meth:`_write_one` sent (its replies, or the
        connection error it raised)."""
        stale_layouts = 0

        def send(requests: list[WriteRequest],
                 pending: list[int]) -> Op[list[tuple[int, WriteResult | None]]]:
            nonlocal stale_layouts, given
            state = self._state(options)
            if state.schema is None:  # (first use: prepare() reads it; then nothing to do)
                state = yield from self.prepare(options)
            outcome: list[Any] | BackendConnectionError | None = None
            if given is not None:  # (sent already: its outcome is this round's)
                batches: list[tuple[Record, list[int]]] = [(given[0], pending)]
                outcome, given = given[1], None
            else:
                batches = self._batches(state, [requests[i] for i in pending], pending)
            head = batches[0][0]
            allocating = len(batches) == 1 and isinstance(head, SaveCall) and not head.id_key
            try:
                if outcome is None:
                    calls = [record.call() for record, _ in batches]
                    # saves may be resent after a broken connection (each recognises its own
                    # earlier application by its write id); not deletes (no write id
                    # survives them) nor an insert that allocates its id (it is looked up)
                    resendable = not allocating and all(c.script != "delete" for c in calls)
                    sent = yield RedisPlan(tuple(calls), idempotent=resendable)
                elif isinstance(outcome, BackendConnectionError):
                    raise outcome
                else:
                    sent = outcome
            except BackendConnectionError:
                if not allocating:
                    raise
                assert isinstance(head, SaveCall)
                sent = yield from self._settle_allocating(options, head)
            resent = getattr(sent, "resent", False)
            outcomes: list[tuple[int, WriteResult | None]] = []
            stale = False
            locked: list[tuple[int, WriteResult]] = []
            headed: list[tuple[int, WriteReply]] = []  # (format 3: headed.entries_retry)
            for (_, members), raw in zip(batches, sent, strict=True):
                if len(members) == 1:
                    parsed = [write_reply(raw)]
                elif layout_refused(raw):  # a batch refused whole
                    parsed = [WriteReply("LAYOUT")] * len(members)
                elif (version := written_whole(raw)) is not None:  # (the common batch)
                    if writes.NEW_FORMAT == 3:  # (format 3: each version a Headed)
                        headed_of = Headed.of
                        outcomes += [(i, WriteResult(requests[i].id, headed_of(
                            version + n, requests[i].data or {}))) for n, i in enumerate(members)]
                    else:
                        outcomes += [(i, WriteResult(requests[i].id, version + n))
                                     for n, i in enumerate(members)]
                    continue
                else:
                    parsed = [write_reply(each) for each in raw]
                for i, reply in zip(members, parsed, strict=True):
                    if reply.status == "LAYOUT":  # nothing written: sent again, new schema
                        stale = True
                        outcomes.append((i, None))
                        continue
                    if reply.status == "ENTRIES":
                        headed.append((i, reply))
                        continue
                    result = writes.result(options, requests[i], reply)
                    if isinstance(result.error, DocumentLocked) and not resent:
                        locked.append((i, result))  # (settled below, then sent again)
                        continue
                    if resent and isinstance(result.error, (VersionConflict, DuplicateIdError)):
                        # refused when sent again: the first attempt may have been applied
                        result = WriteResult(result.id, None, WriteOutcomeUnknown(
                            options.model_name, requests[i].id, result.error))
                    outcomes.append((i, result))
            for i, result in locked:
                # a prepared transaction holds the document: settled by its record if it
                # can be (committed: applied; aborted or past its deadline: released)
                assert isinstance(result.error, DocumentLocked) and requests[i].id is not None
                settled = yield from self.settle(result.error.holder,
                                                 self._locks_of(options, requests[i].id or ""))
                outcomes.append((i, None if settled else result))
            for i, reply in headed:
                outcomes.append((i, (yield from entries_retry(options, state.writes,
                                                              requests[i], reply))))
            if stale:
                stale_layouts += 1
                if stale_layouts > LAYOUT_ATTEMPTS:
                    raise unsettled(options)
                yield from self.prepare(options, refresh=True)
            return outcomes

        return autoid.write(options.model_name, requests,
                            lambda n: self.allocate_ids(options, n), send,
                            allocate_here=options.partitions > 1, extra_rounds=LAYOUT_ATTEMPTS)

    def _settle_allocating(self, options: ModelOptions, call: SaveCall) -> Op[list[Any]]:
        """The connection broke around an insert that allocates its own id: find out
        whether it was applied (its write id in the meta hash of one of the ids allocated
        last) before sending it again, so that it is never stored twice."""
        keys = self._state(options).keys
        write_id = call.write_id.encode()
        # (asked of the master, never a replica that may lag: hence not read_only)
        (last,) = yield RedisPlan((Command(("GET", keys.sequence)),), idempotent=True)
        newest = id_counter(last, keys.sequence)
        candidates = [str(n) for n in range(newest, max(0, newest - SETTLE_WINDOW), -1)]
        # (each id's "r", and the documents (one MGET: one partition): a format-3 one keeps
        # its write ids in its header, and no "r"; all in the one round trip)
        seen: list[Any] = []
        documents: list[Any] = []
        if candidates:
            *seen, documents = yield RedisPlan(
                (*(Command(("HGET", keys.meta(0, id), "r")) for id in candidates),
                 Command(("MGET", *(keys.doc(0, id) for id in candidates)))), idempotent=True)
        for n, id in enumerate(candidates):
            version = version_in_document(documents[n], seen[n], write_id, keys.doc(0, id),
                                          keys.meta(0, id))
            if version is not None:
                return [[b"OK", version, sortable.id_key(id)]]
        # not among the ids allocated last: not applied, so sending it again is safe
        again = yield RedisPlan((call.call(),))
        return list(again)

    @staticmethod
    def _batches(state: ModelState, requests: list[WriteRequest],
                 positions: list[int]) -> list[tuple[Record, list[int]]]:
        """Script call records for the requests, and which request positions each one
        serves: inserts with known ids go together, one ``insert_many`` call per partition;
        every other write is its own call."""
        if len(requests) == 1:  # (the common case: one save or delete)
            request = requests[0]
            return [(state.writes.delete(request) if request.kind == "delete"
                     else state.writes.save(request), positions)]
        if state.keys.partitions == 1 and _uniform(requests):
            # (a bulk insert's batch, the other common case: one group, as grouping gives
            # it, without a key and a pair per document)
            return [(state.writes.insert_many(0, requests), list(positions))]
        calls: list[tuple[Record, list[int]]] = []
        grouped: dict[tuple[int, Any], list[tuple[int, WriteRequest]]] = {}
        for position, request in zip(positions, requests, strict=True):
            if request.kind == "insert" and request.id is not None:
                group = (state.keys.partition_of(request.id), request.expire)
                grouped.setdefault(group, []).append((position, request))
            elif request.kind == "delete":
                calls.append((state.writes.delete(request), [position]))
            else:
                calls.append((state.writes.save(request), [position]))
        for (partition, _expire), members in grouped.items():
            if len(members) == 1:
                position, request = members[0]
                calls.append((state.writes.save(request), [position]))
            else:
                record = state.writes.insert_many(partition, [r for _, r in members])
                calls.append((record, [p for p, _ in members]))
        return calls

    def transact(self, options: ModelOptions, checks: Sequence[tuple[str, int]],
                 requests: Sequence[WriteRequest]) -> Op[list[WriteResult]]:
        """Version checks and writes in one atomic ``tx.lua`` call: all applied or none.
        Every document must be in one partition (one script, one slot)."""
        state = yield from self.prepare(options)
        requests = yield from self.with_ids(options, requests)
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
        for _attempt in range(2):
            _, sent = yield from self._ask(options, lambda state: (None, RedisPlan(
                (state.writes.tx(partition, list(checks), requests).call(),),
                idempotent=resendable)))
            try:
                return writes.tx_results(options, list(checks), requests, tx_reply(sent[0]))
            except DocumentLocked as locked:
                if getattr(sent, "resent", False):  # (see VersionConflict below)
                    raise WriteOutcomeUnknown(options.model_name, requests[0].id,
                                              locked) from None
                # a prepared transaction holds a document: settled by its record if it can
                # be, then this one is sent again (once)
                if _attempt or not (yield from self.settle(
                        locked.holder, locks_key(state.keys.tag(partition)))):
                    raise
            except (VersionConflict, DuplicateIdError) as refusal:
                if getattr(sent, "resent", False):
                    raise WriteOutcomeUnknown(options.model_name, requests[0].id,
                                              refusal) from None
                raise
        raise AssertionError("unreachable")

    def update_fields(self, options: ModelOptions, ids: Sequence[str], values: dict[str, Any],
                      storage: dict[str, Any], expire: Expiry | int) -> Op[Patched]:
        """Set fields of the stored documents ``ids`` (whatever their versions) without
        reading them first: one ``patch.lua`` call per id, all in one round trip,
        each atomic on its own. ``values``: cleaned values by attribute name; ``storage``:
        their stored forms by stored name; no field of a compound index. An id that exists
        counts (written, or already holding those values: nothing written); a refusal of one
        id (a unique value taken, a key of the wrong type, a document too large or not a
        JSON object) writes nothing to it and is reported with its position.

        Declined, nothing written, to be read and written whole: every id when the model
        compresses its documents (Meta.compress: a script cannot compress what it patches,
        nor look inside a compressed document), any id whose stored document is
        compressed (written while the model said so), and any format-3 document whose old
        index entries the script cannot derive from its JSON (``ENTRIES``)."""
        if options.compress is not None:
            return Patched(0, list(ids), [])
        state = self._state(options)
        if state.schema is None:  # (first use: the schema and the ACL preflight)
            state = yield from self.prepare(options)
        sent = yield RedisPlan(state.writes.patch_calls(ids, values, storage, expire),
                               idempotent=True)
        if len(sent) == 1 and type(first := sent[0]) is list and first[0] == b"OK":
            return _ONE_PATCHED  # (the common call: one id, written or unchanged)
        sent = yield from self._patch_all(options, ids, values, storage, expire, sent)
        model = options.model_name
        count, declined = 0, []
        failures: list[tuple[int, Exception]] = []
        for position, (id, raw) in enumerate(zip(ids, sent, strict=True)):
            reply = write_reply(raw)
            status = reply.status
            if status == "OK":
                count += 1
            elif status == "COMPRESSED" or status == "ENTRIES":
                # (ENTRIES: a format-3 document whose old index entries the script cannot
                # derive; both are read and written whole, compare-and-set on the version)
                declined.append(id)
            elif status == "TOOLARGE":
                failures.append((position, DocumentTooLargeError(
                    model, id, reply.version or 0,
                    self._state(options).writes.max_document_bytes)))
            elif status == "CORRUPT":
                failures.append((position, CorruptDocumentError(
                    model, id, "its format-3 header does not read" if len(raw) > 1
                    else "not a JSON object")))
            elif status != "MISSING":
                error = writes.result(options, WriteRequest("update", id), reply).error
                assert error is not None
                failures.append((position, error))
        return Patched(count, declined, failures)

    def _patch_all(self, options: ModelOptions, ids: Sequence[str], values: dict[str, Any],
                   storage: dict[str, Any], expire: Expiry | int,
                   sent: list[Any]) -> Op[list[Any]]:
        """The replies of the patch calls of ``ids``, given ``sent``, the replies of their
        first round. A partition that has seen a newer schema layout refuses its patches
        before writing anything: the schema is read again and only those patches are sent
        again (the others were applied: sent twice, a patch that refreshes an expiry would
        write a second version and event)."""
        replies: list[Any] = [None] * len(ids)
        pending = list(range(len(ids)))
        for attempt in range(1, LAYOUT_ATTEMPTS + 1):
            refused, stale = [], False
            locked: list[tuple[int, str]] = []
            for position, raw in zip(pending, sent, strict=True):
                if layout_refused(raw):
                    refused.append(position)
                    stale = True
                elif wire.text(raw[0]) == "LOCKED":
                    locked.append((position, wire.text(raw[1])))
                replies[position] = raw
            if locked:  # (its holder settled, or waited for until it is: sent again)
                stuck = yield from self.wait_unlocked(
                    options, [(ids[position], holder) for position, holder in locked])
                refused += [position for position, _ in locked if ids[position] not in stuck]
            if not refused:
                return replies
            if attempt == LAYOUT_ATTEMPTS:
                break
            pending = refused
            state = (yield from self.prepare(options, refresh=True)) if stale else (
                self._state(options))
            sent = yield RedisPlan(state.writes.patch_calls(
                [ids[i] for i in pending], values, storage, expire), idempotent=True)
        raise unsettled(options)

    def _locks_of(self, options: ModelOptions, id: str) -> str:
        """The lock hash of the partition of document ``id`` (twophase.py)."""
        self._know(options)
        keys = self._state(options).keys
        return locks_key(keys.tag(keys.partition_of(id)))

    # -- expiry ----------------------------------------------------------------------------

    def expire(self, options: ModelOptions, id: str, ttl: float | None) -> Op[bool]:
        """Give the document an expiry in ``ttl`` seconds (None: none); False if it is gone.
        A format-3 document's sweep record (bench/format3.md) is written by the script from
        its JSON, or from its entries read here when the script cannot derive them."""
        state = self._state(options)
        keys = state.keys
        p = keys.partition_of(id)
        how = Expiry.PERSIST if ttl is None else str(max(1, round(ttl * 1000)))
        doc_key, id_key, holder = keys.doc(p, id), sortable.id_key(id), ""
        entries: tuple[bytes, ...] = ()
        # (a format-3 touch may take two calls more: FORMAT3, then ENTRIES)
        for _attempt in range(LAYOUT_ATTEMPTS + 2):
            call: Call = ExpireCall(doc_key, keys.ttl(p), self._locks_of(options, id),
                                    keys.meta(p, id), id_key, how).call()
            if options.__dict__.get(_HEADED_TOUCH):  # (see expire.lua: a format-3 touch)
                call = Call("expire", (*call.keys, keys.state(p)), (
                    *call.args, wire.items([state.writes.layout,
                                            *derived.touch_items(options), *entries])))
            (done,) = yield RedisPlan((call,), idempotent=True)
            if not isinstance(done, list):
                return bool(done)
            status = wire.text(done[0])
            if status == "FORMAT3":  # (sent again with what a format-3 document needs,
                # and so every touch of the model from now on)
                options.__dict__[_HEADED_TOUCH] = True
            elif status in ("ENTRIES", "VERSION"):  # (its entries read, then sent)
                entries = yield from self._touch_entries(options, doc_key, id)
                if not entries:
                    return False
            elif status == "LAYOUT":  # (a format-3 document: the schema read again)
                state = yield from self.prepare(options, refresh=True)
            elif status == "CORRUPT":
                raise CorruptDocumentError(options.model_name, id,
                                           "its format-3 header does not read")
            elif status == "WRONGTYPE":
                raise writes.result(options, WriteRequest("update", id),
                                    write_reply(done)).error or AssertionError(done)
            else:
                # locked by a prepared transaction: its holder settled (or waited for),
                # then again
                holder = wire.text(done[1])
                if (yield from self.wait_unlocked(options, [(id, holder)])):
                    raise DocumentLocked(options.model_name, id, 0, holder)
        if holder:
            raise DocumentLocked(options.model_name, id, 0, holder)
        raise unsettled(options)

    def _touch_entries(self, options: ModelOptions, doc_key: str,
                       id: str) -> Op[tuple[bytes, ...]]:
        """The version of the stored document ``id`` and its entries in every index (one
        packed list each, as a sweep record holds them), read from it: what a touch of a
        format-3 document sends when its script cannot derive them. Empty: it is gone."""
        (raw,) = yield RedisPlan((Command(("GET", doc_key)),), idempotent=True)
        if raw is None:
            return ()
        version = stored.split(bytes(raw))[0]
        data = stored.document(bytes(raw), options.model_name, id)
        values = {name: options.read_value(name, data) for index in options.indexes
                  for name in index.fields}
        return (b"%d" % version, *[sortable.pack_list(writes.index_members(options, index,
                                                                          values))
                                   for index in options.indexes])

    def sweep(self, options: ModelOptions, limit: int) -> Op[int]:
        """Purge the leftovers of up to ``limit`` expired documents per partition; and
        settle the namespace's transactions past their deadline (twophase.py)."""
        _, replies = yield from self._ask(options, lambda state: (None, RedisPlan(
            tuple(state.writes.sweep_call(p, limit) for p in range(options.partitions)),
            idempotent=True)))
        yield from self.sweep_transactions(options)
        return sum(sweep_reply(reply).purged for reply in replies)
