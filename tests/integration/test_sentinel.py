"""Sentinel-managed Redis: the client finds the master through the Sentinels, reads may go
to replicas, and writers ride out a failover (master ``kill -9``) without losing an
acknowledged write."""

from __future__ import annotations

from typing import Any

import pytest
from cluster_support import wait_until
from failover_support import PATIENT, connected, run_writers, verify
from helpers import MODES, call

import quantumorm
from quantumorm import ConfigurationError, Document, IntField, StringField


class Note(Document):
    title = StringField(indexed=True)
    n = IntField(indexed=True, default=0)

    class Meta:
        collection = "sn_notes"


def commandstat(node: Any, command: str) -> int:
    client = node.client()
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.mark.parametrize("mode", MODES)
async def test_models_work_through_sentinel_and_read_from_the_replica(
        start_sentinel: Any, mode: str) -> None:
    group = start_sentinel(replicas=1)
    master, replica = group.master(), next(n for n in group.nodes if n is not group.master())
    quantumorm.create_connection(url=group.url, name="default", make_default=True,
                                 read_from_replicas=True, wait_replicas=1)
    try:
        await call(Note.objects, "bulk_create", mode,
                   [Note(id=f"n{i}", title="t", n=i) for i in range(10)])
        doc = await call(Note.objects, "get", mode, id="n3")  # from the replica
        doc.n = 30
        await call(doc, "save", mode)  # to the master, confirmed by the replica (WAIT)
        assert await call(Note.objects.filter(n__gte=9), "count", mode) == 2
        # (EVALSHA, or FCALL with scripts="functions")
        assert commandstat(replica, "evalsha_ro") + commandstat(replica, "fcall_ro") > 0
        assert commandstat(master, "evalsha_ro") + commandstat(master, "fcall_ro") == 0
        assert commandstat(master, "evalsha") + commandstat(master, "fcall") > 0  # writes
    finally:
        await quantumorm.aclose_all()
        quantumorm.close_all()


def test_sentinel_urls_are_checked() -> None:
    for url in ("redis+sentinel://127.0.0.1:1", "redis+sentinel://127.0.0.1:1/a/b/c",
                "redis+sentinel://127.0.0.1:x/svc", "redis+sentinel:///svc",
                "redis+cluster://127.0.0.1:1/3", "redis+sentinel://127.0.0.1:1/svc/x"):
        with pytest.raises(ConfigurationError):
            quantumorm.create_connection(url=url, name="bad")
    with pytest.raises(ConfigurationError, match="read_from_replicas"):
        quantumorm.create_connection(url="redis://127.0.0.1:1/0", name="bad",
                                     read_from_replicas=True)


def test_a_sentinel_failover_under_writers_loses_no_acknowledged_write(
        start_sentinel: Any) -> None:
    group = start_sentinel(replicas=2)
    old = group.master()
    with connected(group.url, **PATIENT):
        acked = run_writers(4.0, old.kill, at=0.8)
        # The Sentinels promote a replica, in their own time: down-after 500 ms, then a
        # vote and an election that a loaded machine can stretch past the writers' 3.2 s
        # (a CI run saw it; the writers' retries outlast it).
        wait_until(lambda: group.master() is not old, 30, "the Sentinels to promote a replica")
        verify(group.master().client(), acked)
