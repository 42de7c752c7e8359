"""The ``query.lua`` calls of a plan (``ModelState.query_plan``) are kept on the plan: a
plan asked again with the same mode, window and schema layout is sent with the calls made
the first time, which equal the calls made afresh; another window or layout has its own.
Only first pages are kept, at most SENT_CALLS calls per plan (one per partition each), and
those of one layout: the planner caches hundreds of plans per model."""

from __future__ import annotations

import dataclasses

import pytest

from quantumorm import Document, IntField, StringField
from quantumorm.backends.redis.calls import QueryMode
from quantumorm.backends.redis.commands import Call, RedisPlan
from quantumorm.backends.redis.core import SENT_CALLS, ModelState
from quantumorm.backends.redis.planner import Plan
from quantumorm.query.lookups import Lookup
from quantumorm.query.nodes import Condition, QuerySpec


class Called(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)

    class Meta:
        collection = "called"
        partitions = 3


def _state() -> tuple[ModelState, Plan]:
    state = ModelState(Called._meta, 1 << 20)
    state.writes.layout = b"3"
    return state, state.planner.plan(QuerySpec(Condition("name", Lookup.EXACT, "x")))


def _fresh(state: ModelState, plan: Plan, mode: QueryMode, offset: int,
           limit: int | None) -> RedisPlan:
    """The calls made without any kept on the plan."""
    return state.query_plan(dataclasses.replace(plan, sent=None), mode, offset, limit)


def _args(made: RedisPlan) -> list[tuple[object, ...]]:
    calls = [step for step in made.steps if isinstance(step, Call)]
    assert len(calls) == len(made.steps) == 3  # (one call per partition)
    return [call.args for call in calls]


def test_a_plan_asked_again_is_sent_with_the_same_calls() -> None:
    state, plan = _state()
    first = state.query_plan(plan, QueryMode.ROWS, 0, None)
    assert state.query_plan(plan, QueryMode.ROWS, 0, None) is first
    assert first == _fresh(state, plan, QueryMode.ROWS, 0, None)
    assert {args[3:5] for args in _args(first)} == {("0", "-1")}
    assert first.read_only


def test_another_window_mode_or_layout_has_its_own_calls() -> None:
    state, plan = _state()
    rows = state.query_plan(plan, QueryMode.ROWS, 0, None)
    limited = state.query_plan(plan, QueryMode.ROWS, 0, 10)
    keyed = state.query_plan(plan, QueryMode.KEYED, 0, 10)
    assert len({id(rows), id(limited), id(keyed)}) == 3
    assert {args[2:5] for args in _args(limited)} == {("rows", "0", "10")}
    assert {args[2:5] for args in _args(keyed)} == {("keyed", "0", "10")}
    assert keyed == _fresh(state, plan, QueryMode.KEYED, 0, 10)
    state.writes.layout = b"4"  # (the schema read again: calls carry the new layout)
    again = state.query_plan(plan, QueryMode.ROWS, 0, None)
    assert {args[-1] for args in _args(again)} == {b"4"}
    assert {args[-1] for args in _args(rows)} == {b"3"}
    assert again == _fresh(state, plan, QueryMode.ROWS, 0, None)


def test_only_first_pages_are_kept_within_the_budget() -> None:
    state, plan = _state()
    for offset in range(0, 1000, 10):
        made = state.query_plan(plan, QueryMode.ROWS, offset, 10)
        assert {args[3:5] for args in _args(made)} == {(str(offset), "10")}
    assert plan.sent is not None and list(plan.sent) == [(QueryMode.ROWS, 10, b"3")]
    state.query_plan(plan, QueryMode.ROWS, 0, None)
    state.query_plan(plan, QueryMode.KEYED, 0, None)  # (3 partitions: 2 windows of 8 calls)
    assert len(plan.sent) == SENT_CALLS // 3
    state, plan = _state()
    state.query_plan(plan, QueryMode.ROWS, 20, 10)  # (no first page yet: nothing kept)
    assert plan.sent is None
    huge = state.query_plan(plan, QueryMode.ROWS, 0, 2**60)
    assert {args[3:5] for args in _args(huge)} == {("0", "-1")}  # (past 2**53: all)


def test_a_plan_of_many_partitions_keeps_nothing() -> None:
    class Spread(Document):
        name = StringField(indexed=True)

        class Meta:
            collection = "called_spread"
            partitions = SENT_CALLS + 1

    state = ModelState(Spread._meta, 1 << 20)
    plan = state.planner.plan(QuerySpec(Condition("name", Lookup.EXACT, "x")))
    first = state.query_plan(plan, QueryMode.ROWS, 0, None)
    assert plan.sent == {}
    assert state.query_plan(plan, QueryMode.ROWS, 0, None) == first


def test_a_new_layout_drops_the_calls_kept_for_the_old_one() -> None:
    state, plan = _state()
    state.query_plan(plan, QueryMode.ROWS, 0, None)
    state.query_plan(plan, QueryMode.ROWS, 0, 10)
    state.writes.layout = b"4"
    again = state.query_plan(plan, QueryMode.ROWS, 0, None)
    assert plan.sent == {(QueryMode.ROWS, None, b"4"): again}
    assert state.query_plan(plan, QueryMode.ROWS, 0, None) is again


class Reached(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    city = StringField(indexed=True)

    class Meta:
        collection = "reached"


def _reach(state: ModelState | None = None, **where: object) -> tuple[int, tuple[str, ...]]:
    if state is None:
        state = ModelState(Reached._meta, 1 << 20)
        state.writes.layout = b"3"
    spec = Reached.objects.filter(**where).spec
    plan = state.planner.plan(QuerySpec(spec.where))
    (call,) = state.query_plan(plan, QueryMode.ROWS, 0, None).steps
    assert isinstance(call, Call)
    return plan.reach, tuple(key.rsplit(":", 1)[-1] for key in call.keys)


def test_a_call_names_the_indexes_up_to_the_last_its_program_reads() -> None:
    # (KEYS: the id index, the indexes in declaration order up to the plan's reach, then
    # the state hash and the TTL schedule, which query.lua finds last)
    assert _reach(name="a") == (2, ("ids", "name", "state", "ttl"))
    assert _reach(age__gte=3) == (3, ("ids", "name", "age", "state", "ttl"))
    assert _reach(city="x") == (4, ("ids", "name", "age", "city", "state", "ttl"))
    assert _reach() == (1, ("ids", "state", "ttl"))
    assert _reach(id__in=["1", "2"]) == (1, ("ids", "state", "ttl"))
    # (a driver on one index, a membership test of another)
    assert _reach(name="a", city__in=["x", "y"])[0] == 4
    # a plan bound from its shape's template reaches as far as the template's
    state = ModelState(Reached._meta, 1 << 20)
    state.writes.layout = b"3"
    for n, value in enumerate("bcde"):
        assert _reach(state, age__gte=n, name=value)[0] == 3
    assert state.planner.counts["bound"] > 0


def test_reach_reads_the_whole_program() -> None:
    from quantumorm.backends.redis.planner import program_reach
    assert program_reach([b"ALL", b"1", b"0", b"0", b"T", b"0", b"0"]) == 1
    with pytest.raises(ValueError):  # (a token left over)
        program_reach([b"ALL", b"1", b"0", b"0", b"T", b"0", b"0", b"x"])
    with pytest.raises(ValueError):
        program_reach([b"NOPE", b"1", b"0", b"0", b"T", b"0", b"0"])
