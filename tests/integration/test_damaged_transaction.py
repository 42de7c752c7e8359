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


def _run_on(op: Any, plan: Any, executor: Any) -> None:
    """Run ``op`` from ``plan`` to its end as engine.drive runs it (an executor's error is
    thrown into the operation)."""
    while True:
        try:
            replies = executor.execute(plan)
        except Exception as exc:
            plan = op.throw(exc)
        else:
            plan = op.send(replies)


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
        _run_on(op, plan, executor)
    assert raised.value.field == "deadline"
    assert balances(pair) == dict.fromkeys(pair, 100)
    assert leftovers(redis_client) == {}


def _intent_of(redis_client: Any, id: str) -> str:
    """The intent key of the stored transaction in the partition of Purse ``id``."""
    from test_two_phase_commit import Purse

    from quantumorm.backends.redis.keys import KeySpace

    keys = KeySpace(Purse._meta)
    tag = keys.tag(keys.partition_of(id))
    (intent,) = [k.decode() for k in redis_client.scan_iter(f"{tag}:2pc:*")]
    return intent


def _pack_any(items: list[Any]) -> bytes:
    """A MessagePack array of strings (bytes), integers and arrays (lists): an intent's
    element of another type than the string its prepare stores."""
    import struct

    def one(item: Any) -> bytes:
        if item is None:
            return b"\xc0"
        if isinstance(item, list):
            return bytes([0x90 | len(item)]) + b"".join(one(i) for i in item)
        if isinstance(item, int):
            return bytes([item]) if 0 <= item < 128 else b"\xce" + struct.pack(">I", item)
        return bytes([0xA0 | len(item)]) + item if len(item) < 32 else (
            b"\xda" + struct.pack(">H", len(item)) + item)

    assert len(items) < 16 or isinstance(items, list)
    head = bytes([0x90 | len(items)]) if len(items) < 16 else b"\xdc" + struct.pack(
        ">H", len(items))
    return head + b"".join(one(i) for i in items)


def _element_damage(flat: list[Any]) -> dict[str, bytes]:
    """Damages of an intent's elements that the old tx_apply.lua did not type-check (its
    last row an update): a number or an array where its prepare stores a string (a
    document's JSON and write id, a key, a prefix, the key count, a row's numbers, the
    phase's elements), and elements of the lists it packs (a write's meta pairs, lenient
    positions, changed names). The old script wrote them converted (a number), stopped on
    a Lua error (a table), or read them as numbers, and read a list with a nil element as
    shorter, one with bytes after it as if they were not there; _stored_call refused them
    all (wire.unpack reads an array of strings and nothing else)."""
    from quantumorm.backends.redis import wire

    nkeys = int(flat[1]) if flat[1].isdigit() else 1

    def at(position: int, value: Any) -> bytes:
        damaged = list(flat)
        damaged[position] = value
        return _pack_any(damaged)

    def packed(position: int, *values: Any) -> bytes:  # (the first of a packed list...)
        try:
            inner: list[Any] = list(wire.unpack(flat[position]))
        except ValueError:  # (the stand-in intent INTENT_DAMAGE names its damages by)
            inner = []
        if values[:1] == (b"apply",):  # (the phase: its last element, the keep)
            return at(position, _pack_any([*inner[:-1], values[1]]))
        return at(position, _pack_any([*values, *inner[len(values):]]))

    return {
        "json a number": at(-6, 13),
        "json an array": at(-6, [b"{}"]),
        "write id a number": at(-5, 7),
        "write id an array": at(-5, []),
        "id key a number": at(-7, 5),
        "a key an array": at(2, [b"k"]),
        "a key a number": at(2, 1),
        "document prefix a number": at(3 + nkeys, 3),
        "key count a number": at(1, nkeys),
        "expected version a number": at(-8, 1),
        "expiry a number": at(-1, 5000),
        "meta pair a number": packed(-4, 7),
        "meta pair an array": packed(-4, [b"x"]),
        "lenient position not digits": at(-3, wire.pack([b"x"])),
        "lenient position a number": at(-3, _pack_any([1])),
        "changed name a number": at(-2, _pack_any([5])),
        "phase's keep a number": packed(2 + nkeys + 5, b"apply", 60000),
        "json nil": at(-6, None),
        "bytes after the intent": _pack_any(list(flat)) + b"\xa1x",
        "bytes after the meta pairs": at(-4, flat[-4] + b"\xa1x"),
        "meta pair nil": packed(-4, None),
        "meta pairs a map": at(-4, b"\x81\xa1a\xa1b"),
        "applied marker with bytes after it": wire.pack([b"applied", b"1"]) + b"\xa1x",
        "applied marker's name a str8": b"\x92\xd9\x07applied\xa11",
    }


def _intent_damage(intent: bytes) -> dict[str, bytes]:
    """Damages of a stored intent (``intent``: the one its prepare stored): kinds the old
    tx_apply.lua took for the applied marker, or met with a Lua error, or applied (an
    element of another type: _element_damage)."""
    from quantumorm.backends.redis import wire

    flat = wire.unpack(intent)
    return {
        **_element_damage(flat),
        "not msgpack": b"garbage",
        "another kind": wire.pack([b"cal", *flat[1:]]),
        "empty array": b"\x90",
        "cut short": intent[:-3],
        "count not a count": wire.pack([b"call", b"+" + flat[1], *flat[2:]]),
        "count too high": wire.pack([b"call", str(int(flat[1]) + 1).encode(), *flat[2:]]),
        "a row lost": wire.pack(flat[:-9]),
        "row kind unknown": wire.pack([*flat[:-9], b"upsert", *flat[-8:]]),
        "not apply mode": wire.pack([*flat[:2 + int(flat[1]) + 5], b"",
                                     *flat[2 + int(flat[1]) + 6:]]),
        "applied marker damaged": wire.pack([b"applied", b"1", b"x"]),
        "expected version signed": wire.pack([*flat[:-8], b"+" + flat[-8], *flat[-7:]]),
        "expiry signed": wire.pack([*flat[:-1], b"+5"]),
        "spec without its record": wire.pack([*flat[:2 + int(flat[1]) + 5], wire.pack([b"apply"]),
                                             *flat[2 + int(flat[1]) + 6:]]),
        "meta pairs not msgpack": wire.pack([*flat[:-4], b"\xc1", *flat[-3:]]),
        "lenient positions not msgpack": wire.pack([*flat[:-3], b"\xc1", *flat[-2:]]),
        "changed names not msgpack": wire.pack([*flat[:-2], b"\xc1", flat[-1]]),
        **_late_value_damage(flat),
    }


def _late_value_damage(flat: list[bytes]) -> dict[str, bytes]:
    """Damages of values a write uses only after the apply's first write, all of them of
    the right type (strings, and lists of strings), which tx_apply.lua checked for type
    only: the document was written, then the apply stopped on a command's error (PUBLISH
    of nil, XADD MAXLEN of text, SET PXAT of a number sent as "1e+20", SET PX 0), its locks
    kept, the index and the document disagreeing, or the intent never becoming the applied
    marker (the record committed forever, every settle writing the rows again)."""
    from quantumorm.backends.redis import wire

    nkeys = int(flat[1]) if flat[1].isdigit() else 1
    events, phase = 2 + nkeys + 3, 2 + nkeys + 5

    def at(position: int, value: bytes) -> bytes:
        damaged = list(flat)
        damaged[position] = value
        return wire.pack(damaged)

    try:
        spec = list(wire.unpack(flat[phase]))
    except ValueError:  # (the stand-in intent INTENT_DAMAGE names its damages by)
        spec = [b"apply", b"r", b"", b"60000"]
    return {
        "events spec without its channel": at(events, wire.pack([b"", b"0"])),
        "events spec of four": at(events, wire.pack([b"", b"0", b"", b""])),
        "events maxlen not digits": at(events, wire.pack([b"1e3", b"0", b""])),
        "events maxlen of 19 digits": at(events, wire.pack([b"9" * 19, b"0", b""])),
        "events document flag not 0 nor 1": at(events, wire.pack([b"", b"yes", b"c"])),
        "expiry of 21 digits": at(-1, b"100000000000000000000"),
        "expiry of 16 digits": at(-1, b"1" + b"0" * 15),
        "keep 0": at(phase, wire.pack([*spec[:3], b"0"])),
        "keep of 21 digits": at(phase, wire.pack([*spec[:3], b"1" + b"0" * 20])),
        "keep signed": at(phase, wire.pack([*spec[:3], b"+60000"])),
    }


INTENT_DAMAGE = list(_intent_damage(
    __import__("quantumorm.backends.redis.wire", fromlist=["pack"]).pack(
        [b"call", b"1", b"k", *[b"a"] * 15])))


@pytest.mark.parametrize("how", INTENT_DAMAGE)
def test_the_committing_client_meets_its_own_intent_damaged(
        conn: Any, redis_client: Any, how: str) -> None:
    """The committing client sends its intents itself (tx_apply.lua reads each where its
    prepare stored it): one damaged between the prepare and the apply is refused by the
    script, nothing of it written, and the client raises DamagedTransactionError naming it
    (not a success, nor TransactionCommitted: no recovery can apply it). The other
    partitions' intents went in the same round trip; the record stays committed and the
    damaged partition's locks stay, refusing its writers likewise, until the intent is put
    back (then any settle completes the transaction) or deleted; its readers by id, which
    would apply a committed transaction first, are refused too."""
    from test_two_phase_commit import leftovers, up_to_apply

    from quantumorm.backends.redis.keys import KeySpace

    pair = _purses()
    loaded = Purse.objects.get_sync(id=pair[1])
    op, plan, executor = up_to_apply(conn, transfer_tx(conn, pair, 10, 30.0))
    record = _record(redis_client)
    intent = _intent_of(redis_client, pair[1])
    good = redis_client.get(intent)
    redis_client.set(intent, _intent_damage(good)[how])
    tag = intent.split(":2pc:", 1)[0]
    doc_key = KeySpace(Purse._meta).doc(KeySpace(Purse._meta).partition_of(pair[1]), pair[1])
    before = {k: redis_client.dump(k) for k in (doc_key, f"{tag}:locks", f"{tag}:locked")}
    with pytest.raises(DamagedTransactionError) as raised:
        _run_on(op, plan, executor)
    assert raised.value.key == intent and raised.value.field == "intent"
    assert {k: redis_client.dump(k) for k in before} == before  # (nothing of it written)
    assert redis_client.hget(record, "state") == b"committed"
    assert redis_client.ttl(record) == -1  # (kept: it is not forgotten)
    assert {k for k in leftovers(redis_client) if k.endswith(":locks")} == {f"{tag}:locks"}
    doc = Purse.objects.get_sync(id=pair[0])
    assert doc.balance == 90  # (the other partition, applied in the same round trip)
    with pytest.raises(DamagedTransactionError):  # (a reader of the damaged partition)
        Purse.objects.get_sync(id=pair[1])
    loaded.balance = 5
    with pytest.raises(DamagedTransactionError):  # (a writer of the damaged partition)
        loaded.save_sync()
    assert redis_client.dump(doc_key) == before[doc_key]
    redis_client.set(intent, good)  # put back: any settle completes the transaction
    assert conn.run(lambda b: conn.backend.settle(record, None)) is True
    assert balances(pair) == {pair[0]: 90, pair[1]: 110}
    assert leftovers(redis_client) == {}


@pytest.mark.parametrize("how", INTENT_DAMAGE)
def test_a_settle_meets_a_damaged_intent_before_applying_any(
        conn: Any, redis_client: Any, how: str) -> None:
    """The roll forward reads every intent and refuses (naming the damaged one) before it
    sends any: nothing applied, released nor forgotten. The old client took an intent of
    another kind for applied, forgot the record, and the partition's locks were then
    released as a missing record's: the transaction half applied."""
    pair = _purses()
    die_after(conn, transfer_tx(conn, pair, 10, 30.0), 3)  # committed, not applied
    record = _record(redis_client)
    intent = _intent_of(redis_client, pair[1])
    good = redis_client.get(intent)
    redis_client.set(intent, _intent_damage(good)[how])
    before = snapshot(redis_client)
    with pytest.raises(DamagedTransactionError) as raised:
        conn.run(lambda b: conn.backend.settle(record, None))
    assert raised.value.key == intent and raised.value.field == "intent"
    assert snapshot(redis_client) == before
    assert Purse.objects.sweep_sync() == 0  # (the sweeper logs it and goes on)
    assert snapshot(redis_client) == before
    redis_client.set(intent, good)
    assert conn.run(lambda b: conn.backend.settle(record, None)) is True
    assert balances(pair) == {pair[0]: 90, pair[1]: 110}


def test_tx_apply_refuses_a_damaged_intent_sent_by_its_key(
        conn: Any, redis_client: Any) -> None:
    """tx_apply.lua itself, called as a settler of an older client would (the key alone),
    refuses every damage with the error reply DAMAGED <intent key> intent."""
    from quantumorm.backends.redis.commands import Call, RedisPlan

    pair = _purses()
    die_after(conn, transfer_tx(conn, pair, 10, 30.0), 3)
    intent = _intent_of(redis_client, pair[1])
    good = redis_client.get(intent)
    for how, damage in _intent_damage(good).items():
        redis_client.set(intent, damage)
        before = snapshot(redis_client)
        with pytest.raises(DamagedTransactionError) as raised:
            conn.run(lambda b: (yield RedisPlan((Call("tx_apply", (intent,), (b"",)),))))
        assert raised.value.key == intent, how
        assert snapshot(redis_client) == before, how


def test_a_damaged_intent_deleted_gives_up_its_partition(
        conn: Any, redis_client: Any) -> None:
    """docs/redis.md: deleting the damaged intent gives up that partition's writes; the
    record is forgotten at the next settle and the partition's locks released by the next
    writer that meets them (a missing record counts as aborted)."""
    from test_two_phase_commit import leftovers, up_to_apply

    pair = _purses()
    op, plan, executor = up_to_apply(conn, transfer_tx(conn, pair, 10, 30.0))
    record = _record(redis_client)
    intent = _intent_of(redis_client, pair[1])
    redis_client.set(intent, b"garbage")
    with pytest.raises(DamagedTransactionError):
        _run_on(op, plan, executor)
    redis_client.delete(intent)
    assert conn.run(lambda b: conn.backend.settle(record, None)) is True
    assert not redis_client.exists(record)
    other = Purse.objects.get_sync(id=pair[1])
    other.balance = 5
    other.save_sync()
    assert balances(pair) == {pair[0]: 90, pair[1]: 5}
    assert leftovers(redis_client) == {}


ROW_DAMAGE = {"sign": b"+1", "blank": b" 1", "underscore": b"1_0", "text": b"x"}


def _stored_intent(conn: Any, redis_client: Any) -> tuple[str, tuple[Any, ...], list[Any]]:
    """A committed transaction's stored intent (of Purse pair[1]'s partition): its key,
    its call's keys and its arguments (a list, to damage)."""
    from quantumorm.backends.redis.twophase import _stored_call

    pair = _purses()
    die_after(conn, transfer_tx(conn, pair, 10, 30.0), 3)  # committed, not applied
    intent = _intent_of(redis_client, pair[1])
    call = _stored_call(redis_client.get(intent), intent)
    assert call is not None
    return intent, call[0], list(call[1])


@pytest.mark.parametrize("how", ROW_DAMAGE)
@pytest.mark.parametrize("field", ["expected", "expiry"])
def test_an_intent_made_again_refuses_a_row_number_that_is_not_plain_digits(
        conn: Any, redis_client: Any, how: str, field: str) -> None:
    """_rebuilt (an intent made again with the schema of now) reads each row's expected
    version and expiry as plain digits: DamagedTransactionError naming the intent, not a
    version read from "+1" (nor a bare ValueError)."""
    intent, keys, args = _stored_intent(conn, redis_client)
    args[6 + (1 if field == "expected" else 8)] = ROW_DAMAGE[how]
    with pytest.raises(DamagedTransactionError) as raised:
        conn.run(lambda b: conn.backend._rebuilt(keys, tuple(args)))
    assert raised.value.key == intent and raised.value.field == "intent"


@pytest.mark.parametrize("how", ROW_DAMAGE)
def test_late_versions_refuse_a_check_version_that_is_not_plain_digits(
        conn: Any, redis_client: Any, how: str) -> None:
    """_late_versions (the versions an intent wrote, read back from write ids) reads a check
    row's version as plain digits: DamagedTransactionError naming the intent."""
    intent, keys, args = _stored_intent(conn, redis_client)
    args[6], args[7] = b"check", ROW_DAMAGE[how]
    with pytest.raises(DamagedTransactionError) as raised:
        conn.run(lambda b: conn.backend._late_versions(keys, tuple(args)))
    assert raised.value.key == intent and raised.value.field == "intent"


def _row_id_changed(intent: bytes) -> bytes:
    """The intent with its last row's id key changed (it still reads as an intent)."""
    from quantumorm.backends.redis import wire

    flat = wire.unpack(intent)
    flat[-7] = flat[-7] + b"x"
    return wire.pack(flat)


@pytest.mark.parametrize("how", ["lock hash deleted", "row id key changed"])
def test_an_intent_stored_without_its_locks_is_damage_not_applied(
        conn: Any, redis_client: Any, how: str) -> None:
    """An intent still stored whose documents are not locked by its record (the partition's
    lock hash deleted, a row's id key changed) was taken for an apply already made: the
    record was forgotten and the partition's writes lost with no error. tx.lua's apply
    refuses it (DAMAGED <intent key> intent): the record stays committed, the partition
    unwritten; deleting the intent gives its writes up, as for any damaged intent."""
    pair = _purses()
    die_after(conn, transfer_tx(conn, pair, 10, 30.0), 3)  # committed, not applied
    record = _record(redis_client)
    intent = _intent_of(redis_client, pair[1])
    if how == "lock hash deleted":
        redis_client.delete(intent.split(":2pc:", 1)[0] + ":locks")
    else:
        redis_client.set(intent, _row_id_changed(redis_client.get(intent)))
    with pytest.raises(DamagedTransactionError) as raised:
        conn.run(lambda b: conn.backend.settle(record, None))
    assert raised.value.key == intent and raised.value.field == "intent"
    assert redis_client.hget(record, "state") == b"committed"
    assert redis_client.exists(intent)
    redis_client.delete(intent)  # (given up: the other partition's part stays applied)
    assert conn.run(lambda b: conn.backend.settle(record, None)) is True
    assert not redis_client.exists(record)
    assert balances(pair) == {pair[0]: 90, pair[1]: 100}


def test_a_sweep_passes_over_transactions_it_cannot_settle(
        conn: Any, redis_client: Any, caplog: Any) -> None:
    """More committed transactions whose intent is damaged than one sweep takes from the
    registry (SWEEP_BATCH), all due before a healthy one: the sweep used to take the same
    oldest ones every time, fail on each, and never reach the healthy one. It passes over
    them now (each left exactly as it was: registered, committed, its intent and its locks
    kept), settles the healthy one, and reports how many it left."""
    import logging

    from test_two_phase_commit import spread_ids

    from quantumorm.backends.redis import twophase
    from quantumorm.backends.redis.keys import KeySpace

    ids = spread_ids(2)
    for id in ids:
        Purse(id=id, owner=id, balance=100).save_sync()
    Entry(id="warm", note="warm").save_sync()
    keys = KeySpace(Purse._meta)
    registry = twophase.registry_key(keys.namespace)
    # one real transaction, committed, its intent damaged (its locks held)
    locked = [ids[0], ids[2]]
    die_after(conn, transfer_tx(conn, locked, 10, 30.0), 3)
    (real,) = [k.decode() for k in redis_client.scan_iter("*2pc*:r")]
    real_intent = _intent_of(redis_client, locked[1])
    redis_client.set(real_intent, b"garbage")
    redis_client.zadd(registry, {real: 1})
    # more records of committed transactions whose intent is damaged, due long ago
    locks = twophase.locks_key(keys.tag(0))
    damaged = [real]
    for n in range(twophase.SWEEP_BATCH + 1):
        record = twophase.record_key(keys.namespace, f"bad{n:04d}")
        intent = twophase.intent_key(locks, record)
        redis_client.hset(record, mapping={"state": "committed", "deadline": "1",
                                           "parts": wire_pack([locks, intent])})
        redis_client.set(intent, b"garbage")
        redis_client.zadd(registry, {record: 2 + n})
        damaged.append(record)
    # a healthy one: committed and applied, its client gone before the finish; due later
    healthy = [ids[1], ids[3]]
    die_after(conn, transfer_tx(conn, healthy, 7, 30.0), 4)  # begin, prepare, commit, apply
    (record,) = {k.decode() for k in redis_client.scan_iter("*2pc*:r")} - set(damaged)
    assert redis_client.hget(record, "state") == b"committed"
    # (due now, after the damaged ones: the registry's score says only when the sweeper
    # looks; a committed record is settled whatever its deadline)
    redis_client.zadd(registry, {record: 10_000})
    before = {key: redis_client.dump(key) for key in redis_client.scan_iter("*")
              if b"2pc" in key or key.endswith(b":locks")}
    before = {k: v for k, v in before.items() if k.decode() != record and k != registry.encode()}
    with caplog.at_level(logging.WARNING, logger="quantumorm.redis"):
        Purse.objects.sweep_sync()
    assert not redis_client.exists(record)  # settled: forgotten
    assert redis_client.zscore(registry, record) is None
    assert balances(healthy) == {healthy[0]: 93, healthy[1]: 107}
    # the damaged ones, each as it was, still registered
    assert {key: redis_client.dump(key) for key in before} == before
    assert all(redis_client.zscore(registry, r) is not None for r in damaged)
    assert redis_client.hget(locks_of(real_intent), sortable_id_key(locked[1])) == real.encode()
    with pytest.raises(DamagedTransactionError):  # (still refused, as before the sweep)
        Purse.objects.get_sync(id=locked[1])
    assert any(f"left {len(damaged)} transactions" in r.getMessage() for r in caplog.records)


def wire_pack(items: list[str]) -> bytes:
    from quantumorm.backends.redis import wire

    return wire.pack([item.encode() for item in items])


def locks_of(intent: str) -> str:
    return intent.split(":2pc:", 1)[0] + ":locks"


def sortable_id_key(id: str) -> str:
    from quantumorm import sortable

    return sortable.id_key(id)


def test_a_transaction_never_stores_an_expiry_or_keep_its_apply_refuses(
        conn: Any, redis_client: Any) -> None:
    """The longest expiry a write takes (MAX_TTL seconds: 15 digits of ms) and the longest
    timeout (MAX_TIMEOUT: its applied marker kept ten timeouts, 15 digits of ms) make an
    intent tx_apply.lua applies; a longer one is refused before anything is sent (it used
    to be stored, and then its apply failed half done, or now would be refused as damage
    with the transaction committed)."""
    MAX_TTL, MAX_TIMEOUT = 999_999_999_999, 99_999_999_999  # (engine.ops's, transaction's)
    pair = _purses()
    before = snapshot(redis_client)
    with pytest.raises(ValueError, match="ttl"):
        Purse(id="fresh", owner="x", balance=1).save_sync(ttl=MAX_TTL + 1)
    with pytest.raises(ValueError, match="timeout"):
        conn.transaction_sync(timeout=MAX_TIMEOUT + 1)
    assert snapshot(redis_client) == before
    tx = conn.transaction_sync(timeout=MAX_TIMEOUT)
    a, b = tx.get(Purse, pair[0]), tx.get(Purse, pair[1])
    a.balance, b.balance = 90, 110
    tx.save(a, ttl=MAX_TTL)
    tx.save(b)
    tx.commit()
    assert balances(pair) == {pair[0]: 90, pair[1]: 110}
    from quantumorm.backends.redis.keys import KeySpace

    keys = KeySpace(Purse._meta)
    left = redis_client.pttl(keys.doc(keys.partition_of(pair[0]), pair[0]))
    assert MAX_TTL * 1000 - 60_000 < left <= MAX_TTL * 1000
