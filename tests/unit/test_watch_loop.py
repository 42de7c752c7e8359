"""The WATCH retry loop (``backends/redis/watch.py``), driven by hand: conflicts are retried
up to the budget, other driver errors leave typed."""

from __future__ import annotations

import pytest
from redis import exceptions as rx

from quantumorm import errors
from quantumorm.backends.redis import watch


def test_a_conflict_is_retried_and_the_first_clean_exec_wins() -> None:
    loop = watch.attempts(("k",), 3)
    assert next(loop) == watch.Attempt(("k",))
    assert loop.throw(rx.WatchError("changed")) == watch.Attempt(("k",))
    with pytest.raises(StopIteration) as done:
        loop.send([b"OK"])
    assert done.value.value == [b"OK"]


def test_conflicts_past_the_budget_raise_watch_conflict() -> None:
    loop = watch.attempts(("k",), 2)
    next(loop)
    loop.throw(rx.WatchError("changed"))
    with pytest.raises(errors.WatchConflict):
        loop.throw(rx.WatchError("changed"))


def test_other_errors_leave_translated_and_user_errors_untouched() -> None:
    loop = watch.attempts(("k",), 5)
    next(loop)
    with pytest.raises(errors.BackendConnectionError):
        loop.throw(rx.ConnectionError("reset"))
    loop = watch.attempts(("k",), 5)
    next(loop)
    with pytest.raises(KeyError):
        loop.throw(KeyError("mine"))


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="keys"):
        watch.check((), 1)
    with pytest.raises(ValueError, match="attempts"):
        watch.check(("k",), 0)
