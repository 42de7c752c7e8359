"""The OpenTelemetry face: spans captured by the SDK's in-memory exporter, sync and async,
nested under the caller's span, with the database attributes, the round trips as events,
and no value of a document anywhere."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from metrics_models import LiteUser, RedisUser

import quantumorm
from quantumorm import metrics

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from quantumorm.metrics import otel  # noqa: E402

SECRET = "s3cret-value-never-traced"


@pytest.fixture
def exporter() -> Iterator[tuple[InMemorySpanExporter, TracerProvider]]:
    found = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(found))
    otel.instrument(provider)
    try:
        yield found, provider
    finally:
        otel.uninstrument()


def _everything(span: Any) -> str:
    return repr((span.name, dict(span.attributes), [(e.name, dict(e.attributes))
                                                    for e in span.events]))


async def test_spans_sync_and_async_on_redis(conn: quantumorm.Connection,
                                             exporter: Any) -> None:
    found, provider = exporter
    tracer = provider.get_tracer("test")
    await RedisUser.objects.count()  # (the schema is read: not part of what follows)
    found.clear()
    with tracer.start_as_current_span("caller") as caller:
        saved = await RedisUser(name=SECRET, age=7).save()
        await asyncio.to_thread(RedisUser.objects.get_sync, id=saved.id)
    spans = {span.name: span for span in found.get_finished_spans()}
    assert set(spans) == {"caller", "save m_users", "get m_users"}
    for name in ("save m_users", "get m_users"):
        span = spans[name]
        assert span.kind is SpanKind.CLIENT
        assert span.parent is not None
        assert span.parent.span_id == caller.get_span_context().span_id
        assert span.context.trace_id == caller.get_span_context().trace_id
        attributes = dict(span.attributes)
        host, port = conn.url.split("//")[1].split("/")[0].split(":")
        assert attributes == {
            "db.system": "redis", "db.system.name": "redis",
            "db.operation.name": name.split()[0], "db.collection.name": "m_users",
            "db.namespace": "0", "server.address": host, "server.port": int(port),
            "quantumorm.model": "RedisUser", "quantumorm.round_trips": 1}
        assert span.status.status_code is StatusCode.UNSET
        assert SECRET not in _everything(span)
        # one event per round trip, named by its commands (which ones is the planner's
        # business: a script call or a plain read)
        (event,) = span.events
        (command,) = event.attributes["db.commands"]
        assert event.name == command and command.split()[0] in ("EVALSHA", "MGET", "GET")


async def test_error_span_names_the_type_only(lite: quantumorm.Connection,
                                              exporter: Any) -> None:
    found, _ = exporter
    await LiteUser.objects.count()
    found.clear()
    with pytest.raises(LiteUser.DoesNotExist):
        await LiteUser.objects.get(name=SECRET)
    (span,) = found.get_finished_spans()
    assert span.name == "get m_users" and span.parent is None
    assert span.attributes["db.system"] == "sqlite"
    assert span.attributes["error.type"] == "DoesNotExist"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "DoesNotExist"
    assert [e.name for e in span.events] == ["SELECT"]
    assert "SELECT" in span.events[0].attributes["db.query.text"]
    assert SECRET not in _everything(span)


async def test_concurrent_tasks_each_nest_under_their_caller(
        lite: quantumorm.Connection, exporter: Any) -> None:
    found, provider = exporter
    tracer = provider.get_tracer("test")
    await LiteUser.objects.count()
    found.clear()

    async def job(n: int) -> None:
        with tracer.start_as_current_span(f"job{n}"):
            await LiteUser.objects.count()
            await LiteUser.objects.filter(age=n).count()

    await asyncio.gather(*(job(n) for n in range(3)))
    spans = found.get_finished_spans()
    jobs = {span.context.span_id: span.name for span in spans if span.name.startswith("job")}
    children = [span for span in spans if span.name == "count m_users"]
    assert len(children) == 6
    assert sorted(jobs[span.parent.span_id] for span in children) == [
        "job0", "job0", "job1", "job1", "job2", "job2"]


async def test_traces_alone_count_nothing(lite: quantumorm.Connection,
                                          exporter: Any) -> None:
    await LiteUser.objects.count()
    assert not metrics.enabled()
    assert metrics.snapshot().operations == ()
    otel.uninstrument()
    assert quantumorm.engine.observe.watcher is None
