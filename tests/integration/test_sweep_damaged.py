"""A write's bounded sweep (``sweep()`` in ``_prelude.lua``) runs after the write itself:
Redis does not roll a script back, so an error there would report an applied write as
failed, and again on every later write of the partition while the document stays due. A
due document whose meta hash does not read (a damaged list of entries, or a foreign type
at its key) is left where it is, scheduled, and the write reports its own outcome."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, call

from quantumorm import Document, IntField, sortable
from quantumorm.backends.redis.keys import KeySpace


class Timer(Document):
    n = IntField(indexed=True)

    class Meta:
        collection = "swd_timers"


def _damage(redis_client: Any, how: str) -> None:
    """Make ``h`` an expired document whose meta hash does not read, due for a sweep."""
    keys = KeySpace(Timer._meta)
    redis_client.zadd(keys.ttl(0), {sortable.id_key("h"): 1000})
    redis_client.delete(keys.doc(0, "h"))
    meta = keys.meta(0, "h")
    field = next(f for f in redis_client.hkeys(meta) if f.startswith(b"f:"))
    listed = redis_client.hget(meta, field)
    if how == "stray byte":
        redis_client.hset(meta, field, b"+" + listed)
    elif how == "cut short":
        redis_client.hset(meta, field, listed[:-1])
    else:  # "foreign type"
        redis_client.delete(meta)
        redis_client.set(meta, b"not ours")


@pytest.mark.parametrize("how", ["stray byte", "cut short", "foreign type"])
@pytest.mark.parametrize("mode", MODES)
async def test_writes_after_a_damaged_due_document_report_their_own_outcome(
        conn: Any, redis_client: Any, mode: str, how: str) -> None:
    for id, n in (("g", 1), ("h", 2), ("k", 3)):
        await call(Timer(id=id, n=n), "save", mode, ttl=60)
    _damage(redis_client, how)
    keys = KeySpace(Timer._meta)
    # a patch, a loaded save, an insert, a delete: each applied once, each reported so
    assert await call(Timer.objects.filter(id="g"), "update", mode, n=5) == 1
    k = await call(Timer.objects, "get", mode, id="k")
    k.n = 7
    await call(k, "save", mode)
    await call(Timer(id="z", n=9), "save", mode, ttl=60)
    assert await call(Timer.objects.filter(id="g"), "delete", mode) == 1
    stored = {d.id: d.n for d in await call(Timer.objects.filter(), "all", mode)}
    assert stored == {"k": 7, "z": 9}
    # the damaged one is left scheduled, its entries as they were, for repair()
    assert redis_client.zscore(keys.ttl(0), sortable.id_key("h")) == 1000
    (index,) = keys.indexes(0)
    assert [m for m in redis_client.zrange(index, 0, -1)
            if m.endswith(sortable.id_key("h"))] != []
