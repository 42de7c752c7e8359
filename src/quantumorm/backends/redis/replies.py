"""The replies of the Lua scripts, parsed once where they arrive into records read by name
(``reply.status``, ``reply.version``) instead of by position; the call side is
:mod:`.calls`.

Where a reply is one number on a hot path (``count.lua``, ``expire.lua``) or a flat list
read in one loop (``fetch.lua``: JSON or nil, version, per document), it stays a plain value
and its meaning is named here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import wire


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def wrong_type(reply: Any) -> str | None:
    """The key of a script's ``{"WRONGTYPE", key}`` refusal sent as its whole reply (the
    tools' scripts, reindex.lua and repair.lua, refuse a state hash of another type so,
    where their reply is otherwise a list of numbers or statuses per item), else None."""
    if (type(reply) is list and len(reply) == 2 and isinstance(reply[0], (bytes, str))
            and _text(reply[0]) == "WRONGTYPE"):
        return _text(reply[1])
    return None


def layout_refused(reply: Any) -> bool:
    """Whether a raw reply is a script's refusal because its partition has seen a newer
    schema layout than the caller's (``{"LAYOUT", n}``, n in plain digits; ``-2`` from
    count.lua). A query's rows reply of one row whose id is "LAYOUT" is two items too, its
    second the row's value, whose first byte (0 or 1, format 2 or 3) is no digit."""
    if isinstance(reply, list):
        if len(reply) != 2 or not isinstance(reply[0], (bytes, str)) or \
                _text(reply[0]) != "LAYOUT":
            return False
        layout = reply[1]
        if isinstance(layout, str):
            layout = layout.encode()
        return isinstance(layout, bytes) and layout.isdigit()  # (bytes: ASCII digits only)
    return isinstance(reply, int) and reply == -2


@dataclass(slots=True)
class WriteReply:
    """One document's outcome from ``save.lua``, ``delete.lua`` or ``insert_many.lua``."""

    #: OK | VERSION | MISSING | EXISTS | UNIQUE | WRONGTYPE | LAYOUT | DAMAGED; a patch
    #: (patch.lua): TOOLARGE | CORRUPT | COMPRESSED too; a write without a read of a format-3
    #: document whose old index entries the script cannot derive (bench/format3.md):
    #: ENTRIES, nothing written (the caller reads the document and writes it as loaded)
    status: str
    #: OK: the version written (deleted); VERSION: the actual one; TOOLARGE: the size;
    #: ENTRIES: the stored one
    version: int | None = None
    id_key: bytes | None = None  # OK (save): the id key written; UNIQUE: the holder's
    name: str | None = None  # UNIQUE: the index; WRONGTYPE, DAMAGED: the key
    field: str | None = None  # DAMAGED: the meta hash's field that does not read


def write_reply(reply: list[Any]) -> WriteReply:
    """Parse one write reply, by its status."""
    status = reply[0]
    status = status.decode() if type(status) is bytes else str(status)  # (_text, inlined)
    if status == "OK":
        return WriteReply(status, int(reply[1]) if len(reply) > 1 else None,
                          bytes(reply[2]) if len(reply) > 2 else None)
    if status in ("VERSION", "TOOLARGE", "ENTRIES"):
        return WriteReply(status, int(reply[1]))
    if status == "UNIQUE":
        return WriteReply(status, None, bytes(reply[2]), _text(reply[1]))
    if status in ("WRONGTYPE", "LAYOUT", "LOCKED"):  # (LOCKED: the holder's record key)
        return WriteReply(status, None, None, _text(reply[1]))
    if status == "DAMAGED":  # {"DAMAGED", meta hash key, field}
        return WriteReply(status, None, None, _text(reply[1]), _text(reply[2]))
    return WriteReply(status)


def restore_reply(reply: list[Any]) -> WriteReply:
    """``restore.lua``'s outcome: as a write's, and ``EXISTS`` carries the version found
    (a resumed move finds its own earlier restore)."""
    if _text(reply[0]) == "EXISTS":
        return WriteReply("EXISTS", int(reply[1]))
    return write_reply(reply)


@dataclass(slots=True)
class TxReply:
    """``tx.lua``'s outcome."""

    #: OK | VERSION | MISSING | EXISTS | UNIQUE | WRONGTYPE | LAYOUT | APPLIED | LOCKED |
    #: DAMAGED (a row's meta hash does not read) | PREPARED and DONE (two-phase commits)
    status: str
    versions: list[int]  # OK: one per row (checks included)
    position: int = 0  # a refusal: the 1-based row it concerns
    refusal: WriteReply | None = None  # a refusal, as a save would have reported it
    #: DONE (a two-phase commit's second apply): the versions the first one wrote, if known
    applied: list[int] | None = None
    #: OK of a two-phase commit's apply: the writes left out because a unique index (added
    #: since the prepare) found their value taken: (row, index name, holder id key); each
    #: has version -1 in ``versions``
    conflicts: list[tuple[int, str, bytes]] | None = None


def tx_reply(reply: list[Any]) -> TxReply:
    status = _text(reply[0])
    if status == "OK":
        flat = reply[2] if len(reply) > 2 else []
        return TxReply(status, [int(v) for v in reply[1]], conflicts=[
            (int(flat[i]), _text(flat[i + 1]), bytes(flat[i + 2]))
            for i in range(0, len(flat), 3)] or None)
    if status in ("WRONGTYPE", "LAYOUT"):
        return TxReply(status, [], 0, WriteReply(status, None, None, _text(reply[1])))
    if status in ("APPLIED", "PREPARED"):  # (PREPARED: a two-phase commit's prepare)
        return TxReply(status, [])
    if status == "DONE":  # (a two-phase commit's apply, applied before: twophase.py)
        flat = wire.unpack(bytes(reply[1])) if len(reply) > 1 and reply[1] else []
        applied = [int(v) for v in flat[1:]] if flat and flat[0] == b"applied" else None
        return TxReply(status, [], applied=applied)
    # {status, position, ...}: the rest as save.lua would have put it
    rest = reply[2:]
    if status == "VERSION":  # (actual is "" when the document is absent)
        actual = _text(rest[0]) if rest else ""
        refusal = WriteReply("VERSION" if actual else "MISSING",
                             int(actual) if actual else None)
    else:
        refusal = write_reply([reply[0], *rest])
    return TxReply(status, [], int(reply[1]), refusal)


@dataclass(slots=True)
class QueryPlanReply:
    """``query.lua``'s "plan" reply: which drivers of the program it chose, by their
    position in the program (depth first, 1-based), and what they cost."""

    estimate: int
    exact: bool
    chosen: int  # the driver that yields the candidates
    used: tuple[int, ...]  # every driver it reads (the chosen one, or a union's parts)


def query_plan_reply(reply: list[Any]) -> QueryPlanReply:
    return QueryPlanReply(int(reply[0]), reply[1] == 1, int(reply[2]),
                          tuple(int(n) for n in reply[3:]))


@dataclass(slots=True)
class SweepReply:
    """``sweep.lua``: how many expired documents it purged, how many due ones remain."""

    purged: int
    due: int


def sweep_reply(reply: list[Any]) -> SweepReply:
    return SweepReply(int(reply[0]), int(reply[1]))


@dataclass(slots=True)
class ReindexReply:
    """One document of a ``reindex.lua`` call: its entries written ("OK"), left because it
    was written meanwhile ("SKIPPED"), or written though a live document holds its unique
    value ("UNIQUE": ``index``, ``holder`` id key)."""

    status: str
    index: str | None = None
    holder: bytes | None = None


def reindex_reply(reply: Any) -> ReindexReply:
    if isinstance(reply, list):  # {"UNIQUE", index name, holder id key}
        return ReindexReply(_text(reply[0]), _text(reply[1]), bytes(reply[2]))
    return ReindexReply(_text(reply))


@dataclass(slots=True)
class InspectReply:
    """What ``inspect.lua`` read of one id."""

    document: bytes | None  # the JSON, None if there is none
    meta: dict[str, bytes]  # the meta hash
    scheduled: bool  # in the TTL schedule
    listed: bool  # in the id index
    missing: list[int]  # per index checked: how many entries it lacks
    foreign: bool = False  # the meta key holds another type than a hash


def inspect_reply(reply: list[Any]) -> InspectReply:
    raw, flat, scheduled, listed, missing, foreign = reply
    return InspectReply(
        None if raw is None or raw is False else bytes(raw),
        {_text(flat[i]): bytes(flat[i + 1]) for i in range(0, len(flat), 2)},
        scheduled not in (None, False), bool(listed), [int(n) for n in missing],
        bool(foreign))


def entries_reply(reply: list[Any]) -> dict[int, str]:
    """``entries.lua``: the verdict on each entry that is not right, by its 0-based position
    among the entries sent ("stale" | "orphan" | "expired")."""
    return {int(reply[i]) - 1: _text(reply[i + 1]) for i in range(0, len(reply), 2)}


@dataclass(slots=True)
class SchemaReply:
    """``schema.lua``: whether the schema was stored, else the layout stored now."""

    stored: bool
    layout: str  # when not stored: the layout found ("" if none)


def schema_reply(reply: Any) -> SchemaReply:
    text = _text(reply)
    return SchemaReply(True, "") if text == "OK" else SchemaReply(False, text)


def preflight_refusal(reply: Any) -> str:
    """``preflight.lua``: "COMMAND key" of the first command the user may not run, or ""."""
    return _text(reply)


#: what ``count.lua`` answers instead of a count when documents of the partition may expire
#: (count with query.lua, which checks each one) -- a bare integer, not a record: a count
#: is on the hot path and its reply is one number
COUNT_EXPIRING = -1
#: ... and when the caller's schema is outdated (read it again, plan again)
COUNT_OUTDATED = -2
