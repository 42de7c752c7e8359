"""The exchange of one plan with Redis, written once as a generator (no I/O here).

:func:`exchange` owns every decision between a plan and its replies; the executors
(``executor.py``) only carry its requests to the sockets and bring back the results
(psycopg 3's ``generators.py`` / ``waiting.py`` split, one level below the operations):

* One round trip per plan: a single step is sent as is, several are pipelined without
  MULTI; on a cluster, one pipeline per node, grouped by the node serving each step's
  first key (:func:`route`; a replica for read-only plans with ``read_from_replicas``).
* A NOSCRIPT or "Function not found" reply (restart, failover, a flush) loads the scripts
  and re-sends only the steps that did not run (``reloads.reloads``, the last time with
  the source: EVAL).
* With ``wait_replicas``, writes are followed by WAIT on the same connection (per node),
  and every WAIT must be satisfied (:class:`NotReplicated`).
* redis-py's own retries are off: it would resend writes whose outcome is unknown.
  Read-only and idempotent plans (writes that recognise their own earlier application)
  are retried on connection errors, and any plan of one step after a reply saying it did
  not run (:data:`NOT_EXECUTED`), up to ``retries`` attempts, with bounded exponential
  backoff and jitter (:func:`backoff`); other writes are not. A reply that does not come
  within ``socket_timeout`` is a lost connection to an idempotent write (sent again once,
  on a fresh connection: it waits behind its first attempt if that still runs, and finds
  it applied by its write id), and final for any other plan. The replies of a plan sent
  again are marked ``resent``. On a cluster, the slot map is learnt again after the
  errors that mean it changed (:data:`REMAP`).
* The first request of an executor reads the servers' eviction policy (``eviction.py``)
  and raises :class:`UnsafeEvictionPolicy` for ``allkeys-*``; once it passes, it is a flag.
* Driver errors leave as QuantumORM's typed errors (``translation.translate``); a BUSY
  reply to the resend of a write that timed out, as ``ServerBusyAfterTimeout`` (the
  script still running may be its first attempt: the outcome is unknown).

The requests are small immutable records; :class:`Send` is a named tuple because it is
built on every call (one constructor call, where a frozen dataclass makes one per field).
"""

from __future__ import annotations

import random
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from logging import INFO, WARNING
from typing import Any, NamedTuple, Union

from redis import exceptions as rx

from ... import errors, logs
from . import eviction
from .commands import Call, Command, RedisPlan, Replies, Step
from .reloads import fcall_refused, noscript, reloads, step_args
from .translation import NotReplicated, translate

log = logs.redis

#: the first wait between attempts, doubled each time up to MAX_BACKOFF (seconds)
BACKOFF = 0.05
MAX_BACKOFF = 1.0


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (0-based): equal jitter over the
    doubling step, between half of it and all of it, so that clients that lost the same
    server do not all come back at the same instant."""
    step = min(MAX_BACKOFF, BACKOFF * (1 << min(attempt, 32)))
    return step / 2 + random.random() * step / 2


# -- the requests (what a driver does for each, and what it sends back) ---------------------


class Send(NamedTuple):
    """Commands for one destination, in one round trip. Result: a reply per command, an
    error reply as the exception (NOSCRIPT too, even for a command sent alone)."""

    #: a redis-py client; on a cluster, always a node (``ClusterNode``) of the client
    target: Any
    commands: list[tuple[Any, ...]]
    #: one command, sent without a pipeline
    single: bool


@dataclass(frozen=True, slots=True)
class Fanout:
    """One round trip to several nodes of a cluster (one :class:`Send` each; the driver may
    send them concurrently). Result: each Send's replies, in order."""

    sends: tuple[Send, ...]
    #: the positions, among the steps of the round, that each Send carries
    positions: tuple[list[int], ...]


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait this many seconds before the next attempt. Result: None."""

    seconds: float
    #: why the plan is sent again: the error's class name (for metrics and logs)
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Relearn:
    """A cluster client learns the slot map again. Result: None."""


@dataclass(frozen=True, slots=True)
class LoadScripts:
    """Load every script wherever it may run (``reloads.load_all``). Result: None."""


@dataclass(frozen=True, slots=True)
class ReadPolicies:
    """Read the eviction policy of every master (``eviction.eviction_policies``). Result:
    ``{"host:port": policy}``."""


Request = Union[Send, Fanout, Sleep, Relearn, LoadScripts, ReadPolicies]
RELEARN, LOAD_SCRIPTS, READ_POLICIES = Relearn(), LoadScripts(), ReadPolicies()

#: the generator type of :func:`exchange` (and of the rounds inside it)
Exchange = Generator[Request, Any, list[Any]]


@dataclass(slots=True)
class Link:
    """What the exchange knows of one executor's connection: its settings, and whether
    the servers' eviction policy has passed (set once, by the exchange)."""

    retries: int
    #: WAIT for this many replicas after writes (0: no WAIT), up to wait_ms milliseconds
    wait: int
    wait_ms: int
    cluster: bool
    replica_reads: bool
    allow_eviction: bool
    eviction_checked: bool = False
    #: whether this executor has loaded the scripts (a later NOSCRIPT: the server lost them)
    scripts_loaded: bool = False
    #: call the scripts as Redis Functions (FCALL, ``scripts="functions"``); False: EVALSHA
    #: (``scripts="eval"``, or set by the executor once a server refused FUNCTION LOAD)
    functions: bool = False


# -- which errors are retried ---------------------------------------------------------------

#: replies meaning the command was not executed (failover or resharding under way): any
#: plan of one step may be sent again, as may read-only and idempotent plans
NOT_EXECUTED = (rx.ClusterDownError, rx.TryAgainError, rx.MasterDownError, rx.ReadOnlyError,
                rx.BusyLoadingError, rx.MovedError, rx.AskError)

#: errors after which a cluster client learns the slot map again before the next attempt:
#: slots moved, or a node is unreachable or failing over (redis-py refreshes the map on its
#: own paths, but not for the pipelines the executors send straight to a node)
REMAP = (rx.ConnectionError, rx.ClusterError, rx.MovedError, rx.AskError, rx.TryAgainError)

#: how the eviction check's reads are retried: like any read
POLICY_READ = RedisPlan((Command(eviction.READS[0]),), read_only=True)


def _final(exc: BaseException) -> bool:
    """Connection errors that a retry cannot cure: bad credentials, and an exhausted pool
    (the caller chose ``pool_timeout``; waiting longer is not ours to decide)."""
    return isinstance(translate(exc), (errors.AuthenticationError, errors.PoolExhaustedError))


def _not_executed(exc: BaseException) -> bool:
    # redis-py gives up with "TTL exhausted" after a run of redirects and TRYAGAIN replies,
    # each of which means the command did not run
    return isinstance(exc, NOT_EXECUTED) or (
        type(exc) is rx.ClusterError and "TTL exhausted" in str(exc))


def retry_allowed(exc: BaseException, plan: RedisPlan, timeouts: int = 0) -> bool:
    """May ``plan``, which failed with ``exc``, be sent again? ``timeouts``: how many of
    its attempts so far had no reply in time."""
    if _not_executed(exc):
        return plan.retryable or len(plan.steps) == 1
    if isinstance(exc, rx.TimeoutError):
        # No reply in time: the write was applied, or not, or still runs on a busy server
        # (redis-py has closed the connection: the next attempt takes a fresh one, and
        # waits behind a script that still runs). Only a write that recognises its earlier
        # application by its write id may go again, once: a server too busy to answer
        # twice is not helped by more of the same. A read is not sent again either: the
        # caller chose how long to wait for one.
        return plan.idempotent and not plan.read_only and timeouts == 0
    if isinstance(exc, (rx.ConnectionError, NotReplicated)):
        return plan.retryable and not _final(exc)
    return False


# -- cluster routing ------------------------------------------------------------------------


def first_key(step: Step) -> Any:
    """The key a step is routed by (every key of a step shares its slot)."""
    if isinstance(step, Call):
        return step.keys[0]
    args = step.args
    if "STREAMS" in args:  # XREAD / XREADGROUP: the keys follow STREAMS
        return args[args.index("STREAMS") + 1]
    return args[1]


def route(client: Any, steps: Sequence[Step], replica: bool) -> list[tuple[Any, list[int]]]:
    """A cluster's steps grouped by the node serving their slot: each node and the
    positions of its steps. ``client.get_node_from_key`` is synchronous on both redis-py
    cluster clients, so both drivers share this."""
    groups: dict[str, tuple[Any, list[int]]] = {}
    for i, step in enumerate(steps):
        key = first_key(step)
        # (a slot whose replicas the client does not know is read from its master)
        node = (replica and client.get_node_from_key(key, replica=True)
                or client.get_node_from_key(key))
        groups.setdefault(node.name, (node, []))[1].append(i)
    return list(groups.values())


# -- one round trip -------------------------------------------------------------------------


def _request(steps: Sequence[Step], read_only: bool, inline: bool, link: Link, writer: Any,
             reader: Any, durable: bool) -> Send | Fanout:
    """What sends these steps in one round trip. Read-only plans call scripts with
    FCALL_RO / EVALSHA_RO when replicas may answer; ``durable`` adds WAIT after the writes."""
    ro = read_only and link.replica_reads
    functions = link.functions
    if not link.cluster:
        commands = [step_args(step, ro, inline, functions) for step in steps]
        if durable:
            commands.append(("WAIT", link.wait, link.wait_ms))
            return Send(writer, commands, False)
        return Send(reader if read_only else writer, commands, len(commands) == 1)
    sends, positions = [], []
    for node, at in route(writer, steps, ro):
        commands = [step_args(steps[i], ro, inline, functions) for i in at]
        if durable:
            commands.append(("WAIT", link.wait, link.wait_ms))
        sends.append(Send(node, commands, False))
        positions.append(at)
    return Fanout(tuple(sends), tuple(positions))


def _replies(request: Send | Fanout, got: Any, count: int, acks: list[Any] | None) -> list[Any]:
    """Each step's reply, in the order of the round's steps; WAIT's replies go to ``acks``."""
    if isinstance(request, Send):
        if acks is None:
            return list(got)
        acks.append(got[-1])
        return list(got[:-1])
    out: list[Any] = [None] * count
    for positions, replies in zip(request.positions, got, strict=True):
        if acks is not None:
            acks.append(replies[-1])
        for i, reply in zip(positions, replies, strict=False):
            out[i] = reply
    return out


def _acked(reply: Any, wanted: int, timeout_ms: int) -> None:
    if isinstance(reply, BaseException):
        raise reply
    if int(reply) < wanted:
        raise NotReplicated(f"applied on the master; {int(reply)} of {wanted} replica(s) "
                            f"confirmed it within {timeout_ms} ms")


def _reload(plan: RedisPlan, replies: list[Any], read_only: bool, link: Link,
            writer: Any, reader: Any, acks: list[Any] | None) -> Exchange:
    """After a first round with errors: while steps answer NOSCRIPT (they did not run),
    load the scripts and send those steps again (``reloads.reloads``); every reply (a
    :class:`Replies` naming each step's command in ``calls`` when the last reload sent
    some by their source: EVAL, not what :func:`script_command` says)."""
    steps = plan.steps
    if not any(noscript(reply) for reply in replies):
        return replies
    if link.functions and any(fcall_refused(reply) for reply in replies):
        # (FCALL itself refused: loading the libraries again would not help)
        link.functions = False
        log.warning("FCALL refused (ACL): calling the scripts with EVALSHA on this connection")
    policy = reloads(len(steps))
    next(policy)  # (all steps: the round already sent)
    inlined: list[int] = []
    try:
        todo = policy.send(replies)
        while True:
            if todo.load:
                # (INFO the first time: scripts are loaded at their first NOSCRIPT)
                log.log(WARNING if link.scripts_loaded else INFO, "NOSCRIPT (or function "
                        "not found): loading the scripts and resending steps=%d of=%d "
                        "inline=%s first=%s",
                        len(todo.positions), len(steps), todo.inline, not link.scripts_loaded)
                yield LOAD_SCRIPTS
                link.scripts_loaded = True
            part = [steps[i] for i in todo.positions]
            request = _request(part, read_only, todo.inline, link, writer, reader,
                               acks is not None)
            if todo.inline:
                inlined = todo.positions
            todo = policy.send(_replies(request, (yield request), len(part), acks))
    except StopIteration as done:
        if not inlined:
            return list(done.value)
        out = Replies(done.value)
        named = script_command(plan, link)
        source = "EVAL_RO" if read_only and link.replica_reads else "EVAL"  # (_request's)
        out.calls = tuple(source if i in inlined and isinstance(steps[i], Call) else named
                          for i in range(len(steps)))
        return out


# -- the exchange ---------------------------------------------------------------------------


def exchange(plan: RedisPlan, link: Link, writer: Any, reader: Any) -> Exchange:
    """Send ``plan`` (through ``writer``, or ``reader`` for read-only plans; on a cluster
    ``writer`` is the cluster client that routes) and return a reply per step, or raise the
    translated error of the first step that failed."""
    steps, read_only = plan.steps, plan.read_only
    durable = bool(link.wait) and not read_only
    # (a read the master must answer is routed as a write is, without WAIT)
    read_only = read_only and not plan.primary
    attempts = link.retries
    request: Send | Fanout | None = None  # (the retry warning names where it went)
    timeouts = 0  # (attempts with no reply in time: see retry_allowed)
    unsure = 0  # (attempts sent that failed with no reply: timed out or connection lost)
    for attempt in range(attempts):
        applied = False  # (a step of this attempt ran: what a later error cannot undo)
        try:
            if not link.eviction_checked:
                eviction.settle((yield READ_POLICIES), link.allow_eviction)
                link.eviction_checked = True
            acks: list[Any] | None = [] if durable else None
            request = _request(steps, read_only, False, link, writer, reader, durable)
            replies = yield request
            if acks is not None or not isinstance(request, Send):
                replies = _replies(request, replies, len(steps), acks)
            for reply in replies:
                if isinstance(reply, BaseException):
                    break
            else:  # the common case: nothing failed
                if acks:
                    applied = True
                    for ack in acks:
                        _acked(ack, link.wait, link.wait_ms)
                return _marked(replies) if attempt else replies
            replies = yield from _reload(plan, replies, read_only, link, writer, reader, acks)
            applied = any(not isinstance(reply, BaseException) for reply in replies)
            for ack in acks or ():
                _acked(ack, link.wait, link.wait_ms)
            for reply in replies:
                if isinstance(reply, BaseException):
                    raise reply
            return _marked(replies) if attempt else replies
        except rx.RedisError as exc:
            sent = plan if link.eviction_checked else POLICY_READ
            if attempt + 1 == attempts or not retry_allowed(exc, sent, timeouts):
                # (a read's outcome is its reply: only a write can be unsure)
                raise _final_error(exc, timeouts, not plan.read_only
                                   and (bool(unsure) or applied)) from exc
            timeouts += isinstance(exc, rx.TimeoutError)
            unsure += isinstance(exc, (rx.TimeoutError, rx.ConnectionError))
            wait = backoff(attempt)
            log.warning("retrying plan after %s attempt=%d/%d wait_ms=%d node=%s",
                        type(exc).__name__, attempt + 2, attempts, wait * 1000,
                        logs.nodes(request))
            yield Sleep(wait, type(exc).__name__)
            if link.cluster and isinstance(exc, REMAP):
                log.warning("relearning the cluster slot map after %s", type(exc).__name__)
                try:
                    yield RELEARN
                except rx.RedisError:  # (it may fail mid-failover: the next attempt tells)
                    pass
    raise AssertionError("unreachable")


def _final_error(exc: BaseException, timeouts: int, unsure: bool) -> BaseException:
    """The error a plan fails with. A BUSY reply says that the command it answers did not
    run; whether the write did is another matter when ``unsure``: an earlier attempt was
    sent and got no reply (the script the server is still running may be that attempt), or
    a step of this attempt ran before the refusal (an earlier step, or the write a refused
    WAIT follows). After a timeout the error is a ``ServerBusyAfterTimeout`` (a write is
    resent only when it would recognise its earlier application, so a read never gets
    here with ``timeouts``)."""
    error = translate(exc)
    if not unsure or type(error) is not errors.ServerBusyError:
        return error
    if timeouts:
        return errors.ServerBusyAfterTimeout(
            f"a write got no reply in time, and Redis refused its resend because it is still "
            f"running a script, which may be the first attempt: whether the write was "
            f"applied is unknown ({exc})")
    error = errors.ServerBusyError(
        f"Redis refused a command because it is running a script, after part of the "
        f"operation was sent or ran: whether the write was applied is unknown ({exc})")
    error.outcome_unknown = True
    return error


def first_send(plan: RedisPlan, link: Link, writer: Any, reader: Any) -> Send | None:
    """The request :func:`exchange` starts with when it is one :class:`Send` whose replies,
    if none is an error, are the plan's result as they are: on a standalone or Sentinel
    client whose eviction policy has passed, for a plan without WAIT. None otherwise.

    Most plans succeed at their first round trip, and for them the executors send this
    request themselves and start :func:`exchange` only when a reply is an error or the
    send raised, feeding it that first round's outcome: every decision is
    still the exchange's, and the plans that succeed at once pay no generator."""
    if link.cluster or not link.eviction_checked or (link.wait and not plan.read_only):
        return None
    request = _request(plan.steps, plan.read_only and not plan.primary, False, link, writer,
                       reader, False)
    return request if type(request) is Send else None


def first_commands(plan: RedisPlan, link: Link) -> list[tuple[Any, ...]] | None:
    """The commands of :func:`first_send`'s request, for an executor whose writer and
    reader are one client (so the request's target is known): the same decision and
    the same commands, without building the request (a read by id pays one call here
    instead of seven). None where :func:`first_send` gives None."""
    if link.cluster or not link.eviction_checked or (link.wait and not plan.read_only):
        return None
    ro = plan.read_only and not plan.primary and link.replica_reads
    commands = []
    functions = link.functions
    for step in plan.steps:  # (a plain command's arguments without a call)
        commands.append(step.args if type(step) is Command
                        else step_args(step, ro, False, functions))
    return commands


def first_wire(plan: RedisPlan, link: Link) -> bytes | None:
    """The RESP bytes of ``plan``'s lone step, packed by its maker (``Call.wire``,
    ``Command.wire``), where :func:`first_commands` would give exactly that command (a
    script call's by ``EVALSHA``); None otherwise (a plan of other steps, ``FCALL``,
    ``EVALSHA_RO``, a cluster, a ``WAIT``, the eviction policy not yet checked). The
    executors send these bytes without building the command they pack."""
    steps = plan.steps
    if len(steps) != 1:
        return None
    wire = steps[0].wire
    if (wire is None or link.cluster or not link.eviction_checked
            or (link.wait and not plan.read_only)):
        return None
    if type(steps[0]) is Call and (link.functions or (
            plan.read_only and not plan.primary and link.replica_reads)):
        return None
    return wire


def script_command(plan: RedisPlan, link: Link) -> str:
    """The command :func:`exchange` calls ``plan``'s scripts with, first (as
    :func:`_request` chooses it): FCALL or EVALSHA, their ``_RO`` twins for a read that a
    replica may answer. What metrics and traces name a script call by."""
    ro = plan.read_only and not plan.primary and link.replica_reads
    if link.functions:
        return "FCALL_RO" if ro else "FCALL"
    return "EVALSHA_RO" if ro else "EVALSHA"


def _marked(replies: list[Any]) -> list[Any]:
    """The replies of a plan sent again after a failed attempt: a write refused then
    (version moved, id taken) may have been applied by the first attempt."""
    marked = Replies(replies)
    marked.resent = True
    marked.calls = getattr(replies, "calls", None)
    return marked


__all__ = ["BACKOFF", "LOAD_SCRIPTS", "MAX_BACKOFF", "NOT_EXECUTED", "READ_POLICIES",
           "RELEARN", "REMAP", "Exchange", "Fanout", "Link", "LoadScripts", "ReadPolicies",
           "Relearn", "Request", "Send", "Sleep", "backoff", "exchange", "first_commands",
           "first_key", "first_send", "first_wire", "retry_allowed", "route", "script_command"]
