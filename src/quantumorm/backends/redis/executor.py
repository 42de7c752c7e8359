"""The only module that talks to Redis: it runs :class:`RedisPlan` objects with redis-py.

* One round trip per plan: a single step is sent as is, several are pipelined without
  MULTI. Scripts go as EVALSHA; a NOSCRIPT reply (restart, failover, SCRIPT FLUSH) loads the
  scripts and re-sends only the steps that did not run, up to ``SCRIPT_RELOADS`` times, the
  last time with the script's source (EVAL), which no flush can refuse (``reloads``, one
  policy for both drivers).
* redis-py's own retries are switched off: it would resend writes whose outcome is unknown.
  Read-only and idempotent plans (writes that recognise their own earlier application) are
  retried here on connection errors, with bounded exponential backoff; other writes are not.
* Connect and socket timeouts are always set; the pool blocks at most ``pool_timeout``
  seconds for a free connection, then raises :class:`PoolExhaustedError`.
* Driver errors become QuantumORM's typed errors, with the driver's error as ``__cause__``.
* asyncio clients are bound to the event loop that created them, so there is one per loop.
* Each executor's first request reads the servers' eviction policy (``eviction.py``) and
  raises :class:`UnsafeEvictionPolicy` for ``allkeys-*``; once it passes, the check is a flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from redis import exceptions as rx
from redis.asyncio.cluster import PipelineCommand
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from ... import errors
from ...redaction import redacted_repr
from . import eviction
from . import topology as topologies
from .commands import Call, Command, RedisPlan, Replies, Step
from .loops import LoopClients
from .reloads import (
    aload_all,
    aone,
    arun_reloads,
    load_all,
    one,
    run_reloads,
    step_args,
)
from .topology import Topology
from .topology import parse as topology_of

#: attempts of a retryable plan (connection option ``retries``); the waits between them,
#: 0.05 s doubled up to 1 s, add up to 0.75 s by default (raise it to ride out failovers)
RETRIES = 5
BACKOFF = 0.05
MAX_BACKOFF = 1.0


def _pause(attempt: int) -> float:
    return float(min(MAX_BACKOFF, BACKOFF * 2**attempt))


def _final(exc: BaseException) -> bool:
    """Connection errors that a retry cannot cure: bad credentials, and an exhausted pool
    (the caller chose ``pool_timeout``; waiting longer is not ours to decide)."""
    return isinstance(translate(exc), (errors.AuthenticationError, errors.PoolExhaustedError))


@dataclass(frozen=True)
class ClientOptions:
    url: str
    max_connections: int = 50
    pool_timeout: float = 5.0
    socket_timeout: float = 5.0
    connect_timeout: float = 5.0
    retries: int = RETRIES
    read_from_replicas: bool = False
    #: writes wait (Redis WAIT) until this many replicas have them, up to wait_timeout s
    wait_replicas: int = 0
    wait_timeout: float = 1.0
    #: use a server whose maxmemory-policy is allkeys-* anyway (see ``eviction.py``)
    allow_eviction: bool = False
    extra: tuple[tuple[str, Any], ...] = ()
    topology: Topology = field(init=False, compare=False)

    def __repr__(self) -> str:  # never a password (see quantumorm.redaction)
        return redacted_repr(self, ((f.name, getattr(self, f.name))
                                    for f in fields(self) if f.name != "topology"))

    def __post_init__(self) -> None:
        if isinstance(self.max_connections, bool) or not isinstance(
                self.max_connections, int) or self.max_connections < 1:
            raise errors.ConfigurationError(f"max_connections must be a positive int (got "
                                            f"{self.max_connections!r})")
        for name in ("pool_timeout", "socket_timeout", "connect_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    0 < value < float("inf")):
                raise errors.ConfigurationError(f"{name} must be seconds > 0 (got {value!r})")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or (
                self.retries < 1):
            raise errors.ConfigurationError(f"retries must be a positive int (got "
                                            f"{self.retries!r})")
        if not isinstance(self.read_from_replicas, bool):
            raise errors.ConfigurationError(f"read_from_replicas must be True or False (got "
                                            f"{self.read_from_replicas!r})")
        if isinstance(self.wait_replicas, bool) or not isinstance(self.wait_replicas, int) or (
                self.wait_replicas < 0):
            raise errors.ConfigurationError(f"wait_replicas must be an int >= 0 (got "
                                            f"{self.wait_replicas!r})")
        if isinstance(self.wait_timeout, bool) or not isinstance(
                self.wait_timeout, (int, float)) or not self.wait_timeout > 0:
            raise errors.ConfigurationError(f"wait_timeout must be seconds > 0 (got "
                                            f"{self.wait_timeout!r})")
        if not isinstance(self.allow_eviction, bool):
            raise errors.ConfigurationError(f"allow_eviction must be True or False (got "
                                            f"{self.allow_eviction!r})")
        object.__setattr__(self, "topology", topology_of(self.url))
        if self.read_from_replicas and self.topology.kind == "single":
            raise errors.ConfigurationError(
                "read_from_replicas needs a redis+cluster:// or redis+sentinel:// URL")

    def settings(self, asyncio: bool) -> dict[str, Any]:
        """What every client and connection gets: timeouts, no retries of the driver's own
        (they would resend writes whose outcome is unknown), and the pass-through options."""
        retry = (AsyncRetry if asyncio else Retry)(NoBackoff(), 0)
        return {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
            "retry": retry,
            "retry_on_timeout": False,
            **dict(self.extra),
        }

    def pool(self) -> dict[str, Any]:
        return {"max_connections": self.max_connections, "timeout": self.pool_timeout}


class NotReplicated(rx.RedisError):
    """WAIT answered with fewer replicas than asked for (the write itself was applied)."""


_SCRIPT_NOPERM = "The user executing the script can't run this command"


def translate(exc: BaseException) -> BaseException:
    """Map a redis-py exception onto QuantumORM's hierarchy (others pass through)."""
    if isinstance(exc, NotReplicated):
        return errors.ReplicationError(str(exc))
    if isinstance(exc, rx.TimeoutError):
        return errors.BackendTimeoutError(f"Redis timed out: {exc}")
    if isinstance(exc, rx.MaxConnectionsError):
        return errors.PoolExhaustedError(f"Redis connection pool exhausted: {exc}")
    if isinstance(exc, (rx.AuthenticationError, rx.AuthenticationWrongNumberOfArgsError)):
        return errors.AuthenticationError(f"Redis rejected the credentials: {exc}")
    if isinstance(exc, rx.ConnectionError):
        if "No connection available" in str(exc) or "Too many connections" in str(exc):
            # (the blocking pool's signal, and the plain pools' of Cluster and Sentinel)
            return errors.PoolExhaustedError(f"Redis connection pool exhausted: {exc}")
        return errors.BackendConnectionError(f"cannot reach Redis: {exc}")
    if isinstance(exc, rx.NoPermissionError):
        return errors.PermissionDeniedError(f"Redis ACL refused the command: {exc}")
    if isinstance(exc, rx.OutOfMemoryError):
        return errors.OutOfMemoryError(f"Redis is out of memory: {exc}")
    if isinstance(exc, rx.ResponseError):
        code = str(exc).split(" ", 1)[0]
        if code == "WRONGTYPE":
            return errors.WrongTypeError(f"a key holds the wrong kind of value: {exc}")
        if code == "NOPERM" or _SCRIPT_NOPERM in str(exc):
            # an ACL refusal of a command a script calls: NOPERM since Redis 7.2; Redis 7.0
            # says ERR with this text (the one reply text that has no code of its own)
            return errors.PermissionDeniedError(f"Redis ACL refused a command: {exc}")
        return errors.BackendError(f"Redis error: {exc}")
    if isinstance(exc, rx.RedisError):
        return errors.BackendError(f"Redis error: {exc}")
    if isinstance(exc, RedisClusterException):  # the cluster could not be discovered
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, rx.AuthenticationError) or "username-password" in str(exc):
            return errors.AuthenticationError(f"Redis rejected the credentials: {exc}")
        return errors.BackendConnectionError(f"cannot reach the Redis Cluster: {exc}")
    return exc


#: replies meaning the command was not executed (failover or resharding under way): any
#: plan of one step may be sent again, as may read-only and idempotent plans
NOT_EXECUTED = (rx.ClusterDownError, rx.TryAgainError, rx.MasterDownError, rx.ReadOnlyError,
                rx.BusyLoadingError, rx.MovedError, rx.AskError)


#: errors after which a cluster client learns the slot map again before the next attempt:
#: slots moved, or a node is unreachable or failing over (redis-py refreshes the map on its
#: own paths, but not for the pipelines the executor sends straight to a node)
REMAP = (rx.ConnectionError, rx.ClusterError, rx.MovedError, rx.AskError, rx.TryAgainError)


def _not_executed(exc: BaseException) -> bool:
    # redis-py gives up with "TTL exhausted" after a run of redirects and TRYAGAIN replies,
    # each of which means the command did not run
    return isinstance(exc, NOT_EXECUTED) or (
        type(exc) is rx.ClusterError and "TTL exhausted" in str(exc))


#: how the eviction check's reads are retried: like any read
POLICY_READ = RedisPlan((Command(eviction.READS[0]),), read_only=True)


def _retry_allowed(exc: BaseException, plan: RedisPlan) -> bool:
    if _not_executed(exc):
        return plan.retryable or len(plan.steps) == 1
    if isinstance(exc, (rx.ConnectionError, NotReplicated)):
        return plan.retryable and not _final(exc)
    return False


def _marked(replies: list[Any], attempt: int) -> list[Any]:
    """The replies, marked as those of a resent plan after the first attempt."""
    if not attempt:
        return replies
    marked = Replies(replies)
    marked.resent = True
    return marked


def _first_key(step: Step) -> Any:
    """The key a step is routed by (every key of a step shares its slot)."""
    if isinstance(step, Call):
        return step.keys[0]
    args = step.args
    if "STREAMS" in args:  # XREAD / XREADGROUP: the keys follow STREAMS
        return args[args.index("STREAMS") + 1]
    return args[1]


def _acked(reply: Any, wanted: int, timeout_ms: int) -> None:
    if isinstance(reply, BaseException):
        raise reply
    if int(reply) < wanted:
        raise NotReplicated(f"applied on the master; {int(reply)} of {wanted} replica(s) "
                            f"confirmed it within {timeout_ms} ms")


def _check(replies: Sequence[Any]) -> list[Any]:
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return list(replies)


class SyncRedisExecutor:
    def __init__(self, options: ClientOptions) -> None:
        self.retries = options.retries
        try:  # (a cluster client discovers the cluster here)
            self.client, self.reader = topologies.sync_clients(
                options.topology, options.settings(asyncio=False), options.pool(),
                options.read_from_replicas)
        except (rx.RedisError, RedisClusterException) as exc:
            raise translate(exc) from exc
        self.replica_reads = options.read_from_replicas
        self.wait, self.wait_ms = options.wait_replicas, int(options.wait_timeout * 1000)
        self.cluster = options.topology.cluster
        self.allow_eviction = options.allow_eviction
        #: the servers' eviction policy was found safe (or allowed): see ``eviction.py``
        self.eviction_checked = False

    def execute(self, plan: RedisPlan) -> list[Any]:
        for attempt in range(self.retries):
            try:
                if not self.eviction_checked:
                    eviction.settle(eviction.eviction_policies(self.client), self.allow_eviction)
                    self.eviction_checked = True
                if self.wait and not plan.read_only:
                    return _marked(self._send_durable(plan.steps), attempt)
                return _marked(self._send(plan.steps, plan.read_only), attempt)
            except rx.RedisError as exc:
                sent = plan if self.eviction_checked else POLICY_READ
                if attempt + 1 == self.retries or not _retry_allowed(exc, sent):
                    raise translate(exc) from exc
                time.sleep(_pause(attempt))
                if self.cluster and isinstance(exc, REMAP):
                    with contextlib.suppress(rx.RedisError):  # (it may fail mid-failover)
                        self.client.nodes_manager.initialize()
        raise AssertionError("unreachable")

    def _by_node(self, steps: Sequence[Step], replica: bool) -> list[tuple[Any, list[int]]]:
        """A cluster's steps grouped by the node serving their slot: each node's client and
        the positions of its steps."""
        groups: dict[str, tuple[Any, list[int]]] = {}
        for i, step in enumerate(steps):
            key = _first_key(step)
            # (a slot whose replicas the client does not know is read from its master)
            node = (replica and self.client.get_node_from_key(key, replica=True)
                    or self.client.get_node_from_key(key))
            groups.setdefault(node.name, (node, []))[1].append(i)
        return [(self.client.get_redis_connection(node), positions)
                for node, positions in groups.values()]

    def _send_durable(self, steps: Sequence[Step]) -> list[Any]:
        """Writes followed by WAIT on the same connection (per node on a cluster). Every
        WAIT must be satisfied (a resent step has its own)."""
        acks: list[Any] = []

        def send(todo: Sequence[Step], inline: bool) -> list[Any]:
            if not self.cluster:
                return self._durable(self.client, todo, inline, acks)
            replies: list[Any] = [None] * len(todo)
            for client, positions in self._by_node(todo, replica=False):
                sent = self._durable(client, [todo[i] for i in positions], inline, acks)
                for i, reply in zip(positions, sent, strict=True):
                    replies[i] = reply
            return replies

        replies = run_reloads(steps, send, self.load_scripts)
        for ack in acks:
            _acked(ack, self.wait, self.wait_ms)
        return _check(replies)

    def _durable(self, client: Any, steps: Sequence[Step], inline: bool,
                 acks: list[Any]) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        for step in steps:
            pipe.execute_command(*step_args(step, inline=inline))
        pipe.execute_command("WAIT", self.wait, self.wait_ms)
        replies = pipe.execute(raise_on_error=False)
        acks.append(replies[-1])
        return list(replies[:-1])

    def _send_routed(self, steps: Sequence[Step], read_only: bool,
                     inline: bool) -> list[Any]:
        """A cluster plan, sent as one pipeline per node (redis-py's cluster pipeline would
        first ask a server for the keys of each script: a round trip per step). Redirects
        come back as errors and are retried by :meth:`execute` after the map is relearned."""
        ro = read_only and self.replica_reads
        replies: list[Any] = [None] * len(steps)
        for client, positions in self._by_node(steps, replica=ro):
            pipe = client.pipeline(transaction=False)
            for i in positions:
                pipe.execute_command(*step_args(steps[i], ro, inline))
            for i, reply in zip(positions, pipe.execute(raise_on_error=False), strict=True):
                replies[i] = reply
        return replies

    def _send(self, steps: Sequence[Step], read_only: bool) -> list[Any]:
        return _check(run_reloads(steps, lambda todo, inline: self._send_once(
            todo, read_only, inline), self.load_scripts))

    def _send_once(self, steps: Sequence[Step], read_only: bool, inline: bool) -> list[Any]:
        """One round trip: a reply (or the error) per step."""
        if self.cluster:
            return self._send_routed(steps, read_only, inline)
        ro = read_only and self.replica_reads
        client = self.reader if read_only else self.client
        if len(steps) == 1:
            return one(lambda: client.execute_command(*step_args(steps[0], ro, inline)))
        pipe = client.pipeline(transaction=False)
        for step in steps:
            pipe.execute_command(*step_args(step, ro, inline))
        return list(pipe.execute(raise_on_error=False))

    def load_scripts(self) -> None:
        """Load every script where it may run: the master (all primaries and, for replica
        reads, all nodes of a cluster; the replica client of a Sentinel group)."""
        for client in dict.fromkeys((self.client, self.reader)):
            load_all(client)

    def close(self) -> None:
        for client in dict.fromkeys((self.client, self.reader)):
            client.close()
            pool = getattr(client, "connection_pool", None)
            if pool is not None:
                pool.disconnect()
        for watcher in getattr(getattr(self.client, "_qorm_sentinel", None), "sentinels", ()):
            watcher.close()  # the connections to the Sentinels themselves


class AsyncRedisExecutor:
    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        #: as :attr:`SyncRedisExecutor.eviction_checked` (one flag for every loop's clients)
        self.eviction_checked = False
        #: the clients of each event loop, closed when their loop shuts down (loops.py)
        self._loops = LoopClients(self._make_pair, _close_pair)

    def _make_pair(self) -> tuple[Any, Any]:
        options = self.options
        pair = topologies.async_clients(options.topology, options.settings(asyncio=True),
                                        options.pool(), options.read_from_replicas)
        if options.topology.cluster:
            pair[0]._qorm_settled = False
        return pair

    def _pair(self) -> tuple[Any, Any]:
        pair: tuple[Any, Any] = self._loops.get()
        return pair

    @property
    def client(self) -> Any:
        """The asyncio client of the running event loop (each loop has its own)."""
        return self._pair()[0]

    async def _settle(self) -> None:
        """A new cluster client discovers the cluster (skipping seed nodes that are down),
        then answers to QuantumORM's retry policy only (see ``topology._settled``)."""
        client = self.client
        if getattr(client, "_qorm_settled", True):
            return
        try:
            await client.initialize()
        except (rx.RedisError, RedisClusterException) as exc:
            raise translate(exc) from exc
        client.set_retry(self.options.settings(asyncio=True)["retry"])
        client._qorm_settled = True

    async def execute(self, plan: RedisPlan) -> list[Any]:
        options = self.options
        attempts = options.retries
        if options.topology.cluster:
            await self._settle()
        for attempt in range(attempts):
            try:
                if not self.eviction_checked:
                    eviction.settle(await eviction.async_eviction_policies(self.client),
                                    options.allow_eviction)
                    self.eviction_checked = True
                if options.wait_replicas and not plan.read_only:
                    return _marked(await self._send_durable(plan.steps), attempt)
                return _marked(await self._send(plan.steps, plan.read_only), attempt)
            except rx.RedisError as exc:
                sent = plan if self.eviction_checked else POLICY_READ
                if attempt + 1 == attempts or not _retry_allowed(exc, sent):
                    raise translate(exc) from exc
                await asyncio.sleep(_pause(attempt))
                if options.topology.cluster and isinstance(exc, REMAP):
                    with contextlib.suppress(rx.RedisError):
                        await self.client.nodes_manager.initialize()
        raise AssertionError("unreachable")

    async def _send_durable(self, steps: Sequence[Step]) -> list[Any]:
        """Writes followed by WAIT on the same connection (per node on a cluster). Every
        WAIT must be satisfied (a resent step has its own)."""
        options = self.options
        wait, wait_ms = options.wait_replicas, int(options.wait_timeout * 1000)
        acks: list[Any] = []

        async def send(todo: Sequence[Step], inline: bool) -> list[Any]:
            replies, ack = await self._durable(todo, inline, wait, wait_ms)
            acks.append(ack)
            return replies

        replies = await arun_reloads(steps, send, self.load_scripts)
        for ack in acks:
            _acked(ack, wait, wait_ms)
        return _check(replies)

    async def _durable(self, steps: Sequence[Step], inline: bool, wait: int,
                       wait_ms: int) -> tuple[list[Any], Any]:
        """One round trip (per node): the steps' replies, and WAIT's (on a cluster, the
        fewest replicas any node confirmed, or its error)."""
        client = self.client
        if not self.options.topology.cluster:
            pipe = client.pipeline(transaction=False)
            for step in steps:
                pipe.execute_command(*step_args(step, inline=inline))
            pipe.execute_command("WAIT", wait, wait_ms)
            replies = await pipe.execute(raise_on_error=False)
            return list(replies[:-1]), replies[-1]
        await client.initialize()
        groups: dict[str, tuple[Any, list[int]]] = {}
        for i, step in enumerate(steps):
            node = client.get_node_from_key(_first_key(step))
            groups.setdefault(node.name, (node, []))[1].append(i)
        out: list[Any] = [None] * len(steps)
        least: Any = wait
        for node, positions in groups.values():
            commands = [PipelineCommand(n, *step_args(steps[i], inline=inline))
                        for n, i in enumerate(positions)]
            commands.append(PipelineCommand(len(positions), "WAIT", wait, wait_ms))
            await node.execute_pipeline(commands)
            for i, command in zip(positions, commands, strict=False):
                out[i] = command.result
            acked = commands[-1].result
            if not isinstance(least, BaseException) and (
                    isinstance(acked, BaseException) or int(acked) < int(least)):
                least = acked
        return out, least

    async def _send(self, steps: Sequence[Step], read_only: bool) -> list[Any]:
        async def send(todo: Sequence[Step], inline: bool) -> list[Any]:
            return await self._send_once(todo, read_only, inline)

        return _check(await arun_reloads(steps, send, self.load_scripts))

    async def _send_once(self, steps: Sequence[Step], read_only: bool,
                         inline: bool) -> list[Any]:
        """One round trip: a reply (or the error) per step."""
        writer, reader = self._pair()
        ro = read_only and self.options.read_from_replicas
        client = reader if read_only else writer
        if len(steps) == 1:
            return await aone(lambda: client.execute_command(*step_args(steps[0], ro, inline)))
        pipe = client.pipeline(transaction=False)
        for step in steps:
            pipe.execute_command(*step_args(step, ro, inline))
        return list(await pipe.execute(raise_on_error=False))

    async def load_scripts(self) -> None:
        for client in dict.fromkeys(self._pair()):
            await aload_all(client)

    async def aclose(self) -> None:
        """Close the clients of every event loop (see :meth:`.loops.LoopClients.close_all`)."""
        await self._loops.close_all()


async def _close_pair(pair: tuple[Any, Any]) -> None:
    for client in dict.fromkeys(pair):
        await client.aclose()
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            await pool.disconnect()
    sentinel = getattr(pair[0], "_qorm_sentinel", None)
    for watcher in getattr(sentinel, "sentinels", ()):
        await watcher.aclose()


__all__ = ["AsyncRedisExecutor", "Call", "ClientOptions", "SyncRedisExecutor", "translate"]
