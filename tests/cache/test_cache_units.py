"""The cache's pure parts, with no server: settings, key names, query keys, the breaker
and the bookkeeping of owed invalidations."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from cache_models import Account, Profile

from quantumorm.cache import queries, state
from quantumorm.cache.entries import CacheKeys, decode_entry, entry_value
from quantumorm.cache.settings import CacheMode, parse_cache
from quantumorm.errors import CorruptDocumentError
from quantumorm.query.lookups import Lookup
from quantumorm.query.nodes import Condition, QuerySpec


def test_settings_defaults_and_modes() -> None:
    settings = parse_cache("M.Meta", {"connection": "cache", "ttl": 2.5})
    assert settings is not None
    assert (settings.mode, settings.ttl_ms, settings.negative_ttl_ms, settings.partitions) == (
        CacheMode.ASIDE, 2500, None, 1)
    through = parse_cache("M.Meta", {"connection": "c", "ttl": 1, "mode": "write-through",
                                     "negative_ttl": 0.5})
    assert through is not None and through.mode is CacheMode.WRITE_THROUGH
    assert through.negative_ttl_ms == 500
    assert parse_cache("M.Meta", None) is None


def test_keys_share_a_hash_tag_per_partition_and_escape_ids() -> None:
    keys = CacheKeys(Account._meta)
    assert keys.entry("u1") == "{qorm:cache:accounts:0}:e:u1"
    assert keys.entry("a:{b}*") == "{qorm:cache:accounts:0}:e:a%3A%7Bb%7D%2A"
    assert keys.generation == "{qorm:cache:accounts:q}:g"
    assert keys.result("ab") == "{qorm:cache:accounts:q}:r:ab"
    spread = CacheKeys(Profile._meta)  # 4 partitions
    ids = [str(n) for n in range(40)]
    groups = spread.by_partition(ids)
    assert sorted(i for g in groups for i in g) == sorted(ids) and len(groups) == 4
    for group in groups:
        tags = {spread.entry(i).split("}")[0] for i in group}
        assert len(tags) == 1  # one script call per group: one slot


def test_entries_decode_to_the_primary_row() -> None:
    value = entry_value(42, b'{"email":"a@x","big":12345678901234567890123,"f":0.1}')
    row = decode_entry(Account._meta, "u1", value)
    assert (row.id, row.version) == ("u1", 42)
    assert row.data == {"email": "a@x", "big": 12345678901234567890123, "f": 0.1}
    with pytest.raises(CorruptDocumentError):
        decode_entry(Account._meta, "u1", b"E1:[1]")
    for damaged in (b"E+1:{}", b"E 1:{}", b"E1_0:{}", b"E:{}", b"Ex:{}", b"E1"):
        with pytest.raises(CorruptDocumentError):  # (int() read the first three)
            decode_entry(Account._meta, "u1", damaged)


def test_query_keys_are_canonical_and_refuse_unknown_values() -> None:
    when = datetime(2026, 1, 2, tzinfo=timezone.utc)
    a = QuerySpec(Condition("name", Lookup.IN, frozenset({"x", "y"})), limit=3)
    b = QuerySpec(Condition("name", Lookup.IN, frozenset({"y", "x"})), limit=3)
    assert queries.digest("rows", a) == queries.digest("rows", b)
    assert queries.digest("rows", a) != queries.digest("count", a)
    assert queries.digest("rows", QuerySpec(Condition("n", Lookup.EXACT, 1))) != (
        queries.digest("rows", QuerySpec(Condition("n", Lookup.EXACT, "1"))))
    assert queries.digest("rows", QuerySpec(Condition("n", Lookup.EXACT, Decimal("1")))) != (
        queries.digest("rows", QuerySpec(Condition("n", Lookup.EXACT, 1))))
    assert queries.digest("rows", QuerySpec(Condition("t", Lookup.GT, when))) is not None
    assert queries.digest("rows", QuerySpec(Condition("t", Lookup.EXACT, object()))) is None


def test_the_breaker_opens_half_opens_and_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(state.time, "monotonic", lambda: now[0])
    breaker = state.Breaker(threshold=2, cooldown=1.0)
    breaker.failure()
    assert breaker.allow()  # one failure: still closed
    breaker.failure()
    assert breaker.is_open and not breaker.allow()
    now[0] += 1.5
    assert breaker.allow()  # half-open: one probe
    assert not breaker.allow()  # and only one
    breaker.failure()  # the probe failed: open again
    assert not breaker.allow()
    now[0] += 1.5
    assert breaker.allow()
    breaker.success()
    assert not breaker.is_open and breaker.allow() and breaker.allow()


def test_a_probe_that_ends_without_a_verdict_lets_the_next_one_probe(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(state.time, "monotonic", lambda: now[0])
    breaker = state.Breaker(threshold=2, cooldown=1.0)
    breaker.failure()
    breaker.failure()
    now[0] += 1.5
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    breaker.abandon()  # the probe was cancelled: no success, no failure
    assert breaker.allow()  # never stuck half-open
    breaker.success()
    assert not breaker.is_open and breaker.allow()


def test_paying_a_snapshot_keeps_what_was_owed_since() -> None:
    server = state.ServerState()
    server.owe("c", ["a", "b"])
    snapshot = server.owed("c")
    assert snapshot is not None and set(snapshot.ids) == {"a", "b"} and snapshot.generation
    server.owe("c", ["b"])  # owed again while the first invalidation is in flight
    server.paid("c", snapshot)
    again = server.owed("c")
    assert again is not None and set(again.ids) == {"b"} and again.generation
    server.paid("c", again)
    assert server.owed("c") is None


def test_a_damaged_entry_is_owed_with_the_bytes_seen() -> None:
    server = state.ServerState()
    server.owe_damaged("c", {"a": b"Ex:{}", "b": b"E1"})
    snapshot = server.owed("c")
    assert snapshot is not None and not snapshot.ids and not snapshot.generation
    assert snapshot.expected() == {"a": b"Ex:{}", "b": b"E1"}
    server.owe("c", ["b"])  # a write's invalidation of b: whatever its slot holds
    server.owe_damaged("c", {"a": b"E+1:{}"})  # a seen damaged again, other bytes
    server.paid("c", snapshot)
    again = server.owed("c")
    assert again is not None and again.expected() == {"a": b"E+1:{}", "b": b""}
    server.paid("c", again)
    assert server.owed("c") is None


def test_too_many_owed_ids_drop_the_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "MAX_OWED_IDS", 3)
    server = state.ServerState()
    server.owe("c", ["1", "2", "3", "4"])
    snapshot = server.owed("c")
    assert snapshot is not None and snapshot.everything and not snapshot.ids
    server.paid("c", snapshot)
    assert server.owed("c") is None
    server.owe("d", ["1", "2", "3", "4"], can_drop=False)  # (a cluster: no SCAN to drop)
    kept = server.owed("d")
    assert kept is not None and not kept.everything and set(kept.ids) == {"1", "2", "3", "4"}


def test_importing_the_cache_imports_no_driver() -> None:
    code = ("import sys, quantumorm, quantumorm.cache.routing, quantumorm.cache.queries; "
            "assert 'redis' not in sys.modules and 'quantumorm.cache.redis_store' not in "
            "sys.modules, sorted(m for m in sys.modules if 'redis' in m)")
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ)


def test_a_damaged_entry_seen_while_a_drop_is_owed_forces_no_second_drop() -> None:
    server = state.ServerState()
    server.owe("c", [], everything=True)
    snapshot = server.owed("c")  # the drop under way
    assert snapshot is not None and snapshot.everything
    server.owe_damaged("c", {"a": b"Ex:{}"})  # seen while it runs: its SCAN may be past a
    server.paid("c", snapshot)
    again = server.owed("c")
    assert again is not None and not again.everything  # no second drop of everything
    assert again.expected() == {"a": b"Ex:{}"}  # but the damaged entry is still owed
    server.paid("c", again)
    assert server.owed("c") is None


def test_a_write_whose_finish_failed_is_owed_with_its_token() -> None:
    server = state.ServerState()
    server.owe("c", ["a", "b"], token="w1", versions={"a": 3, "b": 0})
    server.owe("c", ["c"])  # a write whose begin failed too: no token
    snapshot = server.owed("c")
    assert snapshot is not None
    assert snapshot.by_token() == {"w1": {"a": 3, "b": 0}}
    assert set(snapshot.ids) == {"c"} and snapshot.generation
    server.owe("c", ["a"], token="w2", versions={"a": 4})  # owed since: kept
    server.paid("c", snapshot)
    again = server.owed("c")
    assert again is not None and again.by_token() == {"w2": {"a": 4}}
    assert not again.ids and not again.generation
    server.paid("c", again)
    assert server.owed("c") is None
