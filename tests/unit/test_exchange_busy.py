"""A BUSY reply (the server runs a script past its busy threshold and refuses other
commands without running them), driven through the exchange by hand as test_exchange.py
does: typed as ServerBusyError, and as ServerBusyAfterTimeout (a BackendTimeoutError: the
outcome is unknown) when it answers the resend of a write whose first attempt timed out."""

from __future__ import annotations

import pytest
from redis import exceptions as rx

from quantumorm import errors
from quantumorm.backends.redis.commands import Command, RedisPlan
from quantumorm.backends.redis.exchange import Link, Sleep, exchange
from quantumorm.backends.redis.translation import translate

BUSY = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSCRIPT."
WRITES = (Command(("SET", "a", "1")), Command(("SET", "b", "2")))


def link() -> Link:
    return Link(retries=5, wait=0, wait_ms=100, cluster=False, replica_reads=False,
                allow_eviction=False, eviction_checked=True)


def test_busy_is_typed_and_says_nothing_ran() -> None:
    error = translate(rx.ResponseError(BUSY))
    assert type(error) is errors.ServerBusyError and not error.outcome_unknown
    assert not isinstance(error, errors.BackendTimeoutError)
    # (a consumer group that exists already is another reply, not this one)
    assert not isinstance(translate(rx.ResponseError("BUSYGROUP Consumer Group name "
                                                     "already exists")),
                          errors.ServerBusyError)


@pytest.mark.parametrize("idempotent", [False, True])
def test_busy_at_a_first_attempt_is_final_and_nothing_ran(idempotent: bool) -> None:
    steps = exchange(RedisPlan(WRITES, idempotent=idempotent), link(), "w", "r")
    next(steps)
    with pytest.raises(errors.ServerBusyError) as raised:
        steps.send([rx.ResponseError(BUSY), rx.ResponseError(BUSY)])
    assert type(raised.value) is errors.ServerBusyError
    assert not raised.value.outcome_unknown
    assert isinstance(raised.value.__cause__, rx.ResponseError)


def test_busy_at_the_resend_of_a_timed_out_write_says_the_outcome_is_unknown() -> None:
    steps = exchange(RedisPlan(WRITES, idempotent=True), link(), "w", "r")
    next(steps)
    assert isinstance(steps.throw(rx.TimeoutError("Timeout reading from socket")), Sleep)
    steps.send(None)  # (the resend)
    with pytest.raises(errors.ServerBusyAfterTimeout) as raised:
        steps.send([rx.ResponseError(BUSY), rx.ResponseError(BUSY)])
    error = raised.value
    assert error.outcome_unknown
    # caught as a timeout (its outcome unknown) and as a busy server alike
    assert isinstance(error, errors.BackendTimeoutError)
    assert isinstance(error, errors.ServerBusyError)
    assert "may be the first attempt" in str(error)


def _busy_error(plan: RedisPlan, wait: int, replies: list[object],
                thrown: BaseException | None = None) -> errors.ServerBusyError:
    steps = exchange(plan, Link(retries=5, wait=wait, wait_ms=100, cluster=False,
                                replica_reads=False, allow_eviction=False,
                                eviction_checked=True), "w", "r")
    next(steps)
    if thrown is not None:
        assert isinstance(steps.throw(thrown), Sleep)
        steps.send(None)  # (the resend)
    with pytest.raises(errors.ServerBusyError) as raised:
        steps.send(replies)
    return raised.value


@pytest.mark.parametrize("plan, wait, replies, thrown", [
    # a step ran before the refused one (a batch of a bulk insert, say)
    (RedisPlan(WRITES), 0, [b"OK", rx.ResponseError(BUSY)], None),
    # the write ran, the WAIT after it was refused
    (RedisPlan(WRITES[:1]), 1, [b"OK", rx.ResponseError(BUSY)], None),
    # an earlier attempt lost its connection once sent: the running script may be it
    (RedisPlan(WRITES[:1], idempotent=True), 0, [rx.ResponseError(BUSY)],
     rx.ConnectionError("Connection closed by server.")),
])
def test_busy_after_a_step_ran_or_an_attempt_went_unanswered_says_the_outcome_is_unknown(
        plan: RedisPlan, wait: int, replies: list[object],
        thrown: BaseException | None) -> None:
    error = _busy_error(plan, wait, replies, thrown)
    assert type(error) is errors.ServerBusyError and error.outcome_unknown
    assert "unknown" in str(error)
    # (the class keeps saying what a lone BUSY means)
    assert not errors.ServerBusyError.outcome_unknown


def test_busy_at_a_read_after_another_step_ran_is_plain() -> None:
    # (a read has nothing applied to be unsure of: its error says only that it was refused)
    error = _busy_error(RedisPlan(WRITES, read_only=True), 0, [b"1", rx.ResponseError(BUSY)])
    assert type(error) is errors.ServerBusyError and not error.outcome_unknown
