"""A two-phase commit's record whose ``parts`` does not read, registry entries naming no
transaction of the namespace, and what the sweeper logs of those it cannot settle.

* ``parts`` (``tx_begin.lua`` stores a MessagePack array of an even number of UTF-8 key
  names: each partition's lock hash and intent key): a settle, a reader or a writer
  meeting the transaction's locks and the sweeper used to stop on a bare ValueError or
  TypeError (``wire.unpack``, ``bytes(None)``), which escaped ``sweep()`` itself; it is
  refused now with :class:`DamagedTransactionError` (field "parts") before anything is
  decided, applied or released, and the sweeper passes over it.
* a registry entry that is not a record key of the namespace (another namespace's, or
  none): ``settle()`` took it for a transaction of another registry, removed nothing from
  this one and counted it as settled, so that a sweep's worth of them (SWEEP_BATCH)
  starved every sweep of the due transactions behind them. The sweep removes them now,
  counts and logs them, and does not count them as settled.
* one WARNING per sweep, however many it left (each one met is a DEBUG line).

The record is damaged by hand, after a client "died" in the commit (test_two_phase_commit).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from helpers import snapshot
from test_damaged_transaction import _purses, _record
from test_two_phase_commit import Entry, Purse, balances, die_after, spread_ids, transfer_tx

from quantumorm import DamagedTransactionError
from quantumorm.backends.redis import twophase, wire
from quantumorm.backends.redis.keys import KeySpace

PARTS_DAMAGE = {"not msgpack": b"garbage", "none": None, "odd": wire.pack([b"a:locks"]),
                "not utf-8": wire.pack([b"\xff:locks", b"\xff:2pc:x"]),
                "a number in it": b"\x92\x01\x02", "a map": b"\x81\xa1a\xa1b", "empty": b""}


@pytest.mark.parametrize("state", ["committed", "pending"])
@pytest.mark.parametrize("how", PARTS_DAMAGE)
def test_a_transaction_whose_parts_do_not_read_is_refused_typed(
        conn: Any, redis_client: Any, how: str, state: str) -> None:
    pair = _purses()
    loaded = Purse.objects.get_sync(id=pair[1])
    # committed, not applied; or prepared and undecided, its deadline passed
    die_after(conn, transfer_tx(conn, pair, 10, 30.0 if state == "committed" else 0.01),
              3 if state == "committed" else 2)
    record = _record(redis_client)
    assert redis_client.hget(record, "state").decode() == state
    good = redis_client.hget(record, "parts")
    if PARTS_DAMAGE[how] is None:
        redis_client.hdel(record, "parts")
    else:
        redis_client.hset(record, "parts", PARTS_DAMAGE[how])
    before = snapshot(redis_client)
    with pytest.raises(DamagedTransactionError) as raised:
        conn.run(lambda b: conn.backend.settle(record, None))
    assert raised.value.key == record and raised.value.field == "parts"
    assert snapshot(redis_client) == before  # (nothing decided, applied nor released)
    if state == "committed":
        with pytest.raises(DamagedTransactionError):  # (a reader, which applies it first)
            Purse.objects.get_sync(id=pair[1])
    loaded.balance = 1
    with pytest.raises(DamagedTransactionError):  # (a writer meeting its locks)
        loaded.save_sync()
    assert snapshot(redis_client) == before
    assert Purse.objects.sweep_sync() == 0  # (passed over, not stopped on)
    assert snapshot(redis_client) == before
    redis_client.hset(record, "parts", good)  # put back: any settle finishes it
    assert conn.run(lambda b: conn.backend.settle(record, None)) is True
    expected = {pair[0]: 90, pair[1]: 110} if state == "committed" else dict.fromkeys(pair, 100)
    assert balances(pair) == expected


def _healthy(conn: Any, redis_client: Any, registry: str, score: int) -> tuple[list[str], str]:
    """A committed and applied transaction whose client died before forgetting it, due in
    the registry at ``score``."""
    ids = spread_ids(2)
    for id in ids:
        Purse(id=id, owner=id, balance=100).save_sync()
    Entry(id="warm", note="warm").save_sync()
    healthy = [ids[1], ids[3]]
    before = {k.decode() for k in redis_client.scan_iter("*2pc*:r")}
    die_after(conn, transfer_tx(conn, healthy, 7, 30.0), 4)  # begin, prepare, commit, apply
    (record,) = {k.decode() for k in redis_client.scan_iter("*2pc*:r")} - before
    redis_client.zadd(registry, {record: score})
    return healthy, record


def test_a_sweep_removes_registry_entries_of_no_transaction_of_it(
        conn: Any, redis_client: Any, caplog: Any) -> None:
    """A sweep's worth of entries naming no transaction of the namespace, due before a
    healthy transaction: the sweep removes them (not counted as settled), settles the
    healthy one, and says so once."""
    keys = KeySpace(Purse._meta)
    registry = twophase.registry_key(keys.namespace)
    foreign = [f"{{other:2pc:x{n}}}:r" for n in range(twophase.SWEEP_BATCH - 2)]
    foreign += [f"{{{keys.namespace}:2pc:}}:r", "not a record key"]
    redis_client.zadd(registry, {f: 1 + n for n, f in enumerate(foreign)})
    healthy, record = _healthy(conn, redis_client, registry, 10_000)
    with caplog.at_level(logging.DEBUG, logger="quantumorm.redis"):
        Purse.objects.sweep_sync()
    assert not redis_client.exists(record)  # (settled: forgotten)
    assert balances(healthy) == {healthy[0]: 93, healthy[1]: 107}
    assert redis_client.zcard(registry) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"removed {len(foreign)} entries" in warnings[0]
    assert sum("removed" in r.getMessage() for r in caplog.records
               if r.levelno == logging.DEBUG) == len(foreign)


def test_a_sweep_logs_one_warning_however_many_it_left(
        conn: Any, redis_client: Any, caplog: Any) -> None:
    """Twelve committed transactions whose intent does not read: one WARNING per sweep
    (their count and first ten keys), each one met a DEBUG line."""
    keys = KeySpace(Purse._meta)
    registry = twophase.registry_key(keys.namespace)
    locks = twophase.locks_key(keys.tag(0))
    damaged = []
    for n in range(12):
        record = twophase.record_key(keys.namespace, f"bad{n:02d}")
        intent = twophase.intent_key(locks, record)
        redis_client.hset(record, mapping={"state": "committed", "deadline": "1",
                                           "parts": wire.pack([locks.encode(), intent.encode()])})
        redis_client.set(intent, b"garbage")
        redis_client.zadd(registry, {record: 1 + n})
        damaged.append(record)
    healthy, record = _healthy(conn, redis_client, registry, 10_000)
    for sweep in range(2):
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="quantumorm.redis"):
            Purse.objects.sweep_sync()
        assert not redis_client.exists(record)  # (settled by the first)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "left 12 transactions" in warnings[0]
        assert ", ".join(damaged[:10]) + " ..." in warnings[0]
        met = [r for r in caplog.records if r.levelno == logging.DEBUG
               and "could not settle" in r.getMessage()]
        assert len(met) == 12
    assert balances(healthy) == {healthy[0]: 93, healthy[1]: 107}
    assert all(redis_client.zscore(registry, r) is not None for r in damaged)
