"""A two-phase commit's record (``{ns:2pc:txid}:r``) holding a field that does not read:

* its ``deadline`` ("+5", " 5", "1e3", text, none: ``tx_begin.lua`` writes plain digits): a
  transaction undecided cannot be decided by it, so a writer waiting on its lock, a
  settle and the sweeper raise :class:`DamagedTransactionError` naming the record and the
  field (never a ValueError from int(), a Lua error, nor a deadline read from the damage),
  with nothing changed; an abort needs no deadline; deleting the record aborts it;
* its ``state`` (none of pending, committed, aborted): settling it is refused the same
  way, before anything is applied or released (read as aborted, a committed
  transaction's locks would be released and the transaction lost).

The record is damaged by hand, after a client "died" in the commit (test_two_phase_commit).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from helpers import snapshot
from test_two_phase_commit import Entry, Purse, balances, die_after, spread_ids, transfer_tx

from quantumorm import DamagedMetaError, DamagedTransactionError

DEADLINE_DAMAGE = {"sign": b"+5", "blank": b" 5", "exponent": b"1e3", "text": b"soon",
                   "empty": b"", "none": None}


def _purses() -> list[str]:
    ids = spread_ids(2)
    for id in ids:
        Purse(id=id, owner=id, balance=100).save_sync()
    Entry(id="warm", note="warm").save_sync()
    return [ids[0], ids[2]]


def _record(redis_client: Any) -> str:
    (record,) = [k.decode() for k in redis_client.scan_iter("*2pc*:r")]
    return record


@pytest.mark.parametrize("how", DEADLINE_DAMAGE)
def test_an_undecided_transaction_with_a_damaged_deadline_is_refused_typed(
        conn: Any, redis_client: Any, how: str) -> None:
    pair = _purses()
    die_after(conn, transfer_tx(conn, pair, 10, 0.2), 2)  # prepared, undecided
    record = _record(redis_client)
    if DEADLINE_DAMAGE[how] is None:
        redis_client.hdel(record, "deadline")
    else:
        redis_client.hset(record, "deadline", DEADLINE_DAMAGE[how])
    time.sleep(0.3)  # (past the real deadline)
    before = snapshot(redis_client)
    doc = Purse.objects.get_sync(id=pair[1])
    doc.balance = 1
    for attempt in (doc.save_sync, lambda: conn.run(lambda b: conn.backend.settle(record, None))):
        with pytest.raises(DamagedTransactionError) as raised:
            attempt()
        assert isinstance(raised.value, DamagedMetaError)
        assert raised.value.key == record and raised.value.field == "deadline"
        assert snapshot(redis_client) == before  # (nothing decided, applied nor released)
    assert Purse.objects.sweep_sync() == 0  # (the sweeper logs it and goes on)
    assert snapshot(redis_client) == before
    redis_client.delete(record)  # a missing record counts as aborted
    doc.save_sync()
    assert balances(pair) == {pair[0]: 100, pair[1]: 1}


def test_a_committed_transaction_with_a_damaged_state_is_neither_applied_nor_released(
        conn: Any, redis_client: Any) -> None:
    pair = _purses()
    die_after(conn, transfer_tx(conn, pair, 10, 30.0), 3)  # committed, not applied
    record = _record(redis_client)
    redis_client.hset(record, "state", b"comitted")
    before = snapshot(redis_client)
    with pytest.raises(DamagedTransactionError) as raised:
        conn.run(lambda b: conn.backend.settle(record, None))
    assert raised.value.key == record and raised.value.field == "state"
    assert snapshot(redis_client) == before
    redis_client.hset(record, "state", b"committed")
    assert conn.run(lambda b: conn.backend.settle(record, None)) is True
    assert balances(pair) == {pair[0]: 90, pair[1]: 110}


@pytest.mark.parametrize("damage", [b"garbage", b"\x93\xa4call\xa1x", b"\x93\xa4call\xa19",
                                    b"\x90"])
def test_a_committed_transaction_with_a_damaged_intent_is_not_applied(
        conn: Any, redis_client: Any, damage: bytes) -> None:
    """An intent that does not unpack (its key count not a count, cut short, not
    MessagePack): the roll forward refuses before any intent is applied, naming it."""
    pair = _purses()
    die_after(conn, transfer_tx(conn, pair, 10, 30.0), 3)  # committed, not applied
    record = _record(redis_client)
    intent = sorted(k.decode() for k in redis_client.scan_iter("*}:2pc:*"))[0]
    redis_client.set(intent, damage)
    before = snapshot(redis_client)
    with pytest.raises(DamagedTransactionError) as raised:
        conn.run(lambda b: conn.backend.settle(record, None))
    assert raised.value.key == intent and raised.value.field == "intent"
    assert snapshot(redis_client) == before


def test_a_commit_that_meets_its_own_deadline_damaged_aborts_and_writes_nothing(
        conn: Any, redis_client: Any) -> None:
    """The record damaged between the prepare and the decision: the decision is refused
    (not an unknown outcome), the transaction aborted and released, nothing written."""
    from test_two_phase_commit import leftovers

    pair = _purses()
    tx = transfer_tx(conn, pair, 10, 30.0)
    op = tx._work.commit(conn.backend)
    executor = conn._store.sync_executor()
    plan = next(op)
    for _ in range(2):  # begin, prepare
        plan = op.send(executor.execute(plan))
    redis_client.hset(_record(redis_client), "deadline", b"+5")
    with pytest.raises(DamagedTransactionError) as raised:
        while True:  # (as engine.drive runs it: an error is thrown into the operation)
            try:
                replies = executor.execute(plan)
            except Exception as exc:
                plan = op.throw(exc)
            else:
                plan = op.send(replies)
    assert raised.value.field == "deadline"
    assert balances(pair) == dict.fromkeys(pair, 100)
    assert leftovers(redis_client) == {}
