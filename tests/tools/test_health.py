"""``conn.ping()`` / ``conn.health()`` (and their ``_sync`` twins) and the readiness checks,
on every deployment kind: a server, a dead port, a Redis Cluster (every node), a Sentinel
group, SQLite and PostgreSQL; and ``quantumorm health`` on the cluster and SQL stores."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from cli_support import runner

import quantumorm
from quantumorm.errors import BackendConnectionError
from quantumorm.health import HealthReport, readiness, readiness_sync

DEAD = "redis://127.0.0.1:1/0"


async def test_ping_and_health_of_a_live_server(conn: quantumorm.Connection) -> None:
    assert await asyncio.to_thread(conn.ping_sync) > 0
    assert await conn.ping() > 0
    for report in (await asyncio.to_thread(conn.health_sync), await conn.health()):
        assert isinstance(report, HealthReport) and report.ok and report.reachable
        assert report.problems == () and report.warnings == ()
        (node,) = report.nodes
        assert node.role == "master" and node.error is None and node.version
        assert node.maxmemory_policy == "noeviction" and node.can_evict is False
        assert json.loads(json.dumps(report.to_dict()))["nodes"][0]["role"] == "master"
    for ok, report in (await readiness(conn), await asyncio.to_thread(readiness_sync, conn)):
        assert ok and report.ok and len(report.nodes) == 1


async def test_a_dead_server_raises_on_ping_and_health_but_not_on_readiness() -> None:
    dead = quantumorm.create_connection("redis", DEAD, name="dead")
    try:
        with pytest.raises(BackendConnectionError):
            await asyncio.to_thread(dead.ping_sync)
        with pytest.raises(BackendConnectionError):
            await dead.ping()
        with pytest.raises(BackendConnectionError):
            await asyncio.to_thread(dead.health_sync)
        with pytest.raises(BackendConnectionError):
            await dead.health()
        for ok, report in (await readiness(dead, timeout=5), readiness_sync(dead, timeout=5)):
            assert ok is False and report.reachable is False and report.nodes == ()
            assert report.problems[0].startswith("cannot reach the store")
            assert report.to_dict()["ok"] is False
    finally:
        await dead.aclose()
        dead.close()


async def test_health_of_every_cluster_node(cluster_conn: quantumorm.Connection,
                                            redis_cluster: Any) -> None:
    for report in (await asyncio.to_thread(cluster_conn.health_sync),
                   await cluster_conn.health()):
        assert report.ok, report
        assert len(report.nodes) == 6
        roles = sorted(node.role for node in report.nodes)
        assert roles == ["master"] * 3 + ["replica"] * 3
        assert {node.discovered for node in report.nodes} == {"cluster"}
        assert {node.cluster_state for node in report.nodes} == {"ok"}
        for node in report.nodes:
            if node.role == "replica":
                assert node.master_link_status == "up"
            else:
                assert node.connected_replicas == 1
        assert {node.address for node in report.nodes} == {
            f"127.0.0.1:{n.port}" for n in redis_cluster.nodes}
    assert await asyncio.to_thread(cluster_conn.ping_sync) > 0
    assert await cluster_conn.ping() > 0

    shown = runner(None, redis_cluster.url)("health", "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert len(json.loads(shown.stdout)["nodes"]) == 6


async def test_health_of_the_master_sentinel_names(start_sentinel: Any) -> None:
    group = start_sentinel(replicas=1)
    conn = quantumorm.create_connection("redis", group.url, name="watched")
    try:
        for report in (await asyncio.to_thread(conn.health_sync), await conn.health()):
            assert report.ok, report
            (node,) = report.nodes
            assert node.discovered == "sentinel" and node.role == "master"
            assert node.address == f"127.0.0.1:{group.master().port}"
            assert node.connected_replicas == 1
    finally:
        await conn.aclose()
        conn.close()


async def test_health_of_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    conn = quantumorm.create_connection("sqlite", url, name="lite")
    try:
        assert await asyncio.to_thread(conn.ping_sync) > 0 and await conn.ping() > 0
        for report in (await asyncio.to_thread(conn.health_sync), await conn.health()):
            assert report.ok and report.backend == "sqlite"
            (node,) = report.nodes
            assert node.role == "embedded" and node.journal_mode == "wal"
            assert node.address == str(tmp_path / "h.db") and node.version
    finally:
        await conn.aclose()
    shown = runner(None, url)("health", "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert json.loads(shown.stdout)["nodes"][0]["journal_mode"] == "wal"


async def test_health_of_postgres(postgres_url: str) -> None:
    conn = quantumorm.create_connection("postgres", postgres_url, name="pg-health")
    try:
        assert await asyncio.to_thread(conn.ping_sync) > 0 and await conn.ping() > 0
        for report in (await asyncio.to_thread(conn.health_sync), await conn.health()):
            assert report.ok and report.backend == "postgres"
            (node,) = report.nodes
            assert node.role == "primary" and node.in_recovery is False
            assert node.database and node.version
            password = urlsplit(postgres_url).password
            assert not password or password not in report.url
    finally:
        await conn.aclose()
    shown = runner(None, postgres_url)("health", "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert json.loads(shown.stdout)["nodes"][0]["in_recovery"] is False


async def test_a_dead_cluster_replica_is_a_warning_and_a_dead_master_a_problem(
        start_cluster: Any) -> None:
    cluster = start_cluster(masters=3, replicas=1)
    masters = cluster.masters_now()
    replica = next(node for node in cluster.nodes if node not in masters)
    conn = quantumorm.create_connection("redis", cluster.url, name="hurt",
                                        socket_timeout=1, connect_timeout=1)
    try:
        replica.kill()
        for report in (await asyncio.to_thread(conn.health_sync), await conn.health()):
            assert report.ok, report  # the application can go on: still ready
            (down,) = [node for node in report.nodes if node.error is not None]
            assert down.address == f"127.0.0.1:{replica.port}" and down.role == "replica"
            assert len(report.warnings) == 1 and str(replica.port) in report.warnings[0]
        masters[0].kill()
        report = await conn.health()
        assert not report.ok
        assert any(str(masters[0].port) in problem for problem in report.problems)
        ok, _ = await readiness(conn, timeout=10)
        assert ok is False
    finally:
        await conn.aclose()
        conn.close()


async def test_readiness_answers_within_its_timeout_when_the_server_hangs(
        start_redis: Any) -> None:
    url, _ = start_redis("--enable-debug-command", "yes")
    conn = quantumorm.create_connection("redis", url, name="hung")
    sleeper = redis.Redis.from_url(url)
    try:
        assert (await readiness(conn))[0]
        hang = asyncio.create_task(asyncio.to_thread(sleeper.execute_command, "DEBUG", "SLEEP",
                                                     "3"))
        while not (await asyncio.to_thread(_sleeping, url)):
            await asyncio.sleep(0.01)
        for ok, report in (await readiness(conn, timeout=0.2),
                           await asyncio.to_thread(readiness_sync, conn, 0.2)):
            assert ok is False and report.reachable is False
            assert report.problems == ("cannot reach the store: no answer within 0.2 s",)
        await hang
        # the probes cut short left no broken connection behind
        assert (await readiness(conn, timeout=5))[0]
        assert (await asyncio.to_thread(readiness_sync, conn, 5))[0]
    finally:
        sleeper.close()
        await conn.aclose()
        conn.close()


def _sleeping(url: str) -> bool:
    """Whether the server is busy in DEBUG SLEEP (a fresh connection's PING times out)."""
    probe = redis.Redis.from_url(url, socket_timeout=0.1)
    try:
        probe.ping()
        return False
    except redis.TimeoutError:
        return True
    finally:
        probe.close()
