"""Health of a connection's store: the report, and a readiness check for web frameworks.

``await conn.health()`` / ``conn.health_sync()`` return a :class:`HealthReport`: one
:class:`NodeHealth` per server the connection uses (every master and replica of a Redis
Cluster, the master a Sentinel names, the one server of a plain URL; the database of SQLite
or PostgreSQL), and the problems found, in words. ``await conn.ping()`` /
``conn.ping_sync()`` time one round trip. Each backend probes its own servers
(``backends/*/health.py``); this module owns what a report is and how it is judged.

Two kinds of findings. A *problem* makes ``ok`` false: QuantumORM cannot work correctly
there (a master that does not answer, an eviction policy that may drop index entries, a
cluster that is down, a server still loading its data, a PostgreSQL standby). A *warning*
does not: the store works, but something deserves a look (a replica that does not answer or
lost its master, memory close to ``maxmemory``). A readiness probe that failed on a replica's
trouble would take every application instance out of service for something the application
does not need.

:func:`readiness` / :func:`readiness_sync` never raise for a store that is down: they return
``(False, report)`` with the error as the report's problem, within ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from .errors import QuantumORMError
from .redaction import redact_url

#: how a node was found: the URL named it, the cluster's slot map listed it, Sentinel named it
DISCOVERED = ("url", "cluster", "sentinel")
#: used_memory / maxmemory from which a warning is given
MEMORY_WARNING = 0.9


@dataclass(frozen=True)
class NodeHealth:
    """One server. Fields a backend does not have (``maxmemory_policy`` on SQLite...) are
    None; so is every measured field of a node that did not answer (``error`` says why)."""

    address: str
    #: "master" or "replica" (Redis, from the server's own INFO); "primary" or "standby"
    #: (PostgreSQL); "embedded" (SQLite)
    role: str
    #: how the node was found: "url", "cluster" (the slot map) or "sentinel"
    discovered: str = "url"
    version: str | None = None
    #: seconds of one PING (or ``SELECT 1``) round trip
    latency: float | None = None
    error: str | None = None
    # -- Redis
    maxmemory_policy: str | None = None
    #: whether the policy may evict QuantumORM's keys (``allkeys-*``: see
    #: ``backends/redis/eviction.py``); None when the policy could not be read
    can_evict: bool | None = None
    used_memory: int | None = None
    maxmemory: int | None = None
    connected_replicas: int | None = None
    #: a replica's link to its master: "up" or "down"
    master_link_status: str | None = None
    loading: bool | None = None
    cluster_state: str | None = None
    # -- SQL
    database: str | None = None
    in_recovery: bool | None = None
    journal_mode: str | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class HealthReport:
    """What :meth:`Connection.health` found. ``ok``: no problem (warnings allowed)."""

    backend: str
    #: the connection's URL, password redacted
    url: str
    nodes: tuple[NodeHealth, ...] = ()
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    #: False when the store could not be reached at all (then ``nodes`` is empty)
    reachable: bool = True

    @property
    def ok(self) -> bool:
        return self.reachable and not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: strings, numbers, booleans, None, lists and dicts only."""
        return {"ok": self.ok, "backend": self.backend, "url": self.url,
                "reachable": self.reachable, "problems": list(self.problems),
                "warnings": list(self.warnings),
                "nodes": [node.to_dict() for node in self.nodes]}

    def __str__(self) -> str:
        head = f"{self.backend} {self.url}: {'OK' if self.ok else 'NOT OK'}"
        lines = [head]
        for node in self.nodes:
            lines.append("  " + describe(node))
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def describe(node: NodeHealth) -> str:
    """One line for a node, as the command line prints it."""
    if node.error is not None:
        return f"{node.address} {node.role}: unreachable ({node.error})"
    parts = [f"{node.address} {node.role}"]
    if node.discovered != "url":
        parts.append(f"(via {node.discovered})")
    if node.version:
        parts.append(f"v{node.version}")
    if node.latency is not None:
        parts.append(f"{node.latency * 1000:.2f} ms")
    if node.maxmemory_policy is not None:
        parts.append(f"policy={node.maxmemory_policy}")
    if node.used_memory is not None:
        parts.append(f"memory={node.used_memory}")
    if node.connected_replicas is not None and node.role == "master":
        parts.append(f"replicas={node.connected_replicas}")
    if node.master_link_status is not None:
        parts.append(f"link={node.master_link_status}")
    for label, value in (("database", node.database), ("journal", node.journal_mode),
                         ("in_recovery", node.in_recovery)):
        if value is not None:
            parts.append(f"{label}={value}")
    return " ".join(parts)


def judge(node: NodeHealth) -> tuple[list[str], list[str]]:
    """The problems and warnings one node shows (see the module docstring for which is
    which)."""
    problems: list[str] = []
    warnings: list[str] = []
    if node.error is not None:
        (warnings if node.role in ("replica", "standby") else problems).append(
            f"{node.address} ({node.role}) does not answer: {node.error}")
        return problems, warnings
    if node.can_evict:
        problems.append(
            f"{node.address}: maxmemory-policy {node.maxmemory_policy} may evict any key, "
            "so index entries could outlive or miss their documents; set noeviction or "
            "volatile-*")
    if node.loading:
        problems.append(f"{node.address} is loading its dataset")
    if node.cluster_state not in (None, "ok"):
        problems.append(f"{node.address}: cluster_state is {node.cluster_state}")
    if node.master_link_status not in (None, "up"):
        warnings.append(f"{node.address} (replica): the link to its master is "
                        f"{node.master_link_status}")
    if node.in_recovery:
        problems.append(f"{node.address}: the server is in recovery (a read-only standby): "
                        "writes will fail")
    if node.maxmemory and node.used_memory is not None and (
            node.used_memory >= MEMORY_WARNING * node.maxmemory):
        warnings.append(f"{node.address}: uses {node.used_memory} of {node.maxmemory} bytes "
                        f"of maxmemory ({node.used_memory / node.maxmemory:.0%})")
    return problems, warnings


def report(backend: str, url: str, nodes: list[NodeHealth] | tuple[NodeHealth, ...],
           problems: tuple[str, ...] = ()) -> HealthReport:
    """The report of these nodes, judged (plus ``problems`` found at the store's level)."""
    found, warned = list(problems), []
    for node in nodes:
        bad, meh = judge(node)
        found += bad
        warned += meh
    return HealthReport(backend, redact_url(url), tuple(nodes), tuple(found), tuple(warned))


def unreachable(backend: str, url: str, error: BaseException) -> HealthReport:
    """The report of a store that could not be reached at all."""
    return HealthReport(backend, redact_url(url), problems=(f"cannot reach the store: "
                                                            f"{_said(error)}",),
                        reachable=False)


def _said(error: BaseException) -> str:
    return str(error) or type(error).__name__


class Probed(Protocol):
    """What :func:`readiness` needs of a connection (:class:`~quantumorm.Connection`)."""

    kind: str
    url: str

    async def health(self) -> HealthReport: ...

    def health_sync(self) -> HealthReport: ...


#: what a readiness check treats as "the store is down" (anything else is a bug, and raises)
DOWN = (QuantumORMError, OSError, asyncio.TimeoutError, concurrent.futures.TimeoutError)


async def readiness(conn: Probed, timeout: float = 2.0) -> tuple[bool, HealthReport]:
    """``(ready, report)`` within about ``timeout`` seconds; never raises for a store that
    is down or slow (the report says what happened). For a web framework's readiness
    endpoint, for example with Starlette or FastAPI::

        from quantumorm.health import readiness

        @app.get("/ready")
        async def ready():
            ok, report = await readiness(get_connection(), timeout=1.0)
            return JSONResponse(report.to_dict(), status_code=200 if ok else 503)

    ``ready`` is ``report.ok``: every master answers and nothing stops QuantumORM from
    working correctly; warnings (a replica down) do not make it false."""
    try:
        found = await asyncio.wait_for(conn.health(), timeout)
    except DOWN as exc:
        found = unreachable(conn.kind, conn.url, _timed(exc, timeout))
    return found.ok, found


def readiness_sync(conn: Probed, timeout: float = 2.0) -> tuple[bool, HealthReport]:
    """The blocking twin of :func:`readiness` (for WSGI frameworks). The probe runs on a
    worker thread so that the answer comes within ``timeout`` even when a socket hangs;
    that thread then ends at the connection's own socket timeout."""
    worker = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                   thread_name_prefix="qorm-readiness")
    try:
        found = worker.submit(conn.health_sync).result(timeout)
    except DOWN as exc:
        found = unreachable(conn.kind, conn.url, _timed(exc, timeout))
    finally:
        worker.shutdown(wait=False)
    return found.ok, found


def _timed(error: BaseException, timeout: float) -> BaseException:
    if isinstance(error, (asyncio.TimeoutError, concurrent.futures.TimeoutError)):
        return TimeoutError(f"no answer within {timeout} s")
    return error


__all__ = ["DISCOVERED", "HealthReport", "NodeHealth", "Probed", "describe", "judge",
           "readiness", "readiness_sync", "report", "unreachable"]
