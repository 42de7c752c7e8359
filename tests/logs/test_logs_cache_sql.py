"""What the cache and the SQL backends log: a refused (stale) cache fill, the circuit
breaker opening and closing, schemas created and evolved on SQLite and PostgreSQL, and the
plans of SQL connections at DEBUG, without values."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from log_support import debug_everywhere, everything, lines, wait_for

import postgres_support
import quantumorm
from quantumorm import Document, IntField, StringField
from quantumorm.cache import state
from quantumorm.cache.dispatch import Pause, ToCache

SECRET = "s3cr3t-value"


class Pet(Document):
    name = StringField(indexed=True)
    n = IntField(default=0)

    class Meta:
        backend = "sqlite"
        collection = "log_pets"
        cache = {"connection": "logcache", "ttl": 300}


class Plant(Document):
    name = StringField(indexed=True)

    class Meta:
        backend = "postgres"
        namespace = "qlogs"
        collection = "log_plants"


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[quantumorm.Connection]:
    state._servers.clear()
    connection = quantumorm.create_connection(backend="sqlite", url=f"sqlite:///{tmp_path}/p.db",
                                              name="sqlite", make_default=True)
    try:
        yield connection
    finally:
        state._servers.clear()
        quantumorm.close_all()


def _cache(url: str) -> quantumorm.Connection:
    return quantumorm.create_connection(backend="redis", url=url, name="logcache", retries=1,
                                        connect_timeout=1, socket_timeout=2)


def _nothing_listening() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_a_fill_that_started_before_a_write_is_refused_and_logged(
        primary: Any, redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A reader misses and reads v1 from the primary; a writer commits v2 (a tombstone
    in the cache); the reader's fill of v1 is refused, with a WARNING."""
    raw = redis.Redis.from_url(redis_url)
    raw.flushdb()
    raw.close()
    cache = _cache(redis_url)
    pet = Pet(name="v1").save_sync()
    connection = Pet._connection()
    executor = connection.store.sync_executor()
    op = connection.backend.get_many(Pet._meta, [pet.id])
    plan = next(op)
    while isinstance(plan, (ToCache, Pause)):  # the cache's steps: a miss, the lease taken
        plan = op.send(executor.execute(plan))
    v1 = executor.execute(plan)  # v1 read from the primary (not handed back yet)
    pet.name = "v2"
    pet.save_sync()
    caplog.set_level(logging.WARNING, logger="quantumorm")
    try:
        plan = op.send(v1)
        while True:
            plan = op.send(executor.execute(plan))
    except StopIteration as done:
        (row,) = done.value
    assert row.data["name"] == "v1"  # (read before the write: it may see v1; not cache it)
    assert Pet.objects.cache_stats().refused_fills == 1
    assert lines(caplog, "quantumorm.cache", logging.WARNING) == [
        "cache fill refused: a write began or finished meanwhile model=Pet refused=1 "
        "filled=0"]
    cache.close()


def test_the_breaker_opening_on_a_cache_that_is_down_is_logged(
        primary: Any, caplog: pytest.LogCaptureFixture) -> None:
    url = _nothing_listening()
    _cache(url)
    pet = Pet(name="a").save_sync()
    caplog.set_level(logging.WARNING, logger="quantumorm")
    for _ in range(state.THRESHOLD + 2):  # the primary answers; the cache is skipped soon
        assert Pet.objects.get_sync(id=pet.id).name == "a"
    failed = f"cache operation failed model=Pet error=BackendConnectionError server={url}"
    assert lines(caplog, "quantumorm.cache", logging.WARNING) == [failed] * state.THRESHOLD + [
        f"cache circuit breaker opened server={url} failures={state.THRESHOLD} "
        f"cooldown_s={state.COOLDOWN} probe_failed=False"]


def test_the_breaker_logs_a_failed_probe_and_closing_with_a_redacted_url(
        caplog: pytest.LogCaptureFixture) -> None:
    breaker = state.ServerState("redis://u:pw-secret@127.0.0.1:1/0").breaker
    breaker.cooldown = 0.0  # (the probe may go at once)
    caplog.set_level(logging.WARNING, logger="quantumorm.cache")
    breaker.failure()
    breaker.failure()  # opened
    assert breaker.allow()  # the probe
    breaker.failure()  # it failed: opened again
    assert breaker.allow()
    breaker.success()  # closed
    breaker.success()  # (closed already: nothing)
    server = "redis://u:***@127.0.0.1:1/0"
    assert lines(caplog, "quantumorm.cache") == [
        f"cache circuit breaker opened server={server} failures=2 cooldown_s=0.0 "
        "probe_failed=False",
        f"cache circuit breaker opened server={server} failures=3 cooldown_s=0.0 "
        "probe_failed=True",
        f"cache circuit breaker closed server={server}"]
    assert "pw-secret" not in everything(caplog)


def test_sqlite_logs_its_schema_and_its_plans_without_values(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    debug_everywhere(caplog)
    quantumorm.create_connection(backend="sqlite", url=url, name="sqlite", make_default=True)
    try:
        Plain = _plain("sqlite")
        doc = Plain(name=SECRET).save_sync()
        assert Plain.objects.filter(name=SECRET).count_sync() == 1
        assert Plain.objects.get_sync(id=doc.id).name == SECRET
    finally:
        quantumorm.close_all()
    infos = lines(caplog, "quantumorm", logging.INFO)
    assert infos[0] == f"connection opened name=sqlite backend=sqlite url={url}"
    assert infos[1].startswith("schema created model=Plain backend=sqlite layout=")
    assert infos[-1] == f"connection closed name=sqlite backend=sqlite url={url}"
    plans = lines(caplog, "quantumorm.sqlite", logging.DEBUG)
    assert any(p.startswith("plan op=save statements=") and "INSERT" in p for p in plans), plans
    assert SECRET not in everything(caplog)


def test_postgres_logs_its_schema_and_its_plans_without_values(
        postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    postgres_support.reset(postgres_url)
    debug_everywhere(caplog)
    quantumorm.create_connection(backend="postgres", url=postgres_url, name="postgres",
                                 make_default=True)
    try:
        doc = Plant(name=SECRET).save_sync()
        assert Plant.objects.filter(name=SECRET).count_sync() == 1
        assert Plant.objects.get_sync(id=doc.id).name == SECRET
    finally:
        quantumorm.close_all()
    infos = lines(caplog, "quantumorm", logging.INFO)
    assert any(i.startswith("schema created model=Plant backend=postgres layout=")
               for i in infos), infos
    plans = lines(caplog, "quantumorm.postgres", logging.DEBUG)
    assert any(p.startswith("plan op=save statements=") for p in plans), plans
    assert SECRET not in everything(caplog)


def _plain(backend: str) -> Any:
    meta = type("Meta", (), {"backend": backend, "collection": "log_plain"})
    return type("Plain", (Document,), {"__module__": __name__,
                                       "name": StringField(indexed=True), "Meta": meta})


def test_a_postgres_serialization_retry_logs_a_warning_with_the_attempt(
        postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Another transaction updates the row while QuantumORM's write waits for its lock:
    the write's SERIALIZABLE transaction fails to serialize, and runs again."""
    postgres_support.reset(postgres_url)
    quantumorm.create_connection(backend="postgres", url=postgres_url, name="postgres",
                                 make_default=True)
    other = psycopg.connect(postgres_url, autocommit=True)
    watcher = psycopg.connect(postgres_url, autocommit=True)
    try:
        plant = Plant(name="a").save_sync()
        other.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        other.execute('UPDATE "qlogs:log_plants" SET id_key = id_key')  # (a new row version)
        caplog.set_level(logging.WARNING, logger="quantumorm")
        plant.name = "b"
        errors: list[BaseException] = []

        def save() -> None:
            try:
                plant.save_sync()
            except BaseException as exc:  # reported below
                errors.append(exc)

        writer = threading.Thread(target=save)
        writer.start()
        wait_for(lambda: watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ).fetchone()[0], "the write to wait for the row lock")
        other.execute("COMMIT")
        writer.join(30)
        assert errors == []
        assert Plant.objects.get_sync(id=plant.id).name == "b"
    finally:
        other.close()
        watcher.close()
        quantumorm.close_all()
    (line,) = lines(caplog, "quantumorm.postgres", logging.WARNING)
    assert line.startswith("retrying transaction after SerializationFailure attempt=2/100 "
                           "wait_ms=")
