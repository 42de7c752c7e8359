"""Run :class:`~.plans.SqlPlan` objects on one sqlite3 connection, blocking or from asyncio.

One sqlite3 connection per QuantumORM connection, guarded by a lock: SQLite serialises
writers anyway, and one connection keeps an in-memory database (``sqlite://``) shared by
everything that uses the QuantumORM connection.

The asyncio executor does not talk to SQLite itself: it hands each plan to a dedicated
single worker thread (a ``ThreadPoolExecutor(max_workers=1)`` owned by the connection), so
the event loop never blocks on disk I/O, and async plans always run on the same thread.
That is why ``check_same_thread=False`` is safe here: the connection is only ever used under
``self._lock``, from the worker thread or from a caller of the blocking API, never by two
threads at once.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ... import sortable
from ...errors import BackendError, BackendTimeoutError
from ...query import evaluate
from ...query.lookups import FOLDED_LOOKUPS, PATTERN_LOOKUPS
from . import paths
from .plans import GroupReply, SqlPlan, Statement

#: milliseconds a writer waits for another process's lock on a file database
BUSY_TIMEOUT_MS = 5000


def connect(path: str) -> sqlite3.Connection:
    """Open the database. ``isolation_level=None``: transactions are ours (BEGIN/COMMIT)."""
    memory = path == ":memory:"
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                         timeout=BUSY_TIMEOUT_MS / 1000)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.create_function(MEMBER_FUNCTION, 2, _member, deterministic=True)
    db.create_function(TEXT_FUNCTION, 3, _text_test, deterministic=True)
    db.create_function(paths.MATCH_FUNCTION, 2, paths.match, deterministic=True)
    db.create_function(paths.KEY_FUNCTION, 2, paths.key, deterministic=True)
    if not memory:
        # WAL: readers in other processes do not block the writer, nor it them
        db.execute("PRAGMA journal_mode = WAL")
        # synchronous stays FULL (the default): a committed write survives a power loss
    return db


#: ``qorm_member(k, packed)``: whether BLOB ``k`` is one of a :func:`sortable.pack_list` list.
#: Long IN lists use it with ONE parameter, as SQLite caps the number of parameters of a
#: statement (999 in old builds, 32766 or 250000 in newer ones).
MEMBER_FUNCTION = "qorm_member"


@functools.lru_cache(maxsize=8)
def _members(packed: bytes) -> frozenset[bytes]:
    return frozenset(sortable.unpack_list(packed))


def _member(key: bytes | None, packed: bytes) -> int:
    return int(key is not None and bytes(key) in _members(bytes(packed)))


#: ``qorm_text(lookup, k, value)``: the reference evaluator's answer for a string lookup
#: SQLite cannot compute exactly itself (case folding: its LOWER and LIKE fold ASCII only;
#: regular expressions: it has no REGEXP of its own), on the string whose sort key is BLOB
#: ``k``. The evaluator itself runs, so SQLite and the reference cannot disagree.
TEXT_FUNCTION = "qorm_text"
#: the lookups TEXT_FUNCTION answers, by the name SQL passes
TEXT_LOOKUPS = {lookup.value: evaluate.PREDICATES[lookup]
                for lookup in FOLDED_LOOKUPS | PATTERN_LOOKUPS}


def _text_test(lookup: str, key: bytes | None, value: str) -> int:
    if key is None or bytes(key) == sortable.NULL:
        return 0
    text = sortable.decode_str(bytes(key))
    return int(TEXT_LOOKUPS[lookup](None, text, value))


class SyncSqliteExecutor:
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = connect(path)

    def execute(self, plan: SqlPlan) -> list[GroupReply]:
        with self._lock:
            db = self._db
            if db is None:
                raise BackendError("the SQLite connection is closed")
            try:
                return _run(db, plan)
            except sqlite3.OperationalError as exc:
                # the project's error types, the driver's error as the cause (like Redis);
                # SQLITE_BUSY (5) / SQLITE_LOCKED (6): another writer held on past the timeout
                code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
                busy = code in (5, 6) if code is not None else (
                    "locked" in str(exc) or "busy" in str(exc))
                if busy:
                    raise BackendTimeoutError(f"SQLite: {exc}") from exc
                raise BackendError(f"SQLite: {exc}") from exc
            except sqlite3.Error as exc:
                raise BackendError(f"SQLite: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _run(db: sqlite3.Connection, plan: SqlPlan) -> list[GroupReply]:
    # BEGIN IMMEDIATE takes the write lock up front: guards read then write, and no other
    # writer may slip in between (a deferred transaction could fail with SQLITE_BUSY at the
    # first write instead).
    db.execute("BEGIN IMMEDIATE" if plan.write else "BEGIN")
    replies = []
    try:
        for group in plan.groups:
            reply = _group(db, group, plan.write)
            replies.append(reply)
            if plan.atomic and reply.refused is not None:
                db.execute("ROLLBACK")
                return replies
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return replies


def _group(db: sqlite3.Connection, group: tuple[Statement, ...], write: bool) -> GroupReply:
    if write:
        db.execute("SAVEPOINT qorm_request")
    rows: list[list[tuple[Any, ...]]] = []
    try:
        for statement in group:
            found = db.execute(statement.sql, statement.params).fetchall()
            rows.append(found)
            if statement.guard is not None and bool(found) is (statement.guard == "absent"):
                if write:
                    db.execute("ROLLBACK TO qorm_request")
                    db.execute("RELEASE qorm_request")
                return GroupReply(tuple(rows), statement.label)
    except BaseException:
        if write:
            db.execute("ROLLBACK TO qorm_request")
            db.execute("RELEASE qorm_request")
        raise
    if write:
        db.execute("RELEASE qorm_request")
    return GroupReply(tuple(rows))


class AsyncSqliteExecutor:
    """Runs plans of the blocking executor on the connection's single worker thread."""

    def __init__(self, sync: SyncSqliteExecutor, worker: ThreadPoolExecutor) -> None:
        self._sync, self._worker = sync, worker

    async def execute(self, plan: SqlPlan) -> list[GroupReply]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self._sync.execute, plan)
