"""Failures on real deployments, by killing real processes: a cluster master ``kill -9``-ed
under concurrent writers, slots migrated under writers. Operations ride out the failover
with bounded backoff, no acknowledged write is lost, and no stale index entry is left
behind (Sentinel: test_sentinel.py)."""

from __future__ import annotations

from typing import Any

import redis
from failover_support import PATIENT, Ledger, run_writers, verify

import quantumorm
from quantumorm.backends.redis.keys import KeySpace


def test_a_cluster_master_killed_under_writers_loses_no_acknowledged_write(
        start_cluster: Any) -> None:
    # two replicas per master: after the failover the new master still has one to confirm
    # writes (wait_replicas=1), so durability holds and writes go on
    cluster = start_cluster(masters=3, replicas=2)
    quantumorm.create_connection(url=cluster.url, name="default", make_default=True,
                                 **PATIENT)
    victim = cluster.master_of(KeySpace(Ledger._meta).ids(0))
    try:
        acked = run_writers(4.0, victim.kill, at=0.8)
        cluster.wait_healthy()
        assert victim not in cluster.masters_now()
        raw = redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.live()[0].port)
        try:
            verify(raw, acked)
        finally:
            raw.close()
    finally:
        quantumorm.close_all()


def test_a_slot_migrated_under_writers_loses_nothing(start_cluster: Any) -> None:
    """Partition 0's slot moves to another master while writers use it: scripts meet
    TRYAGAIN (keys half moved), ASK and then MOVED, and are sent again only when the
    server says it did not run them."""
    cluster = start_cluster(masters=3, replicas=0)
    quantumorm.create_connection(url=cluster.url, name="default", make_default=True,
                                 retries=20)
    keys = KeySpace(Ledger._meta)
    source = cluster.master_of(keys.ids(0))
    target = next(n for n in cluster.masters_now() if n is not source)
    probe = cluster.live()[0].client()
    slot = probe.cluster("keyslot", keys.ids(0))
    probe.close()
    moved: list[int] = []
    try:
        acked = run_writers(3.0, lambda: moved.append(cluster.migrate_slot(slot, target)),
                            at=0.8)
        assert cluster.master_of(keys.ids(0)) is target
        assert moved and moved[0] > 10  # the slot held documents, index and stream keys
        raw = redis.cluster.RedisCluster(host="127.0.0.1", port=target.port)
        try:
            verify(raw, acked)
        finally:
            raw.close()
    finally:
        quantumorm.close_all()
