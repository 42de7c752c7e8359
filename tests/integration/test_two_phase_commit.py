"""Transactions across partitions and models on Redis: the two-phase commit
(``backends/redis/twophase.py``), and its recovery when the client stops at any phase.

A client "dies" here by abandoning the commit operation after its k-th round trip (the
phases: begin, prepare, commit, apply, finish): what it left is then met by writers,
readers, other transactions and the sweeper, which settle it by its record alone.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from helpers import assert_indexes_consistent

import quantumorm
from quantumorm import (
    Document,
    IntField,
    StringField,
    TransactionError,
    VersionConflict,
    sortable,
)
from quantumorm.backends.redis import replies, stored, twophase, wire
from quantumorm.backends.redis.acl import acl_rule
from quantumorm.backends.redis.commands import Call, RedisPlan, Replies
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.engine import ops
from quantumorm.errors import (
    BackendConnectionError,
    BulkWriteError,
    CorruptDocumentError,
    DamagedMetaError,
    DocumentLocked,
    TransactionCommitted,
    TransactionsUnsettled,
    WriteOutcomeUnknown,
)
from quantumorm.transaction import SyncTransaction

PHASES = ("begin", "prepare", "commit", "apply", "finish")


class Purse(Document):
    owner = StringField(indexed=True)
    balance = IntField(indexed=True, default=0)

    class Meta:
        collection = "tpc_purses"
        partitions = 4


class Entry(Document):
    note = StringField(indexed=True)
    amount = IntField(default=0)

    class Meta:
        collection = "tpc_entries"


class Tagged(Document):
    email = StringField(unique=True)

    class Meta:
        collection = "tpc_tagged"


def spread_ids(count: int) -> list[str]:
    """``count`` ids per partition of Purse, in partition order."""
    keys = KeySpace(Purse._meta)
    found: dict[int, list[str]] = {p: [] for p in range(Purse._meta.partitions)}
    n = 0
    while min(len(v) for v in found.values()) < count:
        id = f"p{n}"
        if len(found[keys.partition_of(id)]) < count:
            found[keys.partition_of(id)].append(id)
        n += 1
    return [id for p in sorted(found) for id in found[p]]


def leftovers(client: Any) -> dict[str, Any]:
    """Locks, intents, records and registry entries of two-phase commits still stored."""
    out: dict[str, Any] = {}
    for key in client.scan_iter(match="*"):
        name = key.decode()
        if name.endswith(":locks") or ":2pc" in name:
            kind = client.type(key).decode()
            out[name] = (client.hgetall(key) if kind == "hash" else
                         client.zrange(key, 0, -1) if kind == "zset" else client.get(key))
    # an intent that was applied stays a while, holding the versions it wrote
    return {k: v for k, v in out.items()
            if not (isinstance(v, bytes) and b"\xa7applied" in v[:12])}


def balances(ids: list[str]) -> dict[str, int]:
    return {p.id: p.balance for p in Purse.objects.filter(id__in=ids).all_sync()}


def transfer_tx(conn: Any, ids: list[str], amount: int, timeout: float) -> SyncTransaction:
    """A transaction (not committed) moving ``amount`` from ids[0] to each other id."""
    tx = conn.transaction_sync(timeout=timeout)
    first = tx.get(Purse, ids[0])
    first.balance -= amount * (len(ids) - 1)
    tx.save(first)
    for id in ids[1:]:
        other = tx.get(Purse, id)
        other.balance += amount
        tx.save(other)
    tx.save(Entry(id=f"e-{ids[0]}-{amount}", note="transfer", amount=amount))
    return tx


def up_to_apply(conn: Any, tx: SyncTransaction) -> tuple[Any, Any, Any]:
    """Step ``tx``'s commit through begin, prepare and the decision: ``(op, the apply's
    plan, not sent yet, the executor)``, to run the rest by hand."""
    op = tx._work.commit(conn.backend)
    executor = conn._store.sync_executor()
    plan = next(op)
    for _ in range(3):  # begin, prepare, commit
        plan = op.send(executor.execute(plan))
    return op, plan, executor


def die_after(conn: Any, tx: SyncTransaction, round_trips: int) -> None:
    """Commit ``tx`` but stop after ``round_trips`` round trips of its commit, as a client
    killed there would (nothing after it is sent)."""
    work = tx._work
    op = work.commit(conn.backend)
    executor = conn._store.sync_executor()
    plan = next(op)
    for _ in range(round_trips):
        plan = op.send(executor.execute(plan))
    op.close()


@pytest.fixture
def purses(conn: Any) -> list[str]:
    ids = spread_ids(2)
    for id in ids:
        Purse(id=id, owner=id, balance=100).save_sync()
    Entry(id="warm", note="warm").save_sync()  # (schemas read: no extra round trips later)
    return ids


def test_a_first_commit_on_a_flushed_script_cache_loads_every_script_once(
        conn: Any, purses: list[str], redis_client: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    """The record's and registry's scripts are loaded with the others at the first NOSCRIPT
    (they were not: each of them met its own NOSCRIPT, loaded every script again, and ran
    inline)."""
    redis_client.script_flush()
    redis_client.function_flush()  # (with scripts="functions")
    with caplog.at_level("INFO", logger="quantumorm.redis"):
        transfer_tx(conn, purses[:4], 1, 5.0).commit()
    loads = [r for r in caplog.records if "NOSCRIPT" in r.getMessage()]
    assert len(loads) == 1, [r.getMessage() for r in loads]
    assert balances(purses[:4])[purses[0]] == 97


def test_commit_across_partitions_and_models(conn: Any, purses: list[str],
                                             redis_client: Any) -> None:
    ids = [purses[0], purses[2], purses[4], purses[6]]  # one per partition
    assert len({KeySpace(Purse._meta).partition_of(i) for i in ids}) == 4
    transfer_tx(conn, ids, 10, 5.0).commit()
    assert balances(ids) == {ids[0]: 70, ids[1]: 110, ids[2]: 110, ids[3]: 110}
    assert Entry.objects.get_sync(id=f"e-{ids[0]}-10").amount == 10
    assert Purse.objects.filter(balance=110).count_sync() == 3  # indexes follow
    assert leftovers(redis_client) == {}
    assert_indexes_consistent(redis_client, Purse)
    assert Purse.objects.verify_sync().ok and Entry.objects.verify_sync().ok


def test_versions_after_commit_are_the_stored_ones(conn: Any, purses: list[str]) -> None:
    tx = conn.transaction_sync()
    a, b = tx.get(Purse, purses[0]), tx.get(Purse, purses[2])
    a.balance, b.balance = 1, 2
    tx.save(a)
    tx.save(b)
    tx.commit()
    assert a.version == Purse.objects.get_sync(id=purses[0]).version
    a.balance = 5
    a.save_sync()  # (compare-and-set on the version the commit reported)
    assert Purse.objects.get_sync(id=purses[0]).balance == 5


def test_a_conflict_aborts_every_partition(conn: Any, purses: list[str],
                                           redis_client: Any) -> None:
    ids = [purses[0], purses[2], purses[4]]
    tx = transfer_tx(conn, ids, 10, 5.0)
    other = Purse.objects.get_sync(id=ids[2])
    other.balance = 1
    other.save_sync()  # a document the transaction read changes before its commit
    with pytest.raises(VersionConflict):
        tx.commit()
    assert balances(ids) == {ids[0]: 100, ids[1]: 100, ids[2]: 1}
    assert not Entry.objects.filter(note="transfer").exists_sync()
    assert leftovers(redis_client) == {}


def test_a_document_read_only_is_checked_and_locked(conn: Any, purses: list[str]) -> None:
    tx = conn.transaction_sync()
    tx.get(Purse, purses[0])  # read, not written: its version is checked at commit
    b = tx.get(Purse, purses[2])
    b.balance = 0
    tx.save(b)
    moved = Purse.objects.get_sync(id=purses[0])
    moved.balance = 7
    moved.save_sync()
    with pytest.raises(VersionConflict):
        tx.commit()
    assert balances([purses[2]]) == {purses[2]: 100}


def test_models_with_unique_indexes_stay_on_the_fast_path(conn: Any,
                                                          purses: list[str]) -> None:
    tx = conn.transaction_sync()
    tx.save(Tagged(id="t", email="t@x"))
    a = tx.get(Purse, purses[0])
    a.balance = 3
    tx.save(a)
    with pytest.raises(TransactionError, match="unique"):
        tx.commit()
    assert Purse.objects.get_sync(id=purses[0]).balance == 100
    with conn.transaction_sync() as alone:  # one partition of one model: one script
        alone.save(Tagged(id="t", email="t@x"))
    assert Tagged.objects.get_sync(id="t").email == "t@x"
    with conn.transaction_sync() as both:  # read and deleted, not written: two phases
        tagged = both.get(Tagged, "t")
        a = both.get(Purse, purses[0])
        a.balance = 4
        both.save(a)
        both.delete(tagged)
    assert Purse.objects.get_sync(id=purses[0]).balance == 4
    assert not Tagged.objects.filter(id="t").exists_sync()


def test_abort_releases_everything(conn: Any, purses: list[str], redis_client: Any) -> None:
    tx = transfer_tx(conn, [purses[0], purses[2]], 10, 5.0)
    tx.rollback()
    assert balances([purses[0], purses[2]]) == {purses[0]: 100, purses[2]: 100}
    die_after(conn, transfer_tx(conn, [purses[0], purses[2]], 10, 5.0), 2)  # prepared
    (record,) = [k for k in leftovers(redis_client) if k.endswith(":r")]
    backend = conn.backend
    op = backend._finish(record, twophase.registry_key("qorm"),
                         redis_client.hget(record, "parts"), "abort")
    conn.run(lambda b: op)
    assert leftovers(redis_client) == {}
    assert balances([purses[0], purses[2]]) == {purses[0]: 100, purses[2]: 100}


@pytest.mark.parametrize("round_trips", [1, 2, 3, 4])
def test_a_client_dying_at_each_phase_is_settled_by_the_sweeper(
        conn: Any, purses: list[str], redis_client: Any, round_trips: int) -> None:
    ids = [purses[0], purses[2], purses[4]]
    die_after(conn, transfer_tx(conn, ids, 10, 0.3), round_trips)
    committed = round_trips >= 3  # the commit round trip is the decision
    assert leftovers(redis_client)  # something is left: a record, locks or intents
    time.sleep(0.4)  # past the deadline
    Purse.objects.sweep_sync()
    assert leftovers(redis_client) == {}
    expected = {ids[0]: 80, ids[1]: 110, ids[2]: 110} if committed else dict.fromkeys(ids, 100)
    assert balances(ids) == expected
    assert Entry.objects.filter(note="transfer").exists_sync() is committed
    assert_indexes_consistent(redis_client, Purse)
    assert Purse.objects.verify_sync().ok


def test_a_writer_meeting_a_pending_lock(conn: Any, purses: list[str],
                                         redis_client: Any) -> None:
    ids = [purses[0], purses[2]]
    die_after(conn, transfer_tx(conn, ids, 10, 0.5), 2)  # prepared, undecided
    doc = Purse.objects.get_sync(id=ids[1])
    assert doc.balance == 100  # a reader sees the value from before: nothing decided
    doc.balance = 1
    with pytest.raises(DocumentLocked) as locked:
        doc.save_sync()
    assert isinstance(locked.value, VersionConflict)  # (retried like any conflict)
    with pytest.raises(DocumentLocked):
        doc.delete_sync()
    with pytest.raises(DocumentLocked):  # a new document the transaction inserts
        Entry(id=f"e-{ids[0]}-10", note="mine").save_sync()
    with pytest.raises(BulkWriteError) as bulk:
        Entry.objects.bulk_create_sync([Entry(id=f"e-{ids[0]}-10", note="mine")])
    assert isinstance(bulk.value.errors[0][1], DocumentLocked)
    # past the deadline, the writer aborts it (by its record) and goes ahead
    time.sleep(0.6)
    doc.save_sync()
    assert balances(ids) == {ids[0]: 100, ids[1]: 1}  # nothing of the transaction
    assert leftovers(redis_client) == {}


def test_a_reader_meeting_a_committed_unapplied_transaction_sees_it(
        conn: Any, purses: list[str], redis_client: Any) -> None:
    ids = [purses[0], purses[2], purses[4]]
    die_after(conn, transfer_tx(conn, ids, 10, 30.0), 3)  # committed, not applied
    flags = [k for k in redis_client.scan_iter(match="*:locked")]
    assert len(flags) == 4  # (three purse partitions and the entries')
    # a read by id meets a lock flag: the transaction is applied first, the read sees it
    assert Purse.objects.get_sync(id=ids[1]).balance == 110
    assert balances(ids) == {ids[0]: 80, ids[1]: 110, ids[2]: 110}  # every partition
    assert Entry.objects.get_sync(id=f"e-{ids[0]}-10").amount == 10
    assert leftovers(redis_client) == {}
    assert list(redis_client.scan_iter(match="*:locked")) == []  # (flags go with locks)


def test_a_reader_meeting_an_undecided_transaction_sees_the_old_values(
        conn: Any, purses: list[str], redis_client: Any) -> None:
    ids = [purses[0], purses[2]]
    die_after(conn, transfer_tx(conn, ids, 10, 30.0), 2)  # prepared, undecided
    assert balances(ids) == dict.fromkeys(ids, 100)
    assert Purse.objects.get_sync(id=ids[0]).balance == 100
    assert Purse.objects.filter(balance=100).count_sync() == len(purses)  # (indexes too)
    assert leftovers(redis_client)  # nothing settled: its client may still commit it


def test_a_writer_meeting_a_committed_unapplied_transaction_rolls_it_forward(
        conn: Any, purses: list[str], redis_client: Any) -> None:
    ids = [purses[0], purses[2], purses[4]]
    stale = Purse.objects.get_sync(id=ids[1])
    die_after(conn, transfer_tx(conn, ids, 10, 30.0), 3)  # committed, not applied
    stale.balance = 0  # (no read in between: the writer is the first to meet it)
    with pytest.raises(VersionConflict) as refused:  # applied first: the write was stale
        stale.save_sync()
    assert not isinstance(refused.value, DocumentLocked)
    assert balances(ids) == {ids[0]: 80, ids[1]: 110, ids[2]: 110}  # every partition
    assert Entry.objects.get_sync(id=f"e-{ids[0]}-10") is not None
    assert leftovers(redis_client) == {}


def test_a_writer_meeting_an_aborted_or_forgotten_transaction_releases_it(
        conn: Any, purses: list[str], redis_client: Any) -> None:
    ids = [purses[0], purses[2]]
    die_after(conn, transfer_tx(conn, ids, 10, 30.0), 2)  # prepared
    (record,) = [k for k in leftovers(redis_client) if k.endswith(":r")]
    redis_client.hset(record, "state", "aborted")  # decided, not released
    doc = Purse.objects.get_sync(id=ids[0])
    doc.balance = 5
    doc.save_sync()
    assert leftovers(redis_client) == {}
    die_after(conn, transfer_tx(conn, ids, 10, 30.0), 2)  # prepared again
    (record,) = [k for k in leftovers(redis_client) if k.endswith(":r")]
    redis_client.delete(record)  # lost (a failover without replication): counts as aborted
    doc = Purse.objects.get_sync(id=ids[1])
    doc.balance = 6
    doc.save_sync()
    assert balances(ids) == {ids[0]: 5, ids[1]: 6}
    # the other partition's lock is released by whoever meets it, or by the sweeper
    doc = Purse.objects.get_sync(id=ids[0])
    doc.balance = 7
    doc.save_sync()
    # the entry's partition: nobody meets its lock; the sweeper finds it (its record gone)
    Entry.objects.sweep_sync()
    assert leftovers(redis_client) == {k: v for k, v in leftovers(redis_client).items()
                                       if k.endswith(":open")}  # (its deadline is not due)
    assert not Entry.objects.filter(id=f"e-{ids[0]}-10").exists_sync()


def test_a_transaction_meeting_another_s_lock(conn: Any, purses: list[str],
                                              redis_client: Any) -> None:
    ids = [purses[0], purses[2]]
    die_after(conn, transfer_tx(conn, ids, 10, 0.3), 2)  # prepared, undecided
    with pytest.raises(DocumentLocked):
        transfer_tx(conn, ids, 5, 5.0).commit()
    with pytest.raises(DocumentLocked):  # the one-script path meets it too
        with conn.transaction_sync() as tx:
            doc = tx.get(Purse, ids[0])
            doc.balance = 0
            tx.save(doc)
    time.sleep(0.4)
    # run_transaction retries; the expired holder is aborted by the first retry's prepare
    conn.run_transaction_sync(lambda tx: transfer_tx_body(tx, ids, 5), attempts=5)
    assert balances(ids) == {ids[0]: 95, ids[1]: 105}
    assert leftovers(redis_client) == {}


def transfer_tx_body(tx: Any, ids: list[str], amount: int) -> None:
    a, b = tx.get(Purse, ids[0]), tx.get(Purse, ids[1])
    a.balance -= amount
    b.balance += amount
    tx.save(a)
    tx.save(b)


def test_apply_is_idempotent(conn: Any, purses: list[str], redis_client: Any) -> None:
    ids = [purses[0], purses[2]]
    die_after(conn, transfer_tx(conn, ids, 10, 30.0), 3)  # committed, not applied
    (record,) = [k for k in leftovers(redis_client) if k.endswith(":r")]
    intents = {k: v for k, v in leftovers(redis_client).items() if ":2pc:" in k
               and not k.endswith(":r") and not k.endswith(":open")}
    assert len(intents) == 3  # (two purses and the entry)
    backend = conn.backend
    assert conn.run(lambda b: backend.settle(record, None)) is True  # applied
    after = balances(ids)
    versions = {i: Purse.objects.get_sync(id=i).version for i in ids}
    assert conn.run(lambda b: backend.settle(record, None)) is True  # (the record is gone)
    for blob in intents.values():  # each intent sent again: nothing applied twice
        flat = wire.unpack(blob)
        count = int(flat[1])
        call = Call("tx", tuple(k.decode() for k in flat[2:2 + count]),
                    tuple(flat[2 + count:]))
        (raw,) = conn.run(lambda b, call=call: _send(call))
        reply = replies.tx_reply(raw)
        assert reply.status == "DONE" and reply.applied  # (the versions it wrote)
    assert balances(ids) == after == {ids[0]: 90, ids[1]: 110}
    assert {i: Purse.objects.get_sync(id=i).version for i in ids} == versions


def _send(call: Call) -> Any:
    return (yield RedisPlan((call,), idempotent=True))


def test_a_transaction_past_its_deadline_at_commit_writes_nothing(
        conn: Any, purses: list[str], redis_client: Any, monkeypatch: Any) -> None:
    ids = [purses[0], purses[2]]
    tx = transfer_tx(conn, ids, 10, 0.05)
    real = conn.backend._two_phase

    def slow(shares: Any, timeout: float) -> Any:
        op = real(shares, timeout)
        plan = next(op)
        reply = yield plan  # begin
        plan = op.send(reply)
        reply = yield plan  # prepare
        time.sleep(0.1)  # the client stalls past its deadline before the commit
        plan = op.send(reply)
        while True:
            reply = yield plan
            try:
                plan = op.send(reply)
            except StopIteration as stop:
                return stop.value

    monkeypatch.setattr(conn.backend, "_two_phase", slow)
    with pytest.raises(TransactionError, match="deadline"):
        tx.commit()
    assert balances(ids) == dict.fromkeys(ids, 100)
    assert leftovers(redis_client) == {}


async def test_async_transactions_across_partitions(conn: Any, purses: list[str]) -> None:
    async with quantumorm.get_connection().transaction() as tx:
        a = await tx.get(Purse, purses[1])
        b = await tx.get(Purse, purses[3])
        assert a is not None and b is not None
        a.balance -= 1
        b.balance += 1
        tx.save(a)
        tx.save(b)
        tx.save(Entry(id="async", note="async"))
    got = {p.id: p.balance for p in await Purse.objects.filter(id__in=purses[1:4:2]).all()}
    assert got == {purses[1]: 99, purses[3]: 101}


def test_field_updates_meeting_locks(conn: Any, purses: list[str], redis_client: Any) -> None:
    ids = [purses[0], purses[2]]
    die_after(conn, transfer_tx(conn, ids, 10, 30.0), 3)  # committed, not applied
    # a field update without a read first rolls it forward, then applies on top
    assert Purse.objects.filter(id=ids[1]).update_sync(owner="zed") == 1
    assert balances(ids) == {ids[0]: 90, ids[1]: 110}
    assert Purse.objects.get_sync(id=ids[1]).owner == "zed"
    die_after(conn, transfer_tx(conn, ids, 5, 0.3), 2)  # prepared, undecided
    # waits for the holder's deadline, aborts it, then writes
    assert Purse.objects.filter(id=ids[1]).update_sync(owner="amy") == 1
    assert Purse.objects.get_sync(id=ids[1]).owner == "amy"
    assert balances(ids) == {ids[0]: 90, ids[1]: 110}


@pytest.mark.parametrize("undecided", [True, False])
def test_updates_and_deletes_where_wait_for_locks(conn: Any, purses: list[str],
                                                  redis_client: Any, undecided: bool) -> None:
    """A document locked by another transaction is neither skipped nor counted as deleted:
    the bulk write waits for its holder (an undecided one until its deadline, then
    aborted; a committed one rolled forward) and writes it."""
    ids = [purses[0], purses[2], purses[4]]
    rounds = 2 if undecided else 3  # prepared (undecided) or committed, not applied
    after = {ids[0]: 100, ids[1]: 100} if undecided else {ids[0]: 90, ids[1]: 110}
    die_after(conn, transfer_tx(conn, ids[:2], 10, 0.3), rounds)
    assert Purse.objects.filter(id__in=ids).update_sync(inc__balance=1) == 3
    assert balances(ids) == {**{k: v + 1 for k, v in after.items()}, ids[2]: 101}
    die_after(conn, transfer_tx(conn, ids[:2], 10, 0.3), rounds)
    assert Purse.objects.filter(id__in=ids, balance__gte=0).update_sync(balance=7) == 3
    assert balances(ids) == dict.fromkeys(ids, 7)
    die_after(conn, transfer_tx(conn, ids[:2], 1, 0.3), rounds)
    assert Purse.objects.filter(id__in=ids, balance__gte=0).delete_sync() == 3
    assert balances(ids) == {}
    for id in ids:
        Purse(id=id, owner=id, balance=100).save_sync()
    die_after(conn, transfer_tx(conn, ids[:2], 1, 0.3), rounds)
    assert Purse.objects.filter(id__in=ids).delete_sync() == 3
    assert balances(ids) == {}
    assert leftovers(redis_client) == {}


def test_a_writer_with_a_clock_ahead_waits_for_the_server_s_deadline(
        conn: Any, purses: list[str], redis_client: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The wait for an undecided holder gives up by the server's time, which its deadline
    is in: a client whose clock is ahead of the server's still waits for the deadline
    (then the holder is aborted, and the update written), instead of giving up at once."""
    ids = [purses[0], purses[2]]
    die_after(conn, transfer_tx(conn, ids, 10, 0.5), 2)  # prepared, undecided
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 5.0)  # (this client 5 s ahead)
    assert Purse.objects.filter(id__in=ids).update_sync(inc__balance=1) == 2
    assert balances(ids) == dict.fromkeys(ids, 101)
    assert leftovers(redis_client) == {}


def test_the_sweeper_releases_every_partition_of_a_forgotten_transaction(
        conn: Any, purses: list[str], redis_client: Any) -> None:
    ids = [purses[0], purses[2], purses[4]]
    die_after(conn, transfer_tx(conn, ids, 10, 0.3), 2)  # prepared in three partitions
    (record,) = [k for k in leftovers(redis_client) if k.endswith(":r")]
    redis_client.delete(record)  # lost; its registry entry is still there
    time.sleep(0.4)  # (the registry entry is due)
    Purse.objects.sweep_sync()  # every lock of this model's partitions
    Entry.objects.sweep_sync()  # and of the other model's
    assert leftovers(redis_client) == {}
    assert balances(ids) == dict.fromkeys(ids, 100)


def test_a_committed_transaction_is_applied_over_a_document_that_expired(
        conn: Any, purses: list[str], redis_client: Any) -> None:
    """After the decision, the apply refuses nothing: a document that expired between the
    commit and the apply stays gone (an update of it does nothing, as a plain save would
    fail; it does not come back without an expiry), a
    delete of one that expired does nothing; the sweeper settles it."""
    ids = [purses[0], purses[2], purses[4]]
    for id in ids[1:]:
        assert Purse.objects.get_sync(id=id).touch_sync(0.2)
    tx = conn.transaction_sync(timeout=30.0)
    first = tx.get(Purse, ids[0])
    first.balance -= 10
    tx.save(first)
    other = tx.get(Purse, ids[1])
    other.balance += 10
    tx.save(other)
    tx.delete(tx.get(Purse, ids[2]))
    die_after(conn, tx, 3)  # committed, not applied
    time.sleep(0.3)  # (both expired, locked)
    assert Purse.objects.sweep_sync() >= 0  # purges nothing locked; settles the transaction
    assert balances(ids) == {ids[0]: 90}
    assert leftovers(redis_client) == {}
    assert not redis_client.exists(KeySpace(Purse._meta).doc(
        KeySpace(Purse._meta).partition_of(ids[1]), ids[1]))
    assert_indexes_consistent(redis_client, Purse)


def test_expire_waits_for_a_lock(conn: Any, purses: list[str], redis_client: Any) -> None:
    """A locked document's expiry is not changed until its transaction is settled: here
    committed, so touch applies it first; the document then expires as asked."""
    ids = [purses[0], purses[2]]
    doc = Purse.objects.get_sync(id=ids[1])
    die_after(conn, transfer_tx(conn, ids, 10, 30.0), 3)  # committed, not applied
    assert doc.touch_sync(0.1)
    assert leftovers(redis_client) == {}  # (applied)
    time.sleep(0.2)
    assert balances(ids) == {ids[0]: 90}
    Purse.objects.sweep_sync()
    assert_indexes_consistent(redis_client, Purse)


def older_client(conn: Any, monkeypatch: Any) -> None:
    """``conn``'s schema changes no longer settle the transactions in flight first, as those
    of a client of an older version (or one racing a prepare) do not."""

    def nothing(options: Any) -> Any:
        yield from ()

    monkeypatch.setattr(conn.backend, "before_schema_change", nothing)


def test_a_committed_transaction_is_applied_after_a_schema_change(
        conn: Any, purses: list[str], redis_client: Any, monkeypatch: Any) -> None:
    """An index added between the commit and the apply: the intent is made again with the
    schema of now (its entries too) by a client that knows the model."""
    ids = [purses[0], purses[2]]
    die_after(conn, transfer_tx(conn, ids, 10, 30.0), 3)  # committed, not applied
    older_client(conn, monkeypatch)

    class Wider(Document):
        owner = StringField(indexed=True)
        balance = IntField(indexed=True, default=0)
        note = StringField(indexed=True)

        class Meta:
            collection = "tpc_purses"
            partitions = 4

    Wider(id="w1", owner="w", balance=1, note="n").save_sync()  # (the layout moves on)
    Wider.objects.reindex_sync()
    assert Wider.objects.sweep_sync() >= 0
    assert {d.id: d.balance for d in Wider.objects.filter(id__in=ids).all_sync()} == {
        ids[0]: 90, ids[1]: 110}
    assert Wider.objects.filter(balance=110).count_sync() == 1
    assert leftovers(redis_client) == {}
    assert_indexes_consistent(redis_client, Wider)


def test_a_client_not_knowing_a_changed_model_applies_none_and_reads_on(
        conn: Any, purses: list[str], redis_client: Any, monkeypatch: Any) -> None:
    """A committed transaction over Purse and Entry, Entry's schema changed before the
    apply: a client that has not used Entry cannot make its intent again. Its reads of
    Purse neither raise nor apply Purse's part alone (nothing of the transaction is
    seen); a process that uses Entry settles it whole."""
    ids = [purses[0], purses[2]]
    die_after(conn, transfer_tx(conn, ids, 10, 30.0), 3)  # committed, not applied
    older_client(conn, monkeypatch)

    class WiderEntry(Document):
        note = StringField(indexed=True)
        amount = IntField(default=0)
        memo = StringField(indexed=True)

        class Meta:
            collection = "tpc_entries"

    WiderEntry(id="w1", note="w", memo="m").save_sync()  # (the layout moves on)
    WiderEntry.objects.reindex_sync()
    known = conn.backend.__dict__.setdefault("_known_models", {})
    known.pop(KeySpace(Entry._meta).tag(0).rsplit(":p", 1)[0], None)  # (never used here)
    assert Purse.objects.get_sync(id=ids[0]).balance == 100
    assert {p.id: p.balance for p in Purse.objects.filter(owner__in=ids).all_sync()} == {
        ids[0]: 100, ids[1]: 100}
    assert balances(ids) == {ids[0]: 100, ids[1]: 100}
    assert WiderEntry.objects.sweep_sync() >= 0  # (a process that knows the model)
    assert balances(ids) == {ids[0]: 90, ids[1]: 110}
    assert WiderEntry.objects.get_sync(id=f"e-{ids[0]}-10").amount == 10
    assert leftovers(redis_client) == {}


def email_and_purse_tx(conn: Any, purses: list[str], collection: str
                       ) -> tuple[Any, SyncTransaction]:
    """A model ``Plain`` (an email, not indexed yet) of ``collection`` with document "a",
    and a transaction (not committed) moving 10 out of ``purses[0]`` and setting a's email
    to "dup@x"."""
    Plain: Any = type("Plain", (Document,), {
        "__module__": __name__, "email": StringField(),
        "Meta": type("Meta", (), {"collection": collection})})
    Plain(id="a", email="a@x").save_sync()
    tx = conn.transaction_sync(timeout=30.0)
    first = tx.get(Purse, purses[0])
    first.balance -= 10
    tx.save(first)
    mine = tx.get(Plain, "a")
    mine.email = "dup@x"
    tx.save(mine)
    return Plain, tx


def test_a_unique_index_added_before_the_apply_is_checked_by_it(
        conn: Any, purses: list[str], redis_client: Any, monkeypatch: Any) -> None:
    """A committed transaction writes a value of a field that gains a unique index before
    the apply (by a client that does not settle transactions first), and a plain save
    takes that value meanwhile: the apply of the intent made again leaves that write out
    (never two holders; the document keeps what it held), applies the rest, releases every
    lock, and records the write left out where verify() reports it."""

    Plain, tx = email_and_purse_tx(conn, purses, "tpc_late_unique")
    die_after(conn, tx, 3)  # committed, not applied
    older_client(conn, monkeypatch)

    class Later(Document):
        email = StringField(unique=True)

        class Meta:
            collection = "tpc_late_unique"

    Later.objects.reindex_sync()
    Later(id="c", email="dup@x").save_sync()  # (a is still a@x: the value is free)
    Later.objects.sweep_sync()  # (applied, but for a's write: logged)
    assert sorted((d.id, d.email) for d in Later.objects.all_sync()) == [
        ("a", "a@x"), ("c", "dup@x")]
    assert balances([purses[0]]) == {purses[0]: 90}  # (the rest of it)
    assert leftovers(redis_client) == {}  # (no lock left)
    report = Later.objects.verify_sync()
    assert report.problems == {"transaction_conflicts": 1}
    assert report.samples["transaction_conflicts"] == ["a"]
    assert_indexes_consistent(redis_client, Later)


def test_a_resent_save_applied_the_first_time_is_not_reported_locked(
        conn: Any, purses: list[str], redis_client: Any) -> None:
    """A save applied whose reply was lost, then a transaction locks the document, then
    the save is resent: it is recognised by its write id (its version), not refused."""
    ids = [purses[0], purses[2]]
    executor = conn._store.sync_executor()
    doc = Purse.objects.get_sync(id=ids[0])
    doc.balance += 5
    write = ops.save(conn.backend, doc)
    plan = next(write)
    while not any(getattr(step, "script", "") == "save" for step in plan.steps):
        plan = write.send(executor.execute(plan))
    first = executor.execute(plan)  # applied; its reply "lost"
    die_after(conn, transfer_tx(conn, ids, 1, 30.0), 2)  # prepared: locks the document
    again = Replies(executor.execute(plan))  # what the executor's resend gets back
    again.resent = True
    with pytest.raises(StopIteration) as done:
        write.send(again)
    assert done.value.value is doc
    at = [getattr(step, "script", "") for step in plan.steps].index("save")
    assert doc._version == replies.write_reply(first[at]).version


def test_a_resent_save_met_by_a_lock_is_an_unknown_outcome(conn: Any, purses: list[str],
                                                           redis_client: Any) -> None:
    ids = [purses[0], purses[2]]
    executor = conn._store.sync_executor()
    doc = Purse.objects.get_sync(id=ids[0])
    doc.balance += 5
    write = ops.save(conn.backend, doc)
    plan = next(write)
    while not any(getattr(step, "script", "") == "save" for step in plan.steps):
        plan = write.send(executor.execute(plan))
    die_after(conn, transfer_tx(conn, ids, 1, 30.0), 2)  # prepared: locks the document
    again = Replies(executor.execute(plan))  # (the first attempt was lost unsent)
    again.resent = True
    with pytest.raises(WriteOutcomeUnknown):
        write.send(again)


@pytest.mark.parametrize("round_trips", [2, 3, 4])
def test_a_failure_after_the_decision_is_never_nothing_written(
        conn: Any, purses: list[str], redis_client: Any, round_trips: int) -> None:
    """The connection breaks at the decision (2: its outcome unknown), at the apply (3)
    or at the finish (4): TransactionCommitted, never a conflict or a TransactionError
    that a caller would retry; the transaction is then settled whole by recovery."""
    ids = [purses[0], purses[2]]
    tx = transfer_tx(conn, ids, 10, 30.0)
    op = tx._work.commit(conn.backend)
    executor = conn._store.sync_executor()
    plan = next(op)
    for _ in range(round_trips):
        plan = op.send(executor.execute(plan))
    if round_trips > 2:
        executor.execute(plan)  # (sent, its reply lost)
    with pytest.raises(TransactionCommitted) as failed:
        op.throw(BackendConnectionError("the connection broke"))
    assert not isinstance(failed.value, (VersionConflict, TransactionError))
    assert failed.value.decided is (round_trips > 2)
    if round_trips == 2:  # (the decision was lost unsent: taken here, as if it was not)
        executor.execute(RedisPlan((Call("tx_decide", (failed.value.record,), ("commit",)),)))
    Purse.objects.sweep_sync()
    assert balances(ids) == {ids[0]: 90, ids[1]: 110}
    # (what is left is at most its record, gone once the sweeper finds it due)
    assert not [key for key in leftovers(redis_client) if not key.endswith((":r", ":open"))]


def apply_intent(conn: Any, client: Any, record: str, into: str) -> None:
    """Apply, alone, the intent of transaction ``record`` in the partition of Purse
    ``into``, as its client's apply to that partition would."""
    keys = KeySpace(Purse._meta)
    flat = wire.unpack(client.get(twophase.intent_key(
        twophase.locks_key(keys.tag(keys.partition_of(into))), record)))
    count = int(flat[1])
    conn._store.sync_executor().execute(RedisPlan((Call(
        "tx", tuple(k.decode() for k in flat[2:2 + count]), tuple(flat[2 + count:])),),
        idempotent=True))


def apply_one(conn: Any, client: Any, id: str) -> None:
    """Apply the intent of the (one) committed transaction in the partition of Purse
    ``id``, alone."""
    (record,) = [k.decode() for k in client.scan_iter("{*:2pc:*}:r")]
    apply_intent(conn, client, record, id)


def test_queries_and_counts_see_a_committed_transaction_whole(
        conn: Any, purses: list[str], redis_client: Any) -> None:
    """A committed transaction applied in one partition only (its client died between
    its applies): a query or a count meeting the other partition's locks applies it
    first, and sees it whole."""
    ids = [purses[0], purses[2]]
    die_after(conn, transfer_tx(conn, ids, 10, 30.0), 3)  # committed, not applied
    apply_one(conn, redis_client, ids[1])
    assert {p.id: p.balance for p in Purse.objects.filter(owner__in=ids).all_sync()} == {
        ids[0]: 90, ids[1]: 110}
    die_after(conn, transfer_tx(conn, ids, 5, 30.0), 3)
    apply_one(conn, redis_client, ids[1])
    assert Purse.objects.filter(balance=85).count_sync() == 1
    die_after(conn, transfer_tx(conn, ids, 1, 30.0), 3)
    apply_one(conn, redis_client, ids[1])
    assert Purse.objects.filter(balance__lt=100).count_sync() == 1
    assert Purse.objects.filter(balance=84).exists_sync()
    assert [p.balance for p in Purse.objects.filter(owner__in=ids).order_by(
        "balance").limit(1).all_sync()] == [84]
    assert leftovers(redis_client) == {}


def test_a_read_by_id_racing_an_apply_sees_the_transaction_whole(
        conn: Any, purses: list[str], redis_client: Any) -> None:
    """A read's MGET sees one partition applied and the other still locked; that one is
    applied (by its client) before the read looks at the locks: the read must not return
    the old value of one document beside the new value of the other."""
    ids = [purses[0], purses[2]]
    tx = conn.transaction_sync(timeout=30.0)  # (purses only: one intent per partition)
    first, second = tx.get(Purse, ids[0]), tx.get(Purse, ids[1])
    first.balance -= 10
    second.balance += 10
    tx.save(first)
    tx.save(second)
    op, plan, executor = up_to_apply(conn, tx)
    apply_one(conn, redis_client, ids[1])  # the apply of one partition lands first
    reader = conn.backend.get_many(Purse._meta, ids)
    read = executor.execute(next(reader))  # the MGET: the first still locked, old
    plan = op.send(executor.execute(plan))  # the client's apply lands now
    with pytest.raises(StopIteration):
        op.send(executor.execute(plan))  # (its finish)
    with pytest.raises(StopIteration) as done:
        step = reader.send(read)
        while True:
            step = reader.send(executor.execute(step))
    assert {row.id: row.data["balance"] for row in done.value.value} == {
        ids[0]: 90, ids[1]: 110}


def apply_holder(conn: Any, client: Any, id: str, into: str) -> None:
    """Apply, in the partition of Purse ``into``, the intent of the transaction that
    locks Purse ``id`` (as its client's apply to that partition would)."""
    keys = KeySpace(Purse._meta)
    record = client.hget(twophase.locks_key(keys.tag(keys.partition_of(id))),
                         sortable.id_key(id)).decode()
    apply_intent(conn, client, record, into)


def test_a_read_by_id_racing_an_apply_then_a_new_lock_sees_the_transaction_whole(
        conn: Any, purses: list[str], redis_client: Any) -> None:
    """As above, and a second transaction locks the first document again (undecided)
    before the read looks at the locks: the document is held, by a holder that changed
    nothing, but it is not what the read saw, and the read is sent again."""
    ids = [purses[0], purses[2]]
    tx = conn.transaction_sync(timeout=30.0)  # (purses only: one intent per partition)
    first, second = tx.get(Purse, ids[0]), tx.get(Purse, ids[1])
    first.balance -= 10
    second.balance += 10
    tx.save(first)
    tx.save(second)
    op, plan, executor = up_to_apply(conn, tx)
    apply_one(conn, redis_client, ids[1])
    reader = conn.backend.get_many(Purse._meta, ids)
    read = executor.execute(next(reader))  # the first still locked, old; the second new
    plan = op.send(executor.execute(plan))  # the client's apply lands now
    with pytest.raises(StopIteration):
        op.send(executor.execute(plan))
    die_after(conn, transfer_tx(conn, [ids[0], purses[4]], 1, 30.0), 2)  # prepared only
    with pytest.raises(StopIteration) as done:
        step = reader.send(read)
        while True:
            step = reader.send(executor.execute(step))
    assert {row.id: row.data["balance"] for row in done.value.value} == {
        ids[0]: 90, ids[1]: 110}


def test_a_query_racing_an_apply_beside_an_undecided_lock_sees_the_transaction_whole(
        conn: Any, purses: list[str], redis_client: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A query meets a partition locked by a committed transaction and by an undecided
    one; the committed one's apply there lands before the query looks at the locks: an
    undecided holder is left, but a holder the query met is gone, and it asks again."""
    a, z, b = purses[0], purses[1], purses[2]
    die_after(conn, transfer_tx(conn, [z, purses[4]], 0, 30.0), 2)  # undecided, over z
    die_after(conn, transfer_tx(conn, [a, b], 10, 30.0), 3)  # committed, not applied
    apply_holder(conn, redis_client, a, b)
    settle = twophase.TwoPhase.settle_partitions
    landed: list[bool] = []

    def late(self: Any, *args: Any) -> Any:
        if not landed:
            landed.append(True)
            apply_holder(conn, redis_client, a, a)  # its client's apply lands now
        return (yield from settle(self, *args))

    monkeypatch.setattr(twophase.TwoPhase, "settle_partitions", late)
    found = {p.id: p.balance for p in Purse.objects.filter(balance__gte=0).all_sync()}
    assert landed and (found[a], found[b]) == (90, 110)
    assert sum(found.values()) == 100 * len(purses)


def test_reads_that_keep_meeting_applies_raise_rather_than_answer(
        conn: Any, purses: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A read whose every round met a transaction applied while it ran (here: told so
    each time) raises TransactionsUnsettled after its bounded rounds, instead of returning
    an answer it could not check (after its rounds' time, by the server's clock)."""
    ids = [purses[0], purses[2]]
    die_after(conn, transfer_tx(conn, ids, 10, 30.0), 2)  # prepared: the flags are set

    def again(self: Any, *args: Any) -> Any:
        yield from ()
        return True

    monkeypatch.setattr(twophase.TwoPhase, "settle_partitions", again)
    monkeypatch.setattr(twophase.TwoPhase, "settle_for_readers", again)
    monkeypatch.setattr(twophase, "READ_SETTLE_MS", 200)  # (its rounds' time, shortened)
    with pytest.raises(TransactionsUnsettled):
        Purse.objects.filter(owner__in=ids).all_sync()
    with pytest.raises(TransactionsUnsettled):
        Purse.objects.get_sync(id=ids[0])


def test_retry_loops_wait_for_a_lock(conn: Any, purses: list[str], redis_client: Any) -> None:
    """update_with_retry, the atomic operations and update_or_create wait for another
    transaction's lock to be settled (here: its deadline passes, it is aborted) instead
    of spending their attempts on it at once."""
    ids = [purses[0], purses[2]]
    doc = Purse.objects.get_sync(id=ids[1])
    die_after(conn, transfer_tx(conn, ids, 10, 0.3), 2)  # prepared, undecided
    doc.update_with_retry_sync(lambda d: setattr(d, "balance", d.balance + 1), attempts=2)
    assert balances(ids) == {ids[0]: 100, ids[1]: 101}
    die_after(conn, transfer_tx(conn, ids, 5, 0.3), 2)
    doc.inc_sync("balance", 1)
    assert balances(ids) == {ids[0]: 100, ids[1]: 102}
    die_after(conn, transfer_tx(conn, ids, 1, 0.3), 2)
    _, created = Purse.objects.update_or_create_sync(owner=ids[1], defaults={"balance": 7})
    assert not created
    assert balances(ids) == {ids[0]: 100, ids[1]: 7}
    assert leftovers(redis_client) == {}


def applied_reply_lost(conn: Any, ids: list[str],
                       redis_client: Any) -> tuple[SyncTransaction, Any, Any, Any]:
    """A transfer between ``ids`` brought to its apply, which is applied with its reply
    lost, and its applied intents expired: (the transaction, its operation, the apply's
    plan, the executor), for the resend to be sent."""
    tx = transfer_tx(conn, ids, 10, 30.0)
    op, plan, executor = up_to_apply(conn, tx)
    executor.execute(plan)  # the apply: applied, its reply lost
    for key in redis_client.scan_iter("{*}:2pc:*"):  # (the applied intents expire)
        redis_client.delete(key)
    return tx, op, plan, executor


def test_a_very_late_apply_resend_is_a_success(conn: Any, purses: list[str],
                                               redis_client: Any) -> None:
    """The apply's reply is lost and its resend comes after what the apply left behind
    (the versions it wrote, kept a while) has expired: committed, applied, the versions
    read from the documents' recent write ids."""
    ids = [purses[0], purses[2]]
    tx, op, plan, executor = applied_reply_lost(conn, ids, redis_client)
    plan = op.send(executor.execute(plan))  # the resend finds its locks gone
    with pytest.raises(StopIteration) as done:
        while True:  # (what it reads, then the finish)
            plan = op.send(executor.execute(plan))
    assert done.value.value is None
    # (each document of the transaction now holds the version stored)
    held = sorted(doc._version for doc, _, _ in tx._work.writes.values())
    stored = sorted([Purse.objects.get_sync(id=id)._version for id in ids] + [
        Entry.objects.get_sync(id=f"e-{ids[0]}-10")._version])
    assert held == stored
    assert balances(ids) == {ids[0]: 90, ids[1]: 110}
    assert leftovers(redis_client) == {}


@pytest.mark.usefixtures("format2_writes")  # (format 2: the write ids in the meta hash)
def test_a_very_late_apply_resend_that_finds_a_damaged_record_raises_typed(
        conn: Any, purses: list[str], redis_client: Any) -> None:
    """As above, but the version beside the transaction's write id in a document's recent
    write ids ("r") does not read: the versions cannot be learnt, and the error names the
    meta hash and the field (int() read "+000000000000013" as 13)."""
    ids = [purses[0], purses[2]]
    tx, op, plan, executor = applied_reply_lost(conn, ids, redis_client)
    keys = KeySpace(Purse._meta)
    meta = keys.meta(keys.partition_of(ids[0]), ids[0])
    recent = redis_client.hget(meta, "r")
    redis_client.hset(meta, "r", recent[:16] + b"+000000000000013" + recent[32:])
    with pytest.raises(TransactionCommitted) as raised:
        plan = op.send(executor.execute(plan))  # the resend finds its locks gone
        while True:
            plan = op.send(executor.execute(plan))
    cause = raised.value.cause
    assert isinstance(cause, DamagedMetaError)
    assert cause.key == meta and cause.field == "r" and cause.id == ids[0]
    assert balances(ids) == {ids[0]: 90, ids[1]: 110}  # (committed, applied whole)


def test_a_very_late_apply_resend_that_finds_a_damaged_header_raises_typed(
        conn: Any, purses: list[str], redis_client: Any) -> None:
    """As above for format-3 documents (what inserts store, and the apply keeps): the
    version of the transaction's write id (the newest in W) is the header's, which does
    not read: the error is the document's corruption, naming it."""
    ids = [purses[0], purses[2]]
    tx, op, plan, executor = applied_reply_lost(conn, ids, redis_client)
    keys = KeySpace(Purse._meta)
    doc = keys.doc(keys.partition_of(ids[0]), ids[0])
    applied = redis_client.get(doc)
    headed = stored.header(applied)
    assert headed is not None and not redis_client.exists(
        keys.meta(keys.partition_of(ids[0]), ids[0]))
    _, w, payload = headed
    redis_client.set(doc, b"\x01+000000000000013\x00%s\x00%s" % (w, payload))
    with pytest.raises(TransactionCommitted) as raised:
        plan = op.send(executor.execute(plan))  # the resend finds its locks gone
        while True:
            plan = op.send(executor.execute(plan))
    cause = raised.value.cause
    assert isinstance(cause, CorruptDocumentError) and cause.id == ids[0]
    redis_client.set(doc, applied)
    assert balances(ids) == {ids[0]: 90, ids[1]: 110}  # (committed, applied whole)


def test_a_release_after_an_apply_keeps_the_applied_versions(conn: Any, purses: list[str],
                                                             redis_client: Any) -> None:
    """A settler that met the locks before the apply, then found the record gone (a reader
    applied and finished the transaction), releases what is left: the versions the apply
    left stay, so the committing client's own late apply learns them (it was reported
    "could not be applied" with stale versions under load)."""
    ids = [purses[0], purses[2]]
    tx = transfer_tx(conn, ids, 10, 30.0)
    op, plan, executor = up_to_apply(conn, tx)
    (record,) = [key.decode() for key in redis_client.scan_iter("*2pc*:r")]
    executor.execute(plan)  # the apply: applied, its reply lost
    redis_client.delete(record)  # (finished by someone else)
    state = conn.backend._state(Purse._meta)
    locks = [twophase.locks_key(state.keys.tag(p)) for p in range(Purse._meta.partitions)]
    settle = conn.backend.settle(record, locks)  # the late settler: record gone, release
    step = next(settle)
    with pytest.raises(StopIteration):
        while True:
            step = settle.send(executor.execute(step))
    applied = sorted([Purse.objects.get_sync(id=id)._version for id in ids] + [
        Entry.objects.get_sync(id=f"e-{ids[0]}-10")._version])
    for _ in range(5):  # other writers: the documents' recent write ids move on
        for id in ids:
            purse = Purse.objects.get_sync(id=id)
            purse.balance += 1
            purse.save_sync()
    plan = op.send(executor.execute(plan))  # the client's resend: DONE, with the versions
    with pytest.raises(StopIteration) as done:
        while True:
            plan = op.send(executor.execute(plan))
    assert done.value.value is None
    # (the transaction's documents hold the versions its apply wrote)
    assert sorted(doc._version for doc, _, _ in tx._work.writes.values()) == applied
    assert balances(ids) == {ids[0]: 95, ids[1]: 115}
    assert leftovers(redis_client) == {}


def test_waits_and_settles_under_the_least_privilege_rule(
        conn: Any, purses: list[str], redis_client: Any, redis_url: str) -> None:
    """What a writer's wait, a query's settling and the TTL sweep send is allowed by
    acl_rule() (the contract suite runs under it)."""
    ids = [purses[0], purses[2]]
    redis_client.execute_command("ACL", "SETUSER", "tpc-app", "reset", "on", ">pw",
                                 *acl_rule("qorm").split())
    quantumorm.create_connection(url=redis_url, name="tpc-app", username="tpc-app",
                                 password="pw")
    die_after(conn, transfer_tx(conn, ids, 10, 0.3), 2)  # prepared, undecided
    assert Purse.objects.using("tpc-app").filter(owner__in=ids).update_sync(balance=5) == 2
    die_after(conn, transfer_tx(conn, ids, 1, 30.0), 3)  # committed, not applied
    assert Purse.objects.using("tpc-app").get_sync(id=ids[0]).touch_sync(0.05)
    time.sleep(0.1)
    assert Purse.objects.using("tpc-app").sweep_sync() == 1
    assert {p.id: p.balance for p in Purse.objects.using("tpc-app").filter(
        owner__in=ids).all_sync()} == {ids[1]: 6}
    assert leftovers(redis_client) == {}


async def test_async_updates_wait_for_locks(conn: Any, purses: list[str],
                                            redis_client: Any) -> None:
    ids = [purses[0], purses[2]]
    await asyncio.to_thread(lambda: die_after(conn, transfer_tx(conn, ids, 10, 0.3), 2))
    assert await Purse.objects.filter(owner__in=ids).update(inc__balance=1) == 2
    await asyncio.to_thread(lambda: die_after(conn, transfer_tx(conn, ids, 5, 30.0), 3))
    assert await Purse.objects.filter(balance__gte=0, owner__in=ids).count() == 2
    assert {p.id: p.balance for p in await Purse.objects.filter(owner__in=ids).all()} == {
        ids[0]: 96, ids[1]: 106}
    assert leftovers(redis_client) == {}
