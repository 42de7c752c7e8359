"""``conn.ping()`` / ``conn.health()`` (and their ``_sync`` twins) and the readiness checks,
on every deployment kind: a server, a dead port, a Redis Cluster (every node), a Sentinel
group, SQLite and PostgreSQL; and ``quantumorm health`` on the cluster and SQL stores."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from cli_support import runner
from processes import stop_process

import quantumorm
from quantumorm.backends.postgres import health as postgres_health
from quantumorm.backends.redis.health import cluster_listing
from quantumorm.errors import BackendConnectionError
from quantumorm.health import PROBE_TIMEOUT, HealthReport, NodeHealth, readiness, readiness_sync
from quantumorm.health import report as health_report

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


async def test_an_unreachable_sentinel_is_said_shortly() -> None:
    dead = quantumorm.create_connection("redis", "redis+sentinel://127.0.0.1:1/mymaster/0",
                                        name="dead-sentinel", connect_timeout=2)
    try:
        for ok, report in (await readiness(dead, timeout=10),
                           await asyncio.to_thread(readiness_sync, dead, 10)):
            assert ok is False and report.reachable is False
            (problem,) = report.problems
            assert "MasterNotFoundError: No master found for 'mymaster'" in problem, problem
            assert "<redis." not in problem and "ConnectionPool" not in problem
            assert len(problem) < 300, problem
    finally:
        await dead.aclose()
        dead.close()


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
        # within a readiness check the probe runs under a statement_timeout (SET LOCAL):
        # the check's own, and only in the probe's transaction
        for ok, report in (await readiness(conn, timeout=5),
                           await asyncio.to_thread(readiness_sync, conn, 5)):
            assert ok and report.nodes[0].role == "primary", report
        assert _statement_timeout(conn) == "0"
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


async def test_after_a_failover_the_old_master_the_cluster_still_lists_is_a_warning(
        start_cluster: Any) -> None:
    cluster = start_cluster(masters=3, replicas=1)
    cluster.wait_replicated()
    conn = quantumorm.create_connection("redis", cluster.url, name="failed-over",
                                        socket_timeout=1, connect_timeout=1)
    try:
        old = cluster.masters_now()[0]
        old.kill()
        cluster.wait_healthy(timeout=60)  # the replica took over; cluster_state ok again
        for report in (await asyncio.to_thread(conn.health_sync), await conn.health()):
            assert report.ok, report
            assert (await readiness(conn, timeout=10))[0]
            (dead,) = [node for node in report.nodes if node.error is not None]
            assert dead.address == f"127.0.0.1:{old.port}" and dead.role == "master"
            assert dead.failing and dead.slots == 0
            assert any(str(old.port) in warning for warning in report.warnings)
            serving = [node for node in report.nodes if node.error is None
                       and node.role == "master"]
            assert len(serving) == 3 and sum(node.slots or 0 for node in serving) == 16384
            assert {node.cluster_state for node in serving} == {"ok"}
        shown = runner(None, cluster.url)("health", "--json", "--timeout", "1")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert json.loads(shown.stdout)["ok"] is True
    finally:
        await conn.aclose()
        conn.close()


def test_the_cluster_listing_keeps_flags_and_slots() -> None:
    listing = cluster_listing(
        "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 [42->-b2]\n"
        "b2 127.0.0.1:7001@17001 master,fail - 0 0 2 disconnected\n"
        "c3 127.0.0.1:7002@17002 master - 0 0 3 connected 5461-16382 16383\n"
        "d4 127.0.0.1:7003@17003 slave a1 0 0 1 connected\n"
        "e5 :0@0 master,noaddr - 0 0 4 disconnected\n")
    assert [(n.port, n.role, n.flags, n.slots) for n in listing] == [
        (7000, "master", ("master",), 5461), (7001, "master", ("master", "fail"), 0),
        (7002, "master", ("master",), 10923), (7003, "replica", ("slave",), 0)]
    # what a report makes of it: the failed node without slots is a warning; a listed
    # master with slots that does not answer leaves them without a live owner
    dead = NodeHealth("127.0.0.1:7001", "master", "cluster", error="refused",
                      flags=("master", "fail"), slots=0)
    live = [NodeHealth(f"127.0.0.1:{port}", "master", "cluster", cluster_state="ok",
                       flags=("master",), slots=slots) for port, slots in
            ((7000, 5461), (7002, 10923))]
    found = health_report("redis", "redis+cluster://x", [*live, dead])
    assert found.ok and len(found.warnings) == 1 and "7001" in found.warnings[0]
    hung = NodeHealth("127.0.0.1:7002", "master", "cluster", error="timed out",
                      flags=("master", "pfail"), slots=10923)
    found = health_report("redis", "redis+cluster://x", [live[0], hung])
    assert not found.ok and found.problems == (
        "10923 of the cluster's 16384 slots have no live master (listed as served by "
        "127.0.0.1:7002, down)",)


async def test_readiness_answers_within_its_timeout_when_the_server_hangs(
        start_redis: Any) -> None:
    url, _ = start_redis()
    conn = quantumorm.create_connection("redis", url, name="hung")  # (no socket timeout)
    admin = redis.Redis.from_url(url)
    pid = int(admin.info("server")["process_id"])
    try:
        assert (await readiness(conn))[0]
        assert (await asyncio.to_thread(readiness_sync, conn, 5))[0]
        stop_process(pid)  # the server takes connections but answers nothing until SIGCONT
        for ok, report in (await readiness(conn, timeout=0.2),
                           await asyncio.to_thread(readiness_sync, conn, 0.2)):
            assert ok is False and report.reachable is False
            assert report.problems == ("cannot reach the store: no answer within 0.2 s",)
        # the blocking probe is still waiting: the next checks start no other one
        for _ in range(3):
            ok, report = await asyncio.to_thread(readiness_sync, conn, 0.2)
            assert ok is False and len(report.problems) == 1
            assert "the previous readiness probe has had no answer" in report.problems[0]
        assert [t.name for t in threading.enumerate()].count("qorm-readiness") == 1
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        # the probe left running ends once the server answers; the probes cut short left no
        # broken connection behind
        for _ in range(100):
            if not any(t.name == "qorm-readiness" for t in threading.enumerate()):
                break
            await asyncio.sleep(0.05)
        assert (await readiness(conn, timeout=5))[0]
        assert (await asyncio.to_thread(readiness_sync, conn, 5))[0]
    finally:
        admin.close()
        await conn.aclose()
        conn.close()


def _statement_timeout(conn: quantumorm.Connection) -> str:
    """The session's statement_timeout on a pooled connection of ``conn`` (after a probe:
    SET LOCAL must not have outlived its transaction)."""
    pool = conn.store.sync_executor().pools()[0]
    with pool.connection() as raw:
        row = raw.execute("SHOW statement_timeout").fetchone()
    assert row is not None
    return str(row[0])


def test_the_postgres_probe_of_a_readiness_check_sets_a_statement_timeout() -> None:
    plain = postgres_health.probe()
    assert [s.sql for s in next(plain).groups[0]][0].startswith("SELECT")
    plain.close()
    token = PROBE_TIMEOUT.set(0.25)
    try:
        bounded = postgres_health.probe()
        (statements,) = next(bounded).groups
        assert statements[0].sql == "SET LOCAL statement_timeout = 250"
        assert statements[1].sql.startswith("SELECT") and len(statements) == 2
        bounded.close()
    finally:
        PROBE_TIMEOUT.reset(token)
