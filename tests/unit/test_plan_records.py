"""The records of a Redis plan (``Command``, ``Call``, ``RedisPlan``) build their fields
without the frozen dataclass's per-field ``object.__setattr__`` (every operation builds
them), and are still what the dataclass declares: frozen, equal and hashable by value,
with their defaults, and copied by ``dataclasses.replace``."""

from __future__ import annotations

import dataclasses

import pytest

from quantumorm.backends.redis.commands import Call, Command, RedisPlan


def test_plan_records_are_frozen_values_with_their_defaults() -> None:
    get, save = Command(("GET", "k")), Call("save", ("a", "b"), (b"x", "1"))
    plan = RedisPlan((get, save))
    assert (plan.read_only, plan.idempotent, plan.primary) == (False, False, False)
    assert not plan.retryable and RedisPlan((get,), read_only=True).retryable
    assert RedisPlan((get,), idempotent=True).retryable
    same = RedisPlan((Command(("GET", "k")), Call("save", ("a", "b"), (b"x", "1"))))
    assert plan == same and hash(plan) == hash(same)
    assert plan != RedisPlan((get, save), idempotent=True)
    assert {get, Command(("GET", "k"))} == {get} and save.script == "save"
    assert save.keys == ("a", "b") and save.args == (b"x", "1")
    for record, field in ((get, "args"), (save, "keys"), (plan, "steps")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(record, field, ())
    primary = dataclasses.replace(plan, primary=True)
    assert primary.primary and primary.steps == plan.steps and not primary.read_only
    assert repr(get) == "Command(args=('GET', 'k'))"
    assert RedisPlan(steps=(get,), read_only=True, idempotent=True, primary=True).primary
