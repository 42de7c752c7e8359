"""The two executors: they run the exchange of a plan (``exchange.py``) with redis-py.

They own the sockets and nothing else: every decision (retries and backoff, NOSCRIPT
reloads, WAIT, resend marking, eviction check, cluster routing) is the exchange's. For each
request it yields, an executor does the I/O, blocking or asyncio, and sends the result
back (an I/O error is thrown back in, for the exchange to judge). The request a plan starts
with, when the exchange says it is its whole result on success (``exchange.first_send``),
the executor sends before starting the exchange, which it then starts only if that round
failed, with its outcome: most plans pay no generator. A blocking executor with one client
(a single server, or Sentinel without replica reads) takes only that request's commands
(``exchange.first_commands``) and, when they are all :data:`RAW`, sends them to its pool
itself: a read by id builds no request (an asyncio executor likewise, per event loop).

* :class:`~.exchange.Send`: on a standalone or Sentinel client, when every command is a
  script call, WAIT or MGET (:data:`RAW`), one connection from the pool: the commands packed and
  written at once, a reply read per command (an error reply kept as the reply), the
  connection released (:func:`_round_trip`); on a blocking cluster client likewise, with
  the target node's own client and pool. This is what ``execute_command`` and
  ``pipeline(transaction=False).execute(raise_on_error=False)`` do for these commands,
  without their per-call layers (retry wrapper, metrics hooks, pipeline object, HIMPORT
  checks), which were most of the client's Python calls per operation. Any other command
  goes through ``execute_command`` (one alone) or a pipeline, which apply redis-py's reply
  callbacks. On a cluster, through the target node's own client (blocking:
  ``get_redis_connection(node)``, then as above; asyncio: the node's ``execute_pipeline``,
  the per-node pipeline of redis-py's asyncio cluster client), so both address nodes alike.
  Cluster errors (MOVED, ASK, TRYAGAIN, CLUSTERDOWN) are replies like any other error
  there: redis-py's node connections parse them into ``ResponseError`` subclasses, and the
  exchange judges them.
* :class:`~.exchange.Fanout`: the nodes' sends one after the other (blocking) or at once
  (asyncio); :class:`~.exchange.Sleep`: ``time.sleep`` / ``asyncio.sleep``;
  :class:`~.exchange.Relearn`: ``nodes_manager.initialize()``; scripts and eviction
  policies: ``reloads.load_all`` and ``eviction.eviction_policies`` (and their twins).

An asyncio round trip writes its commands to the transport itself and waits, within the
socket timeout, only for what the transport kept buffered (:func:`_asend`: redis-py's send
makes a task per command for ``asyncio.wait_for`` on Python before 3.12).

Connect and socket timeouts are always set; the pool blocks at most ``pool_timeout``
seconds for a free connection, then raises :class:`PoolExhaustedError`. asyncio clients are
bound to the event loop that created them, so there is one pair per loop (``loops.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from redis import exceptions as rx
from redis.asyncio.cluster import PipelineCommand
from redis.exceptions import RedisClusterException

from ... import logs
from ...engine import observe
from . import eviction
from . import topology as topologies
from .commands import RAW_REPLIES, Call, RedisPlan
from .exchange import (
    Fanout,
    Link,
    LoadScripts,
    ReadPolicies,
    Relearn,
    Request,
    Send,
    Sleep,
    first_commands,
    first_send,
    first_wire,
    script_command,
)
from .exchange import exchange as exchange_of
from .loops import LoopClients
from .options import ClientOptions
from .pooling import ASYNC_GET, SYNC_GET
from .reloads import aload_all, load_all, noscript
from .translation import translate

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # (redis-py packs in Python then, and so do the executors)
    _hiredis_pack = None

#: the commands :func:`_round_trip` sends itself (see ``commands.RAW_REPLIES``)
RAW = RAW_REPLIES


#: the commands of a lone step sent as its maker's bytes (first_wire): only their count is
#: read (one reply)
_ONE: list[tuple[Any, ...]] = [("EVALSHA",)]

#: what :meth:`SyncRedisExecutor._exchange` is given when no request was sent before it ran
UNSENT: Any = object()


def _direct(client: Any, commands: list[tuple[Any, ...]]) -> bool:
    """May these commands go straight to a connection of ``client``'s pool? Not for a
    client pinned to one connection (``single_connection_client``: its lock and
    reconnects are redis-py's), nor for a command whose reply redis-py would convert."""
    if client.connection is not None:
        return False
    for command in commands:
        if command[0] not in RAW:
            return False
    return True


def _pack(conn: Any, commands: list[tuple[Any, ...]]) -> list[bytes]:
    """The commands in the wire protocol. With hiredis (what redis-py packs with when it is
    installed) one ``pack_command`` per command, without redis-py's per-argument
    re-encoding pass (hiredis encodes str, int, float and bytes as it would); any other
    argument (bytearray, memoryview, or a bad type such as bool) is left to redis-py's
    packer, which converts it or raises its DataError."""
    if _hiredis_pack is not None:
        try:
            # (a list of chunks: the blocking connection writes each item of what it gets)
            if len(commands) == 1:
                return [_hiredis_pack(commands[0])]
            return [b"".join([_hiredis_pack(command) for command in commands])]
        except TypeError:
            pass
    packed: list[bytes] = conn.pack_commands(commands)
    return packed


def _straight(plan: RedisPlan, link: Link) -> list[tuple[Any, ...]] | None:
    """The commands of ``plan``'s first round when it can go straight to the pool (every
    one of them in :data:`RAW`: redis-py has no reply callback for them), else None."""
    commands = first_commands(plan, link)
    if commands is not None:
        for command in commands:
            if command[0] not in RAW:
                return None
    return commands


def _round_trip(pool: Any, commands: list[tuple[Any, ...]],
                wire: bytes | None = None) -> list[Any]:
    """One round trip on a connection of ``pool``: every command written at once, then a
    reply per command, an error reply (NOSCRIPT included) as the reply, as a pipeline with
    ``raise_on_error=False`` gives it. A connection error or timeout has disconnected the
    connection (redis-py's connection does it) before it goes back to the pool; any other
    interruption disconnects it here, since replies may be left unread on it. The pool
    drops a connection marked for reconnect as it takes it back."""
    conn = pool.get_connection(*SYNC_GET)
    try:
        if wire is not None:  # (one command, packed by its maker: see Call.wire)
            packed = [wire]
        elif _hiredis_pack is not None and len(commands) == 1:  # (_pack's first case, inline)
            try:
                packed = [_hiredis_pack(commands[0])]
            except TypeError:
                packed = _pack(conn, commands)
        else:
            packed = _pack(conn, commands)
        conn.send_packed_command(packed)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(conn.read_response())
            except rx.ResponseError as exc:
                replies.append(exc)
        return replies
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)


async def _around_trip(pool: Any, commands: list[tuple[Any, ...]],
                       wire: bytes | None = None) -> list[Any]:
    """:func:`_round_trip` on an asyncio pool (cancelled mid-read, the connection is
    disconnected: the reply would otherwise be read by the next caller)."""
    conn = await pool.get_connection(*ASYNC_GET)
    try:
        await _asend(conn, [wire] if wire is not None else _pack(conn, commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except rx.ResponseError as exc:
                replies.append(exc)
        return replies
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)


async def _asend(conn: Any, packed: list[bytes]) -> None:
    """``conn.send_packed_command(packed)`` without a task per send. redis-py bounds the
    whole write by ``asyncio.wait_for`` (on Python before 3.12, a task of its own and two
    more turns of the event loop per round trip); but a write that the transport takes
    whole (its buffer left empty) has nothing to wait for. Only what stays buffered goes
    through redis-py's send, which waits for it within ``socket_timeout`` (``TimeoutError``)
    and disconnects on failure. A connection not yet connected, closing, or with health
    checks takes redis-py's send whole."""
    writer = getattr(conn, "_writer", None)  # (None also where a redis-py has none)
    if writer is None or conn.health_check_interval or writer.transport.is_closing():
        await conn.send_packed_command(packed)
        return
    writer.writelines(packed)
    if writer.transport.get_write_buffer_size():
        await conn.send_packed_command([], check_health=False)  # (drains, timed)


def _link(options: ClientOptions) -> Link:
    return Link(options.retries, options.wait_replicas, int(options.wait_timeout * 1000),
                options.topology.cluster, options.read_from_replicas, options.allow_eviction,
                functions=options.scripts == "functions")


def _fell_back(link: Link, loaded: bool) -> None:
    """After loading the scripts: a server that refused FUNCTION LOAD has them by SCRIPT
    LOAD, and this connection calls them with EVALSHA from now on (said once)."""
    if link.functions and not loaded:
        link.functions = False
        logs.redis.warning("FUNCTION LOAD refused (ACL or server): calling the scripts with "
                    "EVALSHA on this connection")


class SyncRedisExecutor:
    def __init__(self, options: ClientOptions) -> None:
        try:  # (a cluster client discovers the cluster here)
            self.client, self.reader = topologies.sync_clients(
                options.topology, options.settings(asyncio=False), options.pool(),
                options.read_from_replicas)
        except (rx.RedisError, RedisClusterException) as exc:
            raise translate(exc) from exc
        self.cluster = options.topology.cluster
        self.link = _link(options)
        #: the pool a first round goes to straight from :meth:`execute`: the one client's
        #: (writes and reads alike), unless it is pinned to one connection
        self._pool: Any = None
        if not self.cluster and self.client is self.reader and self.client.connection is None:
            self._pool = self.client.connection_pool

    def script_command(self, plan: RedisPlan) -> str:
        """What ``plan``'s scripts are called with now (metrics and traces name them so)."""
        return script_command(plan, self.link)

    def execute(self, plan: RedisPlan) -> list[Any]:
        pool = self._pool
        commands: Any = None
        steps = plan.steps  # (first_wire's first test in line: most plans have no wire)
        if (pool is not None and len(steps) == 1 and steps[0].wire is not None
                and (wire := first_wire(plan, self.link)) is not None):
            # (a lone step packed by its maker: its bytes, the command not built)
            try:
                replies = _round_trip(pool, _ONE, wire)
            except BaseException as exc:
                failed: BaseException | list[Any] = exc  # (handled outside, as below)
            else:
                if not isinstance(replies[0], BaseException):
                    return replies
                failed = replies
            return self._exchange(plan, failed)
        if pool is not None:  # (_straight, inline: every operation's round trip asks)
            commands = first_commands(plan, self.link)
            if commands is not None:
                for command in commands:
                    if command[0] not in RAW:
                        commands = None
                        break
        send = None
        if commands is None:
            send = first_send(plan, self.link, self.client, self.reader)
            if send is None:
                return self._exchange(plan)
        try:
            # (the same round either way: first_commands' commands are first_send's)
            if send is None:
                replies = _round_trip(pool, commands)
            else:
                replies = self._send(send)
        except BaseException as exc:
            # (the exchange runs outside this handler: its retries' errors must not carry
            # this one as their context, nor keep it alive through the backoff)
            failed = exc
        else:
            for reply in replies:  # (an error reply: the exchange decides what follows)
                if isinstance(reply, BaseException):
                    break
            else:
                return replies
            failed = replies
        return self._exchange(plan, failed)

    def _exchange(self, plan: RedisPlan, sent: Any = UNSENT) -> list[Any]:
        """Carry the exchange of ``plan`` (``sent``: what its first request, sent by
        :meth:`execute`, gave: the replies or the exception it raised)."""
        steps = exchange_of(plan, self.link, self.client, self.reader)
        request = next(steps)
        try:
            if sent is not UNSENT:
                request = (steps.throw(sent) if isinstance(sent, BaseException)
                           else steps.send(sent))
            while True:
                try:
                    result = (self._send(request) if type(request) is Send
                              else self._serve(request))
                except BaseException as exc:
                    request = steps.throw(exc)
                else:
                    request = steps.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _send(self, send: Send) -> list[Any]:
        """One round trip to one destination: a reply (or the error) per command."""
        target, commands, single = send
        if self.cluster:
            target = self.client.get_redis_connection(target)
        if _direct(target, commands):
            return _round_trip(target.connection_pool, commands)
        if single:
            try:
                return [target.execute_command(*commands[0])]
            except rx.ResponseError as exc:  # (a reply like any other, as in a pipeline)
                if noscript(exc):
                    return [exc]
                raise
        pipe = target.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute(raise_on_error=False))

    def _serve(self, request: Request) -> Any:
        if isinstance(request, Fanout):
            return [self._send(send) for send in request.sends]
        if isinstance(request, Sleep):
            observe.note(observe.RETRY, request.reason)
            time.sleep(request.seconds)
        elif isinstance(request, Relearn):
            observe.note(observe.SLOT_RELEARN)
            self.client.nodes_manager.initialize()
        elif isinstance(request, ReadPolicies):
            return eviction.eviction_policies(self.client)
        elif isinstance(request, LoadScripts):
            observe.note(observe.SCRIPT_RELOAD)
            # wherever scripts may run: the master (every node of a cluster), and the
            # replica client of a Sentinel group
            for client in dict.fromkeys((self.client, self.reader)):
                _fell_back(self.link, load_all(client, self.link.functions))
        return None

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
        self.cluster = options.topology.cluster
        #: as :attr:`SyncRedisExecutor.link` (one eviction flag for every loop's clients)
        self.link = _link(options)
        #: the clients of each event loop, closed when their loop shuts down (loops.py)
        self._loops = LoopClients(self._make_pair, _close_pair)

    def _make_pair(self) -> tuple[Any, Any]:
        options = self.options
        pair = topologies.async_clients(options.topology, options.settings(asyncio=True),
                                        options.pool(), options.read_from_replicas)
        if options.topology.cluster:
            pair[0]._qorm_settled = False
        return pair

    def pairs(self) -> list[tuple[Any, Any]]:
        """The client pairs of every event loop (for pool statistics)."""
        return self._loops.sets()

    def _pair(self) -> tuple[Any, Any]:
        pair: tuple[Any, Any] = self._loops.get()
        return pair

    @property
    def client(self) -> Any:
        """The asyncio client of the running event loop (each loop has its own)."""
        return self._pair()[0]

    async def _settle(self, client: Any) -> None:
        """A new cluster client discovers the cluster (skipping seed nodes that are down),
        then answers to QuantumORM's retry policy only (see ``topology._settled``)."""
        try:
            await client.initialize()
        except (rx.RedisError, RedisClusterException) as exc:
            raise translate(exc) from exc
        client.set_retry(self.options.settings(asyncio=True)["retry"])
        client._qorm_settled = True

    def script_command(self, plan: RedisPlan) -> str:
        """What ``plan``'s scripts are called with now (metrics and traces name them so)."""
        return script_command(plan, self.link)

    async def execute(self, plan: RedisPlan) -> list[Any]:
        writer, reader = self._pair()
        # (as the sync twin: one client, not pinned to a connection, takes the commands
        # alone)
        commands: Any = None
        steps = plan.steps  # (first_wire's first test in line, as the sync twin)
        if (not self.cluster and len(steps) == 1 and steps[0].wire is not None
                and writer is reader and not writer.single_connection_client
                and (wire := first_wire(plan, self.link)) is not None):
            # (a lone step packed by its maker: as the sync twin)
            try:
                replies = await _around_trip(writer.connection_pool, _ONE, wire)
            except BaseException as exc:
                failed: BaseException | list[Any] = exc  # (handled outside: see the sync twin)
            else:
                if not isinstance(replies[0], BaseException):
                    return replies
                failed = replies
            return await self._exchange(plan, writer, reader, failed)
        if not self.cluster and writer is reader and not writer.single_connection_client:
            commands = _straight(plan, self.link)
        send = None
        if commands is None:
            send = first_send(plan, self.link, writer, reader)
            if send is None:
                return await self._exchange(plan, writer, reader)
        try:
            if send is None:
                replies = await _around_trip(writer.connection_pool, commands)
            else:
                replies = await self._send(send)
        except BaseException as exc:
            failed = exc  # (handled outside: see the sync twin)
        else:
            for reply in replies:
                if isinstance(reply, BaseException):
                    break
            else:
                return replies
            failed = replies
        return await self._exchange(plan, writer, reader, failed)

    async def _exchange(self, plan: RedisPlan, writer: Any, reader: Any,
                        sent: Any = UNSENT) -> list[Any]:
        """As :meth:`SyncRedisExecutor._exchange`."""
        if self.cluster and not writer._qorm_settled:
            await self._settle(writer)
        steps = exchange_of(plan, self.link, writer, reader)
        request = next(steps)
        try:
            if sent is not UNSENT:
                request = (steps.throw(sent) if isinstance(sent, BaseException)
                           else steps.send(sent))
            while True:
                try:
                    result = await (self._send(request) if type(request) is Send
                                    else self._serve(request, writer, reader))
                except BaseException as exc:
                    request = steps.throw(exc)
                else:
                    request = steps.send(result)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def _send(self, send: Send) -> list[Any]:
        """One round trip to one destination: a reply (or the error) per command."""
        target, commands, single = send
        if self.cluster:  # (the node's pipeline; a reply or the error per command)
            queued = [PipelineCommand(i, *command) for i, command in enumerate(commands)]
            await target.execute_pipeline(queued)
            return [command.result for command in queued]
        if not target.single_connection_client and _direct(target, commands):
            return await _around_trip(target.connection_pool, commands)
        if single:
            try:
                return [await target.execute_command(*commands[0])]
            except rx.ResponseError as exc:
                if noscript(exc):
                    return [exc]
                raise
        pipe = target.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))

    async def _serve(self, request: Request, writer: Any, reader: Any) -> Any:
        if isinstance(request, Fanout):
            if len(request.sends) == 1:
                return [await self._send(request.sends[0])]
            return list(await asyncio.gather(*(self._send(send) for send in request.sends)))
        if isinstance(request, Sleep):
            observe.note(observe.RETRY, request.reason)
            await asyncio.sleep(request.seconds)
        elif isinstance(request, Relearn):
            observe.note(observe.SLOT_RELEARN)
            await writer.nodes_manager.initialize()
        elif isinstance(request, ReadPolicies):
            return await eviction.async_eviction_policies(writer)
        elif isinstance(request, LoadScripts):
            observe.note(observe.SCRIPT_RELOAD)
            for client in dict.fromkeys((writer, reader)):
                _fell_back(self.link, await aload_all(client, self.link.functions))
        return None

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


# (ClientOptions and translate moved to ``options.py`` and ``translation.py``; they stay
# importable from here)
__all__ = ["AsyncRedisExecutor", "Call", "ClientOptions", "SyncRedisExecutor", "translate"]
