"""OpenTelemetry: a span per ORM operation (``pip install quantumorm[otel]``)::

    from quantumorm.metrics import otel
    otel.instrument()                    # the global tracer provider, or pass one

Each operation is a CLIENT span named ``"{operation} {collection}"`` (``"save users"``),
a child of the caller's current span (contextvars: threads and asyncio tasks alike), and
the current span while it runs (so spans made inside, by signal receivers say, are its
children). Attributes follow the database semantic conventions: ``db.system`` and
``db.system.name`` (``redis``, ``sqlite``, ``postgresql``), ``db.operation.name``,
``db.collection.name``, ``db.namespace`` (the Redis database index, the PostgreSQL
database, the SQLite file name), ``server.address`` and ``server.port`` (from the
connection's URL; never its credentials), and ``quantumorm.model`` and
``quantumorm.round_trips``. On an error: ``error.type`` (the exception's class name) and
an ERROR status with that name only: an exception's message can hold values, so it is not
recorded. Each round trip is a span event named by its commands (``EVALSHA save``, or
``FCALL save`` with ``scripts="functions"``, ``SELECT``; never arguments or values: see :mod:`.plans`), and retries, script reloads and
slot relearns are events too.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from . import plans
from .watch import WATCH, Running, sync

#: the connection kinds' names in the semantic conventions (``db.system``)
SYSTEMS = {"postgres": "postgresql"}


def _version() -> str:
    try:
        return version("quantumorm")
    except PackageNotFoundError:
        return "0"


def server_of(url: str, kind: str) -> dict[str, Any]:
    """``server.address``, ``server.port`` and ``db.namespace`` from a connection URL (the
    first host of a Sentinel or cluster URL); never the user or password."""
    try:
        parts = urlsplit(url)
        # (a Sentinel or cluster URL lists hosts: the first one stands for them)
        first = urlsplit(f"{parts.scheme}://{parts.netloc.rpartition('@')[2].split(',')[0]}")
        host, port = first.hostname, first.port
    except ValueError:
        return {}
    out: dict[str, Any] = {}
    path = parts.path
    if kind == "sqlite":
        out["db.namespace"] = path.rstrip("/").rpartition("/")[2] or ":memory:"
        return out
    if parts.scheme == "unix":
        out["server.address"] = path
    elif host:
        out["server.address"] = host
        if port is not None:
            out["server.port"] = port
    segment = "" if parts.scheme == "unix" else path.strip("/").split("/")[-1]
    if kind == "redis":
        query = dict(pair.split("=", 1) for pair in parts.query.split("&") if "=" in pair)
        segment = query.get("db", segment if segment.isdigit() else "0")
    if segment:
        out["db.namespace"] = segment
    return out


class Spans:
    """The :class:`~.watch.Tracer` that makes OpenTelemetry spans."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer
        self._servers: dict[tuple[str, str], dict[str, Any]] = {}

    def _server(self, connection: Any) -> dict[str, Any]:
        key = (connection.url, connection.kind)
        found = self._servers.get(key)
        if found is None:
            found = self._servers[key] = server_of(connection.url, connection.kind)
        return found

    def start(self, op: Running) -> Any:
        system = SYSTEMS.get(op.backend, op.backend)
        attributes: dict[str, Any] = {
            "db.system": system, "db.system.name": system, "db.operation.name": op.operation,
            **self._server(op.connection)}
        if op.collection:
            attributes["db.collection.name"] = op.collection
            attributes["quantumorm.model"] = op.model
        name = f"{op.operation} {op.collection}" if op.collection else op.operation
        span = self.tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        token = context.attach(trace.set_span_in_context(span))
        return span, token, op

    def round_trip(self, handle: Any, plan: Any) -> None:
        # (named by what the operation's executor sent the scripts with: FCALL or EVALSHA,
        # EVAL for those a reload sent by their source; Running.calls, set just before)
        names = plans.commands(plan, handle[2].calls)
        attributes: dict[str, Any] = {"db.commands": names}
        if hasattr(plan, "groups"):  # SQL: its text, whose values are all parameters
            attributes["db.query.text"] = plans.summary(plan)
        handle[0].add_event(plans.counted(names) or "round trip", attributes)

    def note(self, handle: Any, kind: str, reason: str) -> None:
        handle[0].add_event(kind, {"reason": reason} if reason else {})

    def end(self, handle: Any, error: BaseException | None) -> None:
        span, token, op = handle
        context.detach(token)
        span.set_attribute("quantumorm.round_trips", op.round_trips)
        if error is not None:
            kind = type(error).__name__
            span.set_attribute("error.type", kind)
            span.set_status(Status(StatusCode.ERROR, kind))
        span.end()


def instrument(tracer_provider: TracerProvider | None = None) -> Spans:
    """Make a span for every ORM operation from now on, with ``tracer_provider`` (the
    global one if None); instrumenting again replaces the provider."""
    provider = tracer_provider or trace.get_tracer_provider()
    spans = Spans(provider.get_tracer("quantumorm", _version()))
    WATCH.tracer = spans
    sync()
    return spans


def uninstrument() -> None:
    """Stop making spans (operations already running finish theirs)."""
    WATCH.tracer = None
    sync()


__all__ = ["SYSTEMS", "Spans", "instrument", "server_of", "uninstrument"]
