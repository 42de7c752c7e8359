"""Probing a SQLite database for :meth:`Connection.health` and :meth:`Connection.ping`:
operations (generators of plans), so the connection's two executors run them like any
other. The node is the database file (``:memory:`` for an in-memory one)."""

from __future__ import annotations

import time

from ...engine.drive import Op
from ...health import NodeHealth
from .plans import SqlPlan, Statement


def ping() -> Op[float]:
    """Seconds of one ``SELECT 1``."""
    started = time.perf_counter()
    yield SqlPlan.read(Statement("SELECT 1"))
    return time.perf_counter() - started


def probe(path: str) -> Op[NodeHealth]:
    """The database's version and journal mode, and the latency of reading them."""
    started = time.perf_counter()
    (reply,) = yield SqlPlan.read(Statement("SELECT sqlite_version()"),
                                  Statement("PRAGMA journal_mode"))
    latency = time.perf_counter() - started
    version, journal = reply.rows[0][0][0], reply.rows[1][0][0]
    return NodeHealth(address=path, role="embedded", version=str(version), latency=latency,
                      journal_mode=str(journal), database=path)
