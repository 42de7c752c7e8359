"""QuantumORM's loggers, and the few helpers that keep logging cheap and free of secrets.

One logger per area, children of ``quantumorm`` (which has a ``NullHandler``, as a library's
root logger should: the application decides where records go)::

    quantumorm            connections opened and closed; schema changes
    quantumorm.redis      retries, Sentinel master changes, slot-map relearns, NOSCRIPT
                          reloads, refused layouts, eviction policy; the plans of Redis
                          connections (DEBUG)
    quantumorm.sqlite     the plans of SQLite connections (DEBUG)
    quantumorm.postgres   serialization retries; the plans of PostgreSQL connections (DEBUG)
    quantumorm.cache      refused cache fills, failed cache operations, the circuit breaker
                          opening and closing
    quantumorm.events     change consumers that lost their connection, claims, trimmed events
    quantumorm.tools      verify / reindex / repair / repartition / sweep: start and end
    quantumorm.slow       operations slower than a threshold (owned by quantumorm.metrics)

Every message is a fixed text followed by ``key=value`` pairs, so that it can be grepped and
parsed; what each line means is in the monitoring guide (``docs/monitoring.md``).

**What is never logged**: passwords (URLs go through :func:`~.redaction.redact_url`), AUTH
arguments, and document values (they may be personal data). DEBUG plan lines name the
operation, its commands or scripts and the collections' hash tags, never a key with an id in
it nor an argument.

**What logging costs when it is off**: the warnings sit on paths that are already slow (a
retry, a reload); the only line on the hot path is the DEBUG plan line, decided once per
operation by :func:`plans_on` without a function call (see there).
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Mapping
from types import GeneratorType
from typing import Any, TypeVar

from .maintenance import RepairReport, VerifyReport

T = TypeVar("T")

ROOT = "quantumorm"
#: the areas, each a child logger of ``quantumorm``
AREAS = ("redis", "sqlite", "postgres", "cache", "events", "tools")

root = logging.getLogger(ROOT)
# a library adds no handler but this one: without it, Python's "last resort" handler would
# print our warnings to stderr in applications that never configured logging
root.addHandler(logging.NullHandler())

redis = logging.getLogger("quantumorm.redis")
sqlite = logging.getLogger("quantumorm.sqlite")
postgres = logging.getLogger("quantumorm.postgres")
cache = logging.getLogger("quantumorm.cache")
events = logging.getLogger("quantumorm.events")
tools = logging.getLogger("quantumorm.tools")


def area(name: str) -> logging.Logger:
    """The logger of backend or area ``name`` (``quantumorm.<name>``; a third-party backend
    gets its own child too)."""
    return logging.getLogger(f"{ROOT}.{name}")


# -- the DEBUG plan line: decided without a call -------------------------------------------

def levels(logger: logging.Logger) -> Mapping[int, bool]:
    """The dict in which ``logger.isEnabledFor`` remembers its answers (CPython's
    ``Logger._cache``; the same object for the logger's life: level changes clear it, they
    do not replace it). An empty dict where there is none: :func:`plans_on` then asks."""
    found = vars(logger).get("_cache")
    return found if isinstance(found, dict) else {}


def plans_on(logger: logging.Logger) -> bool:
    """Whether ``logger`` logs DEBUG. Callers on the hot path read ``known``, its
    :func:`levels`, first and call this only when it has no answer yet::

        if known[DEBUG] if DEBUG in known else logs.plans_on(log):

    so an operation with DEBUG off costs a dict lookup, not a call (the benchmark counts
    Python calls per operation; ``isEnabledFor`` would add one)."""
    return logger.isEnabledFor(logging.DEBUG)


class PlanLog:
    """An executor that logs a summary of each plan at DEBUG, then hands it to the real one
    (blocking or asyncio: ``execute`` returns whatever the real one returns). Used only for
    operations started while DEBUG is on."""

    __slots__ = ("executor", "log", "op")

    def __init__(self, executor: Any, log: logging.Logger, op: str) -> None:
        # (``_get_op`` -> ``get``: the generator's name, without its private spelling)
        self.executor, self.log = executor, log
        self.op = op.strip("_").removesuffix("_op") or op

    def execute(self, plan: Any) -> Any:
        self.log.debug("plan op=%s %s", self.op, describe(plan))
        return self.executor.execute(plan)


def describe(plan: Any) -> str:
    """A plan's summary without values: Redis steps as command or script names with the
    hash tags they touch, SQL statements as their verbs. Duck-typed, so that this module
    imports no backend."""
    inner = getattr(plan, "plan", None)
    if inner is not None:  # the cache's plans (quantumorm.cache.dispatch.ToCache)
        return "to=cache " + describe(inner)
    steps = getattr(plan, "steps", None)
    if steps is not None:
        names, tags = [], []
        for step in steps:
            script = getattr(step, "script", None)
            keys = getattr(step, "keys", None) or getattr(step, "args", ())[1:2]
            names.append(f"script:{script}" if script else str(step.args[0]))
            tag = hash_tag(keys[0]) if keys else None
            if tag and tag not in tags:
                tags.append(tag)
        return (f"steps={len(names)} read_only={getattr(plan, 'read_only', False)} "
                f"commands={','.join(dict.fromkeys(names))} tags={','.join(tags) or '-'}")
    groups = getattr(plan, "groups", None)
    if groups is not None:
        verbs = [statement.sql.split(None, 1)[0].upper() if statement.sql else "?"
                 for group in groups for statement in group]
        return (f"statements={len(verbs)} write={getattr(plan, 'write', False)} "
                f"verbs={','.join(dict.fromkeys(verbs))}")
    return f"plan={type(plan).__name__}"


def hash_tag(key: Any) -> str | None:
    """A Redis key's ``{hash tag}`` (namespace, collection and partition: no id, no
    value), or None when it has none."""
    if isinstance(key, bytes):
        key = key.decode("utf-8", "replace")
    if not isinstance(key, str):
        return None
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start:end + 1] if 0 <= start and end > start + 1 else None


# -- small helpers for the warnings ---------------------------------------------------------

def node(target: Any) -> str:
    """``host:port`` of a redis-py client, cluster node or connection pool (``-`` if it
    cannot be told): where a request went. Never the credentials."""
    name = getattr(target, "name", None)
    if isinstance(name, str) and ":" in name:  # a cluster node
        return name
    pool = getattr(target, "connection_pool", target)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not isinstance(kwargs, dict):
        return "-"
    if kwargs.get("path"):
        return str(kwargs["path"])
    service = getattr(pool, "service_name", None)  # Sentinel: the service, not a host
    if service:
        return f"sentinel:{service}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def nodes(request: Any) -> str:
    """Where a request of the Redis exchange went: its target, or every target of a fan-out."""
    sends = getattr(request, "sends", None)
    if sends is not None:
        return ",".join(node(send.target) for send in sends)
    target = getattr(request, "target", None)
    return node(target) if target is not None else "-"


def schema_change(stored: Any, upgraded: bool) -> str:
    """How a stored schema changed at first use: ``created`` (none was stored),
    ``upgraded`` (a newer storage format only) or ``evolved`` (the declaration changed)."""
    return "created" if stored is None else "upgraded" if upgraded else "evolved"


# -- the tools' progress --------------------------------------------------------------------

def counts(result: Any) -> str:
    """The counts a tool's result reports, as ``key=value`` pairs (never ids nor values)."""
    if isinstance(result, RepairReport):
        fixed = sum(result.fixed.values())
        return (f"found={sum(result.before.problems.values())} fixed={fixed} "
                f"remaining={sum(result.after.problems.values())} ok={result.ok}")
    if isinstance(result, VerifyReport):
        return (f"documents={result.documents} entries={result.entries} "
                f"problems={sum(result.problems.values())} ok={result.ok}")
    if isinstance(result, int):
        return f"purged={result}"
    pairs = []  # a ReindexReport, or the repartition tool's Progress (dataclasses)
    for name in ("documents", "gone", "backfilled", "unsettled", "ready", "scanned", "moved",
                 "stayed", "done"):
        value = getattr(result, name, None)
        if isinstance(value, (int, float, bool)):
            pairs.append(f"{name}={value}")
    conflicts = getattr(result, "conflicts", None)
    if isinstance(conflicts, list):
        pairs.append(f"conflicts={len(conflicts)}")
    return " ".join(pairs)


def tool(name: str, model: str, op: Generator[Any, Any, T]) -> Generator[Any, Any, T]:
    """Run a tool's operation ``op`` and log its start and end (INFO, ``quantumorm.tools``),
    or its failure (WARNING, with the error's type). The generator is named after the tool
    (what the DEBUG plan lines show as ``op=``)."""
    logged = _tool(name, model, op)
    assert isinstance(logged, GeneratorType)  # (a generator function's: its name is writable)
    logged.__name__ = name
    return logged


def _tool(name: str, model: str, op: Generator[Any, Any, T]) -> Generator[Any, Any, T]:
    tools.info("%s started model=%s", name, model)
    try:
        result = yield from op
    except Exception as exc:
        tools.warning("%s failed model=%s error=%s", name, model, type(exc).__name__)
        raise
    if tools.isEnabledFor(logging.INFO):
        tools.info("%s finished model=%s %s", name, model, counts(result))
    return result


__all__ = ["AREAS", "ROOT", "PlanLog", "area", "cache", "counts", "describe", "events",
           "hash_tag", "levels", "node", "nodes", "plans_on", "postgres", "redis", "root",
           "schema_change", "sqlite", "tool", "tools"]
