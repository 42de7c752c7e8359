"""A write lost with a failed-over primary must not give its version again.

A primary that fails before its last writes reach the replica leaves the promoted replica
with the state hash, document and meta hash (format 2's; a format-3 document without an
expiry has none) as they were before those writes. An instance
loaded from a lost write holds its version; the next write on the replica must take a
version above it, or that instance's compare-and-set would pass against another document.
Versions are max(clock + 1, the server's time in µs) for that reason (the clock alone, being
behind, would give the lost version again). The failover is simulated on one server: the
keys are put back (DUMP/RESTORE) as they were before the lost write."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from helpers import MODES, assert_indexes_consistent, call

from quantumorm import Document, IntField, StringField, VersionConflict
from quantumorm.backends.redis.keys import KeySpace


class Gauge(Document):
    name = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "lw_gauges"


def snapshot(redis_client: redis.Redis, keys: list[str]) -> dict[str, bytes | None]:
    """The keys' dumps (None: the key does not exist)."""
    return {key: redis_client.dump(key) for key in keys}  # type: ignore[misc]


def put_back(redis_client: redis.Redis, dumps: dict[str, bytes | None]) -> None:
    for key, dumped in dumps.items():
        if dumped is None:
            redis_client.delete(key)
        else:
            redis_client.restore(key, 0, dumped, replace=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("second", ["patch", "save"])
@pytest.mark.parametrize("form", ["2", "3"])
async def test_a_write_after_lost_writes_takes_a_new_version(
        conn: Any, redis_client: redis.Redis, request: Any, mode: str, second: str,
        form: str) -> None:
    if form == "2":
        request.getfixturevalue("format2_writes")
    await call(Gauge(id="g", name="x", n=1), "save", mode)
    ks = KeySpace(Gauge._meta)
    keys = [ks.state(0), ks.doc(0, "g"), ks.meta(0, "g"), ks.index(0, "n")]
    before = snapshot(redis_client, keys)
    assert redis_client.get(ks.doc(0, "g"))[:1] == (b"\0" if form == "2" else b"\x01")
    assert all(before[key] for key in keys if key != ks.meta(0, "g"))
    assert (before[ks.meta(0, "g")] is None) == (form == "3")
    # the write the failover loses, and an instance loaded from it
    assert await call(Gauge.objects.filter(id="g"), "update", mode, n=2) == 1
    stale = await call(Gauge.objects, "get", mode, id="g")
    assert stale.n == 2
    put_back(redis_client, before)  # the promoted replica's keys
    if second == "patch":
        assert await call(Gauge.objects.filter(id="g"), "update", mode, n=3) == 1
    else:
        doc = await call(Gauge.objects, "get", mode, id="g")
        assert doc.n == 1
        doc.n = 3
        await call(doc, "save", mode)
    current = await call(Gauge.objects, "get", mode, id="g")
    assert current.n == 3 and current._version != stale._version
    stale.name = "y"
    with pytest.raises(VersionConflict):
        await call(stale, "save", mode)
    assert (await call(Gauge.objects, "get", mode, id="g")).n == 3
    assert_indexes_consistent(redis_client, Gauge)
