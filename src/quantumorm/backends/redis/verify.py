"""Check a collection on Redis: ``Model.objects.verify()`` (and the checks ``repair()`` acts on).

Every judgement is made on an atomic snapshot, so writers may go on while it runs without
making it report problems that are not there:

* the partition's listed ids, in batches: ``inspect.lua`` returns each document, its meta
  hash, its expiry schedule entry and how many of the entries its meta hash records are
  missing from each index; Python decodes the document with the model and compares what its
  values imply with what the meta hash records;
* every ready index, in batches: ``entries.lua`` judges each entry against the meta hash
  of its document (stale, orphan, or left by an expired document awaiting the sweep), and
  consecutive entries of a unique index with one value are duplicates;
* on a single server (not a Cluster, where SCAN sees one node), the document and meta keys
  of each partition, to find those the id index does not list (inspected the same way);
* the partition's version clock, against the versions it gave, and its schema layout
  stamp (one that does not read makes every script refuse there); the eviction policy.

Indexes still building are not checked: their state already says they are incomplete.

A format-3 document (``\x01<version>\0<W>\0<payload>``, bench/format3.md) has no meta hash
recording its entries: it is judged from the document. Its header must read
(``damaged_header``); an expiring one must have its sweep record (``missing_sweep_record``)
holding its version and entries (``stale_sweep_record``), and any one the records of the
model's listed indexes (``missing_sweep_record`` too when absent); its entries computed in
Python are checked present by a second read-only ``inspect.lua`` call (ZMSCORE), for the
documents still at the version judged (``missing_entries``); ``entries.lua`` hands back an
entry of a live format-3 document that no meta hash records, with the document, for Python
to judge (``stale_entries``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ... import compression, sortable
from ...engine.drive import Op
from ...errors import CorruptDocumentError
from ...maintenance import Progress, VerifyReport
from ...options import IndexSpec, ModelOptions
from . import eviction, schemas, stored, twophase, wire, writeids
from .calls import EntriesCall, InspectCall
from .commands import Call, Command, RedisPlan
from .headed import listed_names
from .keys import KeySpace, manifest_field, meta_field
from .replies import InspectReply, entries_reply, inspect_reply
from .writes import index_members

if TYPE_CHECKING:
    from ...document import Document
    from .backend import RedisBackend
    from .core import ModelState

BATCH = 500
#: the first bytes of document keys that carry their version: format 2, format 3
HEADERS = (stored.VERSIONED, stored.HEADED)


@dataclass
class Finding:
    """One inspected id: what verify() concluded, and what repair() needs to fix it."""

    id: str
    kind: str | None  # a PROBLEMS kind, "expired", "gone", or None when all is right
    version: int = 0
    raw: bytes | None = None  # the stored JSON, as judged
    values: dict[str, Any] | None = None  # the document's values, if it could be decoded
    listed: bool = True
    #: meta fields whose recorded encodings differ from what the document implies
    stale_meta: tuple[str, ...] = ()
    missing_entries: int = 0
    #: the document carries another version than its meta hash's (see stored.py)
    mismatch: bool = False
    #: a format-3 document (``\x01`` header: bench/format3.md), judged from its document
    headed: bool = False
    #: in the partition's expiry schedule (a format-3 one then keeps a sweep record)
    scheduled: bool = False
    #: format 3: what is wrong with its meta hash ("missing_sweep_record" or
    #: "stale_sweep_record"), whatever else its kind says
    sweep: str | None = None


class Checker:
    """The checks of one model on one connection (shared by verify and repair)."""

    def __init__(self, model: type[Document], keys: KeySpace, ready: list[IndexSpec]) -> None:
        self.model, self.keys, self.indexes = model, keys, ready
        options: ModelOptions = model._meta
        self.options = options
        self.manifests = [manifest_field(options, index) for index in ready]
        # every meta field a ready index relies on: the manifests, and each field's values
        # (query.lua checks conditions on them)
        fields = dict.fromkeys(name for index in ready for name in index.fields)
        self.value_fields = [(name, meta_field(options.fields[name])) for name in fields]
        #: format 3: the meta fields of the ready indexes whose entries no script derives
        #: from a document stored uncompressed (headed.kind_items), which a format-3
        #: document's meta hash keeps whatever its expiry; of a compressed one, every ready
        #: index's (Lua has no zlib: a model that compresses lists them all)
        listed = listed_names(options, by_kind=True)
        self.listed = [manifest for index, manifest in zip(ready, self.manifests, strict=True)
                       if index.name in listed]

    def inspect(self, partition: int, ids: list[str]) -> Op[list[Finding]]:
        keys = self.keys
        call = InspectCall(
            keys.ttl(partition), keys.ids(partition),
            [keys.index(partition, index.name) for index in self.indexes],
            [(keys.doc(partition, id), keys.meta(partition, id)) for id in ids],
            wire.pack([m.encode() for m in self.manifests]), [sortable.id_key(id) for id in ids])
        (replies,) = yield RedisPlan((call.call(),), read_only=True)
        findings = [self._judge(id, inspect_reply(reply))
                    for id, reply in zip(ids, replies, strict=True)]
        yield from self._present(partition, findings)
        return findings

    def _present(self, partition: int, findings: list[Finding]) -> Op[None]:
        """For the format-3 documents among ``findings`` (whose entries no meta hash
        records): whether each index holds the entries their values imply, checked in one
        read-only ``inspect.lua`` call (ZMSCORE) for those still at the version judged."""
        judged = [f for f in findings
                  if f.headed and f.values is not None and f.kind != "damaged_header"]
        if not judged:
            return
        keys = self.keys
        documents: list[str] = []
        wanted: list[bytes] = []
        for f in judged:
            assert f.values is not None
            documents += (keys.doc(partition, f.id), keys.meta(partition, f.id))
            expected, id_key = self.expected(f.values), sortable.id_key(f.id)
            # (a MessagePack array: the version, then one array of members per index)
            wanted.append(b"".join([
                wire.array_header(1 + len(self.manifests)), wire.pack([b"%d" % f.version])[1:],
                *(wire.pack([member + id_key for member in expected[manifest]])
                  for manifest in self.manifests)]))
        (replies,) = yield RedisPlan((Call("inspect", (
            keys.ttl(partition), keys.ids(partition),
            *(keys.index(partition, index.name) for index in self.indexes), *documents),
            (b"", *wanted)),), read_only=True)
        for f, missing in zip(judged, replies, strict=True):
            if missing is None or missing is False:
                continue  # (written since it was judged: its writer made its entries)
            f.missing_entries = sum(int(n) for n in missing)
            if f.missing_entries and f.kind is None:
                f.kind = "missing_entries"

    def _judge(self, id: str, reply: InspectReply) -> Finding:
        meta, listed, missing, raw = reply.meta, reply.listed, reply.missing, reply.document
        damaged = reply.foreign or unreadable(meta)
        if raw is None:
            if damaged:  # (its sweep would leave it: see sweep() in _prelude.lua)
                kind = "damaged_meta"
            elif meta:
                kind = "expired" if reply.scheduled else "orphan_meta"
            else:
                kind = "dangling_ids" if listed else "gone"
            return Finding(id, kind, listed=listed)
        version = version_of(meta)
        try:
            try:
                carried, payload = stored.split(raw)
            except stored.DamagedVersion:  # (the document reads: its version is repaired)
                carried, payload = 0, stored.payload(raw)
            data = json.loads(compression.decompress(payload, self.options.model_name, id))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            values = {name: self.options.read_value(name, data) for name in self.options.fields}
            expected = self.expected(values)
        except (ValueError, TypeError, ArithmeticError, CorruptDocumentError):
            return Finding(id, "corrupt_documents", version, raw, listed=listed)
        if raw[:1] == stored.HEADED:
            return self._judge_headed(id, reply, raw, values, expected)
        if damaged:
            return Finding(id, "damaged_meta", 0, raw, values, listed)
        if not meta:
            return Finding(id, "missing_meta", 0, raw, values, listed)
        if not version:
            return Finding(id, "bad_meta", 0, raw, values, listed)
        stale = tuple(name for name, want in expected.items()
                      if sorted(sortable.unpack_list(meta.get(name, b""))) != sorted(want))
        finding = Finding(id, None, version, raw, values, listed, stale, sum(missing),
                          raw[:1] in HEADERS and carried != version)
        if not listed:
            finding.kind = "unlisted_documents"
        elif stale:
            finding.kind = "stale_meta"
        elif finding.missing_entries:
            finding.kind = "missing_entries"
        elif finding.mismatch:
            finding.kind = "version_mismatch"
        return finding

    def _judge_headed(self, id: str, reply: InspectReply, raw: bytes, values: dict[str, Any],
                      expected: dict[str, list[bytes]]) -> Finding:
        """A format-3 document (bench/format3.md), whose payload reads: its version and
        recent write ids are in its header, and no meta hash records its entries (they are
        judged from the document: :meth:`_present`). An expiring one keeps a sweep record
        ("v" and every index's entries), which must be there and be its document's; one
        that does not expire needs none (not ``missing_meta``), and one it has anyway (a
        listed index's record, a leftover) must hold its document's version and entries in
        the fields it has. A listed index's record must be there either way (its entries
        no script derives: a query testing its values meets a document it cannot judge):
        one absent is ``missing_sweep_record`` when nothing else is stale."""
        meta, listed = reply.meta, reply.listed
        finding = Finding(id, None, 0, raw, values, listed, headed=True,
                          scheduled=reply.scheduled)
        try:
            head = stored.header(raw)
            assert head is not None
            writeids.version_in_header(head[1], head[0], b"")
        except ValueError:  # (its version or its write ids do not read)
            finding.kind = "damaged_header"
            return finding
        finding.version = head[0]
        needed = self.manifests if compression.compressed(head[2]) else self.listed
        if reply.foreign or unreadable(meta):
            finding.sweep = "stale_sweep_record"
        elif not meta:
            if reply.scheduled or needed:
                finding.sweep = "missing_sweep_record"
        else:
            recorded = version_of(meta)
            names = list(expected) if reply.scheduled else [n for n in expected if n in meta]
            stale = [name for name in names
                     if sorted(sortable.unpack_list(meta.get(name, b""))) != sorted(
                         expected[name])]
            if stale or ("v" in meta or reply.scheduled) and recorded != head[0]:
                finding.sweep = "stale_sweep_record"
            elif any(name not in meta for name in needed):
                finding.sweep = "missing_sweep_record"
        if not listed:
            finding.kind = "unlisted_documents"
        elif finding.sweep is not None:
            finding.kind = finding.sweep
        return finding

    def judge_entry(self, index: IndexSpec, raw: bytes, value: bytes, id: str,
                    cache: dict[bytes, tuple[int, set[bytes]] | None]) -> tuple[str | None, int]:
        """An entry (its value encoding) of ``index`` held by the live format-3 document
        stored as ``raw``, which does not record it in a meta hash: ("stale", its version)
        when its values do not imply it, (None, 0) when they do or it does not read (which
        the walk of ids reports)."""
        if raw not in cache:
            cache[raw] = None
            try:
                head = stored.header(raw)
                assert head is not None
                data = json.loads(compression.decompress(head[2], self.options.model_name, id))
                if isinstance(data, dict):
                    values = {name: self.options.read_value(name, data)
                              for name in self.options.fields}
                    cache[raw] = (head[0], set(self.expected(values)[
                        manifest_field(self.options, index)]))
            except (ValueError, TypeError, ArithmeticError, CorruptDocumentError):
                pass
        judged = cache[raw]
        if judged is None or value in judged[1]:
            return None, 0
        return "stale", judged[0]

    def expected(self, values: dict[str, Any]) -> dict[str, list[bytes]]:
        """The meta fields the ready indexes rely on, with the encodings ``values`` imply."""
        out = {name: self.options.fields[field].index_keys(values.get(field))
               for field, name in self.value_fields}
        for index, manifest in zip(self.indexes, self.manifests, strict=True):
            if index.compound:
                out[manifest] = index_members(self.options, index, values)
        return out


def version_of(meta: dict[str, bytes]) -> int:
    """The version a meta hash holds, 0 if none reads: digits as the scripts write them
    (``bad_version`` in ``_prelude.lua``: "+13" or " 13" would read as 13 to ``int``, but
    never equal the "13" a write expects)."""
    text = meta.get("v", b"")
    return int(text) if text[:1] in b"123456789" and text.isdigit() else 0


def unreadable(meta: dict[str, bytes]) -> bool:
    """Whether a list of entries or values of a meta hash does not read (the scripts refuse
    the document's writes then: ``DAMAGED``)."""
    for name, value in meta.items():
        if name[:2] in ("f:", "x:"):
            try:
                sortable.unpack_list(value)
            except ValueError:
                return True
    return False


@dataclass
class Damage:
    """What verify() found wrong in one partition, kept for repair() (None: verify alone)."""

    findings: list[Finding] = field(default_factory=list)  # documents with a problem
    #: per index position (1-based, in the model's index order): stale and orphan entries
    entries: dict[int, list[tuple[str, bytes, bytes]]] = field(default_factory=dict)
    newest: int = 0  # the newest version seen
    clock: int = 0
    layout: bool = False  # whether the state hash's layout does not read


def current_state(backend: RedisBackend, options: ModelOptions) -> Op[ModelState]:
    """The model's state for verify() and repair(), its stored schema read afresh rather
    than trusted from this connection's first use (one round trip): a schema damaged since
    is refused (:class:`~quantumorm.errors.DamagedSchemaError`, nothing written), and one
    another process changed since (another layout) is read again as a first use reads it.
    A schema hash gone (evicted under allkeys-lru, deleted) leaves this connection's copy
    in use, as before: read again, it would be stored anew with its indexes building, and
    repair() would leave their entries as it found them."""
    state = yield from backend.prepare(options)
    fresh = yield from schemas.read(state.keys)  # (DamagedSchemaError if it does not read)
    if fresh is not None and state.schema is not None and fresh.layout != state.schema.layout:
        state = yield from backend.prepare(options, refresh=True)
    return state


def verify(backend: RedisBackend, model: type[Document], batch: int = BATCH,
           progress: Progress | None = None,
           fix: Callable[[int, Damage], Op[None]] | None = None) -> Op[VerifyReport]:
    """The checks of the module docstring. ``fix(partition, damage)`` (repair) is called
    after each partition is judged, with what was found wrong in it."""
    options = model._meta
    started = time.monotonic()
    state = yield from current_state(backend, options)
    schema = state.schema
    assert schema is not None
    ready = [index for index in options.indexes if index.name in schema.ready()]
    report = VerifyReport(options.model_name, building=schema.building(),
                          scanned=not backend.cluster)
    checker = Checker(model, state.keys, ready)
    policy = yield from _eviction_policy()
    report.eviction_policy = policy
    if policy is not None and eviction.unsafe({"server": policy}):
        report.add("unsafe_eviction_policy", policy)
    keys = state.keys
    totals = yield RedisPlan(tuple(Command(("ZCARD", keys.ids(p)))
                                   for p in range(options.partitions)), read_only=True)
    total, done = sum(int(n) for n in totals), 0
    for partition in range(options.partitions):
        damage = Damage()

        def judged(findings: list[Finding], damage: Damage = damage) -> None:
            for finding in findings:
                damage.newest = max(damage.newest, finding.version)
                _count(report, finding)
                if fix is not None and finding.kind not in (None, "expired", "gone"):
                    damage.findings.append(finding)

        def visit(findings: list[Finding]) -> Op[None]:
            nonlocal done
            judged(findings)
            done += len(findings)
            if progress is not None:
                progress(done, max(done, total))
            yield from ()

        yield from walk_ids(checker, partition, batch, visit)
        for index in ready:
            bad: list[tuple[str, bytes, bytes]] | None = [] if fix is not None else None
            yield from walk_entries(checker, report, partition, index, batch, bad)
            if bad:
                damage.entries[options.indexes.index(index) + 1] = bad
        if not backend.cluster:
            judged((yield from unlisted(checker, partition, batch)))
        # (writes of committed transactions left out for a unique value: see twophase.py)
        # (HGETALL: a command the least-privilege rule has; such records are rare)
        (left_out,) = yield RedisPlan((Command(
            ("HGETALL", twophase.conflicts_key(keys.tag(partition)))),), read_only=True)
        for id_key in (left_out.keys() if isinstance(left_out, dict) else left_out[::2]):
            report.add("transaction_conflicts", sortable.id_from_key(bytes(id_key)))
        damage.clock, damage.layout = yield from state_of(keys, partition)
        if damage.layout:
            report.add("damaged_layout", keys.state(partition))
        if damage.newest and damage.clock < damage.newest:
            report.add("clock_behind", keys.state(partition))
        if fix is not None:
            yield from fix(partition, damage)
    if progress is not None:
        progress(done, done)
    report.seconds = time.monotonic() - started
    return report


def _count(report: VerifyReport, finding: Finding) -> None:
    if finding.kind == "expired":
        report.expired += 1
        return
    if finding.kind == "gone":
        return
    report.documents += finding.raw is not None
    if finding.kind is None:
        return
    if finding.stale_meta and finding.kind != "stale_meta":
        report.add("stale_meta", finding.id)
    if finding.sweep is not None and finding.kind != finding.sweep:
        report.add(finding.sweep, finding.id)
    if finding.mismatch and finding.kind != "version_mismatch":
        report.add("version_mismatch", finding.id)
    if finding.missing_entries:
        report.add("missing_entries", finding.id, finding.missing_entries)
    if finding.kind != "missing_entries":
        report.add(finding.kind, finding.id)


def state_of(keys: KeySpace, partition: int) -> Op[tuple[int, bool]]:
    """The partition's version clock; 0 when it does not read as the scripts write it
    (digits): reported behind then, and repair() writes it again above every version (the
    scripts read such a clock as 0, or as the number tonumber() finds in it). And whether
    its schema layout stamp does not read (neither digits nor absent): every script that
    checks a caller's layout there refuses then (DamagedStateError), and repair() stamps
    it again from the stored schema."""
    ((clock, layout),) = yield RedisPlan((Command(("HMGET", keys.state(partition), "clock",
                                                   "layout")),), read_only=True)
    damaged = layout is not None and not bytes(layout).isdigit()
    return version_of({"v": bytes(clock or b"")}), damaged


def walk_ids(checker: Checker, partition: int, batch: int,
             visit: Callable[[list[Finding]], Op[None]]) -> Op[None]:
    """Every listed id of the partition, inspected in batches, each handed to ``visit``."""
    cursor: bytes | None = None
    while True:
        low = b"-" if cursor is None else b"(" + cursor
        (found,) = yield RedisPlan((Command((
            "ZRANGE", checker.keys.ids(partition), low, b"+", "BYLEX", "LIMIT", 0, batch)),),
            read_only=True)
        if not found:
            return
        cursor = bytes(found[-1])
        ids = [sortable.id_from_key(bytes(k)) for k in found]
        yield from visit((yield from checker.inspect(partition, ids)))


def walk_entries(checker: Checker, report: VerifyReport, partition: int, index: IndexSpec,
                 batch: int, bad: list[tuple[str, bytes, bytes]] | None = None) -> Op[None]:
    """Judge every entry of one index of the partition (and, for a unique index, look for
    one value held twice). ``bad`` collects the stale and orphan entries (kind, entry, and
    for an entry of a format-3 document the version it was judged at, else b"")."""
    keys = checker.keys
    manifest = manifest_field(checker.options, index)
    key = keys.index(partition, index.name)
    cursor: bytes | None = None
    previous: tuple[bytes, str] | None = None
    while True:
        low = b"-" if cursor is None else b"(" + cursor
        (members,) = yield RedisPlan((Command(("ZRANGE", key, low, b"+", "BYLEX", "LIMIT", 0,
                                               batch)),), read_only=True)
        if not members:
            return
        members = [bytes(m) for m in members]
        cursor = members[-1]
        (judged,) = yield RedisPlan((EntriesCall(
            key, keys.ttl(partition), manifest, keys.doc_prefix(partition),
            keys.meta_prefix(partition), members).call(),), read_only=True)
        flagged = _flagged(judged)
        report.entries += len(members)
        cache: dict[bytes, tuple[int, set[bytes]] | None] = {}
        for position, member in enumerate(members):
            verdict = flagged.get(position)
            value, id_key = sortable.split_member(member)
            id = sortable.id_from_key(id_key)
            judged_at = b""
            if isinstance(verdict, bytes):  # (a format-3 document's: judged here)
                verdict, version = checker.judge_entry(index, verdict, value, id, cache)
                judged_at = b"%d" % version if verdict else b""
            if verdict == "stale":
                report.add("stale_entries", f"{index.name}: {id}")
            elif verdict == "orphan":
                report.add("orphan_entries", f"{index.name}: {id}")
            if verdict in ("stale", "orphan") and bad is not None:
                bad.append((f"{verdict}_entries", member, judged_at))
            if verdict is not None:
                continue
            if index.unique and previous is not None and previous[0] == value and \
                    value != sortable.NULL:
                if (yield from _really_shared(checker, partition, index, previous[1], id)):
                    report.add("unique_duplicates", f"{index.name}: {previous[1]}, {id}")
            previous = (value, id)


def _flagged(reply: list[Any]) -> dict[int, str | bytes]:
    """``entries.lua``'s verdicts by 0-based position (:func:`.replies.entries_reply`),
    with a format-3 document's stored value (bytes, ``\x01`` first) kept as it came, for
    :meth:`Checker.judge_entry`."""
    out: dict[int, str | bytes] = {}
    for i in range(0, len(reply), 2):
        verdict = bytes(reply[i + 1]) if isinstance(reply[i + 1], (bytes, bytearray,
                                                                   memoryview)) else None
        if verdict is not None and verdict[:1] == stored.HEADED:
            out[int(reply[i]) - 1] = verdict
        else:
            out.update(entries_reply(reply[i:i + 2]))
    return out


def _really_shared(checker: Checker, partition: int, index: IndexSpec, a: str,
                   b: str) -> Op[bool]:
    """Whether two live documents hold one value of a unique index that they must hold
    alone (a compound value with a null part never conflicts)."""
    findings = yield from checker.inspect(partition, [a, b])
    if any(f.values is None for f in findings):
        return False
    values = [f.values for f in findings if f.values is not None]
    if index.compound and any(v.get(n) is None for v in values for n in index.fields):
        return False
    options = checker.options
    return bool(set(index_members(options, index, values[0]))
                & set(index_members(options, index, values[1])))


def unlisted(checker: Checker, partition: int, batch: int) -> Op[list[Finding]]:
    """Documents and meta hashes of the partition that its id index does not list."""
    keys = checker.keys
    found: set[str] = set()
    for prefix in (keys.doc_prefix(partition), keys.meta_prefix(partition)):
        pattern = _glob(prefix) + "*"
        cursor: Any = 0
        while True:
            cursor, names = (yield RedisPlan((Command(
                ("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)),), read_only=True))[0]
            if names:
                ids = [sortable.unescape_id(wire.text(n)[len(prefix):]) for n in names]
                (scores,) = yield RedisPlan((Command(
                    ("ZMSCORE", keys.ids(partition), *(sortable.id_key(i) for i in ids))),),
                    read_only=True)
                found.update(i for i, s in zip(ids, scores, strict=True) if s is None)
            if int(cursor) == 0:
                break
    out: list[Finding] = []
    candidates = sorted(found)
    for start in range(0, len(candidates), batch):
        out += [f for f in (yield from checker.inspect(partition,
                                                       candidates[start:start + batch]))
                if not f.listed]
    return out


def _glob(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]\\" else c for c in text)


def _eviction_policy() -> Op[str | None]:
    """The server's maxmemory-policy (on a cluster, the node that answers), or None."""
    try:
        (info,) = yield RedisPlan((Command(eviction.READS[0]),), read_only=True)
    except Exception:  # (an ACL may refuse INFO: not verify's business to fail on it)
        return None
    return eviction.policy_of(info)
