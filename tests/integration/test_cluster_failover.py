"""Failures on real deployments, by killing real processes: a cluster master ``kill -9``-ed
under concurrent writers, slots migrated under writers. Operations ride out the failover
with bounded backoff, no acknowledged write is lost, and no stale index entry is left
behind (Sentinel: test_sentinel.py)."""

from __future__ import annotations

from typing import Any

import redis
from failover_support import PATIENT, Ledger, connected, run_writers, verify

from quantumorm.backends.redis.keys import KeySpace


def test_a_cluster_master_killed_under_writers_loses_no_acknowledged_write(
        start_cluster: Any) -> None:
    # two replicas per master: after the failover the new master still has one to confirm
    # writes (wait_replicas=1), so durability holds and writes go on
    cluster = start_cluster(masters=3, replicas=2)
    victim = cluster.master_of(KeySpace(Ledger._meta).ids(0))
    with connected(cluster.url, **PATIENT):
        acked = run_writers(4.0, victim.kill, at=0.8)
        cluster.wait_healthy()
        assert victim not in cluster.masters_now()
        verify(redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.live()[0].port),
               acked)


def test_a_slot_migrated_under_writers_loses_nothing(start_cluster: Any) -> None:
    """Partition 0's slot moves to another master while writers use it: scripts meet
    TRYAGAIN (keys half moved), ASK and then MOVED, and are sent again only when the
    server says it did not run them."""
    cluster = start_cluster(masters=3, replicas=0)
    keys = KeySpace(Ledger._meta)
    source = cluster.master_of(keys.ids(0))
    target = next(n for n in cluster.masters_now() if n is not source)
    probe = cluster.live()[0].client()
    slot = probe.cluster("keyslot", keys.ids(0))
    probe.close()
    moved: list[int] = []
    with connected(cluster.url, retries=20):
        acked = run_writers(3.0, lambda: moved.append(cluster.migrate_slot(slot, target)),
                            at=0.8)
        assert cluster.master_of(keys.ids(0)) is target
        assert moved and moved[0] > 10  # the slot held documents, index and stream keys
        verify(redis.cluster.RedisCluster(host="127.0.0.1", port=target.port), acked)
