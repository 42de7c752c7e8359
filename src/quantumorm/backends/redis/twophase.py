"""Transactions across partitions and models on Redis: a two-phase commit with recovery.

A transaction whose documents are in one partition of one model is one ``tx.lua`` call (the
fast path, :meth:`.writer.Writer.transact`). Any other is committed in phases, each phase one
round trip (its calls go to every node concerned at once):

1. **begin**: the record ``{<ns>:2pc:<txid>}:r`` (a slot of its own): state ``pending``, the
   deadline (the record server's time plus the timeout), the participants (per partition:
   its lock hash and intent key); and the txid in the registry ``{<ns>:2pc}:open`` (by
   deadline, on the registry server's clock: ``tx_open.lua``) that
   :meth:`TwoPhase.sweep_transactions` reads (``tx_due.lua``, by that same clock).
2. **prepare**, per partition: ``tx.lua`` in prepare mode runs every check of the one-script
   transaction (versions read, versions written, ids, unique values, key types), refuses a
   document locked by another transaction (naming its record), then locks every document
   in the partition's lock hash ``<tag>:locks`` (id key -> record key), sets the readers'
   flag ``<tag>:locked`` and stores the call itself, in apply mode, as the intent
   ``<tag>:2pc:<txid>``. Documents and indexes are not touched.
3. **commit**: ``tx_decide.lua`` on the record: ``pending`` becomes ``committed`` if the
   server's time is before the deadline, else ``aborted``. This flip is the decision.
4. **apply**, per partition: ``tx_apply.lua`` is sent the intent's key, and runs the
   intent stored there (``tx.lua``'s body in apply mode): every write exactly as the
   one-script transaction does it (documents, versions, indexes, expiry, change events);
   locks released; once only (an apply that finds the intent applied is a no-op and reports
   the versions the first one wrote, kept a while: APPLIED_KEEP_TIMEOUTS). It runs above
   maxmemory too (allow-oom: it replaces what the intents hold), where a begin or a
   prepare, new writes, are refused. After the decision an apply refuses nothing: a
   document that expired meanwhile stays gone (an update or a delete of it does nothing,
   as a plain save of it would fail). A schema change of a model settles the transactions
   locking its partitions first (:meth:`TwoPhase.before_schema_change`); an intent that
   still meets a newer schema layout (a race, an older client) is made again from its rows
   with the schema of now (:meth:`TwoPhase._rebuilt`, sent as ``tx_apply.lua``'s argument),
   and a write of it whose value a unique index added since finds taken is left out,
   recorded in :func:`conflicts_key` for verify() (:class:`TransactionUniqueConflict` to
   the committing client). Expiry changes and sweeps leave a locked document alone until
   its transaction is settled.
5. **finish**: the record and its registry entry are deleted.

Invariants: a document is changed only by the apply of a committed transaction that locks
it, or by a write that found it unlocked; an intent of a committed transaction exists only
while its record does (finish comes after every apply); a missing record means aborted (a
pending record expires a second after its deadline, and pending past the deadline is
aborted anyway). Whoever meets a lock (a writer, another transaction's prepare) or reads the
registry (the sweeper) settles the transaction by its record alone (:meth:`settle`):
committed: apply every intent (roll forward); aborted or missing: release every lock
(roll back); pending past its deadline: flip it to aborted first; pending before it: wait
(:class:`~quantumorm.errors.DocumentLocked`). So no document stays locked past the deadline
plus the sweeper's period, and a client dying at any point loses or applies all of its
transaction, never part.

Writers check the lock hash (one EXISTS when the partition has no lock: a hash without
fields does not exist); reads by id read the flag in their MGET (no command more) and, when
it is set, settle the holders of the documents read first: a committed transaction is seen
whole, an undecided one not at all (prepare changed no document, no index entry). Those
checks, and a read sent again after them, go to the master even with ``read_from_replicas``
(``RedisPlan.primary``): a replica may still show locks its master has released.

Documents of models with unique indexes are read (checked) and deleted, not written, by a
two-phase commit: a unique value is checked at prepare but cannot be reserved until apply,
so a write in between could take it and a committed transaction could not be applied.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ... import sortable
from ...compression import decode_document, decompress
from ...engine.contract import Expiry, WriteRequest, WriteResult
from ...engine.drive import Op
from ...errors import (
    DamagedTransactionError,
    QuantumORMError,
    SchemaChangeBlocked,
    TransactionCommitted,
    TransactionError,
    TransactionsUnsettled,
    TransactionUniqueConflict,
    TransactionVersionsUnknown,
)
from ...options import ModelOptions
from . import wire, writes
from .calls import NowCall, TxCall
from .commands import Call, Command, RedisPlan, Step
from .core import LAYOUT_ATTEMPTS, BackendCore, unsettled
from .replies import TxReply, tx_reply
from .translation import damaged_meta
from .writeids import version_in_document

#: how long a pending (or aborted) record outlives its deadline before it expires (ms): past
#: its deadline a pending record can only be aborted, and a missing record counts as
#: aborted, so expiring is aborting (the same server's clock decides both); a record whose
#: client died before its prepare (no lock leads anyone to it) is gone soon after
RECORD_GRACE_MS = 1000
log = logging.getLogger("quantumorm.redis")

#: how long a partition's "applied" marker (the versions its apply wrote, which replace its
#: intent) is kept, in timeouts of its transaction, and at least APPLIED_KEEP_MIN_MS: the
#: committing client reads it when its own apply comes second (a settler met its locks
#: first) or is a resend after a lost reply; both follow its decision by no more than its
#: executor's retries (each up to the socket timeout, 5 s by default), which ten timeouts
#: and the floor cover with margin. Past it, the versions are read from the documents'
#: recent write ids, or the client is told they are unknown (TransactionVersionsUnknown)
APPLIED_KEEP_TIMEOUTS = 10
APPLIED_KEEP_MIN_MS = 60_000
#: rounds of settling the transactions that hold locks in a model's partitions before its
#: schema changes; new ones met in each of them refuse the change (SchemaChangeBlocked)
SCHEMA_SETTLE_ROUNDS = 5
#: how many transactions one sweep settles per namespace
SWEEP_BATCH = 100
#: the longest pause between two rounds of a read (seconds): shorter than a writer's, as
#: a read is disturbed only by what lands during its own round trip, not held up by a lock
READ_PAUSE_MAX = 0.02
#: how long a read that keeps meeting transactions applied while it runs keeps settling and
#: reading again, from its second round, by the master's clock (that of the model's first
#: partition), in ms: the default transaction timeout (``transaction.TIMEOUT``) plus
#: :data:`WAIT_SKEW_MS`. A lock is gone by its holder's deadline (then any reader or writer
#: settles it), so a read meets a new transaction at every round for that long only under a
#: stream of transactions over the documents it reads; then TransactionsUnsettled
READ_SETTLE_MS = 7000
#: the longest pause between two attempts to settle an undecided holder (seconds)
WAIT_PAUSE_MAX = 0.1
#: how long past the holder's deadline (by the server's clock, which the deadline is in) a
#: writer keeps trying to settle it before giving up (ms): settling decides by that clock,
#: so this is only a margin for a record's node whose clock differs from the other's
WAIT_SKEW_MS = 2000


@dataclass(slots=True)
class Settling:
    """The rounds of a read sent again after settling the transactions it met
    (:meth:`TwoPhase.settle_round`): how many, and the server's time (ms) past which it
    raises (0: not read yet, the first round goes at once)."""

    rounds: int = 0
    until: int = 0


#: the schema keys whose change this thread or task is settling transactions for: a settle
#: that makes an intent again may reconcile the same model's schema, which must not settle
#: (and so make again, and reconcile...) in turn; per context, as other threads' and tasks'
#: schema changes must settle all the same
_SCHEMAS_CHANGING: ContextVar[frozenset[str]] = ContextVar("schemas_changing",
                                                           default=frozenset())


#: the states a record holds (``tx_begin.lua``, ``tx_decide.lua``)
STATES = frozenset({"pending", "committed", "aborted"})


def _deadline(record: str, stored: Any) -> int:
    """A record's ``deadline`` as ``tx_begin.lua`` writes it (plain digits; 0 when the
    record is gone), else :class:`DamagedTransactionError` (``int`` would read "+5")."""
    if stored is None:
        return 0
    text = bytes(stored)
    if not text.isdigit():
        raise DamagedTransactionError(record, "deadline")
    return int(text)


def record_key(namespace: str, txid: str) -> str:
    return f"{{{namespace}:2pc:{txid}}}:r"


def registry_key(namespace: str) -> str:
    return f"{{{namespace}:2pc}}:open"


def locks_key(tag: str) -> str:
    """The lock hash of a partition (``tag``: its hash tag; see _write.lua's locks_key)."""
    return f"{tag}:locks"


def flag_key(tag: str) -> str:
    """The readers' flag of a partition: set while its lock hash is not empty (see
    _write.lua's lock_flag), read in the MGET of every read by id."""
    return f"{tag}:locked"


def conflicts_key(tag: str) -> str:
    """Where a partition records the writes of committed transactions left out because a
    unique index added since their prepare found the value taken (see _tx.lua): id key ->
    MessagePack {record, index name, holder id key, the JSON not written}; verify()
    reports them."""
    return f"{tag}:conflicts"


def intent_key(locks: str, record: str) -> str:
    """A transaction's intent in the partition of lock hash ``locks``."""
    txid = record.rsplit(":", 2)[-2].rstrip("}")
    return f"{locks.removesuffix(':locks')}:2pc:{txid}"


def _bytes(value: Any) -> bytes:
    """An argument of a script call as bytes (a call built here has some as str)."""
    return value if isinstance(value, bytes) else str(value).encode()


@dataclass
class Share:
    """What one partition of one model does in a transaction."""

    options: ModelOptions
    partition: int
    checks: list[tuple[str, int]] = field(default_factory=list)
    requests: list[WriteRequest] = field(default_factory=list)
    #: (part, position) of each request in the caller's lists
    origins: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Intent:
    """A partition's intent of a committed transaction, to apply (``tx_apply.lua``): its key,
    and the ``tx.lua`` call it holds (keys, arguments) when this client knows it."""

    key: str
    call: tuple[tuple[str, ...], tuple[Any, ...]] | None = None
    #: ``call`` was made again with the schema of now: sent to replace the stored one
    rebuilt: bool = False

    def step(self) -> Call:
        packed = b""
        if self.rebuilt:
            assert self.call is not None
            keys, args = self.call
            packed = wire.pack([b"call", str(len(keys)).encode(),
                                *(_bytes(k) for k in keys), *(_bytes(a) for a in args)])
        return Call("tx_apply", (self.key,), (packed,))


#: the kinds of a ``tx.lua`` call's rows
ROW_KINDS = frozenset({b"check", b"insert", b"update", b"delete"})


def _stored_call(blob: Any, key: str) -> tuple[tuple[str, ...], tuple[Any, ...]] | None:
    """The ``tx.lua`` call the intent key ``key`` holds (None: it holds the applied
    marker); :class:`DamagedTransactionError` if it is neither, as ``tx_apply.lua`` checks
    it (the two accept the same intents): not MessagePack, cut short, another kind, counts
    that do not add up (its keys and rows, the intent key at its place), a row of an
    unknown kind or whose expected version is not plain digits (an update's or a delete's
    may carry its loaded entries after a NUL: :func:`_expected_reads`), not in apply mode, an
    applied marker whose versions are not integers, an element of it or of a list it packs
    (the indexes described, the phase, the events spec, a write's meta pairs, lenient
    positions, changed names) that is not a string (:func:`wire.unpack` reads arrays of
    strings only), a lenient position not plain digits; and a value a write uses after
    the first one that its command would refuse (the apply would stop half done): an
    expiry not "keep", "persist" or at most 15 digits, the ms the applied marker is kept
    not "" or a positive number of at most 15 digits, an events spec not three strings
    (its stream's MAXLEN "" or at most 18 digits, its document flag "0" or "1")."""
    try:
        data = bytes(blob)
        flat = wire.unpack(data)
        if flat[:1] == [b"applied"]:
            # (tx_apply.lua knows the marker by "applied" packed as tx.lua packs it, 7 bytes
            # of fixstr right after the array's header: packed otherwise, it is damage there)
            header = 1 if data[0] & 0xF0 == 0x90 else 3 if data[0] == 0xDC else 5
            if data[header:header + 8] != b"\xa7applied":
                raise ValueError("the applied marker not as tx.lua packs it")
            if not all((v[1:] if v[:1] == b"-" else v).isdigit() for v in flat[1:]):
                raise ValueError("versions not integers")
            return None
        if not (flat[:1] == [b"call"] and len(flat) > 1 and flat[1].isdigit()):
            raise ValueError("not an intent")
        nkeys = int(flat[1])
        keys, args = flat[2:2 + nkeys], flat[2 + nkeys:]
        if len(keys) != nkeys or len(args) < 6 or (len(args) - 6) % 9:
            raise ValueError("counts do not add up")
        described, spec = wire.unpack(args[0]), wire.unpack(args[5])
        nrows = (len(args) - 6) // 9
        at = len(described) // 3 + 3 + 2 * nrows  # (the intent key's place among the keys)
        if not (len(described) % 3 == 0 and spec[:1] == [b"apply"] and len(spec) > 1
                and len(keys) > at and keys[at] == key.encode()
                and all(args[6 + 9 * n] in ROW_KINDS and _expected_reads(args, n, described)
                        and (args[14 + 9 * n] in (b"keep", b"persist")
                             or (len(args[14 + 9 * n]) <= 15 and args[14 + 9 * n].isdigit()))
                        for n in range(nrows))):
            raise ValueError("not an intent in apply mode")
        keep = spec[3] if len(spec) > 3 else b""
        if keep and not (len(keep) <= 15 and keep.isdigit() and int(keep) > 0):
            raise ValueError("the applied marker's keep not a positive number of ms")
        if args[3]:
            events = wire.unpack(args[3])
            if not (len(events) == 3 and events[1] in (b"0", b"1") and (
                    not events[0] or (len(events[0]) <= 18 and events[0].isdigit()))):
                raise ValueError("not an events spec")
        for n in range(nrows):  # (a write's meta pairs, lenient positions, changed names)
            if args[6 + 9 * n] in (b"insert", b"update"):
                fields, lenient, changed = args[11 + 9 * n:14 + 9 * n]
                wire.unpack(fields)  # (an array of strings, as tx_apply.lua reads them)
                if not all(p.isdigit() for p in wire.unpack(lenient)):
                    raise ValueError("a lenient position not plain digits")
                if changed:
                    wire.unpack(changed)
        return tuple(k.decode() for k in keys), tuple(args)
    except (ValueError, IndexError, TypeError) as exc:  # (UnicodeDecodeError: a ValueError)
        raise DamagedTransactionError(key, "intent") from exc


def _expected_reads(args: list[bytes], n: int, described: list[bytes]) -> bool:
    """Whether row ``n``'s expected version reads as ``tx_apply.lua`` reads it: plain
    digits, or for an update or a delete of a document loaded as format 3 the digits, a
    NUL, then a MessagePack array of one packed list per index and the listed indexes'
    pairs (an even count), all strings; for an insert stored in format 3, the digits, a
    NUL, then nothing or the listed indexes' pairs, a flat array (see ``_tx.lua``)."""
    expected = args[7 + 9 * n]
    version, nul, given = expected.partition(b"\0")
    # (as the scripts tell a format-3 row: longer than 20 bytes, up to its first NUL)
    if nul and args[6 + 9 * n] == b"insert" and len(expected) > 20:
        if given:  # (the listed indexes' pairs, a flat array: as tx_apply.lua reads them)
            pairs = wire.unpack(given)
            if len(pairs) % 2:
                return False
            for packed in pairs[1::2]:
                sortable.unpack_list(packed)
    elif nul and args[6 + 9 * n] in (b"update", b"delete") and len(expected) > 20:
        parts = _nested(given)
        if not (len(parts) == 2 and len(parts[0]) == len(described) // 3
                and len(parts[1]) % 2 == 0):
            return False
        # (each list read as the script reads it: sortable.unpack_list raises ValueError)
        for packed in [*parts[0], *parts[1][1::2]]:
            sortable.unpack_list(packed)
    elif nul:
        return False
    return version.isdigit()


def _nested(blob: bytes) -> list[list[bytes]]:
    """A MessagePack array of arrays of strings (headed.nested's), else ValueError."""
    count, at = _array_head(blob, 0)
    out: list[list[bytes]] = []
    for _ in range(count):
        size, start = _array_head(blob, at)
        # (each inner array, re-read on its own: wire.unpack reads arrays of strings)
        end = _array_end(blob, start, size)
        out.append(wire.unpack(blob[at:end]))
        at = end
    if at != len(blob):
        raise ValueError("trailing bytes")
    return out


def _array_head(blob: bytes, at: int) -> tuple[int, int]:
    """The count of the MessagePack array whose header is at ``at``, and where its items
    start."""
    head = blob[at]
    if 0x90 <= head <= 0x9F:
        return head - 0x90, at + 1
    if head == 0xDC:
        return int.from_bytes(blob[at + 1:at + 3], "big"), at + 3
    if head == 0xDD:
        return int.from_bytes(blob[at + 1:at + 5], "big"), at + 5
    raise ValueError("not an array")


def _array_end(blob: bytes, at: int, count: int) -> int:
    """Where ``count`` MessagePack strings starting at ``at`` end."""
    for _ in range(count):
        head = blob[at]
        if 0xA0 <= head <= 0xBF:
            at += 1 + head - 0xA0
        elif head in (0xD9, 0xC4):
            at += 2 + blob[at + 1]
        elif head in (0xDA, 0xC5):
            at += 3 + int.from_bytes(blob[at + 1:at + 3], "big")
        elif head in (0xDB, 0xC6):
            at += 5 + int.from_bytes(blob[at + 1:at + 5], "big")
        else:
            raise ValueError("not a string")
    if at > len(blob):
        raise ValueError("cut short")
    return at


def _parts_read(parts: Any) -> bool:
    """Whether a record's ``parts`` reads as ``tx_begin.lua`` stored it: a MessagePack array
    of an even number of UTF-8 strings (each partition's lock hash and intent key)."""
    try:
        pairs = wire.unpack(bytes(parts))
        for key in pairs:
            key.decode()
    except (ValueError, TypeError):  # (UnicodeDecodeError: a ValueError)
        return False
    return len(pairs) % 2 == 0


def _first(keys: list[str]) -> str:
    """The first ten of ``keys``, for a log line ("..." if there are more)."""
    return ", ".join(keys[:10]) + (" ..." if len(keys) > 10 else "")


def _plain(text: bytes, intent: str) -> int:
    """A row's expected version or expiry (ms) as ``tx.lua``'s caller wrote it (plain
    digits), else :class:`DamagedTransactionError` naming the intent (``int`` would read
    "+13", " 13", "1_3")."""
    if not text.isdigit():
        raise DamagedTransactionError(intent, "intent")
    return int(text)


class TwoPhase(BackendCore):
    """The two-phase commit of transactions across partitions and models (module doc); the
    base of :class:`~.writer.Writer`, which has the one-script path and id allocation."""

    def transact(self, options: ModelOptions, checks: Sequence[tuple[str, int]],
                 requests: Sequence[WriteRequest]) -> Op[list[WriteResult]]:
        raise NotImplementedError  # (Writer's)

    def allocate_ids(self, options: ModelOptions, count: int) -> Op[list[str]]:
        raise NotImplementedError  # (Writer's)

    def with_ids(self, options: ModelOptions,
                 requests: Sequence[WriteRequest]) -> Op[list[WriteRequest]]:
        """A transaction's writes, each new document given an id first (one INCRBY); refused
        on a model of several partitions, where a new document's partition must be known
        before the transaction is sent."""
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
        return requests

    def transact_many(self, parts: Sequence[tuple[ModelOptions, Sequence[tuple[str, int]],
                                                  Sequence[WriteRequest]]],
                      timeout: float) -> Op[list[list[WriteResult]]]:
        """Version checks and writes of documents of several models: all applied or none.
        One partition in all: one ``tx.lua`` call; more: a two-phase commit whose
        undecided state lasts at most ``timeout`` seconds."""
        shares: dict[str, Share] = {}  # by partition tag (one per model and partition)
        results: list[list[WriteResult | None]] = []
        for number, (options, checks, requests) in enumerate(parts):
            state = yield from self.prepare(options)
            requests = yield from self.with_ids(options, requests)
            results.append([None] * len(requests))
            keys = state.keys
            for id, version in checks:
                p = keys.partition_of(id)
                shares.setdefault(keys.tag(p), Share(options, p)).checks.append((id, version))
            for position, request in enumerate(requests):
                assert request.id is not None
                p = keys.partition_of(request.id)
                share = shares.setdefault(keys.tag(p), Share(options, p))
                share.requests.append(request)
                share.origins.append((number, position))
        if len(shares) == 1:  # the fast path: one script
            (share,) = shares.values()
            done = yield from self.transact(share.options, share.checks, share.requests)
            return self._place(results, [(share, done)])
        for share in shares.values():
            unique = [i.name for i in share.options.indexes if i.unique]
            if unique and any(r.kind != "delete" for r in share.requests):
                raise TransactionError(
                    f"{share.options.model_name} has unique indexes ({', '.join(unique)}): "
                    "a transaction across partitions or models can read and delete its "
                    "documents, not write them (a unique value cannot be reserved between "
                    "prepare and apply)")
        # a fixed order of partitions: two transactions meet each other's locks less often
        ordered = [shares[tag] for tag in sorted(shares)]
        for _attempt in range(LAYOUT_ATTEMPTS):
            applied = yield from self._two_phase(ordered, timeout)
            if applied is not None:
                return self._place(results, list(zip(ordered, applied, strict=True)))
        raise unsettled(ordered[0].options)

    @staticmethod
    def _place(results: list[list[WriteResult | None]],
               done: list[tuple[Share, list[WriteResult]]]) -> list[list[WriteResult]]:
        for share, outcomes in done:
            for (part, position), outcome in zip(share.origins, outcomes, strict=True):
                results[part][position] = outcome
        placed: list[list[WriteResult]] = []
        for row in results:
            assert all(r is not None for r in row)
            placed.append([r for r in row if r is not None])
        return placed

    def _know(self, options: ModelOptions) -> None:
        """Remember the model of ``options`` by its partitions' key prefix: an intent of
        it refused for its schema layout can then be made again here (:meth:`_rebuilt`)."""
        known: dict[str, ModelOptions] = self.__dict__.setdefault("_known_models", {})
        # (the last model used for a collection: the newest declaration, when two share it)
        known[self._state(options).keys.tag(0).rsplit(":p", 1)[0]] = options

    def _call(self, share: Share, phase: bytes, record: str, keep_ms: int) -> TxCall:
        """The ``tx.lua`` call of ``share`` in ``phase``; its apply keeps the applied
        marker ``keep_ms`` (write ids are new at each call)."""
        self._know(share.options)
        state = self._state(share.options)
        call = state.writes.tx(share.partition, share.checks, share.requests)
        call.phase = wire.pack([phase, record.encode(), b"", str(keep_ms).encode()])
        call.intent_key = intent_key(locks_key(state.keys.tag(share.partition)), record)
        return call

    def _two_phase(self, shares: list[Share],
                   timeout: float) -> Op[list[list[WriteResult]] | None]:
        """One attempt; None when a partition's schema layout moved on (nothing written,
        the schema read again: the caller tries again)."""
        namespace = self._state(shares[0].options).keys.namespace
        record = record_key(namespace, os.urandom(12).hex())
        registry = registry_key(namespace)
        timeout_ms = max(1, round(timeout * 1000))
        keep_ms = max(APPLIED_KEEP_MIN_MS, APPLIED_KEEP_TIMEOUTS * timeout_ms)
        calls = [self._call(share, b"prepare", record, keep_ms) for share in shares]
        participants = wire.pack([k.encode() for call in calls
                                  for k in (locks_key(call.ids_key.removesuffix(":ids")),
                                            call.intent_key or "")])
        # 1. begin (the registry in its own slot: a call of its own, scored by its server)
        yield RedisPlan((
            Call("tx_begin", (record,), (timeout_ms, RECORD_GRACE_MS, participants)),
            Call("tx_open", (registry,), (record, timeout_ms))), idempotent=True)
        # 2. prepare (resent, a prepare finds its own locks and reports PREPARED)
        sent = yield RedisPlan(tuple(call.call() for call in calls), idempotent=True)
        replies = [tx_reply(raw) for raw in sent]
        refused = [(share, reply) for share, reply in zip(shares, replies, strict=True)
                   if reply.status != "PREPARED"]
        if refused:
            yield from self._finish(record, registry, participants, "abort")
            stale = [s for s, r in refused if r.status == "LAYOUT"]
            for share in stale:
                yield from self.prepare(share.options, refresh=True)
            if stale and len(stale) == len(refused):
                return None
            share, reply = next((s, r) for s, r in refused if r.status != "LAYOUT")
            if reply.status == "LOCKED" and reply.refusal is not None:
                # settle the holder now if it can be: the caller's next attempt may pass
                # (best effort, as a read's: this transaction is refused for the lock
                # either way, and DocumentLocked is what tells the caller to try again)
                holder = reply.refusal.name or ""
                yield from self._settle_for_reader(holder, locks_key(
                    self._state(share.options).keys.tag(share.partition)))
            writes.tx_results(share.options, share.checks, share.requests, reply)  # raises
            raise AssertionError(f"unexpected prepare reply {reply!r}")
        # 3. commit: the decision (from here on, a failure is never "nothing written")
        try:
            (state,) = yield RedisPlan((Call("tx_decide", (record,), ("commit",)),),
                                       idempotent=True)
        except DamagedTransactionError:
            # (its deadline does not read: refused with nothing decided, and an abort
            # needs no deadline; nothing was written)
            yield from self._finish(record, registry, participants, "abort")
            raise
        except QuantumORMError as lost:
            raise TransactionCommitted(record, lost, decided=False) from lost
        if wire.text(state) != "committed":
            yield from self._finish(record, registry, participants, "abort")
            raise TransactionError(
                f"the transaction passed its deadline ({timeout} s after it began) before "
                "its commit: it was aborted, nothing was written")
        try:
            # 4. apply: each partition's intent, read by the server where the prepare
            # stored it (resent, an apply finds it applied and reports the versions)
            # (the prepare's calls, in apply mode: the rows and write ids the intents hold,
            # which a late resend finds its versions by)
            intents: list[Intent] = []
            for call in calls:
                call.phase = wire.pack([b"apply", record.encode(), b"", str(keep_ms).encode()])
                made = call.call()
                intents.append(Intent(call.intent_key or "", (made.keys, made.args)))
            sent = yield from self._send_intents(intents)
            done: list[list[WriteResult] | None] = []
            conflicts: list[tuple[str, str, str, str]] = []
            for share, intent, reply in zip(shares, intents, sent, strict=True):
                if reply.status == "DONE" and reply.applied is None and intent.call:
                    # applied long ago (the versions it left have expired): read them
                    reply.applied = yield from self._late_versions(*intent.call)
                done.append(self._applied(share, reply))
                conflicts += self._left_out(share, reply)
            # 5. finish
            yield from self._forget(record, registry)
        except (TransactionCommitted, DamagedTransactionError):
            # (an intent that does not read, refused by tx_apply.lua: the other partitions'
            # went in the same round trip; the record stays committed and that partition's
            # locks stay, refusing its writers likewise, until the intent is put back or
            # deleted: docs/redis.md)
            raise
        except QuantumORMError as failed:  # (committed: recovery applies the rest)
            raise TransactionCommitted(record, failed) from failed
        if conflicts:
            raise TransactionUniqueConflict(record, conflicts)
        if any(outcome is None for outcome in done):
            raise TransactionVersionsUnknown(record)
        return [outcome for outcome in done if outcome is not None]

    def _late_versions(self, keys: tuple[str, ...], args: tuple[Any, ...]
                       ) -> Op[list[int] | None]:
        """The versions an intent (keys and arguments of its ``tx.lua`` call) wrote, from
        the recent write ids of its documents' meta hashes, when what the apply left
        behind has expired (a resend that came very late); None when a document has been
        written too often since to tell."""
        nindexes = len(wire.unpack(_bytes(args[0]))) // 3
        rows = args[6:]
        intent = keys[3 + nindexes + 2 * (len(rows) // 9)]
        written = [n for n in range(len(rows) // 9) if _bytes(rows[9 * n]) in (b"insert",
                                                                              b"update")]
        # (each document's "r", and the documents (one MGET: one partition): a format-3 one
        # keeps its write ids in its header, and no "r"; all in the one round trip)
        seen: list[Any] = []
        documents: list[Any] = []
        if written:
            *seen, documents = yield RedisPlan(
                (*(Command(("HGET", keys[4 + nindexes + 2 * n], "r")) for n in written),
                 Command(("MGET", *(keys[3 + nindexes + 2 * n] for n in written)))),
                idempotent=True)
        recent = dict(zip(written, seen, strict=True))
        document = dict(zip(written, documents, strict=True))
        versions: list[int] = []
        for n in range(len(rows) // 9):
            kind, expected, write_id = (_bytes(rows[9 * n]), _bytes(rows[9 * n + 1]),
                                        _bytes(rows[9 * n + 4]))
            if kind == b"check":
                versions.append(_plain(expected, intent))
                continue
            if kind == b"delete":
                versions.append(0)
                continue
            version = version_in_document(document[n], recent[n], write_id,
                                          keys[3 + nindexes + 2 * n], keys[4 + nindexes + 2 * n])
            if version is None:
                return None
            versions.append(version)
        return versions

    def _applied(self, share: Share, reply: TxReply) -> list[WriteResult] | None:
        """What the apply of ``share`` wrote; None when it was applied (by this client
        earlier, or a settler) but the versions it wrote are no longer known (module doc:
        APPLIED_KEEP_TIMEOUTS)."""
        versions: list[int] | None = None
        if reply.status == "OK":
            versions = reply.versions
        elif reply.status == "DONE":
            if not reply.applied:
                return None
            versions = reply.applied
        if versions is None:
            raise TransactionError(
                f"a committed transaction could not be applied to {share.options.model_name} "
                f"partition {share.partition} ({reply.status}); its intent stays for recovery")
        return [WriteResult(r.id, writes.tx_version(r, v) if r.kind != "delete" else 0)
                for r, v in zip(share.requests, versions[len(share.checks):], strict=True)]

    @staticmethod
    def _left_out(share: Share, reply: TxReply) -> list[tuple[str, str, str, str]]:
        """The writes of ``share`` its apply left out, their unique value taken (module
        doc): (model, id, index name, holder id); "?" where only the versions tell."""
        rows = [*(id for id, _ in share.checks), *(r.id or "" for r in share.requests)]
        model = share.options.model_name
        if reply.conflicts:
            return [(model, rows[n - 1], index, sortable.id_from_key(holder))
                    for n, index, holder in reply.conflicts]
        versions = reply.versions if reply.status == "OK" else reply.applied or []
        return [(model, rows[n], "?", "?") for n, v in enumerate(versions) if v == -1]

    def _finish(self, record: str, registry: str, participants: bytes,
                decision: str) -> Op[None]:
        """Abort (decision "abort") and release every partition, then forget the record."""
        if decision == "abort":
            yield RedisPlan((Call("tx_decide", (record,), ("abort",)),), idempotent=True)
        pairs = wire.unpack(participants)
        releases: list[Step] = [Call("tx_release", (pairs[i].decode(), pairs[i + 1].decode()),
                                     (record,)) for i in range(0, len(pairs), 2)]
        yield RedisPlan(tuple(releases), idempotent=True)
        yield from self._forget(record, registry)

    def _forget(self, record: str, registry: str) -> Op[None]:
        """Delete a settled record, then its registry entry, in that order: an entry whose
        record is gone is harmless (the sweeper reads a missing record as aborted and drops
        the entry), while a committed record left without its entry would be found by no
        one and kept forever. One server runs a pipeline in order; a cluster's nodes each
        run their part of it on their own, so there the entry waits for a second round
        trip."""
        delete, drop = Command(("DEL", record)), Command(("ZREM", registry, record))
        if self.cluster:
            yield RedisPlan((delete,), idempotent=True)
            yield RedisPlan((drop,), idempotent=True)
        else:
            yield RedisPlan((delete, drop), idempotent=True)

    # -- recovery -----------------------------------------------------------------------

    def settle(self, record: str, locks: str | Sequence[str] | None) -> Op[bool]:
        """Finish (committed: apply every intent) or roll back (aborted, missing, pending
        past its deadline: release every lock) the transaction of ``record``, met holding
        locks of the lock hash(es) ``locks`` (None: found in the registry; a missing
        record's other partitions are released by whoever meets them, or the sweeper).
        False when it is pending before its deadline (nothing done: its client may still
        commit it)."""
        namespace = record[1:].split(":2pc:", 1)[0]
        registry = registry_key(namespace)
        (got,) = yield RedisPlan((Command(("HMGET", record, "state", "parts")),),
                                 read_only=True, primary=True)  # (no WAIT after a read)
        state, parts = got
        if state is not None and wire.text(state) not in STATES:
            # (read as aborted, the locks of partitions not yet applied would be released
            # while others hold the applied intents: refused before anything is done)
            raise DamagedTransactionError(record, "state")
        if state is not None and not _parts_read(parts):
            # (its partitions, what every way on reads: refused before anything is decided,
            # applied or released, as a damaged state is)
            raise DamagedTransactionError(record, "parts")
        if state is None:  # missing: aborted, and forgotten (or never begun)
            met = [locks] if isinstance(locks, str) else list(locks or ())
            yield RedisPlan((*(Call("tx_release", (key, intent_key(key, record)), (record,))
                               for key in met),
                             Command(("ZREM", registry, record))), idempotent=True)
            return True
        if wire.text(state) == "pending":
            (decided,) = yield RedisPlan((Call("tx_decide", (record,), ("expire",)),),
                                         idempotent=True)
            if wire.text(decided) == "pending":
                return False
            state = decided
        if wire.text(state) == "committed":
            yield from self._roll_forward(record, bytes(parts))
            yield from self._forget(record, registry)
            return True
        yield from self._finish(record, registry, bytes(parts), "released")
        return True

    def _roll_forward(self, record: str, participants: bytes) -> Op[None]:
        """Apply every intent of a committed transaction still waiting to be applied: each
        is run by ``tx_apply.lua`` where it is stored (it works above maxmemory too)."""
        pairs = wire.unpack(participants)
        keys = [pairs[i].decode() for i in range(1, len(pairs), 2)]
        stored = yield RedisPlan(tuple(Command(("GET", key)) for key in keys),
                                 read_only=True, primary=True)  # (no WAIT after a read)
        intents = [Intent(key, call) for key, blob in zip(keys, stored, strict=True)
                   if blob and (call := _stored_call(blob, key)) is not None]
        if not intents:
            return  # (each applied already, or released)
        # an intent of an older layout (its model's schema changed since the prepare) is
        # made again before any intent is sent; one this client cannot make again (a
        # model it has not used) stops the roll forward before anything is applied, so
        # that this client never leaves the transaction half applied
        stamps = yield RedisPlan(tuple(Command(("HGET", intent.call[0][2], "layout"))
                                       for intent in intents if intent.call),
                                 read_only=True, primary=True)
        remade: list[Intent] = []
        for n, (intent, stamp) in enumerate(zip(intents, stamps, strict=True)):
            assert intent.call is not None
            call_keys, args = intent.call
            layout = wire.text(args[4])
            if stamp is None or not layout:
                continue
            stamped = wire.text(stamp)
            if not (stamped.isascii() and stamped.isdigit()):
                # (a stamp that does not read: refused before anything is applied, as the
                # apply's script would refuse it; repair() stamps it again)
                raise damaged_meta(wire.text(call_keys[2]), "layout")
            if int(stamped) <= int(layout):
                continue
            rebuilt = yield from self._rebuilt(call_keys, args)
            if rebuilt is None:
                raise TransactionError(
                    f"the committed transaction {record!r} writes a model this client has "
                    f"not used, whose schema changed since ({call_keys[2]}): a process using "
                    "it applies it (its sweep, or any read or write of it)")
            intents[n] = Intent(intent.key, rebuilt, rebuilt=True)
            remade.append(intents[n])
        remade_replies: list[TxReply] = []
        if remade:
            # (those made again first, alone: one refused stops the roll forward before
            # any other partition is applied)
            remade_replies = yield from self._send_intents(remade)
            for reply in remade_replies:
                if reply.status not in ("OK", "DONE"):
                    raise TransactionError(
                        f"the committed transaction {record!r} could not be applied "
                        f"({reply.status}); its intents stay for the next attempt")
        sent = yield from self._send_intents([i for i in intents if not i.rebuilt])
        for reply in sent:
            if reply.status not in ("OK", "DONE"):
                raise TransactionError(
                    f"the committed transaction {record!r} could not be applied "
                    f"({reply.status}); its intents stay for the next attempt")
        for intent, reply in zip([*remade, *(i for i in intents if not i.rebuilt)],
                                 [*remade_replies, *sent], strict=True):
            for _, index, holder in reply.conflicts or ():
                log.warning("the committed transaction %s was applied without a write its "
                            "unique index %s refused (the value is held by %r; recorded "
                            "in %s for verify())", record, index, holder,
                            conflicts_key(intent.key.rsplit(":2pc:", 1)[0]))

    def wait_unlocked(self, options: ModelOptions,
                      locked: Sequence[tuple[str, str]]) -> Op[list[str]]:
        """Wait until the transactions holding documents of ``options`` are settled:
        ``locked`` pairs each document id with the record key of its holder. An undecided
        holder is settled (rolled back) once its deadline has passed; until then this pauses
        between attempts with a growing backoff (the pause is a server-side blocking
        ``XREAD`` of a stream nobody writes, so that the same body runs under both
        drivers). The ids whose
        holder could not be settled (its record says pending past the deadline, plus a
        margin, by the record server's clock): an empty list when every one was."""
        self._know(options)
        keys = self._state(options).keys
        by_holder: dict[str, list[str]] = {}
        for id, holder in locked:
            by_holder.setdefault(holder, []).append(id)
        stuck: list[str] = []
        for holder, ids in by_holder.items():
            hashes = sorted({locks_key(keys.tag(keys.partition_of(id))) for id in ids})
            if not (yield from self._wait_settled(holder, hashes)):
                stuck += ids
        return stuck

    def _wait_settled(self, holder: str, hashes: list[str]) -> Op[bool]:
        """Settle the transaction of record ``holder`` (met in the lock hashes ``hashes``),
        waiting while it is undecided before its deadline (see :meth:`wait_unlocked`); False
        when it is still pending past its deadline plus a margin."""
        # (the deadline is in the record server's time, and so is the give-up: this
        # client's clock may be off by any amount)
        # (reads, from the master, where the record is decided: no WAIT after them)
        deadline, now = yield RedisPlan((Command(("HGET", holder, "deadline")),
                                         NowCall(holder).call()),
                                        read_only=True, primary=True)
        attempt = 0
        while not (yield from self.settle(holder, hashes)):
            # (pending before its deadline, as tx_decide.lua read it: a deadline that does
            # not read is refused there, and here if it was damaged since it was read)
            if int(now) // 1000 > _deadline(holder, deadline) + WAIT_SKEW_MS:
                return False
            pause = min(WAIT_PAUSE_MAX, 0.002 * 2 ** min(attempt, 6))
            attempt += 1
            # (a stream of the record's slot that is never written: a pure wait, with a
            # command the least-privilege ACL rule already allows; then the time there)
            _, now = yield RedisPlan((Command(("XREAD", "BLOCK", max(1, round(
                pause * 1000)), "STREAMS", holder[:-1] + "wait", "$")),
                NowCall(holder).call()), read_only=True, primary=True)
        return True

    def before_schema_change(self, options: ModelOptions) -> Op[None]:
        """Settle every transaction holding locks in the partitions of ``options`` before
        its stored schema changes (an index added, dropped, built or rebuilt): a committed
        one is applied with the schema it was prepared with, an aborted or forgotten one
        released, an undecided one waited for (until its deadline, then aborted). So the
        apply of a transaction in flight does not meet a changed schema (its intent would
        have to be made again, and could then meet a unique index its prepare did not
        check). Transactions that keep coming for SCHEMA_SETTLE_ROUNDS rounds refuse the
        change (:class:`~quantumorm.errors.SchemaChangeBlocked`, naming them); one
        prepared between the last look and the change is still made again at its apply
        (:meth:`_rebuilt`)."""
        keys = self._state(options).keys
        changing = _SCHEMAS_CHANGING.get()
        if keys.schema in changing:  # (a settle below made a schema change of its own)
            return
        _SCHEMAS_CHANGING.set(changing | {keys.schema})
        try:
            hashes = [locks_key(keys.tag(p)) for p in range(options.partitions)]
            holders: dict[str, list[str]] = {}
            failed: set[str] = set()
            for _round in range(SCHEMA_SETTLE_ROUNDS):
                held = yield RedisPlan(tuple(Command(("HGETALL", key)) for key in hashes),
                                       read_only=True, primary=True)
                holders = {}
                for key, pairs in zip(hashes, held, strict=True):
                    for holder in (pairs.values() if isinstance(pairs, dict) else
                                   pairs[1::2]):
                        met = holders.setdefault(wire.text(holder), [])
                        if key not in met:
                            met.append(key)
                for holder in failed:
                    holders.pop(holder, None)
                if not holders:
                    return
                for holder, met in holders.items():
                    try:
                        yield from self._wait_settled(holder, met)
                    except QuantumORMError as error:
                        # (one this client cannot settle: its intent met a schema changed
                        # by another process already, which this change makes no worse;
                        # a process that knows that schema settles it)
                        log.warning("a schema change of %s could not settle the "
                                    "transaction %s first: %s", options.model_name, holder,
                                    error)
                        failed.add(holder)
            raise SchemaChangeBlocked(options.model_name, sorted(holders))
        finally:
            # (set back, not reset by token: a generator may be closed from elsewhere)
            _SCHEMAS_CHANGING.set(changing)

    def _send_intents(self, intents: list[Intent]) -> Op[list[TxReply]]:
        """Apply intents (``tx_apply.lua``: each run where its prepare stored it), all in one
        round trip. An apply refuses nothing but an outdated schema layout (an index added,
        dropped or rebuilt since the prepare): such an intent is made again from the rows
        it stores with its model's current schema, when this client knows the model
        (:meth:`_know`), and sent again in place of the stored one; else its refusal is
        returned."""
        replies: list[TxReply | None] = [None] * len(intents)
        pending = list(range(len(intents)))
        for _attempt in range(LAYOUT_ATTEMPTS):
            if not pending:
                break
            sent = yield RedisPlan(tuple(intents[i].step() for i in pending),
                                   idempotent=True)
            again: list[int] = []
            for i, raw in zip(pending, sent, strict=True):
                reply = replies[i] = tx_reply(raw)
                if reply.status != "LAYOUT":
                    continue
                call = intents[i].call
                if call is None:  # (a settler's intent not read yet: read it)
                    (blob,) = yield RedisPlan((Command(("GET", intents[i].key)),),
                                              read_only=True, primary=True)
                    call = _stored_call(blob, intents[i].key) if blob else None
                    if call is None:  # (applied or released meanwhile: sent again, DONE)
                        again.append(i)
                        continue
                rebuilt = yield from self._rebuilt(*call)
                if rebuilt is not None:
                    intents[i] = Intent(intents[i].key, rebuilt, rebuilt=True)
                    again.append(i)
            pending = again
        return [reply for reply in replies if reply is not None]

    def _rebuilt(self, keys: tuple[str, ...], args: tuple[Any, ...]
                 ) -> Op[tuple[tuple[str, ...], tuple[Any, ...]] | None]:
        """The intent ``keys``/``args`` made again with the current schema of its model
        (read again): the same rows (checks, deletes, and each write's stored bytes, its
        index entries computed anew from them); None when this client does not know the
        model."""
        state_key = keys[2]
        cut = state_key.rindex(":p")
        known: dict[str, ModelOptions] = self.__dict__.get("_known_models", {})
        options = known.get(state_key[:cut])
        if options is None:
            return None
        partition = int(state_key[cut + 2:state_key.index("}", cut)])
        state = yield from self.prepare(options, refresh=True)
        nindexes = len(wire.unpack(_bytes(args[0]))) // 3
        rows = args[6:]
        nrows = len(rows) // 9
        intent = keys[3 + nindexes + 2 * nrows]
        checks: list[tuple[str, int]] = []
        requests: list[WriteRequest] = []
        # rows sent as format 3 (their expected version followed by their loaded entries,
        # under the schema of their prepare): the entries made again under this one, from
        # the documents themselves, locked since the prepare checked them at that version
        headed = [n for n in range(nrows) if b"\0" in _bytes(rows[9 * n + 1])]
        loaded: dict[int, int] = {}
        if headed:
            from .results import row as stored_row

            raws = yield RedisPlan(tuple(Command(("GET", keys[3 + nindexes + 2 * n]))
                                         for n in headed), idempotent=True)
            for n, raw in zip(headed, raws, strict=True):
                doc_key = keys[3 + nindexes + 2 * n]
                expected = _plain(_bytes(rows[9 * n + 1]).partition(b"\0")[0], intent)
                if raw is not None and bytes(raw)[:1] == b"\x01":
                    found = stored_row(options, sortable.unescape_id(
                        doc_key.split("}:d:", 1)[1]), None, bytes(raw)).version
                    if found == expected:
                        loaded[n] = found
        for n in range(nrows):
            kind, expected_text, _, stored, _, _, _, changed, expiry = (
                _bytes(v) for v in rows[9 * n:9 * n + 9])
            expected = loaded.get(n) or _plain(expected_text.partition(b"\0")[0], intent)
            doc_key = keys[3 + nindexes + 2 * n]
            id = sortable.unescape_id(doc_key.split("}:d:", 1)[1])
            if kind == b"check":
                checks.append((id, expected))
            elif kind == b"delete":
                requests.append(WriteRequest("delete", id, expected))
            else:
                raw = decompress(stored, options.model_name, id)
                data = decode_document(raw, options.model_name, id)
                values = {name: options.read_value(name, data) for name in options.fields}
                values["id"] = id
                names = frozenset(n.decode() for n in wire.unpack(changed)) if changed else None
                requests.append(WriteRequest(
                    "insert" if kind == b"insert" else "update", id, expected, data,
                    values, names, Expiry(expiry.decode()) if expiry in (b"keep", b"persist")
                    else _plain(expiry, intent), raw))
        call = state.writes.tx(partition, checks, requests)
        spec = wire.unpack(_bytes(args[5]))
        checked = b""
        if requests and state.schema is not None and any(
                index.unique for index in state.schema.indexes.values()):
            # a unique index appeared since the prepare, which could not check it: this
            # apply checks it, and is refused (its intent kept, for a settle once the value
            # is free) rather than write a value another document holds
            checked = b"unique"
        call.phase = wire.pack([*spec[:2], checked, *spec[3:4]])
        call.intent_key = keys[3 + nindexes + 2 * nrows]
        made = call.call()
        return made.keys, made.args

    def settle_for_readers(self, options: ModelOptions, by_partition: dict[int, list[str]],
                           seen: dict[int, list[Any]] | None = None) -> Op[bool]:
        """A read by id met locked partitions (their flags): apply the committed
        transactions that lock the documents read. True when the read must be sent again:
        one was applied here, or (``seen``: what the read's MGET returned per partition) a
        document of those partitions, locked now or not, is no longer what was read (a
        transaction's apply landed between the read and this look: the read may hold half
        of it, whoever locks the document now). False when what the read found is right:
        every member is as read, and each holder left is undecided or aborted (prepare
        writes no document)."""
        self._know(options)
        keys = self._state(options).keys
        tags = [keys.tag(p) for p in by_partition]
        held = yield RedisPlan(tuple(
            Command(("HMGET", locks_key(tag), *[sortable.id_key(id) for id in members]))
            for tag, members in zip(tags, by_partition.values(), strict=True)),
            read_only=True, primary=True)
        holders: dict[str, str] = {}
        for tag, found in zip(tags, held, strict=True):
            for holder in found:
                if holder is not None:
                    holders.setdefault(wire.text(holder), locks_key(tag))
        settled = False
        if holders:
            # only a committed one changes what the read should see (an undecided, aborted
            # or missing one left the documents as they were): the others are left to
            # writers and the sweeper, so that a read writes nothing it need not
            states = yield RedisPlan(tuple(Command(("HGET", record, "state"))
                                           for record in holders), read_only=True, primary=True)
            for (record, locks), state in zip(holders.items(), states, strict=True):
                if state is not None and wire.text(state) == "committed":
                    settled = (yield from self._settle_for_reader(record, locks)) or settled
        if settled or seen is None:
            return settled
        # every member read again, held or not (a holder seen now may have locked its
        # document after another transaction's apply changed it): the same bytes mean
        # nothing was applied to them in between, as every write gives a new version
        again = yield RedisPlan(tuple(Command(("MGET", *[
            keys.doc(partition, id) for id in members])) for partition, members in
            by_partition.items()), read_only=True, primary=True)
        return any(list(now) != seen[partition] for partition, now in zip(
            by_partition, again, strict=True))

    def settle_partitions(self, options: ModelOptions, partitions: Sequence[int],
                          then: Sequence[Sequence[Any]] | None = None) -> Op[bool]:
        """A query met locks in these partitions of ``options`` (query.lua's {"LOCKED",
        answer, holders...}; ``then``: those holders, per partition): apply the committed
        transactions holding them now. True when the query must be asked again: one was
        applied here, or a holder present when the query ran is gone from its partition
        (its apply may have landed between the query and this look), or a partition has no
        lock left. False when every holder the query met is still there, undecided or
        aborted: their prepares changed no document, so the answer stands."""
        self._know(options)
        keys = self._state(options).keys
        hashes = [locks_key(keys.tag(p)) for p in partitions]
        held = yield RedisPlan(tuple(Command(("HGETALL", key)) for key in hashes),
                               read_only=True, primary=True)
        holders: dict[str, list[str]] = {}
        emptied = False
        for n, (key, pairs) in enumerate(zip(hashes, held, strict=True)):
            emptied = emptied or not pairs
            values = {wire.text(v) for v in (
                pairs.values() if isinstance(pairs, dict) else pairs[1::2])}
            if then is not None and not {wire.text(v) for v in then[n]} <= values:
                emptied = True  # (a holder of the query's time is gone: ask again)
            for value in values:
                met = holders.setdefault(value, [])
                if key not in met:
                    met.append(key)
        settled = False
        if holders:
            states = yield RedisPlan(tuple(Command(("HGET", record, "state"))
                                           for record in holders), read_only=True, primary=True)
            for (record, met), state in zip(holders.items(), states, strict=True):
                if state is not None and wire.text(state) == "committed":
                    settled = (yield from self._settle_for_reader(record, met)) or settled
        return settled or emptied

    def settle_round(self, options: ModelOptions, settling: Settling | None) -> Op[Settling]:
        """Before a read of ``options`` is sent again because it met transactions applied
        while it ran (:meth:`settle_for_readers`, :meth:`settle_partitions` said so): the
        first time at once (what it met is applied by now); then after a pause that grows
        (as :meth:`wait_unlocked`'s, a blocking ``XREAD`` of a stream nobody writes, with the
        master's time read in the same round trip), until :data:`READ_SETTLE_MS` have
        passed by that clock since the second round: then TransactionsUnsettled (never an
        answer that could hold half a transaction)."""
        if settling is None:
            return Settling(1)
        pause = min(READ_PAUSE_MAX, 0.001 * 2 ** min(settling.rounds - 1, 6))
        anchor = self._state(options).keys.tag(0) + ":2pc:wait"
        _, now = yield RedisPlan((Command(("XREAD", "BLOCK", max(1, round(pause * 1000)),
                                           "STREAMS", anchor, "$")),
                                  NowCall(anchor).call()), read_only=True, primary=True)
        now_ms = int(now) // 1000
        if not settling.until:
            settling.until = now_ms + READ_SETTLE_MS
        elif now_ms > settling.until:
            raise TransactionsUnsettled(options.model_name, settling.rounds)
        settling.rounds += 1
        return settling

    def _settle_for_reader(self, record: str, locks: str | Sequence[str]) -> Op[bool]:
        """:meth:`settle` for a read: best effort. A committed transaction this client
        cannot apply (a model it has not used changed its schema: see _roll_forward) is
        logged and left, applied by none of its partitions here, and the read goes on
        with what it read (before the transaction, as long as nobody applied part of it);
        a read raises for another's transaction only when its record or an intent is
        damaged (:class:`DamagedTransactionError`: what the read would return is not
        known to be the transaction's before or after)."""
        try:
            return (yield from self.settle(record, locks))
        except TransactionError as failed:
            log.warning("a read could not settle the transaction %s: %s", record, failed)
            return False

    def sweep_transactions(self, options: ModelOptions, limit: int = SWEEP_BATCH) -> Op[int]:
        """Settle the transactions of the namespace of ``options`` whose deadline has
        passed (by the registry), and those holding locks in the model's partitions whose
        record is gone or past its deadline (a record lost with a failed master, a registry
        entry lost likewise); how many were settled (at most ``limit``).

        One it cannot settle (its record or an intent damaged, a model this client does not
        know...) is left exactly as it is — registered, locked, refused — logged, and
        passed over: the registry is read again past those left (``tx_due.lua``'s offset),
        so that any number of them never keeps the sweep from the due transactions behind
        them. Each is logged as met, and their count and first keys once per sweep."""
        self._know(options)
        keys = self._state(options).keys
        registry = registry_key(keys.namespace)
        locks = [locks_key(keys.tag(p)) for p in range(options.partitions)]
        # (the registry's due entries by its own server's clock, which scored them: the
        # client's clock plays no part)
        due, *held = yield RedisPlan((Call("tx_due", (registry,), (limit,)),
                                      *(Command(("HGETALL", key)) for key in locks)),
                                     read_only=True, primary=True)
        # each transaction, with the lock hashes of this model it holds locks in
        found: dict[str, list[str]] = {wire.text(record): [] for record in due}
        page = set(found)
        for key, pairs in zip(locks, held, strict=True):
            holders = pairs.values() if isinstance(pairs, dict) else pairs[1::2]
            for holder in holders:
                met = found.setdefault(wire.text(holder), [])
                if key not in met:
                    met.append(key)
        settled = 0
        left: list[str] = []  # met, not settled: damaged, or this client cannot
        dropped: list[str] = []  # registry entries naming no transaction of the namespace
        passed = 0  # due registry entries ahead of the next page, still there
        tried: set[str] = set()
        prefix = f"{{{keys.namespace}:2pc:"
        while True:
            for record, met in found.items():
                if settled >= limit:
                    break
                if record in tried:  # (met in a lock hash, then in a later page)
                    passed += 1
                    continue
                tried.add(record)
                txid = record[len(prefix):-3]
                if record in page and not (record.startswith(prefix) and record.endswith("}:r")
                                           and txid and not any(c in txid for c in ":{}")):
                    # (another namespace's record key, or none: settle() would take it for
                    # a transaction of another registry, leave this entry and count it as
                    # settled, so that a page of them stopped every sweep; removed here)
                    yield RedisPlan((Command(("ZREM", registry, record)),), idempotent=True)
                    log.debug("the sweeper removed %s from %s: not a transaction of it",
                              record, registry)
                    dropped.append(record)
                    if not met:
                        continue
                done = False
                try:
                    done = yield from self.settle(record, met)
                except QuantumORMError as failed:  # (one transaction stops none of the others)
                    log.debug("the sweeper could not settle the transaction %s: %s",
                              record, failed)
                    left.append(record)
                if done:
                    settled += 1
                elif record in page and record not in dropped:  # (pending, or left: there)
                    passed += 1
            if settled >= limit or len(page) < limit:
                break
            (due,) = yield RedisPlan((Call("tx_due", (registry,), (limit, passed)),),
                                     read_only=True, primary=True)
            found = {wire.text(record): [] for record in due}
            page = set(found)
        if left or dropped:  # (one line per sweep, however many: each one met is a DEBUG)
            said = []
            if left:
                said.append(f"left {len(left)} transactions of {keys.namespace} it could not "
                            "settle, each as it was (registered, its locks held): "
                            f"{_first(left)}")
            if dropped:
                said.append(f"removed {len(dropped)} entries of {registry} naming no "
                            f"transaction of it: {_first(dropped)}")
            log.warning("the sweeper %s", "; ".join(said))
        return settled
