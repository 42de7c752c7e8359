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
