"""The apply of a two-phase commit (``backends/redis/twophase.py``, ``lua/tx_apply.lua``): run
by the server from the intent its prepare stored, above maxmemory too; what it leaves behind
(the "applied" marker) and how long; what the committing client is told when that is gone.

The servers whose memory limit a test sets are its own (``start_redis``): the session's
server keeps its settings, which other tests rely on.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis
import test_two_phase_commit
from helpers import assert_indexes_consistent
from test_two_phase_commit import (
    Entry,
    Purse,
    balances,
    die_after,
    email_and_purse_tx,
    leftovers,
    older_client,
    spread_ids,
    transfer_tx,
    up_to_apply,
)

import quantumorm
from quantumorm import (
    Document,
    IntField,
    OutOfMemoryError,
    QuantumORMError,
    StringField,
    UniqueViolation,
)
from quantumorm.backends.redis import twophase
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.errors import (
    SchemaChangeBlocked,
    SchemaMismatchError,
    TransactionCommitted,
    TransactionUniqueConflict,
    TransactionVersionsUnknown,
)


@pytest.fixture
def full(start_redis: Any) -> Any:
    """A redis-server of its own (``noeviction``), the ``"default"`` connection on it with
    Purse's documents (two per partition, balance 100), and an admin client: ``(conn, ids,
    admin, fill)``, ``fill()`` setting maxmemory below the memory used (every write is then
    refused, until the test sets it back)."""
    url, _ = start_redis("--maxmemory-policy", "noeviction")
    conn = quantumorm.create_connection(url=url, name="default", make_default=True)
    admin = redis.Redis.from_url(url)
    ids = spread_ids(2)
    for id in ids:
        Purse(id=id, owner=id, balance=100).save_sync()
    Entry(id="warm", note="warm").save_sync()  # (schemas read: no extra round trips later)

    def fill() -> None:
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", max(1, used // 2))
        with pytest.raises(OutOfMemoryError):  # (the server refuses writes now)
            Entry(id="probe", note="probe").save_sync()

    try:
        yield conn, ids, admin, fill
    finally:
        admin.config_set("maxmemory", 0)
        admin.close()
        quantumorm.close_all()


def test_a_reader_settles_a_committed_transaction_on_a_full_server(full: Any) -> None:
    """Committed, its client dead before the apply, then the server fills up: a read that
    meets its locks applies it (the apply only replaces what the intents hold), sees it
    whole, raises nothing, and leaves no lock."""
    conn, ids, admin, fill = full
    pair = [ids[0], ids[2]]
    die_after(conn, transfer_tx(conn, pair, 10, 30.0), 3)  # committed, not applied
    fill()
    assert Purse.objects.get_sync(id=pair[1]).balance == 110
    assert balances(pair) == {pair[0]: 90, pair[1]: 110}
    assert Entry.objects.get_sync(id=f"e-{pair[0]}-10").amount == 10
    assert leftovers(admin) == {}
    admin.config_set("maxmemory", 0)
    assert_indexes_consistent(admin, Purse)
    assert Purse.objects.verify_sync().ok and Entry.objects.verify_sync().ok


def test_a_query_settles_a_committed_transaction_on_a_full_server(full: Any) -> None:
    conn, ids, admin, fill = full
    pair = [ids[0], ids[2]]
    die_after(conn, transfer_tx(conn, pair, 10, 30.0), 3)  # committed, not applied
    fill()
    assert {p.id: p.balance for p in Purse.objects.filter(owner__in=pair).all_sync()} == {
        pair[0]: 90, pair[1]: 110}
    assert Purse.objects.filter(balance=110).count_sync() == 1
    assert leftovers(admin) == {}


def test_the_sweeper_settles_a_committed_transaction_on_a_full_server(full: Any) -> None:
    conn, ids, admin, fill = full
    pair = [ids[0], ids[2]]
    die_after(conn, transfer_tx(conn, pair, 10, 0.2), 3)  # committed, not applied
    fill()
    records = [key.decode() for key in admin.scan_iter("*2pc*:r")]
    assert len(records) == 1
    assert conn.run(lambda b: conn.backend.settle(records[0], None)) is True
    assert leftovers(admin) == {}
    assert balances(pair) == {pair[0]: 90, pair[1]: 110}


def test_the_committing_client_applies_on_a_full_server(full: Any) -> None:
    """The server fills up between the decision and the apply: the committing client's
    own apply goes through, with the versions it wrote."""
    conn, ids, admin, fill = full
    pair = [ids[0], ids[2]]
    tx = transfer_tx(conn, pair, 10, 30.0)
    op, plan, executor = up_to_apply(conn, tx)
    fill()
    with pytest.raises(StopIteration) as done:
        while True:
            plan = op.send(executor.execute(plan))
    assert done.value.value is None
    held = sorted(doc._version for doc, _, _ in tx._work.writes.values())
    stored = sorted([Purse.objects.get_sync(id=id)._version for id in pair] + [
        Entry.objects.get_sync(id=f"e-{pair[0]}-10")._version])
    assert held == stored
    assert balances(pair) == {pair[0]: 90, pair[1]: 110}
    assert leftovers(admin) == {}


def widened() -> Any:
    """Purse declared again with one more indexed field, its first use (a save) moving the
    stored schema's layout on; the new declaration."""

    class Wider(Document):
        owner = StringField(indexed=True)
        balance = IntField(indexed=True, default=0)
        note = StringField(indexed=True)

        class Meta:
            collection = "tpc_purses"
            partitions = 4

    Wider(id="w1", owner="w", balance=1, note="n").save_sync()
    return Wider


def test_an_intent_made_again_is_applied_on_a_full_server(full: Any,
                                                          monkeypatch: Any) -> None:
    """Committed, then an index added to Purse by a client that does not settle first,
    then the server fills up: a read that meets the locks makes the intent again with the
    schema of now and has the server apply it (sent as tx_apply's argument, not stored)."""
    conn, ids, admin, fill = full
    pair = [ids[0], ids[2]]
    die_after(conn, transfer_tx(conn, pair, 10, 30.0), 3)  # committed, not applied
    older_client(conn, monkeypatch)
    Wider = widened()  # (the layout moves on)
    Wider.objects.reindex_sync()
    made: list[str] = []
    rebuilt = conn.backend._rebuilt

    def counted(keys: Any, args: Any) -> Any:
        made.append(keys[2])
        return rebuilt(keys, args)

    monkeypatch.setattr(conn.backend, "_rebuilt", counted)
    fill()
    assert {d.id: d.balance for d in Wider.objects.filter(id__in=pair).all_sync()} == {
        pair[0]: 90, pair[1]: 110}
    assert len(made) == 2  # (the two purses' intents: Entry's schema did not change)
    assert Wider.objects.filter(balance=110).count_sync() == 1
    assert leftovers(admin) == {}
    admin.config_set("maxmemory", 0)
    assert_indexes_consistent(admin, Wider)


def test_a_transaction_is_not_begun_on_a_full_server(full: Any) -> None:
    """Its begin and prepare are new writes: refused above maxmemory, nothing written."""
    conn, ids, admin, fill = full
    pair = [ids[0], ids[2]]
    fill()
    with pytest.raises(OutOfMemoryError):
        transfer_tx(conn, pair, 10, 30.0).commit()
    assert balances(pair) == {pair[0]: 100, pair[1]: 100}
    assert leftovers(admin) == {}


def test_prepare_is_refused_on_a_full_server(full: Any) -> None:
    """The server fills up after the begin: the prepares are refused (tx.lua has no
    allow-oom), the transaction is aborted and released, nothing written."""
    conn, ids, admin, fill = full
    pair = [ids[0], ids[2]]
    tx = transfer_tx(conn, pair, 10, 30.0)
    op = tx._work.commit(conn.backend)
    executor = conn._store.sync_executor()
    plan = op.send(executor.execute(next(op)))  # begun; the prepares not sent yet
    fill()
    with pytest.raises(OutOfMemoryError):
        while True:
            plan = op.send(executor.execute(plan))
    admin.config_set("maxmemory", 0)
    Purse.objects.sweep_sync()  # (the record expires after its deadline; locks: none)
    assert balances(pair) == {pair[0]: 100, pair[1]: 100}
    assert not [key for key in leftovers(admin) if not key.endswith((":r", ":open"))]


def test_the_applied_marker_lives_a_multiple_of_the_timeout(conn: Any,
                                                             redis_client: Any) -> None:
    ids = spread_ids(1)
    for id in ids:
        Purse(id=id, owner=id, balance=100).save_sync()
    for amount, (timeout, keep) in enumerate(((30.0, 300_000),
                                              (1.0, twophase.APPLIED_KEEP_MIN_MS)), 1):
        transfer_tx(conn, [ids[0], ids[1]], amount, timeout).commit()
        markers = [key for key in redis_client.scan_iter("{*}:2pc:*")
                   if not key.endswith(b":r") and not key.endswith(b":open")]
        assert len(markers) == 3  # (two purses, the entry)
        for key in markers:
            assert keep - 5_000 < redis_client.pttl(key) <= keep
            assert redis_client.get(key)[:12].find(b"\xa7applied") in (1, 3)
            redis_client.delete(key)
    assert twophase.APPLIED_KEEP_TIMEOUTS * 30_000 == 300_000


def test_versions_unknown_after_the_marker_expired_is_said_so(conn: Any,
                                                              redis_client: Any) -> None:
    """The apply's reply is lost, and its resend comes after the marker expired and the
    documents were written again (their recent write ids moved on): the client is told
    the transaction was committed and applied, the versions unknown (not that it could not
    be applied); it is finished all the same."""
    ids = spread_ids(2)
    for id in ids:
        Purse(id=id, owner=id, balance=100).save_sync()
    Entry(id="warm", note="warm").save_sync()  # (schemas read: the phases are the plans)
    pair = [ids[0], ids[2]]
    tx = transfer_tx(conn, pair, 10, 30.0)
    op, plan, executor = up_to_apply(conn, tx)
    executor.execute(plan)  # the apply: applied, its reply lost
    for key in redis_client.scan_iter("{*}:2pc:*"):  # (the markers expire)
        if not key.endswith((b":r", b":open")):
            redis_client.delete(key)
    for _ in range(5):  # other writers: the documents' recent write ids move on
        for id in pair:
            purse = Purse.objects.get_sync(id=id)
            purse.balance += 1
            purse.save_sync()
        entry = Entry.objects.get_sync(id=f"e-{pair[0]}-10")
        entry.amount += 1
        entry.save_sync()
    with pytest.raises(TransactionVersionsUnknown) as failed:
        while True:
            plan = op.send(executor.execute(plan))
    assert isinstance(failed.value, TransactionCommitted) and failed.value.decided
    message = str(failed.value)
    assert "committed and applied" in message and "versions" in message
    assert "could not be applied" not in message
    assert balances(pair) == {pair[0]: 95, pair[1]: 115}
    assert leftovers(redis_client) == {}  # (finished: record and registry entry gone)


# -- a schema change settles the transactions in flight first ---------------------------

#: the Purse documents over every partition (the fixture of test_two_phase_commit)
purses = test_two_phase_commit.purses


def test_a_new_declaration_applies_a_committed_transaction_before_its_change(
        conn: Any, purses: list[str], redis_client: Any) -> None:
    """A committed, unapplied transaction writes a value; a new declaration adds a unique
    index on that field: the transaction is applied first, with the schema it was prepared
    with (never made again), then the index is built over it; a later save of the same
    value is refused by the index, not the committed transaction."""

    Plain, tx = email_and_purse_tx(conn, purses, "tpa_late_unique")
    die_after(conn, tx, 3)  # committed, not applied
    layout = Plain._meta.state_for(conn.backend, lambda: None).schema.layout

    class Later(Document):
        email = StringField(unique=True)

        class Meta:
            collection = "tpa_late_unique"

    report = Later.objects.reindex_sync()
    assert report.ready and not report.conflicts
    assert leftovers(redis_client) == {}
    assert balances([purses[0]]) == {purses[0]: 90}
    assert Later.objects.get_sync(id="a").email == "dup@x"
    with pytest.raises(UniqueViolation):
        Later(id="c", email="dup@x").save_sync()
    assert Later._meta.state_for(conn.backend, lambda: None).schema.layout > layout
    assert_indexes_consistent(redis_client, Later)


def test_a_schema_change_waits_for_an_undecided_transaction(
        conn: Any, purses: list[str], redis_client: Any) -> None:
    """A transaction prepared, its client dead before the decision: the schema change of
    its model waits until its deadline, aborts it, releases it, then changes."""
    pair = [purses[0], purses[2]]
    die_after(conn, transfer_tx(conn, pair, 10, 0.3), 2)  # prepared, undecided
    assert any(key.endswith(":locks") for key in leftovers(redis_client))

    class Wider(Document):
        owner = StringField(indexed=True)
        balance = IntField(indexed=True, default=0)
        note = StringField(indexed=True)

        class Meta:
            collection = "tpc_purses"
            partitions = 4

    Wider(id="w1", owner="w", balance=1, note="n").save_sync()  # (the schema changes)
    assert not [key for key in leftovers(redis_client) if not key.endswith((":r", ":open"))]
    assert {d.id: d.balance for d in Wider.objects.filter(id__in=pair).all_sync()} == {
        pair[0]: 100, pair[1]: 100}
    assert Wider.objects.reindex_sync().ready
    assert_indexes_consistent(redis_client, Wider)


def test_a_schema_change_under_unceasing_transactions_is_refused(
        conn: Any, purses: list[str], redis_client: Any, monkeypatch: Any) -> None:
    """Transactions keep locking the model's documents: each met is settled, new ones come
    each round, and the change is refused with SchemaChangeBlocked naming those met last;
    nothing changed."""
    monkeypatch.setattr(twophase, "SCHEMA_SETTLE_ROUNDS", 2)
    stop = threading.Event()
    started = threading.Event()

    def keep_locking() -> None:  # (prepared, then abandoned: each pending 0.2 s)
        n = 0
        while not stop.is_set():
            n += 1
            pair = [purses[n % 2], purses[2 + n % 2]]
            try:
                die_after(conn, transfer_tx(conn, pair, n, 0.2), 2)
            except QuantumORMError:  # (met the lock of another: that one stays)
                pass
            started.set()
            stop.wait(0.02)

    worker = threading.Thread(target=keep_locking)
    worker.start()
    try:
        assert started.wait(10)
        layout = Purse._meta.state_for(conn.backend, lambda: None).schema.layout

        class Wider(Document):
            owner = StringField(indexed=True)
            balance = IntField(indexed=True, default=0)
            note = StringField(indexed=True)

            class Meta:
                collection = "tpc_purses"
                partitions = 4

        with pytest.raises(SchemaChangeBlocked) as refused:
            Wider.objects.count_sync()
    finally:
        stop.set()
        worker.join()
    assert isinstance(refused.value, SchemaMismatchError)
    assert refused.value.model == "Wider" and refused.value.transactions
    assert all(":2pc:" in record for record in refused.value.transactions)
    assert refused.value.transactions[0] in str(refused.value)
    assert int(redis_client.hget(KeySpace(Purse._meta).schema, "layout")) == layout


def email_and_purse_up_to_apply(conn: Any, purses: list[str], collection: str
                                ) -> tuple[Any, tuple[Any, Any, Any]]:
    """:func:`email_and_purse_tx`'s model, and its transaction stepped up to its apply
    (what up_to_apply returns)."""
    Plain, tx = email_and_purse_tx(conn, purses, collection)
    return Plain, up_to_apply(conn, tx)


def test_the_committing_client_is_told_of_a_write_left_out_for_a_unique_value(
        conn: Any, purses: list[str], redis_client: Any, monkeypatch: Any) -> None:
    """Between the decision and the committing client's own apply, another (older) client
    adds a unique index and a plain save takes a value the transaction writes: the apply,
    made again, writes everything else and leaves that write out, no lock outlives it,
    and the client gets TransactionUniqueConflict (committed: not to be retried) naming
    the document, the index and the holder; verify() reports the write left out."""

    Plain, (op, plan, executor) = email_and_purse_up_to_apply(conn, purses,
                                                              "tpa_racing_unique")

    older_client(conn, monkeypatch)

    class Later(Document):
        email = StringField(unique=True)

        class Meta:
            collection = "tpa_racing_unique"

    Later.objects.reindex_sync()
    Later(id="c", email="dup@x").save_sync()
    conn.backend._know(Later._meta)  # (this process runs the new declaration now)
    with pytest.raises(TransactionUniqueConflict) as refused:
        while True:
            plan = op.send(executor.execute(plan))
    assert isinstance(refused.value, TransactionCommitted)
    assert refused.value.conflicts == [("Plain", "a", "email", "c")]
    assert "do not retry" in str(refused.value)
    assert balances([purses[0]]) == {purses[0]: 90}
    assert sorted((d.id, d.email) for d in Later.objects.all_sync()) == [
        ("a", "a@x"), ("c", "dup@x")]
    assert leftovers(redis_client) == {}
    report = Later.objects.verify_sync()
    assert report.problems == {"transaction_conflicts": 1}
    assert report.samples["transaction_conflicts"] == ["a"]
    assert_indexes_consistent(redis_client, Later)


def moved_on_by_an_older_client(conn: Any, pair: list[str], monkeypatch: Any) -> Any:
    """A committed transfer over ``pair``, not applied; then a client that does not settle
    first moves the schema of its model on (a new indexed field). The declaration after
    that one (another indexed field), not used yet."""
    die_after(conn, transfer_tx(conn, pair, 10, 30.0), 3)

    with monkeypatch.context() as patched:
        older_client(conn, patched)
        widened()

    class Widest(Document):
        owner = StringField(indexed=True)
        balance = IntField(indexed=True, default=0)
        note = StringField(indexed=True)
        memo = StringField(indexed=True)

        class Meta:
            collection = "tpc_purses"
            partitions = 4

    return Widest


def test_a_schema_change_meeting_a_transaction_made_for_an_older_schema(
        conn: Any, purses: list[str], redis_client: Any, monkeypatch: Any,
        caplog: Any) -> None:
    """A committed transaction's intents already met a schema changed by another client
    (one that did not settle first); this client, still knowing only the older model,
    cannot make them again: its own schema change does not wait on it (it is no worse for
    it), and a process that knows the schema of now applies the transaction whole."""
    pair = [purses[0], purses[2]]
    Widest = moved_on_by_an_older_client(conn, pair, monkeypatch)
    Widest(id="w2", owner="w", balance=2, note="n", memo="m").save_sync()  # (not refused)
    assert any("could not settle the transaction" in r.getMessage() for r in caplog.records)
    assert Widest.objects.reindex_sync().ready  # (settles it: this process knows Widest)
    assert {d.id: d.balance for d in Widest.objects.filter(id__in=pair).all_sync()} == {
        pair[0]: 90, pair[1]: 110}
    assert leftovers(redis_client) == {}
    assert_indexes_consistent(redis_client, Widest)


def test_a_schema_change_that_settles_by_its_own_declaration(
        conn: Any, purses: list[str], redis_client: Any, monkeypatch: Any) -> None:
    """As above, but this process knows the new declaration already: settling the
    transaction first makes its intents again with that declaration, which reconciles the
    schema inside the settle (it does not settle again: no recursion) and applies it."""
    pair = [purses[0], purses[2]]
    Widest = moved_on_by_an_older_client(conn, pair, monkeypatch)
    conn.backend._know(Widest._meta)  # (this process runs the new declaration)
    Widest(id="w2", owner="w", balance=2, note="n", memo="m").save_sync()
    assert leftovers(redis_client) == {}  # (applied before the save's schema change)
    assert {d.id: d.balance for d in Widest.objects.filter(id__in=pair).all_sync()} == {
        pair[0]: 90, pair[1]: 110}
    assert Widest.objects.reindex_sync().ready
    assert_indexes_consistent(redis_client, Widest)


def test_a_write_left_out_by_a_settler_is_told_to_the_committing_client(
        conn: Any, purses: list[str], redis_client: Any, monkeypatch: Any) -> None:
    """As above, but a settler applies the transaction first: the committing client's own
    apply finds it applied, and learns from the versions it left that a write was left
    out (which index and holder, verify() says)."""

    Plain, (op, plan, executor) = email_and_purse_up_to_apply(conn, purses,
                                                              "tpa_settled_unique")
    (record,) = [key.decode() for key in redis_client.scan_iter("*2pc*:r")]

    older_client(conn, monkeypatch)

    class Later(Document):
        email = StringField(unique=True)

        class Meta:
            collection = "tpa_settled_unique"

    Later.objects.reindex_sync()
    Later(id="c", email="dup@x").save_sync()
    conn.backend._know(Later._meta)
    assert conn.run(lambda b: conn.backend.settle(record, None)) is True  # (a settler)
    with pytest.raises(TransactionUniqueConflict) as refused:
        while True:
            plan = op.send(executor.execute(plan))
    assert refused.value.conflicts == [("Plain", "a", "?", "?")]
    assert balances([purses[0]]) == {purses[0]: 90}
    assert leftovers(redis_client) == {}
    assert Later.objects.verify_sync().samples["transaction_conflicts"] == ["a"]
