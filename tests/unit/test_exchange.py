"""The exchange of a plan with Redis (``backends/redis/exchange.py``), driven by hand: each
request the generator yields is answered here with the replies or errors a server would
give. No sockets, no client: the generator does no I/O, so this is its whole behaviour
(retries, backoff, NOSCRIPT, WAIT, resend marking, routing)."""

from __future__ import annotations

from typing import Any

import pytest
from redis import exceptions as rx

from quantumorm import errors
from quantumorm.backends.redis.commands import Call, Command, RedisPlan, Replies, script
from quantumorm.backends.redis.exchange import (
    BACKOFF,
    LOAD_SCRIPTS,
    MAX_BACKOFF,
    READ_POLICIES,
    RELEARN,
    Exchange,
    Fanout,
    Link,
    Send,
    Sleep,
    backoff,
    exchange,
    first_commands,
    first_send,
    route,
)
from quantumorm.backends.redis.reloads import SCRIPT_RELOADS

WRITER, READER = "writer-client", "reader-client"


def link(**changes: Any) -> Link:
    settings: dict[str, Any] = {"retries": 5, "wait": 0, "wait_ms": 100, "cluster": False,
                                "replica_reads": False, "allow_eviction": False,
                                "eviction_checked": True}
    settings.update(changes)
    return Link(**settings)


def start(plan: RedisPlan, on: Link | None = None) -> tuple[Exchange, Any]:
    steps = exchange(plan, on or link(), WRITER, READER)
    return steps, next(steps)


def finish(steps: Exchange, result: Any) -> Any:
    with pytest.raises(StopIteration) as done:
        steps.send(result)
    return done.value.value


def get(key: str) -> Command:
    return Command(("GET", key))


def call(key: str) -> Call:
    return Call("count", (key,), ("x",))


READ = RedisPlan((get("a"),), read_only=True)
WRITE = RedisPlan((Command(("SET", "a", "1")),))
TWO_WRITES = RedisPlan((Command(("SET", "a", "1")), Command(("SET", "b", "2"))))


def test_a_single_step_is_one_send_of_one_command() -> None:
    steps, request = start(WRITE)
    assert request == Send(WRITER, [("SET", "a", "1")], True)
    replies = finish(steps, [b"OK"])
    assert replies == [b"OK"] and not getattr(replies, "resent", False)


def test_reads_go_to_the_reader_and_use_evalsha_ro_with_replica_reads() -> None:
    plan = RedisPlan((call("a"), get("b")), read_only=True)
    steps, request = start(plan, link(replica_reads=True))
    assert request.target == READER and not request.single
    assert request.commands[0][:2] == ("EVALSHA_RO", script("count").sha)
    assert finish(steps, [1, b"v"]) == [1, b"v"]


def test_the_first_request_reads_the_eviction_policy_once() -> None:
    on = link(eviction_checked=False)
    steps, request = start(WRITE, on)
    assert request is READ_POLICIES
    assert isinstance(steps.send({"h:1": "noeviction"}), Send)
    finish(steps, [b"OK"])
    assert on.eviction_checked
    steps, request = start(WRITE, on)
    assert isinstance(request, Send)


def test_an_unsafe_eviction_policy_is_refused_unless_allowed() -> None:
    steps, _ = start(WRITE, link(eviction_checked=False))
    with pytest.raises(errors.UnsafeEvictionPolicy):
        steps.send({"h:1": "allkeys-lru"})
    steps, _ = start(WRITE, link(eviction_checked=False, allow_eviction=True))
    assert isinstance(steps.send({"h:1": "allkeys-lru"}), Send)


def test_backoff_doubles_to_its_cap_with_jitter_inside_the_bounds() -> None:
    for attempt in range(12):
        step = min(MAX_BACKOFF, BACKOFF * 2**attempt)
        waits = [backoff(attempt) for _ in range(200)]
        assert all(step / 2 <= w <= step for w in waits)
        assert len(set(waits)) > 1  # jittered, not one fixed value
    assert backoff(5000) <= MAX_BACKOFF


def test_a_read_is_retried_after_a_broken_connection_and_marked_resent() -> None:
    steps, request = start(READ)
    pause = steps.throw(rx.ConnectionError("reset"))
    assert isinstance(pause, Sleep) and BACKOFF / 2 <= pause.seconds <= BACKOFF
    again = steps.send(None)
    assert again == request
    replies = finish(steps, [b"v"])
    assert replies == [b"v"] and isinstance(replies, Replies) and replies.resent


def test_retries_stop_at_the_budget_with_a_typed_error() -> None:
    steps, _ = start(READ, link(retries=3))
    pauses = []
    for _ in range(2):
        pauses.append(steps.throw(rx.ConnectionError("down")))
        assert isinstance(steps.send(None), Send)
    with pytest.raises(errors.BackendConnectionError) as caught:
        steps.throw(rx.ConnectionError("down"))
    assert isinstance(caught.value.__cause__, rx.ConnectionError)
    assert [type(p) for p in pauses] == [Sleep, Sleep]
    assert pauses[1].seconds <= 2 * BACKOFF


def test_a_multi_step_write_is_not_resent_after_a_broken_connection() -> None:
    steps, _ = start(TWO_WRITES)
    with pytest.raises(errors.BackendConnectionError):
        steps.throw(rx.ConnectionError("reset"))


def test_an_idempotent_write_is_resent() -> None:
    plan = RedisPlan(TWO_WRITES.steps, idempotent=True)
    steps, _ = start(plan)
    assert isinstance(steps.throw(rx.ConnectionError("reset")), Sleep)


def test_an_idempotent_write_whose_reply_timed_out_is_resent_once() -> None:
    plan = RedisPlan(TWO_WRITES.steps, idempotent=True)
    steps, request = start(plan)
    assert isinstance(steps.throw(rx.TimeoutError("Timeout reading from socket")), Sleep)
    assert steps.send(None) == request
    assert finish(steps, [b"OK", b"OK"]).resent
    # a second timeout is final (a server too busy to answer twice), typed
    steps, _ = start(plan)
    steps.throw(rx.TimeoutError("Timeout reading from socket"))
    steps.send(None)
    with pytest.raises(errors.BackendTimeoutError):
        steps.throw(rx.TimeoutError("Timeout reading from socket"))
    # ... as is one after a broken connection and a timeout
    steps, _ = start(plan)
    steps.throw(rx.TimeoutError("Timeout reading from socket"))
    steps.send(None)
    steps.throw(rx.ConnectionError("reset"))
    steps.send(None)
    with pytest.raises(errors.BackendTimeoutError):
        steps.throw(rx.TimeoutError("Timeout reading from socket"))


@pytest.mark.parametrize("plan", [WRITE, TWO_WRITES, READ,
                                  RedisPlan(READ.steps, read_only=True, idempotent=True)])
def test_a_timeout_is_final_for_reads_and_writes_that_are_not_idempotent(
        plan: RedisPlan) -> None:
    steps, _ = start(plan)
    with pytest.raises(errors.BackendTimeoutError):
        steps.throw(rx.TimeoutError("Timeout reading from socket"))


def test_bad_credentials_and_an_exhausted_pool_are_final() -> None:
    for final in (rx.AuthenticationError("WRONGPASS"),
                  rx.ConnectionError("No connection available.")):
        steps, _ = start(READ)
        with pytest.raises((errors.AuthenticationError, errors.PoolExhaustedError)):
            steps.throw(final)


def test_a_reply_saying_not_executed_retries_one_step_but_not_a_multi_step_write() -> None:
    steps, request = start(WRITE)
    assert isinstance(steps.send([rx.TryAgainError("TRYAGAIN")]), Sleep)
    assert steps.send(None) == request
    assert finish(steps, [b"OK"]).resent
    steps, _ = start(TWO_WRITES)
    with pytest.raises(errors.BackendError):
        steps.send([b"OK", rx.TryAgainError("TRYAGAIN")])


def test_an_error_reply_is_raised_translated() -> None:
    steps, _ = start(TWO_WRITES)
    with pytest.raises(errors.WrongTypeError):
        steps.send([b"OK", rx.ResponseError("WRONGTYPE Operation against a key")])


def test_noscript_resends_only_the_missing_steps_then_the_source() -> None:
    plan = RedisPlan((call("a"), call("b"), call("c")), read_only=True)
    steps, first = start(plan)
    assert len(first.commands) == 3
    request = steps.send([1, rx.NoScriptError("NOSCRIPT"), 3])
    for reload in range(1, SCRIPT_RELOADS + 1):
        assert request is LOAD_SCRIPTS
        request = steps.send(None)
        assert isinstance(request, Send) and request.commands == [
            (("EVAL", script("count").source) if reload == SCRIPT_RELOADS
             else ("EVALSHA", script("count").sha)) + (1, "b", "x")]
        if reload < SCRIPT_RELOADS:
            request = steps.send([rx.NoScriptError("NOSCRIPT")])
    assert finish(steps, [2]) == [1, 2, 3]


def test_noscript_resends_are_done_before_another_error_is_raised() -> None:
    plan = RedisPlan((call("a"), call("b")))
    steps, _ = start(plan)
    assert steps.send([rx.ResponseError("WRONGTYPE x"), rx.NoScriptError("NOSCRIPT")]) \
        is LOAD_SCRIPTS
    request = steps.send(None)
    assert [c[3] for c in request.commands] == ["b"]
    with pytest.raises(errors.WrongTypeError):
        steps.send([2])


def test_writes_wait_for_replicas_and_a_short_wait_is_a_replication_error() -> None:
    on = link(wait=2, wait_ms=250)
    steps, request = start(WRITE, on)
    assert request == Send(WRITER, [("SET", "a", "1"), ("WAIT", 2, 250)], False)
    assert finish(steps, [b"OK", 2]) == [b"OK"]
    steps, _ = start(WRITE, on)
    with pytest.raises(errors.ReplicationError, match="1 of 2"):
        steps.send([b"OK", 1])


def test_an_idempotent_write_short_of_replicas_is_sent_again() -> None:
    steps, request = start(RedisPlan(WRITE.steps, idempotent=True), link(wait=1))
    assert isinstance(steps.send([b"OK", 0]), Sleep)
    assert steps.send(None) == request
    assert finish(steps, [b"OK", 1]).resent


def test_reads_do_not_wait_for_replicas() -> None:
    _, request = start(READ, link(wait=1))
    assert request.commands == [("GET", "a")]


def test_a_resent_noscript_step_carries_its_own_wait() -> None:
    steps, _ = start(RedisPlan((call("a"), call("b"))), link(wait=1))
    assert steps.send([1, rx.NoScriptError("NOSCRIPT"), 1]) is LOAD_SCRIPTS
    request = steps.send(None)
    assert request.commands[-1][0] == "WAIT" and len(request.commands) == 2
    with pytest.raises(errors.ReplicationError):
        steps.send([2, 0])


class Node:
    def __init__(self, name: str) -> None:
        self.name = name


class SlotMap:
    """The routing answers of a cluster client (``get_node_from_key``): key -> node, and a
    replica for the keys listed in ``replicas``."""

    def __init__(self, owners: dict[str, str], replicas: dict[str, str]) -> None:
        self.owners, self.replicas = owners, replicas

    def get_node_from_key(self, key: str, replica: bool = False) -> Node | None:
        if replica:
            name = self.replicas.get(key)
            return None if name is None else Node(name)
        return Node(self.owners[key])


def test_cluster_steps_are_grouped_per_node_and_replies_come_back_in_order() -> None:
    slots = SlotMap({"a": "n1", "b": "n2", "c": "n1"}, {})
    plan = RedisPlan((get("a"), get("b"), get("c")), read_only=True)
    steps = exchange(plan, link(cluster=True), slots, slots)
    request = next(steps)
    assert isinstance(request, Fanout)
    assert [s.target.name for s in request.sends] == ["n1", "n2"]
    assert request.positions == ([0, 2], [1])
    assert finish(steps, [[b"A", b"C"], [b"B"]]) == [b"A", b"B", b"C"]


def test_replica_reads_route_to_a_replica_where_the_slot_has_one() -> None:
    slots = SlotMap({"a": "n1", "b": "n2"}, {"a": "r1"})
    groups = route(slots, [get("a"), get("b")], replica=True)
    assert [(node.name, at) for node, at in groups] == [("r1", [0]), ("n2", [1])]


def test_a_moved_slot_is_relearnt_before_the_next_attempt_even_if_that_fails() -> None:
    slots = SlotMap({"a": "n1"}, {})
    steps = exchange(READ, link(cluster=True), slots, slots)
    next(steps)
    assert isinstance(steps.send([[rx.MovedError("1 127.0.0.1:7001")]]), Sleep)
    assert steps.send(None) is RELEARN
    assert isinstance(steps.throw(rx.ConnectionError("mid-failover")), Fanout)


# -- first_send: the first round the executors send before starting the exchange ------------


@pytest.mark.parametrize("plan, on", [
    (READ, link()), (WRITE, link()), (TWO_WRITES, link()),
    (RedisPlan((call("a"), get("b")), read_only=True), link(replica_reads=True)),
    (RedisPlan((get("a"),), read_only=True, primary=True), link(replica_reads=True)),
    (READ, link(wait=1)),  # (reads are never followed by WAIT)
])
def test_first_send_is_the_exchanges_first_request(plan: RedisPlan, on: Link) -> None:
    """Where first_send gives a request, it is the one the exchange starts with, and
    replies without an error are the exchange's result as they are."""
    send = first_send(plan, on, WRITER, READER)
    steps, request = start(plan, on)
    assert send == request
    replies = [b"r%d" % i for i in range(len(plan.steps))]
    assert finish(steps, list(replies)) == replies


@pytest.mark.parametrize("plan, on", [
    (READ, link()), (WRITE, link()), (TWO_WRITES, link()), (READ, link(wait=1)),
    (RedisPlan((call("a"), get("b")), read_only=True), link(replica_reads=True)),
    (RedisPlan((get("a"),), read_only=True, primary=True), link(replica_reads=True)),
    (WRITE, link(wait=1)), (READ, link(eviction_checked=False)), (READ, link(cluster=True)),
])
def test_first_commands_are_first_sends_commands(plan: RedisPlan, on: Link) -> None:
    """What an executor with one client sends without building the request: the
    commands of first_send's request, and None where first_send gives none."""
    send = first_send(plan, on, WRITER, WRITER)
    commands = first_commands(plan, on)
    assert (commands is None) is (send is None)
    if send is not None:
        assert commands == send.commands


@pytest.mark.parametrize("plan, on", [
    (WRITE, link(wait=1)),  # WAIT after the writes: the acks are the exchange's to judge
    (READ, link(eviction_checked=False)),  # the eviction policy is read first
    (READ, link(cluster=True)),  # routed per node
])
def test_first_send_leaves_other_plans_to_the_exchange(plan: RedisPlan, on: Link) -> None:
    assert first_send(plan, on, WRITER, READER) is None


def test_an_exchange_fed_a_failed_first_round_reloads_as_if_it_had_sent_it() -> None:
    """What the executors do when the round first_send gave fails: start the exchange,
    and answer its first request with that round's outcome (here NOSCRIPT)."""
    plan = RedisPlan((call("a"),), read_only=True)
    on = link()
    send = first_send(plan, on, WRITER, READER)
    assert send is not None
    steps, request = start(plan, on)
    assert request == send
    assert steps.send([rx.NoScriptError("NOSCRIPT")]) == LOAD_SCRIPTS
    again = steps.send(None)
    assert isinstance(again, Send) and again.commands[0][0] == "EVALSHA"
    assert finish(steps, [7]) == [7]


@pytest.mark.parametrize("replica_reads", [False, True])
def test_the_replies_name_the_steps_a_last_reload_sent_by_their_source(
        replica_reads: bool) -> None:
    """Only the steps the last reload sent as EVAL (EVAL_RO) are named so (the metrics,
    traces and slow log read ``calls``); the others, and a plan a reload sent by SHA,
    keep what the connection calls scripts with."""
    from quantumorm.metrics import plans

    plan = RedisPlan((call("a"), get("k"), call("b"), call("c")), read_only=True)
    steps, _ = start(plan, link(replica_reads=replica_reads))
    request = steps.send([1, b"v", rx.NoScriptError("NOSCRIPT"), 3])
    for _ in range(SCRIPT_RELOADS):
        assert request is LOAD_SCRIPTS
        request = steps.send(None)
        if request.commands[0][0] not in ("EVAL", "EVAL_RO"):
            request = steps.send([rx.NoScriptError("NOSCRIPT")])
    replies = finish(steps, [2])
    assert replies == [1, b"v", 2, 3]
    sha, source = ("EVALSHA_RO", "EVAL_RO") if replica_reads else ("EVALSHA", "EVAL")
    assert replies.calls == (sha, sha, source, sha)
    assert plans.commands(plan, replies.calls) == [
        f"{sha} count", "GET", f"{source} count", f"{sha} count"]
    steps, _ = start(plan)
    assert steps.send([rx.NoScriptError("NOSCRIPT"), b"v", 2, 3]) is LOAD_SCRIPTS
    steps.send(None)
    assert getattr(finish(steps, [1]), "calls", None) is None  # (reloaded by SHA)
