"""What the PostgreSQL backend's operations yield: plans of SQL statements, and their replies.

Pure data, the shape of the SQLite backend's plans. A :class:`SqlPlan` is run by an executor
in ONE PostgreSQL transaction (SERIALIZABLE when it writes, a read-only snapshot when it
reads several statements); its statements are grouped so that a write call can report each
request's outcome separately: each group of a multi-group write plan runs inside its own
SAVEPOINT, and a :class:`Statement` may carry a *guard* (a condition on the rows it
returns). A failed guard rolls back that group only and reports which guard failed, so one
refused request never undoes the others.

Statements hold SQL text and parameters separately (``%b`` placeholders: bound by the
server, sent in binary, which for ``bytea`` arrays is several times cheaper than text).
Values are always parameters; the SQL text is built only from identifiers derived from
validated model names (see ``schema``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

#: "absent": the statement must return no row; "present": it must return at least one
Guard = Literal["absent", "present"]


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple[Any, ...] = ()
    guard: Guard | None = None
    #: what the backend is told when the guard fails ("EXISTS", "VERSION", "UNIQUE:name"...)
    label: str = ""


@dataclass(frozen=True)
class SqlPlan:
    """Groups of statements run in one transaction (SERIALIZABLE when ``write``; a
    serialization failure re-runs the whole plan, see the executor)."""

    groups: tuple[tuple[Statement, ...], ...]
    write: bool = False
    #: all groups or none: the first refused group rolls the whole transaction back (and
    #: the groups after it do not run)
    atomic: bool = False

    @classmethod
    def read(cls, *statements: Statement) -> SqlPlan:
        return cls((tuple(statements),), write=False)


@dataclass(frozen=True)
class GroupReply:
    """The outcome of one group: the rows of each statement run, or the guard that failed
    (``refused`` is its label; ``rows[-1]`` holds the rows the failing guard saw)."""

    rows: tuple[list[tuple[Any, ...]], ...]
    refused: str | None = None
