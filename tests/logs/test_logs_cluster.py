"""What QuantumORM logs when a deployment changes under it: on a Redis Cluster whose slots
move, a plan sent with a stale slot map meets MOVED, is retried, and the map is learnt
again; under Sentinel, a failover names the old and the new master. Each is a WARNING."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from log_support import lines

import quantumorm
from cluster_support import wait_until
from quantumorm import Document, IntField
from quantumorm.backends.redis.keys import KeySpace


class Tick(Document):
    n = IntField(indexed=True)

    class Meta:
        namespace = "qlogs"
        collection = "ticks"


def test_a_moved_slot_logs_the_retry_and_the_slot_map_relearn(
        start_cluster: Any, caplog: pytest.LogCaptureFixture) -> None:
    cluster = start_cluster(masters=3, replicas=0)
    keys = KeySpace(Tick._meta)
    source = cluster.master_of(keys.ids(0))
    target = next(n for n in cluster.masters_now() if n is not source)
    probe = cluster.live()[0].client()
    slot = probe.cluster("keyslot", keys.ids(0))
    probe.close()
    quantumorm.create_connection(url=cluster.url, name="default", make_default=True)
    try:
        tick = Tick(n=1).save_sync()
        assert Tick.objects.filter(n=1).count_sync() == 1  # (the slot map is learnt)
        assert cluster.migrate_slot(slot, target) > 0
        caplog.set_level(logging.WARNING, logger="quantumorm")
        assert Tick.objects.filter(n=1).count_sync() == 1  # sent to the old owner first
        tick.n = 2
        tick.save_sync()
    finally:
        quantumorm.close_all()
    warnings = lines(caplog, "quantumorm.redis", logging.WARNING)
    assert warnings[0].startswith("retrying plan after MovedError attempt=2/")
    assert f"node=127.0.0.1:{source.port}" in warnings[0]
    assert warnings[1] == "relearning the cluster slot map after MovedError"
    assert len(warnings) == 2  # learnt once: the save went straight to the new owner


def role(node: Any) -> bytes:
    client = node.client()
    try:
        return bytes(client.execute_command("ROLE")[0])
    finally:
        client.close()


def test_a_sentinel_failover_logs_the_master_change(
        start_sentinel: Any, caplog: pytest.LogCaptureFixture) -> None:
    group = start_sentinel(replicas=1)
    old = group.master()
    # (wait_replicas: the document is on the replica before it is promoted)
    quantumorm.create_connection(url=group.url, name="default", make_default=True,
                                 retries=30, wait_replicas=1, wait_timeout=2)
    try:
        tick = Tick(n=1).save_sync()
        caplog.set_level(logging.WARNING, logger="quantumorm")
        probe = group.sentinels[0].client()
        try:
            probe.execute_command("SENTINEL", "FAILOVER", group.service)
        finally:
            probe.close()
        wait_until(lambda: group.master() is not old, 30, "the failover")
        new = group.master()
        wait_until(lambda: role(old) == b"slave", 30, "the old master to follow the new")
        tick.n = 2
        tick.save_sync()  # the old master refuses (read-only), the new one takes it
        assert Tick.objects.get_sync(id=tick.id).n == 2
    finally:
        quantumorm.close_all()
    changes = [line for line in lines(caplog, "quantumorm.redis", logging.WARNING)
               if line.startswith("sentinel master changed")]
    assert changes == [f"sentinel master changed service={group.service} "
                       f"from=127.0.0.1:{old.port} to=127.0.0.1:{new.port}"]
