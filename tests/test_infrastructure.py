"""The fixtures of conftest.py do what they promise. Tests run in file order."""

from __future__ import annotations

import subprocess
import sys

import pytest
import redis

import quantumorm

KEY = "qorm-test-infrastructure:left-behind"


def test_server_answers_ping(redis_client: redis.Redis, redis_url: str) -> None:
    assert redis_url.startswith(("redis://", "rediss://", "unix://"))
    assert redis_client.ping() is True


def test_tests_using_the_server_are_marked(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("redis") is None  # this one does not use it


def test_marker_added(request: pytest.FixtureRequest, redis_client: redis.Redis) -> None:
    assert request.node.get_closest_marker("redis") is not None


def test_conn_is_the_default_connection(conn: quantumorm.Connection, redis_url: str) -> None:
    assert quantumorm.get_connection() is conn
    assert quantumorm.get_connection("default") is conn
    assert conn.name == "default" and conn.kind == "redis" and conn.url == redis_url


def test_write_a_key(conn: quantumorm.Connection, redis_client: redis.Redis) -> None:
    redis_client.set(KEY, "1")
    assert redis_client.exists(KEY) == 1


def test_database_was_flushed(conn: quantumorm.Connection, redis_client: redis.Redis) -> None:
    # runs after test_write_a_key: conn flushed the database in between
    assert redis_client.exists(KEY) == 0
    assert redis_client.dbsize() == 0


def test_connections_are_closed_after_each_test() -> None:
    with pytest.raises(quantumorm.ConnectionNotFound):
        quantumorm.get_connection()


class Probe(quantumorm.Document):
    name = quantumorm.StringField(required=True)

    class Meta:
        collection = "infrastructure_probe"


def test_sync_round_trip(conn: quantumorm.Connection) -> None:
    saved = Probe(name="sync").save_sync()
    assert Probe.objects.get_sync(id=saved.id).name == "sync"


async def test_async_round_trip(conn: quantumorm.Connection) -> None:
    saved = await Probe(name="async").save()
    assert (await Probe.objects.get(id=saved.id)).name == "async"


def test_import_does_not_import_redis() -> None:
    code = ("import sys, quantumorm; "
            "print(sorted(m for m in sys.modules if m == 'redis' or m.startswith('redis.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stdout
