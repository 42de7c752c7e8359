"""What the maintenance operations report: ``reindex()``, ``verify()`` and ``repair()``.

Plain data, shared by every backend and by the command line (``python -m quantumorm``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

#: ``progress(done, total)``: documents looked at so far, and about how many there are (the
#: count when the run started, or more if writers added some); the last call has done == total
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class UniqueConflict:
    """Two live documents hold one value of a unique index (found while building it)."""

    index: str
    id: str
    other_id: str


@dataclass
class ReindexReport:
    """What ``Model.objects.reindex()`` did.

    ``indexes``: the indexes built (those that were building, or every index when none
    was); ``ready``: whether they are all ready now. They are not when a unique index met
    a conflict (the documents are in ``conflicts``) or writers kept changing some documents
    (``unsettled``): the indexes then stay building, unused by queries, until the conflict
    is fixed and ``reindex()`` runs again.
    """

    model: str
    indexes: tuple[str, ...] = ()
    documents: int = 0  # documents whose entries were written
    gone: int = 0  # documents deleted (or expired) between the id walk and their read
    backfilled: int = 0  # documents given the default of a field they lacked
    #: documents that writers changed in every one of many rounds: not built, not ready
    unsettled: int = 0
    conflicts: list[UniqueConflict] = field(default_factory=list)
    resumed: bool = False  # continued from a checkpoint of an interrupted run
    ready: bool = False
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Documents per second."""
        return (self.documents + self.gone) / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        state = "ready" if self.ready else "NOT ready: " + (
            "unique conflicts" if self.conflicts else f"{self.unsettled} documents kept "
            "changing; run it again")
        lines = [f"{self.model}: reindexed {', '.join(self.indexes) or 'nothing'}: {state}",
                 f"  documents: {self.documents} indexed, {self.gone} gone meanwhile, "
                 f"{self.backfilled} given defaults ({self.rate:.0f}/s, {self.seconds:.2f} s)"]
        lines += [f"  conflict: {c.index} of {c.id!r} is also held by {c.other_id!r}"
                  for c in self.conflicts]
        return "\n".join(lines)


#: the kinds of problem ``verify()`` counts, and what each means
PROBLEMS: dict[str, str] = {
    "dangling_ids": "an id is listed, but neither its document nor its meta hash exists",
    "missing_meta": "a document has no meta hash (no version, no record of its entries)",
    "bad_meta": "a meta hash has no valid version",
    "damaged_meta": "a meta hash does not read (a damaged list of index entries or values, "
                    "or another type at its key): its document's writes are refused",
    "version_mismatch": "a document carries another version than its meta hash's",
    "orphan_meta": "a meta hash outlived its document, and no expiry sweep is due for it",
    "unlisted_documents": "a document is not in its partition's id index",
    "corrupt_documents": "a stored document cannot be decoded by the model",
    "stale_meta": "a meta hash records other index entries than its document implies",
    "missing_entries": "an index lacks an entry that a document's meta hash records",
    "stale_entries": "an index holds an entry that its (live) document does not record",
    "orphan_entries": "an index holds an entry whose document is gone, with no sweep due",
    "unique_duplicates": "two live documents hold one value of a unique index",
    # (format 3's documents, "\x01" first: bench/format3.md; no meta hash per document)
    "damaged_header": "a format-3 document's header (its version or its recent write ids) "
                      "does not read: its writes are refused",
    "missing_sweep_record": "an expiring format-3 document has no sweep record (the meta "
                            "hash its expiry's sweep reads to remove its entries), or a "
                            "format-3 document's meta hash lacks a listed index's record "
                            "(the entries of an index no script derives)",
    "stale_sweep_record": "a format-3 document's meta hash (its sweep record, or a listed "
                          "index's record) records other entries or another version than "
                          "its document implies, or does not read",
    "clock_behind": "a partition's version clock is below a version it gave",
    "damaged_layout": "a partition's state hash holds a schema layout that does not read: "
                      "every read and write there is refused (DamagedStateError)",
    "unsafe_eviction_policy": "the server may evict any key (maxmemory-policy allkeys-*)",
    "transaction_conflicts": "a committed transaction across partitions left a write out: a "
                             "unique index added before its apply found the value taken",
}


@dataclass
class VerifyReport:
    """What ``Model.objects.verify()`` found: ``ok`` when no problem of any kind.

    ``problems`` counts each kind (see :data:`PROBLEMS`; kinds not found are absent) and
    ``samples`` names up to 10 ids (or keys) of each. ``expired`` counts documents that
    expired and await the sweep (reads skip them: not a problem). Indexes still building are
    not checked (``building``); nor, on a Redis Cluster, are keys outside the id index
    (``scanned`` is False there).
    """

    model: str
    problems: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[str]] = field(default_factory=dict)
    documents: int = 0
    entries: int = 0
    expired: int = 0
    building: tuple[str, ...] = ()
    scanned: bool = True
    eviction_policy: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())

    def add(self, kind: str, where: str, count: int = 1) -> None:
        assert kind in PROBLEMS, kind
        self.problems[kind] = self.problems.get(kind, 0) + count
        shown = self.samples.setdefault(kind, [])
        if len(shown) < 10 and where not in shown:
            shown.append(where)

    def __str__(self) -> str:
        head = (f"{self.model}: {'OK' if self.ok else 'PROBLEMS FOUND'}: {self.documents} "
                f"documents, {self.entries} index entries checked, {self.expired} expired "
                f"awaiting the sweep ({self.seconds:.2f} s)")
        lines = [head]
        if self.building:
            lines.append(f"  not checked (building): {', '.join(self.building)}")
        if not self.scanned:
            lines.append("  keys outside the id index not scanned (Redis Cluster)")
        for kind, count in sorted(self.problems.items()):
            lines.append(f"  {kind}: {count} ({PROBLEMS[kind]}); e.g. "
                         + ", ".join(repr(s) for s in self.samples.get(kind, [])))
        return "\n".join(lines)


@dataclass
class RepairReport:
    """What ``Model.objects.repair()`` did: the problems found before, what it changed,
    and what ``verify()`` found afterwards (``after.ok``: repaired). Problems it cannot fix
    by itself (corrupt documents, unique duplicates, an unsafe eviction policy) remain in
    ``after``."""

    before: VerifyReport
    after: VerifyReport
    fixed: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.after.ok

    def __str__(self) -> str:
        fixed = ", ".join(f"{k}: {v}" for k, v in sorted(self.fixed.items())) or "nothing"
        return f"{self.before}\nrepaired: {fixed}\nafterwards:\n{self.after}"
