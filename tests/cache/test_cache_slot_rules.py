"""The cache slot rules (quantumorm/cache/entries.py): a write's mark ``P:<token>`` is never
replaced by anything a fill can overwrite, except by the last writer it names or by its
expiry. Each test drives the bad interleaving step by step on the test redis-server (a
second :class:`CachedBackend` with its own server state stands for another process, whose
``cache_finish`` cannot reach the cache: its breaker is open), then checks that no read
serves a document older than the completed write."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cache_models import Account, Profile
from cache_stepping import Stepper

from quantumorm.cache import state
from quantumorm.cache.backend import CachedBackend
from quantumorm.cache.dispatch import on_cache
from quantumorm.cache.entries import CacheKeys
from quantumorm.cache.state import ServerState
from quantumorm.engine import prepared
from quantumorm.engine.contract import WriteRequest


def _slot(cached: dict[str, Any], model: Any, id: str) -> bytes | None:
    value: bytes | None = cached["raw"].get(CacheKeys(model._meta).entry(id))
    return value


def _other_process(model: Any) -> CachedBackend:
    """The model's cached backend as another process sees it: the same primary and cache
    store, its own breaker and owed invalidations."""
    backend = model._connection().backend
    return CachedBackend(backend.primary, backend.store, ServerState("other"))


def _cut_off(backend: CachedBackend) -> None:
    """From now on that process cannot reach the cache (its breaker open)."""
    for _ in range(state.THRESHOLD):
        backend.state.breaker.failure()


def _commit_cut_off(writer: Stepper, writing: CachedBackend) -> None:
    """``writer``'s write (begun on the cache by the process ``writing``) commits on the
    primary, then cannot reach the cache for its finish: complete, its mark left behind."""
    reply = writer.execute_primary()
    _cut_off(writing)
    writer.resume(reply)


def _stepper(model: Any, op: Any) -> Stepper:
    return Stepper(op, model._connection().store.sync_executor())


def _update(doc: Any) -> WriteRequest:
    request = prepared.request(doc, doc.clean())
    assert request is not None
    return request


def _run(model: Any, op: Any) -> Any:
    """A cache store operation run to its end on the model's cache."""
    stepper = _stepper(model, on_cache(op))
    stepper.run_cache_steps()
    assert stepper.done
    return stepper.result


def test_a_damaged_entrys_tombstone_keeps_a_mark_made_since(cached: dict[str, Any]) -> None:
    a = Account(email="a@x", name="v1").save_sync()
    Account.objects.get_sync(id=a.id)  # filled
    cached["raw"].set(CacheKeys(Account._meta).entry(a.id), b"Ex:{}", px=300_000)
    assert Account.objects.get_sync(id=a.id).name == "v1"  # damaged: the primary's; owed
    other = _other_process(Account)
    a.name = "v2"
    writer = _stepper(Account, other.write(Account._meta, [_update(a)]))
    writer.run_cache_steps()  # the other process began its write: its mark is there
    mark = _slot(cached, Account, a.id)
    assert mark is not None and mark.startswith(b"P:")
    # this process pays its tombstone, then reads (the primary still holds v1): the
    # tombstone must not replace the mark, or the read would fill v1
    assert Account.objects.get_sync(id=a.id).name == "v1"
    assert _slot(cached, Account, a.id) == mark
    _commit_cut_off(writer, other)  # v2 committed: the write is complete anyway
    assert Account.objects.get_sync(id=a.id).name == "v2"
    assert Account.objects.get_many_sync([a.id])[0].name == "v2"


def test_an_owed_invalidation_keeps_a_writers_mark(cached: dict[str, Any]) -> None:
    a = Account(email="a@x", name="v1").save_sync()
    Account.objects.get_sync(id=a.id)  # filled: v1
    here = Account._connection().backend
    _cut_off(here)
    a.name = "v2"
    a.save_sync()  # the cache skipped: this process owes a's tombstone
    here.state.breaker.success()  # (as after the cooldown)
    other = _other_process(Account)
    b = Account.objects.cached(False).get_sync(id=a.id)
    b.name = "v3"
    writer = _stepper(Account, other.write(Account._meta, [_update(b)]))
    writer.run_cache_steps()  # the other process began its write
    # this process pays what it owes, then reads v2 from the primary: no fill of v2 may
    # survive the other process's write
    assert Account.objects.get_sync(id=a.id).name == "v2"
    slot = _slot(cached, Account, a.id)
    assert slot is not None and slot.startswith(b"P:")
    _commit_cut_off(writer, other)  # v3 committed
    assert Account.objects.get_sync(id=a.id).name == "v3"


def test_a_writer_that_joins_a_mark_does_not_write_through_over_it(
        cached: dict[str, Any]) -> None:
    """Two writes in progress on one id: the first (a delete, in another process) cannot
    finish on the cache; the second, which committed before it, must not write its
    document through: the delete completed after it."""
    p = Profile(name="v1").save_sync()  # write-through
    other = _other_process(Profile)
    deleter = _stepper(Profile, other.write(Profile._meta, [WriteRequest("delete", p.id)]))
    deleter.run_cache_steps()
    p.name = "v2"
    updater = _stepper(Profile, Profile._connection().backend.write(Profile._meta,
                                                                   [_update(p)]))
    updater.run_cache_steps()
    updated = updater.execute_primary()  # v2 committed
    deleted = deleter.execute_primary()  # then deleted
    _cut_off(other)
    deleter.resume(deleted)  # complete; its finish could not reach the cache
    updater.resume(updated)
    assert Profile.objects.get_many_sync([p.id]) == [None]
    assert Profile.objects.get_many_sync([p.id]) == [None]
    assert Profile.objects.cache_stats().write_through == 1  # (the insert only)


def test_a_mark_an_invalidation_flagged_ends_in_a_tombstone(cached: dict[str, Any]) -> None:
    """A writer's mark that an owed invalidation came by (flagged, not replaced) is not
    written through by that writer: the invalidation's write may have committed after it."""
    p = Profile(name="v1").save_sync()
    other = _other_process(Profile)
    p.name = "v2"
    writer = _stepper(Profile, other.write(Profile._meta, [_update(p)]))
    writer.run_cache_steps()
    reply = writer.execute_primary()  # v2 committed, not finished
    here = Profile._connection().backend
    _cut_off(here)
    q = Profile.objects.get_sync(id=p.id)  # (the primary's v2)
    q.name = "v3"
    q.save_sync()  # committed after v2; owed
    here.state.breaker.success()
    Profile(name="z").save_sync()  # pays what this process owes: the mark is flagged
    slot = _slot(cached, Profile, p.id)
    assert slot is not None and slot.startswith(b"P:-,")
    writer.resume(reply)
    slot = _slot(cached, Profile, p.id)
    assert slot is not None and slot.startswith(b"T")
    assert Profile.objects.get_sync(id=p.id).name == "v3"


def test_the_invalidate_script_by_slot_state(cached: dict[str, Any]) -> None:
    raw = cached["raw"]
    keys = CacheKeys(Account._meta)
    store = Account._connection().backend.store
    slots = {"entry": b"E3:{}", "negative": b"N", "tombstone": b"T7", "lease": b"L5:ab12",
             "mark": b"P:ab12",
             "marks": b"P:ab12@1765432100000,cd34@1765432105000", "flagged": b"P:-,ab12",
             "damaged": b"Ex:{}", "moved on": b"E4:{}"}
    for name, value in slots.items():
        raw.set(keys.entry(name), value, px=60_000)
    expected = {name: b"" for name in slots}
    expected["damaged"] = b"Ex:{}"
    expected["moved on"] = b"Ex:{}"  # a damaged entry seen there, replaced since
    groups = [[(keys.entry(id), expected[id]) for id in group]
              for group in keys.by_partition(list(slots))]
    _run(Account, store.invalidate(groups, 30_000, None, "g"))
    after = {name: raw.get(keys.entry(name)) for name in slots}
    assert after == {"entry": b"T0", "negative": b"T0", "tombstone": b"T7", "lease": b"T5",
                     "mark": b"P:-,ab12", "marks": b"P:-,ab12@1765432100000,cd34@1765432105000",
                     "flagged": b"P:-,ab12", "damaged": b"T0", "moved on": b"E4:{}"}
    for name in ("mark", "marks", "flagged", "moved on"):
        assert 30_000 < raw.pttl(keys.entry(name)) <= 60_000  # kept its expiry
    for name in ("entry", "tombstone", "lease", "damaged"):
        assert 0 < raw.pttl(keys.entry(name)) <= 30_000


def _tokens(mark: bytes | None) -> list[str]:
    """A write's mark as its list: "-" (flagged) and each writer's token, its deadline (the
    server's time in milliseconds) cut off."""
    assert mark is not None and mark.startswith(b"P:"), mark
    return [item.split("@")[0] for item in mark[2:].decode().split(",")]


def _deadlines(mark: bytes | None) -> dict[str, int]:
    assert mark is not None
    return {item.split("@")[0]: int(item.split("@")[1])
            for item in mark[2:].decode().split(",") if item != "-"}


def test_begin_and_finish_with_several_writers(cached: dict[str, Any]) -> None:
    raw = cached["raw"]
    keys = CacheKeys(Account._meta)
    store = Account._connection().backend.store
    key = keys.entry("x")

    def finish(token: str, version: int, entry: bytes) -> list[int]:
        result: list[int] = _run(Account, store.finish([[(key, version, entry)]], token,
                                                       60_000, 30_000, None, "g"))
        return result

    _run(Account, store.begin([[key]], "aaaa", 5_000))
    _run(Account, store.begin([[key]], "bbbb", 10_000))
    assert _tokens(raw.get(key)) == ["aaaa", "bbbb"] and 5_000 < raw.pttl(key) <= 10_000
    deadlines = _deadlines(raw.get(key))
    # (5,000 ms apart, plus the server time between the two begins)
    assert 5_000 <= deadlines["bbbb"] - deadlines["aaaa"] < 6_000
    assert raw.pexpiretime(key) == deadlines["bbbb"]  # the key expires at the latest
    _run(Account, store.begin([[key]], "dddd", 1_000))  # (a shorter guard: the mark's kept)
    assert raw.pexpiretime(key) == deadlines["bbbb"]
    assert finish("dddd", 2, b"") == [0]
    assert _tokens(raw.get(key)) == ["-", "aaaa", "bbbb"] and 5_000 < raw.pttl(key) <= 10_000
    assert finish("bbbb", 2, b"E2:{}") == [0]  # another writer is in progress
    assert _tokens(raw.get(key)) == ["-", "aaaa"]
    assert raw.pexpiretime(key) == deadlines["aaaa"]  # the latest deadline left
    assert finish("", 9, b"") == [0]  # a writer whose begin did not run: the mark stays
    assert _tokens(raw.get(key)) == ["-", "aaaa"]
    assert finish("aaaa", 3, b"E3:{}") == [0]  # the last: a tombstone, no write-through
    assert raw.get(key) == b"T3"
    _run(Account, store.begin([[key]], "cccc", 10_000))
    assert raw.get(key) == b"P:cccc"  # alone: its deadline is the key's expiry
    assert finish("cccc", 4, b"E4:{}") == [1]  # alone: written through
    assert raw.get(key) == b"E4:{}"


def test_a_finish_without_a_mark_never_writes_through(cached: dict[str, Any]) -> None:
    """A write whose cache_begin did not run (token "") leaves a tombstone, whatever the
    slot holds, an absent slot included: another write may have committed after it, and
    its mark expired."""
    raw = cached["raw"]
    keys = CacheKeys(Account._meta)
    store = Account._connection().backend.store
    key = keys.entry("x")
    for before in (None, b"E3:{}", b"P:aaaa"):
        raw.delete(key)
        if before is not None:
            raw.set(key, before, px=60_000)
        stored = _run(Account, store.finish([[(key, 2, b"E2:{}")]], "", 60_000, 30_000,
                                            None, "g"))
        assert stored == [0]
        assert raw.get(key) == (b"P:-,aaaa@%d" % raw.pexpiretime(key) if before == b"P:aaaa"
                                else b"T2")


def test_a_round_11_mark_reads_as_a_write_in_progress(cached: dict[str, Any]) -> None:
    """A mark written by round 11's cache_begin ("P:<token>", no deadline) keeps readers on
    the primary, and a writer joining it keeps it until the key's expiry, as its deadline."""
    raw = cached["raw"]
    a = Account(email="a@x", name="v1").save_sync()
    key = CacheKeys(Account._meta).entry(a.id)
    raw.set(key, b"P:0123456789abcdef", px=60_000)
    assert Account.objects.get_sync(id=a.id).name == "v1"
    assert raw.get(key) == b"P:0123456789abcdef"  # not filled
    expiry = raw.pexpiretime(key)
    a.name = "v2"
    a.save_sync()  # joins the mark, then leaves it to the round-11 writer
    assert _tokens(raw.get(key)) == ["-", "0123456789abcdef"]
    assert _deadlines(raw.get(key))["0123456789abcdef"] == expiry == raw.pexpiretime(key)
    assert Account.objects.get_sync(id=a.id).name == "v2"
    assert Account.objects.cache_stats().hits == 0


def test_dropping_the_cache_keeps_a_writers_mark(cached: dict[str, Any],
                                                 monkeypatch: Any) -> None:
    """Past MAX_OWED_IDS a process drops the collection's whole cache instead of paying
    tombstones one by one: a write in progress in another process keeps its mark."""
    monkeypatch.setattr(state, "MAX_OWED_IDS", 0)
    a = Account(email="a@x", name="v1").save_sync()
    Account.objects.get_sync(id=a.id)  # filled: v1
    here = Account._connection().backend
    _cut_off(here)
    Account(email="b@x", name="b").save_sync()  # the cache skipped: everything is owed
    here.state.breaker.success()
    other = _other_process(Account)
    a.name = "v2"
    writer = _stepper(Account, other.write(Account._meta, [_update(a)]))
    writer.run_cache_steps()  # the other process began its write
    assert Account.objects.get_sync(id=a.id).name == "v1"  # dropped, then read: v1
    slot = _slot(cached, Account, a.id)
    assert slot is not None and slot.startswith(b"P:")
    _commit_cut_off(writer, other)  # v2 committed
    assert Account.objects.get_sync(id=a.id).name == "v2"


def test_a_query_result_computed_before_a_write_whose_finish_failed(
        cached: dict[str, Any]) -> None:
    """The collection's query generation is marked like a document's slot: while a write is
    in progress no result is served nor stored, and the mark is kept until the last writer
    finishes (or it expires)."""
    a = Account(email="a@x", name="A").save_sync()
    other = _other_process(Account)
    a.name = "B"
    writer = _stepper(Account, other.write(Account._meta, [_update(a)]))
    writer.run_cache_steps()  # the other process began its write
    query = Account.objects.filter(name="A").cache(ttl=60)
    assert [d.id for d in query.all_sync()] == [a.id]  # computed before the commit
    stats = Account.objects.cache_stats()
    assert (stats.query_fills, stats.bypassed) == (0, 1)  # a write in progress: not stored
    _commit_cut_off(writer, other)  # committed: no document is named "A" now
    assert Account.objects.filter(name="A").cache(ttl=60).all_sync() == []


def test_a_write_whose_finish_failed_is_paid_with_its_token(cached: dict[str, Any]) -> None:
    """A process whose write completed but whose finish failed pays with that write's token:
    its mark leaves the slot and the query generation at once, so query caching is back
    without waiting for the mark's deadline (write_guard_ms)."""
    raw = cached["raw"]
    keys = CacheKeys(Account._meta)
    a = Account(email="a@x", name="A").save_sync()
    other = _other_process(Account)
    a.name = "B"
    writer = _stepper(Account, other.write(Account._meta, [_update(a)]))
    writer.run_cache_steps()  # began: the slot and the generation hold its mark
    generation = raw.get(keys.generation)
    assert generation is not None and generation.startswith(b"P:")
    _commit_cut_off(writer, other)  # committed; its finish owed
    other.state.breaker.success()
    payer = _stepper(Account, other.settled(Account._meta))
    payer.run_cache_steps()
    assert payer.done and payer.result is True and other.state.owed(keys.generation) is None
    generation = raw.get(keys.generation)
    assert generation is not None and generation.startswith(b"T"), generation
    slot = _slot(cached, Account, a.id)
    assert slot is not None and slot.startswith(b"T"), slot
    query = Account.objects.filter(name="B").cache(ttl=60)
    assert [d.id for d in query.all_sync()] == [a.id]
    assert [d.id for d in query.all_sync()] == [a.id]
    stats = Account.objects.cache_stats()
    assert (stats.query_fills, stats.query_hits) == (1, 1), stats
    assert Account.objects.get_sync(id=a.id).name == "B"


def test_a_renewed_generation_does_not_expire(cached: dict[str, Any]) -> None:
    """The generation a write settles is a random token without an expiry: a result stored
    under it lives its own ttl (a query's ttl longer than the model's), never orphaned by
    the generation expiring first."""
    raw = cached["raw"]
    keys = CacheKeys(Account._meta)
    Account(email="a@x", name="A").save_sync()
    generation = raw.get(keys.generation)
    assert generation is not None and generation.startswith(b"T")
    assert raw.pttl(keys.generation) == -1
    Account._connection().run(lambda backend: backend.drop_collection(Account._meta))
    assert raw.pttl(keys.generation) == -1


def test_dropping_frees_the_slots_and_flags_the_marks(cached: dict[str, Any]) -> None:
    raw = cached["raw"]
    keys = CacheKeys(Account._meta)
    slots = {"entry": b"E3:{}", "negative": b"N", "tombstone": b"T7", "lease": b"L5:ab12",
             "mark": b"P:ab12", "marks": b"P:ab12@1765432100000,cd34@1765432105000",
             "flagged": b"P:-,ab12"}
    for name, value in slots.items():
        raw.set(keys.entry(name), value, px=60_000)
    Account._connection().run(lambda backend: backend.drop_collection(Account._meta))
    after = {name: raw.get(keys.entry(name)) for name in slots}
    assert after == {"entry": None, "negative": None, "tombstone": None, "lease": None,
                     "mark": b"P:-,ab12",
                     "marks": b"P:-,ab12@1765432100000,cd34@1765432105000",
                     "flagged": b"P:-,ab12"}
    for name in ("mark", "marks", "flagged"):
        assert 30_000 < raw.pttl(keys.entry(name)) <= 60_000  # kept its expiry


def _server_ms(raw: Any) -> int:
    seconds, micros = raw.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _past(raw: Any, deadline: int) -> None:
    """Wait until the server's clock is past ``deadline`` (milliseconds)."""
    while _server_ms(raw) <= deadline:
        time.sleep(0.02)


def test_a_dead_writers_mark_stops_counting_after_its_guard(cached: dict[str, Any]) -> None:
    """A writer that dies after cache_begin (a short guard) must not keep the slot and the
    query generation marks while later writers come and go: after its deadline the last of
    them settles the slot (a tombstone: the dead writer may have committed), and caching
    resumes (write-through, hits, query results)."""
    raw = cached["raw"]
    keys = CacheKeys(Profile._meta)
    store = Profile._connection().backend.store
    p = Profile(name="v1").save_sync()
    key = keys.entry(p.id)
    _run(Profile, store.begin([[key]], "dead", 1_000, keys.generation))  # then dies
    dead = _server_ms(raw) + 1_000  # (its deadline is earlier)
    p.name = "v2"
    p.save_sync()  # came and went within the dead writer's guard: the mark stays
    assert _tokens(raw.get(key)) == ["-", "dead"]
    assert _tokens(raw.get(keys.generation)) == ["-", "dead"]
    p.name = "v3"
    writer = _stepper(Profile, Profile._connection().backend.write(Profile._meta,
                                                                   [_update(p)]))
    writer.run_cache_steps()  # began within the guard, finishes after it
    assert _tokens(raw.get(key))[:2] == ["-", "dead"] and len(_tokens(raw.get(key))) == 3
    reply = writer.execute_primary()
    _past(raw, dead)
    writer.resume(reply)
    slot = raw.get(key)
    assert slot is not None and slot.startswith(b"T")  # settled: the dead may have committed
    assert raw.get(keys.generation).startswith(b"T")
    p = Profile.objects.cached(False).get_sync(id=p.id)
    for name in ("v4", "v5"):  # later writers, one at a time: written through
        p.name = name
        p.save_sync()
        slot = raw.get(key)
        assert slot is not None and slot.startswith(b"E")
    assert Profile.objects.get_sync(id=p.id).name == "v5"
    assert Profile.objects.cache_stats().hits == 1
    query = Profile.objects.filter(name="v5").cache(ttl=60)
    assert [d.id for d in query.all_sync()] == [p.id]
    assert [d.id for d in query.all_sync()] == [p.id]
    stats = Profile.objects.cache_stats()
    assert (stats.query_fills, stats.query_hits) == (1, 1)


def test_writers_joining_after_a_dead_writers_deadline(cached: dict[str, Any]) -> None:
    """Writers that begin after a dead writer's deadline (its token still in the mark: a
    writer in progress kept the key) drop its token; while they overlap, the key stays a
    mark; the last of them settles it, and the next writer alone writes through."""
    raw = cached["raw"]
    keys = CacheKeys(Account._meta)
    store = Account._connection().backend.store
    key = keys.entry("x")

    def finish(token: str, version: int) -> list[int]:
        result: list[int] = _run(Account, store.finish(
            [[(key, version, b"E%d:{}" % version)]], token, 60_000, 30_000, None, "g"))
        return result

    _run(Account, store.begin([[key]], "dead", 500))
    dead = _server_ms(raw) + 500
    _run(Account, store.begin([[key]], "aaaa", 10_000))
    _past(raw, dead)
    _run(Account, store.begin([[key]], "bbbb", 10_000))  # drops the dead token: flagged
    assert _tokens(raw.get(key)) == ["-", "aaaa", "bbbb"]
    assert finish("aaaa", 2) == [0]
    _run(Account, store.begin([[key]], "cccc", 10_000))
    assert _tokens(raw.get(key)) == ["-", "bbbb", "cccc"]
    assert finish("bbbb", 3) == [0]
    assert finish("cccc", 4) == [0]  # the last: a tombstone
    assert raw.get(key) == b"T4"
    _run(Account, store.begin([[key]], "dddd", 10_000))
    assert finish("dddd", 5) == [1]
    assert raw.get(key) == b"E5:{}"


def test_a_writer_slower_than_its_guard_ends_in_a_tombstone(cached: dict[str, Any]) -> None:
    """A writer whose token was dropped past its deadline may still commit (a commit slower
    than write_guard_ms, the limit docs/caching.md states): its own cache_finish never
    writes its document through, and ends what another writer wrote through meanwhile (or
    keeps a mark in progress from writing through) with a tombstone."""
    raw = cached["raw"]
    keys = CacheKeys(Account._meta)
    store = Account._connection().backend.store
    key = keys.entry("x")

    def finish(token: str, version: int) -> list[int]:
        result: list[int] = _run(Account, store.finish(
            [[(key, version, b"E%d:{}" % version)]], token, 60_000, 30_000, None, "g"))
        return result

    for late in ("slow", "slower"):
        _run(Account, store.begin([[key]], late, 500))
        deadline = _server_ms(raw) + 500
        _run(Account, store.begin([[key]], "aaaa", 10_000))
        _past(raw, deadline)
        assert finish("aaaa", 2) == [0]  # the slow writer's token dropped: a tombstone
        assert raw.get(key) == b"T2"
        _run(Account, store.begin([[key]], "bbbb", 10_000))
        if late == "slow":
            assert finish("bbbb", 3) == [1]  # alone: written through
            assert finish(late, 4) == [0]  # the slow writer finishes: a tombstone
            assert raw.get(key) == b"T4"
        else:
            assert finish(late, 4) == [0]  # while bbbb is in progress: its mark stays
            assert _tokens(raw.get(key)) == ["-", "bbbb"]
            assert finish("bbbb", 3) == [0]  # and is not written through
            assert raw.get(key) == b"T3"
