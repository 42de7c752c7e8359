"""Probing a PostgreSQL server for :meth:`Connection.health` and :meth:`Connection.ping`:
operations (generators of plans), so the connection's two executors run them like any
other. A server in recovery (a standby) is reported: QuantumORM's writes would fail there."""

from __future__ import annotations

import time

from ...engine.drive import Op
from ...health import NodeHealth, probe_timeout
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
    """The server's version, role and database. Within a readiness check, with a
    ``statement_timeout`` of the check's timeout (``SET LOCAL``: the probe's transaction
    only), so that a hung server does not keep the probe, its thread and its pooled
    connection forever: psycopg has no socket timeout."""
    limit = probe_timeout()
    started = time.perf_counter()
    if limit is None:
        (reply,) = yield SqlPlan.read(_ABOUT)
        about = reply.rows[0]
    else:
        # (an integer of milliseconds, made here: no text of the caller's in the SQL)
        bounded = Statement(f"SET LOCAL statement_timeout = {max(1, round(limit * 1000))}")
        (reply,) = yield SqlPlan.read(bounded, _ABOUT)
        about = reply.rows[1]
    latency = time.perf_counter() - started
    version, recovery, database, address = about[0]
    return NodeHealth(address=address or "local socket",
                      role="standby" if recovery else "primary", version=str(version),
                      latency=latency, database=str(database), in_recovery=bool(recovery))
