"""Fix what ``verify()`` finds on Redis: ``Model.objects.repair()``.

It walks the collection as :mod:`.verify` does and sends, batch by batch, ``repair.lua``
calls whose fixes each check again, atomically, that their problem is still there (a
writer may have fixed the document meanwhile): an id without document is unlisted; a meta
hash without document (and no sweep due) is purged with what it records; a document without
a valid meta hash gets one (with a new version) and its entries, and so does one whose meta
hash does not read (a damaged field, another type at its key: the document is the truth,
and the entries the damaged record listed, which verify() found as stale in its walk of
every index, are removed; without a document, the meta hash goes); a document missing from
the id index is listed; wrong or missing entries of a document are rewritten from its
values; entries no live document records are removed; a clock behind is raised. Corrupt
documents and unique duplicates are left to the user (which document is right is not the
tool's to guess): ``after`` still reports them. Then it verifies again.

A format-3 document (bench/format3.md) stays format 3: a header that does not read is
stamped again (a new version from the clock, no write ids, its payload kept); its entries
are rewritten from its values, and its meta hash made what format 3 keeps (an expiring
document's sweep record, a listed index's record, or none), at the version judged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ... import compression, sortable
from ...engine.drive import Op
from ...errors import SchemaMismatchError, WrongTypeError
from ...maintenance import Progress, RepairReport
from . import stored, wire
from .calls import RepairCall, RepairFix, StampCall
from .commands import RedisPlan
from .keys import manifest_field
from .reindex import fields_of, listed_index
from .replies import layout_refused, wrong_type
from .verify import BATCH, Checker, Damage, Finding, current_state, verify

if TYPE_CHECKING:
    from ...document import Document
    from ...schema import Schema
    from .backend import RedisBackend

#: what each verify() kind is fixed with
FIXES = {"dangling_ids": "unlist", "orphan_meta": "purge", "missing_meta": "adopt",
         "bad_meta": "adopt", "damaged_meta": "rebuild",
         "unlisted_documents": "list", "stale_meta": "reentry",
         "version_mismatch": "restamp",
         "missing_entries": "reentry",
         # (format 3: bench/format3.md)
         "damaged_header": "restamp3", "missing_sweep_record": "resweep",
         "stale_sweep_record": "resweep"}


def repair(backend: RedisBackend, model: type[Document], batch: int = BATCH,
           progress: Progress | None = None) -> Op[RepairReport]:
    """One verifying pass that fixes each partition once it is judged (documents first, so
    that an entry a document adopts is not dropped), then, if anything was wrong, a verify
    of the result."""
    options = model._meta
    state = yield from current_state(backend, options)
    assert state.schema is not None
    ready = [index for index in options.indexes if index.name in state.schema.ready()]
    fixed: dict[str, int] = {}
    sender = _Sender(Checker(model, state.keys, ready), state.writes.layout, fixed)

    def fix(partition: int, damage: Damage) -> Op[None]:
        if damage.layout:  # (first: every repair.lua call there refuses until then)
            yield from sender.restamp(partition, state.schema)
        yield from sender.send(partition, [f for f in damage.findings if f.kind in FIXES])
        for position, entries in damage.entries.items():
            yield from sender.drop(partition, position, entries)
        if damage.newest > damage.clock:
            yield from sender.raise_clock(partition, damage.newest)

    before = yield from verify(backend, model, batch, progress, fix)
    if before.ok:
        return RepairReport(before, before, fixed)
    after = yield from verify(backend, model, batch, None)
    return RepairReport(before, after, fixed)


class _Sender:
    """Builds and sends ``repair.lua`` calls for one model, counting what they fixed."""

    def __init__(self, checker: Checker, layout: bytes, fixed: dict[str, int]) -> None:
        self.checker, self.layout, self.fixed = checker, layout, fixed
        options = checker.options
        self.manifests = wire.pack([manifest_field(options, index).encode()
                                    for index in options.indexes])
        #: format 3: the meta fields a listed index keeps whatever the document's expiry
        self.listed = wire.pack([name for index in checker.indexes
                                 if listed_index(options, index)
                                 for name in fields_of(options, index)])
        #: of a compressed document, whatever the model declares now: every ready index's
        #: (no script reads its payload; verify() asks for them)
        self.every = wire.pack([name for index in checker.indexes
                                for name in fields_of(options, index)])

    def _call(self, partition: int, fixes: list[tuple[str, str, list[Any]]]) -> Op[None]:
        """``fixes``: (verify kind, id or "", the 5 values repair.lua reads per fix)."""
        if not fixes:
            return
        keys = self.checker.keys
        call = RepairCall(
            keys.ids(partition), keys.ttl(partition), keys.state(partition),
            keys.indexes(partition),
            [RepairFix(keys.doc(partition, id or "_"), keys.meta(partition, id or "_"), *values)
             for _kind, id, values in fixes],
            self.manifests, self.layout, keys.doc_prefix(partition), keys.meta_prefix(partition))
        (replies,) = yield RedisPlan((call.call(),), idempotent=True)
        if layout_refused(replies):
            raise SchemaMismatchError(f"{self.checker.options.model_name}: the stored schema "
                                      "changed during repair(); run it again")
        key = wrong_type(replies)
        if key is not None:  # (the state hash: nothing written)
            raise WrongTypeError(f"{self.checker.options.model_name}: key {key!r} holds "
                                 "another type", key)
        for (kind, _id, _values), done in zip(fixes, replies, strict=True):
            if int(done):
                self.fixed[kind] = self.fixed.get(kind, 0) + 1

    def send(self, partition: int, findings: list[Finding]) -> Op[None]:
        fixes = []
        for f in findings:
            if f.headed:
                fixes += self._headed(f)
                continue
            assert f.kind is not None
            what = FIXES[f.kind]
            if f.kind == "damaged_meta" and f.raw is None:
                what = "discard"  # (no document to rebuild it from)
            pairs = raw = b""
            if f.values is not None and f.raw is not None:
                expected = self.checker.expected(f.values)
                pairs = wire.pack([item for name, members in expected.items()
                                   for item in (name.encode(), sortable.pack_list(members))])
                raw = f.raw
            fixes.append((f.kind, f.id, [what, sortable.id_key(f.id),
                                         str(f.version) if f.version else "", raw, pairs]))
            if f.kind == "unlisted_documents" and (f.stale_meta or f.missing_entries):
                fixes.append(("stale_meta", f.id, ["reentry", sortable.id_key(f.id),
                                                   str(f.version), b"", pairs]))
            if f.mismatch and f.kind != "version_mismatch" and f.raw is not None:
                fixes.append(("version_mismatch", f.id, ["restamp", sortable.id_key(f.id),
                                                         str(f.version), f.raw, b""]))
        yield from self._call(partition, fixes)

    def _headed(self, f: Finding) -> list[tuple[str, str, list[Any]]]:
        """The fixes of a format-3 document's finding (see ``repair.lua``): its header
        stamped again, its entries rewritten and its meta hash made what format 3 keeps, at
        the version judged; listed."""
        assert f.kind is not None
        if f.kind == "corrupt_documents" or f.values is None or f.raw is None:
            return []
        expected = self.checker.expected(f.values)
        try:
            packed = compression.compressed(stored.payload(f.raw))
        except ValueError:  # (a header that does not read: its model's rule)
            packed = False
        spec = wire.array_header(2) + wire.pack(
            [item for name, members in expected.items()
             for item in (name.encode(), sortable.pack_list(members))]) + (
                 self.every if packed else self.listed)
        id_key, version = sortable.id_key(f.id), str(f.version)
        if f.kind == "damaged_header":
            return [(f.kind, f.id, ["restamp3", id_key, "", f.raw, spec])]
        fixes = []
        if f.kind == "unlisted_documents":
            fixes.append((f.kind, f.id, ["list3", id_key, version, b"", b""]))
        if f.sweep is not None or f.missing_entries:
            kind = f.kind if f.kind != "unlisted_documents" else (f.sweep or "missing_entries")
            fixes.append((kind, f.id, ["resweep", id_key, version, b"", spec]))
        return fixes

    def drop(self, partition: int, position: int,
             entries: list[tuple[str, bytes, bytes]]) -> Op[None]:
        fixes = []
        for kind, entry, judged in entries:  # (repair.lua checks that it is still not
            # recorded, or for a format-3 document's, that it is still at the version judged)
            _value, id_key = sortable.split_member(entry)
            fixes.append((kind, sortable.id_from_key(id_key),
                          ["drop", b"", str(position), entry, judged]))
        for start in range(0, len(fixes), 500):
            yield from self._call(partition, fixes[start:start + 500])

    def restamp(self, partition: int, schema: Schema | None) -> Op[None]:
        """Write the partition's schema layout again from the stored schema (``stamp.lua``
        overwrites a layout that does not read)."""
        assert schema is not None
        keys = self.checker.keys
        (written,) = yield RedisPlan(
            (StampCall(keys.state(partition), str(schema.layout)).call(),), idempotent=True)
        if written == 1:  # (else another process stamped it meanwhile: not this repair's fix)
            self.fixed["damaged_layout"] = self.fixed.get("damaged_layout", 0) + 1

    def raise_clock(self, partition: int, version: int) -> Op[None]:
        yield from self._call(partition, [("clock_behind", "", ["clock", b"", str(version),
                                                               b"", b""])])
