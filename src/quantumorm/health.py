"""Health of a connection's store: the report, and a readiness check for web frameworks.

``await conn.health()`` / ``conn.health_sync()`` return a :class:`HealthReport`: one
:class:`NodeHealth` per server the connection uses (every master and replica of a Redis
Cluster, the master a Sentinel names, the one server of a plain URL; the database of SQLite
or PostgreSQL), and the problems found, in words. ``await conn.ping()`` /
``conn.ping_sync()`` time one round trip. Each backend probes its own servers
(``backends/*/health.py``); this module owns what a report is and how it is judged.

Two kinds of findings. A *problem* makes ``ok`` false: QuantumORM cannot work correctly
there (a master serving data that does not answer, a cluster slot no live master serves,
an eviction policy that may drop index entries, a cluster that is down, a server still
loading its data, a PostgreSQL standby). A *warning* does not: the store works, but
something deserves a look (a replica that does not answer or lost its master, a cluster
node flagged ``fail``/``pfail`` or a master with no slots, such as the old master that a
failover replaced and the cluster still lists, memory close to ``maxmemory``). A readiness
probe that failed on a replica's trouble would take every application instance out of
service for something the application does not need.

:func:`readiness` / :func:`readiness_sync` never raise for a store that is down: they return
``(False, report)`` with the error as the report's problem, within ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import weakref
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from .errors import QuantumORMError
from .redaction import redact_url

#: how a node was found: the URL named it, the cluster's slot map listed it, Sentinel named it
DISCOVERED = ("url", "cluster", "sentinel")
#: used_memory / maxmemory from which a warning is given
MEMORY_WARNING = 0.9
#: the slots of a Redis Cluster (each must have a live master)
CLUSTER_SLOTS = 16384
#: a cluster's flags for a node it believes down (``pfail``: this node's view; ``fail``: the
#: majority's)
FAILING = ("fail", "pfail", "fail?")


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
    #: the node's flags in the cluster's listing (``master``, ``slave``, ``fail``,
    #: ``pfail``...; ``myself`` left out), and how many of the cluster's slots it serves
    flags: tuple[str, ...] | None = None
    slots: int | None = None
    # -- SQL
    database: str | None = None
    in_recovery: bool | None = None
    journal_mode: str | None = None

    @property
    def reachable(self) -> bool:
        return self.error is None

    @property
    def failing(self) -> bool:
        """Whether the cluster flags the node as down (``fail`` or ``pfail``)."""
        return any(flag in FAILING for flag in self.flags or ())

    @property
    def serves(self) -> bool:
        """Whether the node holds data the store needs: a master serving slots (a cluster's
        master with none, such as a failed-over one, does not), a PostgreSQL primary, the
        SQLite database."""
        if self.role in ("replica", "standby"):
            return False
        return self.slots is None or (self.slots > 0 and not self.failing)

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
        flagged = f" [{','.join(node.flags)}]" if node.failing and node.flags else ""
        return f"{node.address} {node.role}{flagged}: unreachable ({node.error})"
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
    if node.slots is not None and node.role == "master":
        parts.append(f"slots={node.slots}")
    if node.failing:
        parts.append(f"flags={','.join(node.flags or ())}")
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
        if node.serves:
            problems.append(f"{node.address} ({node.role}) does not answer: {node.error}")
        else:
            # a replica, or a cluster node that no longer holds slots (a failed-over master
            # the cluster still lists): the slots' own check says whether data is missing
            why = f", flagged {','.join(node.flags or ())}" if node.flags else ""
            warnings.append(f"{node.address} ({node.role}{why}) does not answer: "
                            f"{node.error}")
        return problems, warnings
    if node.failing:
        warnings.append(f"{node.address} answers but the cluster flags it "
                        f"{','.join(node.flags or ())}")
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
    found += _unowned_slots(nodes)
    return HealthReport(backend, redact_url(url), tuple(nodes), tuple(found), tuple(warned))


def _unowned_slots(nodes: list[NodeHealth] | tuple[NodeHealth, ...]) -> list[str]:
    """A Redis Cluster's slots that no live master serves (the data there cannot be read or
    written), as a problem: live means it answered the probe and the cluster does not flag
    it down. Not a cluster (no node lists slots): nothing to say."""
    listed = [node for node in nodes if node.slots is not None]
    if not listed:
        return []
    live = sum(node.slots or 0 for node in listed
               if node.role == "master" and node.error is None and not node.failing)
    if live >= CLUSTER_SLOTS:
        return []
    lost = [node.address for node in listed if node.slots and (
        node.error is not None or node.failing)]
    held = f" (listed as served by {', '.join(lost)}, down)" if lost else ""
    return [f"{CLUSTER_SLOTS - live} of the cluster's {CLUSTER_SLOTS} slots have no live "
            f"master{held}"]


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


#: the time a readiness check gives its probe (None outside one): a backend whose driver
#: has no socket timeout bounds its probe's own work with it (PostgreSQL's
#: ``statement_timeout``), so that a probe of a hung server does not run on forever
PROBE_TIMEOUT: ContextVar[float | None] = ContextVar("quantumorm_probe_timeout", default=None)


def probe_timeout() -> float | None:
    """The timeout of the readiness check this probe runs in (see :data:`PROBE_TIMEOUT`)."""
    return PROBE_TIMEOUT.get()


async def readiness(conn: Probed, timeout: float = 2.0) -> tuple[bool, HealthReport]:
    """``(ready, report)`` within about ``timeout`` seconds; never raises for a store that
    is down or slow (the report says what happened). For a web framework's readiness
    endpoint, for example with Starlette or FastAPI:

    ```python
    from quantumorm.health import readiness

    @app.get("/ready")
    async def ready():
        ok, report = await readiness(get_connection(), timeout=1.0)
        return JSONResponse(report.to_dict(), status_code=200 if ok else 503)
    ```

    ``ready`` is ``report.ok``: every master answers and nothing stops QuantumORM from
    working correctly; warnings (a replica down) do not make it false. A probe that takes
    longer is cancelled."""
    token = PROBE_TIMEOUT.set(timeout)  # (the probe's task copies this context)
    try:
        found = await asyncio.wait_for(conn.health(), timeout)
    except DOWN as exc:
        found = unreachable(conn.kind, conn.url, _timed(exc, timeout))
    finally:
        PROBE_TIMEOUT.reset(token)
    return found.ok, found


@dataclass
class _Probe:
    """A blocking probe: when it started, and its outcome once it ends."""

    started: float
    result: concurrent.futures.Future[HealthReport]


#: the blocking probe still running for each connection (at most one: see readiness_sync)
_RUNNING: weakref.WeakKeyDictionary[Any, _Probe] = weakref.WeakKeyDictionary()
_RUNNING_LOCK = threading.Lock()


def readiness_sync(conn: Probed, timeout: float = 2.0) -> tuple[bool, HealthReport]:
    """The blocking twin of :func:`readiness` (for WSGI frameworks).

    A blocking call cannot be cancelled, so the probe runs on a thread of its own and the
    answer comes within ``timeout`` even when the server hangs; the probe itself goes on
    until the server answers or the connection's own limit cuts it (Redis: the socket
    timeout; PostgreSQL: a ``statement_timeout`` of ``timeout`` set for the probe's
    transaction; SQLite: the busy timeout, or never while a disk hangs). At most one probe
    per connection runs: while one is still running, the check answers not ready at once,
    with that as the reason, instead of starting another (a load balancer probing a hung
    server every second must not pile up threads and pooled connections)."""
    with _RUNNING_LOCK:
        running = _RUNNING.get(conn)
        if running is not None and not running.result.done():
            waited = time.monotonic() - running.started
            return False, unreachable(conn.kind, conn.url, TimeoutError(
                f"the previous readiness probe has had no answer for {waited:.1f} s"))
        probe = _Probe(time.monotonic(), concurrent.futures.Future())
        _RUNNING[conn] = probe
    threading.Thread(target=_probe_sync, args=(conn, timeout, probe.result),
                     name="qorm-readiness", daemon=True).start()
    try:
        found = probe.result.result(timeout)
    except DOWN as exc:
        found = unreachable(conn.kind, conn.url, _timed(exc, timeout))
    return found.ok, found


def _probe_sync(conn: Probed, timeout: float,
                result: concurrent.futures.Future[HealthReport]) -> None:
    """A probe thread's work: the report, or the error, into ``result``."""
    PROBE_TIMEOUT.set(timeout)  # (this thread's own context)
    try:
        result.set_result(conn.health_sync())
    except BaseException as exc:  # (every outcome is the caller's: it decides what raises)
        result.set_exception(exc)


def _timed(error: BaseException, timeout: float) -> BaseException:
    if isinstance(error, (asyncio.TimeoutError, concurrent.futures.TimeoutError)):
        return TimeoutError(f"no answer within {timeout} s")
    return error


__all__ = ["CLUSTER_SLOTS", "DISCOVERED", "PROBE_TIMEOUT", "HealthReport", "NodeHealth",
           "Probed", "describe", "judge", "probe_timeout", "readiness", "readiness_sync",
           "report", "unreachable"]
