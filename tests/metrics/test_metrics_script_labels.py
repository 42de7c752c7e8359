"""Script calls are named in traces and in the slow-operation log by the command that
carried them: ``EVALSHA save`` with ``scripts="eval"`` (the default), ``FCALL save`` with
``scripts="functions"``, and the ``_RO`` twin for a read that a replica may answer (the
name follows the connection when it turns from FCALL to EVALSHA)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from metrics_models import RedisUser

import quantumorm
from quantumorm import metrics
from quantumorm.backends.redis.commands import Call, RedisPlan
from quantumorm.backends.redis.exchange import Link, script_command
from quantumorm.metrics import plans

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from quantumorm.metrics import otel  # noqa: E402

#: the command each ``scripts`` setting sends the scripts with
SENT = {"eval": "EVALSHA", "functions": "FCALL"}


@pytest.fixture(params=["eval", "functions"])
async def scripted(request: pytest.FixtureRequest, redis_url: str,
                   redis_client: redis.Redis) -> AsyncIterator[str]:
    """The default connection with ``scripts`` set to the parameter, which it yields."""
    redis_client.flushdb()
    quantumorm.create_connection(url=redis_url, name="default", make_default=True,
                                 scripts=request.param)
    try:
        yield request.param
    finally:
        try:
            await quantumorm.aclose_all()
        finally:
            quantumorm.close_all()


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    found = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(found))
    otel.instrument(provider)
    try:
        yield found
    finally:
        otel.uninstrument()


def _script_events(found: InMemorySpanExporter) -> list[str]:
    return [event.name for span in found.get_finished_spans() for event in span.events
            if event.name.split()[0] in ("EVALSHA", "FCALL", "EVALSHA_RO", "FCALL_RO")]


async def test_span_events_name_the_command_sent(scripted: str,
                                                 exporter: InMemorySpanExporter) -> None:
    await RedisUser.objects.count()  # (the schema is read, the scripts loaded)
    exporter.clear()
    saved = await RedisUser(name="a", age=1).save()
    saved.age = 2
    await asyncio.to_thread(saved.save_sync)
    assert await RedisUser.objects.filter(age__gte=0).count() == 1
    named = _script_events(exporter)
    # (a new document's save is sent as insert.lua, the loaded one's as save.lua)
    assert named[:2] == [f"{SENT[scripted]} insert", f"{SENT[scripted]} save"]
    assert named[2].startswith(f"{SENT[scripted]} ")
    for span in exporter.get_finished_spans():
        for event in span.events:
            assert list(event.attributes["db.commands"])[0] == event.name.split(" x")[0]


async def test_the_slow_log_names_the_command_sent(
        scripted: str, caplog: pytest.LogCaptureFixture) -> None:
    await RedisUser.objects.count()
    metrics.slow_log(0)
    with caplog.at_level(logging.WARNING, logger="quantumorm.slow"):
        await RedisUser(name="b", age=2).save()
        await asyncio.to_thread(RedisUser(name="c", age=3).save_sync)
    records = [r for r in caplog.records if r.name == "quantumorm.slow"]
    assert [r.qorm_plans for r in records] == [  # type: ignore[attr-defined]
        [f"{SENT[scripted]} insert"]] * 2  # (new documents: insert.lua)
    assert all(f"plans={SENT[scripted]} insert" in r.getMessage() for r in records)


def test_the_command_follows_the_link() -> None:
    """What the exchange sends: the ``_RO`` twin for a read a replica may answer (not one
    the master must answer), and EVALSHA once a connection has turned from FCALL."""
    read = RedisPlan((Call("count", ("k",), ("x",)),), read_only=True)
    write = RedisPlan((Call("save", ("k",), ("x",)),))
    master_read = RedisPlan(read.steps, read_only=True, primary=True)

    def link(functions: bool, replica_reads: bool) -> Link:
        return Link(retries=1, wait=0, wait_ms=0, cluster=False,
                    replica_reads=replica_reads, allow_eviction=False, functions=functions)

    assert script_command(read, link(True, True)) == "FCALL_RO"
    assert script_command(read, link(False, True)) == "EVALSHA_RO"
    assert script_command(master_read, link(True, True)) == "FCALL"
    assert script_command(read, link(True, False)) == "FCALL"
    assert script_command(write, link(True, True)) == "FCALL"
    assert script_command(write, link(False, False)) == "EVALSHA"
    # (a plan named without an executor that says, as before: EVALSHA)
    assert plans.commands(write) == ["EVALSHA save"]
    assert plans.summary(read, "FCALL_RO") == "FCALL_RO count (read-only)"


def test_a_cached_plan_is_named_by_the_cache_s_executor() -> None:
    from quantumorm.cache.dispatch import SyncDispatch, ToCache

    class Named:
        def __init__(self, command: str) -> None:
            self.command = command

        def script_command(self, plan: Any) -> str:
            return self.command

    dispatch = SyncDispatch(object(), Named("FCALL"))
    plan = RedisPlan((Call("cache_read", ("k",), ()),))
    assert plans.script_command(dispatch, plan) is None  # (the primary says nothing)
    calls = plans.script_command(dispatch, ToCache(plan))
    assert plans.commands(ToCache(plan), calls) == ["cache:FCALL cache_read"]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_plan_that_fell_back_to_evalsha_is_named_evalsha(
        mode: str, redis_url: str, redis_client: redis.Redis, exporter: InMemorySpanExporter,
        caplog: pytest.LogCaptureFixture) -> None:
    """Functions mode, the libraries missing and FUNCTION LOAD refused: the first plan's
    FCALL answers "function not found", the scripts are loaded by SCRIPT LOAD and the plan
    is sent again with EVALSHA, in the same plan. Its span event and its slow-log line name
    EVALSHA (what ran), not the first attempt's FCALL."""
    from quantumorm.backends.redis.acl import acl_rule

    redis_client.flushdb()
    quantumorm.create_connection(url=redis_url, name="default", make_default=True,
                                 scripts="functions")
    try:  # (the schema, stored as the default user, which loads the libraries)
        await RedisUser.objects.count()
    finally:
        await quantumorm.aclose_all()
        quantumorm.close_all()
    rule = acl_rule(RedisUser._meta.namespace, functions=True).replace(" +function|load", "")
    redis_client.execute_command("ACL", "SETUSER", "labels-no-load", "reset", "on", ">pw",
                                 *rule.split())
    try:
        quantumorm.create_connection(url=redis_url, name="default", make_default=True,
                                     username="labels-no-load", password="pw",
                                     scripts="functions")
        # (this connection's first use, with FCALL; then the libraries are gone)
        if mode == "async":
            await RedisUser.objects.count()
        else:
            await asyncio.to_thread(RedisUser.objects.count_sync)
        redis_client.function_flush()
        metrics.slow_log(0)
        exporter.clear()
        with caplog.at_level(logging.WARNING, logger="quantumorm.slow"):
            if mode == "async":
                await RedisUser(name="a", age=1).save()
            else:
                await asyncio.to_thread(RedisUser(name="a", age=1).save_sync)
        records = [r for r in caplog.records if r.name == "quantumorm.slow"]
        assert records[-1].qorm_plans == ["EVALSHA insert"]  # type: ignore[attr-defined]
        assert _script_events(exporter)[-1] == "EVALSHA insert"
    finally:
        metrics.slow_log(None)
        try:
            await quantumorm.aclose_all()
        finally:
            quantumorm.close_all()
            redis_client.execute_command("ACL", "DELUSER", "labels-no-load")


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_plan_whose_last_reload_sent_the_source_is_named_eval(
        mode: str, scripted: str, redis_client: redis.Redis,
        exporter: InMemorySpanExporter, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A script cache flushed after every load (a SCRIPT FLUSH or FUNCTION FLUSH that keeps
    landing between the load and the call: here made right after each load, on the real
    server): every reload answers NOSCRIPT until the last, which sends the script's source
    (EVAL). Its span event and its slow-log line name what ran, ``EVAL insert``, not the
    ``EVALSHA insert`` or ``FCALL insert`` the connection calls scripts with."""
    from quantumorm.backends.redis import executor, reloads

    await RedisUser.objects.count()  # (the schema stored; the scripts loaded)

    def lost(loaded: bool) -> bool:
        redis_client.script_flush()
        redis_client.function_flush()
        return loaded

    async def alost(client: Any, functions: bool = False) -> bool:
        return lost(await reloads.aload_all(client, functions))

    monkeypatch.setattr(executor, "load_all", lambda client, functions=False: lost(
        reloads.load_all(client, functions)))
    monkeypatch.setattr(executor, "aload_all", alost)
    lost(True)
    metrics.slow_log(0)
    exporter.clear()
    try:
        with caplog.at_level(logging.WARNING, logger="quantumorm.slow"):
            if mode == "async":
                await RedisUser(name="a", age=1).save()
            else:
                await asyncio.to_thread(RedisUser(name="a", age=1).save_sync)
    finally:
        metrics.slow_log(None)
    records = [r for r in caplog.records if r.name == "quantumorm.slow"]
    assert records[-1].qorm_plans == ["EVAL insert"]  # type: ignore[attr-defined]
    events = [event.name for span in exporter.get_finished_spans() for event in span.events
              if event.name.endswith(" insert")]
    assert events == ["EVAL insert"]
    assert await RedisUser.objects.filter(name="a").count() == 1
