"""A cache entry that does not read (its version not plain digits as ``entry_value`` writes
it, no header, its JSON not an object), in Redis in front of SQLite: never served (the
cache protocol's promise, docs/caching.md: a read is never older than a completed write,
and a damaged entry may hold anything), nor a bare ValueError. The read goes to the primary
(counted as bypassed, logged), the slot is tombstoned before this process reads the cache
again, and the next read misses and fills it afresh."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from cache_models import Account

from quantumorm.cache.entries import CacheKeys

STALE = b'{"email":"a@x","name":"OLD","balance":0}'
DAMAGE = {
    "sign": lambda v: b"E+%d:" % v + STALE,
    "blank": lambda v: b"E %d:" % v + STALE,
    "underscore": lambda v: b"E1_%d:" % v + STALE,
    "text": lambda v: b"Ex:" + STALE,
    "leading zero": lambda v: b"E0%d:" % v + STALE,
    "zero": lambda v: b"E0:" + STALE,
    "no header": lambda v: b"E%d" % v,
    "json not an object": lambda v: b"E%d:[1]" % v,
}


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_entry_is_read_from_the_primary_and_refilled(
        cached: dict[str, Any], how: str, caplog: pytest.LogCaptureFixture) -> None:
    raw = cached["raw"]
    a = Account(email="a@x", name="A").save_sync()
    key = CacheKeys(Account._meta).entry(a.id)
    Account.objects.get_sync(id=a.id)  # a miss, filled
    good = raw.get(key)
    assert good.startswith(b"E%d:" % a.version)
    raw.set(key, DAMAGE[how](a.version), px=300_000)
    before = Account.objects.cache_stats()
    with caplog.at_level(logging.WARNING):
        got = Account.objects.get_sync(id=a.id)
    assert (got.name, got.version) == ("A", a.version)  # the primary's, not the entry's
    assert "damaged cache entries" in caplog.text
    after = Account.objects.cache_stats()
    assert (after.hits, after.bypassed, after.fills) == (
        before.hits, before.bypassed + 1, before.fills)
    many = Account.objects.get_many_sync([a.id])  # (the owed tombstone first: a miss)
    assert many[0] is not None and many[0].name == "A"
    assert raw.get(key) == good  # filled afresh
    assert Account.objects.get_sync(id=a.id).name == "A"  # a hit
    final = Account.objects.cache_stats()
    assert (final.fills, final.hits) == (after.fills + 1, after.hits + 1)
