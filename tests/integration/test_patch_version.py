"""The version a patch (``patch.lua``, ``filter(id=x).update(...)``) takes: the clock's next
value, clock + 1, when the partition's clock is there and the patch neither sets an expiry
nor has a schedule to sweep (no TIME read); else max(clock + 1, the time), as every write.
Either way above every version the id was ever given: after a clock behind the document's
own version (a restored state hash) and after the loss of the state key."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from helpers import MODES, call

from quantumorm import Document, IntField, StringField
from quantumorm.backends.redis.keys import KeySpace


class Dial(Document):
    name = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "pv_dials"


class Lapse(Document):
    n = IntField(indexed=True)

    class Meta:
        collection = "pv_lapses"
        ttl = 60


def server_us(redis_client: redis.Redis) -> int:
    seconds, micros = redis_client.time()
    return int(seconds) * 1_000_000 + int(micros)


def version(redis_client: redis.Redis, id: str) -> int:
    return int(redis_client.hget(KeySpace(Dial._meta).meta(0, id), "v"))


def texts(redis_client: redis.Redis, id: str) -> tuple[bytes, bytes, bytes, bytes]:
    """The version as the meta hash, the document key's prefix, the last change event and
    the state's clock hold it."""
    ks = KeySpace(Dial._meta)
    stored = redis_client.get(ks.doc(0, id))
    assert stored is not None and stored[:1] == b"\0"
    (_, fields), = redis_client.xrevrange(ks.changes(0), count=1)
    return (redis_client.hget(ks.meta(0, id), "v"), stored[1:stored.index(b"\0", 1)],
            fields[b"v"], redis_client.hget(ks.state(0), "clock"))


@pytest.mark.parametrize("mode", MODES)
async def test_a_patch_takes_the_next_value_of_the_clock(
        conn: Any, redis_client: redis.Redis, mode: str) -> None:
    await call(Dial(id="a", name="x", n=1), "save", mode)
    state = KeySpace(Dial._meta).state(0)
    # (a clock a little past the document's version, behind the server's time by then)
    clock = version(redis_client, "a") + 5
    redis_client.hset(state, "clock", str(clock))
    time.sleep(0.01)
    assert server_us(redis_client) > clock + 1
    assert await call(Dial.objects.filter(id="a"), "update", mode, n=2) == 1
    assert version(redis_client, "a") == clock + 1
    assert texts(redis_client, "a") == (str(clock + 1).encode(),) * 4
    stored = redis_client.get(KeySpace(Dial._meta).doc(0, "a"))
    assert stored is not None and b'"n":2' in stored


@pytest.mark.parametrize("case", ["clock behind", "clock lost", "clock damaged",
                                  "version damaged"])
def test_a_patch_stays_above_every_version_of_the_id(
        conn: Any, redis_client: redis.Redis, case: str) -> None:
    doc = Dial(id="a", name="x", n=1)
    doc.save_sync()
    ks = KeySpace(Dial._meta)
    before = version(redis_client, "a")
    if case == "clock behind":  # (a restored state hash: TIME, as every write)
        redis_client.hset(ks.state(0), "clock", "1000")
    elif case == "clock lost":
        redis_client.delete(ks.state(0))
    elif case == "clock damaged":
        redis_client.hset(ks.state(0), "clock", "1e3")
    elif case == "version damaged":
        redis_client.hset(ks.meta(0, "a"), "v", "x")
    time.sleep(0.002)
    start = server_us(redis_client)
    assert Dial.objects.filter(id="a").update_sync(n=2) == 1
    after = version(redis_client, "a")
    assert after > before and after >= start  # (the time was read: TIME's version)
    assert texts(redis_client, "a") == (str(after).encode(),) * 4
    # and the next patch, with the clock whole again, takes its next value
    assert Dial.objects.filter(id="a").update_sync(n=3) == 1
    assert version(redis_client, "a") == after + 1


def test_a_patch_that_sets_an_expiry_reads_the_time(conn: Any, redis_client: redis.Redis) -> None:
    Lapse(id="a", n=1).save_sync()
    ks = KeySpace(Lapse._meta)
    clock = int(redis_client.hget(ks.meta(0, "a"), "v")) + 5
    redis_client.hset(ks.state(0), "clock", str(clock))
    time.sleep(0.01)
    start = server_us(redis_client)
    assert Lapse.objects.filter(id="a").update_sync(n=2) == 1
    after = int(redis_client.hget(ks.meta(0, "a"), "v"))
    assert after >= start > clock + 1
    assert 0 < redis_client.pttl(ks.doc(0, "a")) <= 60_000
