"""A partition's state hash and the auto-id counter holding what does not read, met by the
public API: a typed error naming the key (and the field), nothing written, and for the
state hash's schema layout stamp, verify() reports it and repair() writes it again.

* the ``layout`` stamp of ``{ns:coll:pN}:state``: a query, a count, a save, a delete, a
  patch (``filter(id=).update()``) and a bulk insert raise :class:`DamagedStateError` (a
  :class:`DamagedMetaError`) naming the key and the field; a connection's first use of the model (the schema's registration, which reads
  every stamp) does not fail on it; verify() reports ``damaged_layout``; repair() stamps the
  stored schema's layout again, and everything works after it;
* the auto-id counter (``seq``) that ``insert.lua`` INCRs: :class:`WrongTypeError` naming
  it, as ``writer.id_counter`` does for a counter Python reads.

Damage is made by hand, as test_damaged_meta.py makes it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import MODES, call, snapshot

from quantumorm import (
    BackendError,
    DamagedMetaError,
    DamagedStateError,
    Document,
    IntField,
    StringField,
    WrongTypeError,
    sortable,
)
from quantumorm.backends.redis import schemas
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.engine.drive import run

#: a stamp that does not read: tonumber() (the scripts) and int() refuse these
LAYOUT_DAMAGE = {"text": b"garbage", "empty": b"", "half": b"12ab",
                 # (numbers to Lua's tonumber(), not plain digits: damaged for the scripts
                 # as for verify() and repair(), or repair() would report a fix it did not
                 # make)
                 "blank": b" 5", "exponent": b"1e400", "hex": b"0x10"}


class Slab(Document):
    title = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "ds_slabs"


@pytest.mark.parametrize("how", LAYOUT_DAMAGE)
@pytest.mark.parametrize("mode", MODES)
async def test_a_damaged_layout_stamp_is_typed_reported_and_repaired(
        conn: Any, redis_client: Any, mode: str, how: str) -> None:
    saved = await call(Slab(id="a", title="t", n=1), "save", mode)
    state = KeySpace(Slab._meta).state(0)
    good = redis_client.hget(state, "layout")
    assert good is not None and good.isdigit()
    redis_client.hset(state, "layout", LAYOUT_DAMAGE[how])
    before = snapshot(redis_client)
    attempts = [
        (Slab.objects.filter(title="t"), "all", {}),
        (Slab.objects.filter(n__gte=0), "count", {}),
        (Slab(id="b", title="u", n=2), "save", {}),
        (saved, "delete", {}),
        # (the patch's own copy of the stamp's check, written out in patch.lua)
        (Slab.objects.filter(id="a"), "update", {"n": 2}),
    ]
    for target, method, kwargs in attempts:
        with pytest.raises(DamagedStateError) as raised:
            await call(target, method, mode, **kwargs)
        assert isinstance(raised.value, DamagedMetaError)
        assert raised.value.key == state and raised.value.field == "layout"
        assert "ds_slabs" in str(raised.value)
    with pytest.raises(DamagedStateError):
        await call(Slab.objects, "bulk_create", mode, [Slab(id="c", title="v", n=3)])
    assert snapshot(redis_client) == before  # (every refusal wrote nothing)
    # a connection's first use of the model reads every stamp: not a ValueError
    schema = await asyncio.to_thread(run, schemas.register(Slab._meta, KeySpace(Slab._meta)),
                                     conn.store.sync_executor())
    assert schema.layout == int(good)
    report = await call(Slab.objects, "verify", mode)
    assert report.problems == {"damaged_layout": 1}
    assert report.samples["damaged_layout"] == [state]
    repaired = await call(Slab.objects, "repair", mode)
    assert repaired.ok and repaired.fixed == {"damaged_layout": 1}
    assert redis_client.hget(state, "layout") == good
    assert [s.id for s in await call(Slab.objects.filter(title="t"), "all", mode)] == ["a"]
    await call(Slab(id="b", title="u", n=2), "save", mode)
    assert await call(Slab.objects.filter(n__gte=0), "count", mode) == 2


#: an auto-id counter written by someone else: INCR refuses each (and int() reads the
#: first two as 13)
COUNTER_DAMAGE = {"sign": b"+13", "blank": b" 13", "text": b"thirteen"}


@pytest.mark.parametrize("how", COUNTER_DAMAGE)
@pytest.mark.parametrize("mode", MODES)
async def test_a_create_under_a_damaged_id_counter_raises_typed(
        conn: Any, redis_client: Any, mode: str, how: str) -> None:
    await call(Slab(id="warm", title="w", n=0), "save", mode)
    sequence = KeySpace(Slab._meta).sequence
    redis_client.set(sequence, COUNTER_DAMAGE[how])
    before = snapshot(redis_client)
    with pytest.raises(WrongTypeError) as raised:
        await call(Slab.objects, "create", mode, title="new", n=1)
    assert raised.value.key == sequence
    assert snapshot(redis_client) == before  # (nothing written, the counter as it was)
    redis_client.delete(sequence)
    created = await call(Slab.objects, "create", mode, title="new", n=1)
    assert created.id == "1"


@pytest.mark.parametrize("mode", MODES)
async def test_a_create_past_the_id_counters_range_is_an_error_not_a_wrong_type(
        conn: Any, redis_client: Any, mode: str) -> None:
    # (INCR of a counter at 2^63 - 1 overflows: a count, so not the counter's WRONGTYPE
    # refusal, and nothing written)
    await call(Slab(id="warm", title="w", n=0), "save", mode)
    sequence = KeySpace(Slab._meta).sequence
    redis_client.set(sequence, str(2**63 - 1))
    before = snapshot(redis_client)
    with pytest.raises(BackendError) as raised:
        await call(Slab.objects, "create", mode, title="new", n=1)
    assert not isinstance(raised.value, WrongTypeError)
    assert "overflow" in str(raised.value)
    assert snapshot(redis_client) == before


def test_a_roll_forward_that_meets_a_damaged_layout_stamp_raises_typed_first(
        conn: Any, redis_client: Any) -> None:
    """A committed two-phase transaction whose client died before its apply: the roll
    forward compares each intent's layout with its partition's stamp. A stamp that does not
    read is a DamagedStateError before any intent is applied (not a ValueError); once
    repair() stamped it again, the roll forward applies the transaction whole."""
    from test_two_phase_commit import Entry, Purse, die_after, spread_ids, transfer_tx

    ids = spread_ids(2)
    for id in ids:
        Purse(id=id, owner=id, balance=100).save_sync()
    Entry(id="warm", note="warm").save_sync()  # (schemas read: no extra round trips later)
    pair = [ids[0], ids[2]]
    die_after(conn, transfer_tx(conn, pair, 10, 0.2), 3)  # committed, not applied
    (record,) = [k.decode() for k in redis_client.scan_iter("*2pc*:r")]
    keys = KeySpace(Purse._meta)
    state = keys.state(keys.partition_of(pair[1]))
    good = redis_client.hget(state, "layout")
    redis_client.hset(state, "layout", b"garbage")
    docs = [keys.doc(keys.partition_of(id), id) for id in pair]
    before = [redis_client.get(doc) for doc in docs]
    with pytest.raises(DamagedStateError) as raised:
        conn.run(lambda b: conn.backend.settle(record, None))
    assert raised.value.key == state and raised.value.field == "layout"
    assert [redis_client.get(doc) for doc in docs] == before  # (nothing applied)
    assert Purse.objects.repair_sync().fixed == {"damaged_layout": 1}
    assert redis_client.hget(state, "layout") == good
    assert conn.run(lambda b: conn.backend.settle(record, None)) is True
    assert {p.id: p.balance for p in Purse.objects.filter(id__in=pair).all_sync()} == {
        pair[0]: 90, pair[1]: 110}


@pytest.mark.parametrize("count", [1, 2, 3])
async def test_the_tools_scripts_refusing_a_state_hash_of_another_type_raise_typed(
        conn: Any, redis_client: Any, count: int) -> None:
    """reindex.lua and repair.lua answer ``{"WRONGTYPE", state key}`` in place of their
    per-document list when the state hash holds another type (it changed type after the
    tool read the schema): WrongTypeError naming it, not a ValueError from zip() or int()
    (nor reindex's documents counted as unsettled). Their batches are driven directly:
    the public entry points read the state hash first, where the error is typed already."""
    from quantumorm.backends.redis import reindex
    from quantumorm.backends.redis.repair import _Sender
    from quantumorm.backends.redis.verify import Checker
    from quantumorm.maintenance import ReindexReport

    ids = [f"w{i}" for i in range(count)]
    for id in ids:
        await asyncio.to_thread(Slab(id=id, title="t", n=1).save_sync)
    state = conn.backend._state(Slab._meta)
    keys, layout = state.keys, state.writes.layout
    redis_client.delete(keys.state(0))
    redis_client.set(keys.state(0), b"not a hash")
    executor = conn.store.sync_executor()
    before = snapshot(redis_client)
    batch = reindex._batch(Slab, keys, layout, 0, list(Slab._meta.indexes),
                           [sortable.id_key(id) for id in ids], ReindexReport("Slab"))
    with pytest.raises(WrongTypeError) as raised:
        await asyncio.to_thread(run, batch, executor)
    assert raised.value.key == keys.state(0)
    sender = _Sender(Checker(Slab, keys, list(Slab._meta.indexes)), layout, {})
    fixes = [("clock_behind", "", ["clock", b"", "1", b"", b""])] * count
    with pytest.raises(WrongTypeError) as raised:
        await asyncio.to_thread(run, sender._call(0, fixes), executor)
    assert raised.value.key == keys.state(0)
    assert snapshot(redis_client) == before
