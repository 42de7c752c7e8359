"""Probing a PostgreSQL server for :meth:`Connection.health` and :meth:`Connection.ping`:
operations (generators of plans), so the connection's two executors run them like any
other. A server in recovery (a standby) is reported: QuantumORM's writes would fail there."""

from __future__ import annotations

import time

from ...engine.drive import Op
from ...health import NodeHealth
from .plans import SqlPlan, Statement

#: one row: version, in recovery, database, address (None over a Unix socket)
_ABOUT = Statement(
    "SELECT current_setting('server_version'), pg_is_in_recovery(), current_database(), "
    "host(inet_server_addr()) || ':' || inet_server_port()")


def ping() -> Op[float]:
    """Seconds of one ``SELECT 1``."""
    started = time.perf_counter()
    yield SqlPlan.read(Statement("SELECT 1"))
    return time.perf_counter() - started


def probe() -> Op[NodeHealth]:
    started = time.perf_counter()
    (reply,) = yield SqlPlan.read(_ABOUT)
    latency = time.perf_counter() - started
    version, recovery, database, address = reply.rows[0][0]
    return NodeHealth(address=address or "local socket",
                      role="standby" if recovery else "primary", version=str(version),
                      latency=latency, database=str(database), in_recovery=bool(recovery))
