"""A write whose reply does not come within ``socket_timeout``: sent again once, on a fresh
connection, when its plan is idempotent (its write id lets the script recognise an applied
first attempt); reported as ``BackendTimeoutError`` otherwise.

Two real ways to lose the reply in time: a TCP relay on loopback between the client and
the server that drops the server's bytes on the connections open when it is told to (the
first attempt is applied, its reply never arrives), and ``CLIENT PAUSE WRITE`` from another
connection (the server holds the write; the first attempt gives up, the resend waits
behind the pause). No timings are asserted: only outcomes, and how often the scripts ran.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from helpers import MODES, call

import quantumorm
from quantumorm import BackendTimeoutError, Document, IntField, StringField, sortable
from quantumorm.backends.redis import stored as stored_module
from quantumorm.backends.redis.keys import KeySpace


class Memo(Document):
    title = StringField(indexed=True)
    n = IntField(default=0)

    class Meta:
        collection = "rt_memos"


class Relay:
    """A TCP relay on 127.0.0.1 to one Redis server. :meth:`mute` drops, from then on, the
    server's bytes on every connection open at that moment (new connections pass)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)  # (accept() looks at ``closed`` this often)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs: list[tuple[socket.socket, socket.socket, list[bool]]] = []
        self.threads: list[threading.Thread] = []
        self.closed = False
        self._spawn(self._accept)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self.threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            server = socket.create_connection(self.upstream)
            muted = [False]
            with self.lock:
                if self.closed:
                    client.close()
                    server.close()
                    return
                self.pairs.append((client, server, muted))
            self._spawn(self._pump, client, server, None)
            self._spawn(self._pump, server, client, muted)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, muted: list[bool] | None) -> None:
        try:
            while data := source.recv(65536):
                if not (muted and muted[0]):
                    sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def mute(self) -> None:
        with self.lock:
            for _, _, muted in self.pairs:
                muted[0] = True

    def close(self) -> None:
        with self.lock:
            self.closed = True
            pairs = list(self.pairs)
        self.threads[0].join(5)  # (the accepting thread, before its socket goes)
        self.listener.close()
        for client, server, _ in pairs:
            for end in (client, server):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()
        for thread in self.threads:
            thread.join(5)


@pytest.fixture
def relay(redis_url: str) -> Iterator[Relay]:
    parts = urlsplit(redis_url)
    assert parts.hostname is not None and parts.port is not None
    relayed = Relay(parts.hostname, parts.port)
    try:
        yield relayed
    finally:
        relayed.close()


@pytest.fixture
async def slow_conn(redis_url: str, redis_client: redis.Redis,
                    relay: Relay) -> AsyncIterator[quantumorm.Connection]:
    """The default connection, through the relay, with a short socket timeout."""
    redis_client.flushdb()
    database = urlsplit(redis_url).path or "/0"
    connection = quantumorm.create_connection(
        url=f"redis://127.0.0.1:{relay.port}{database}", name="default", make_default=True,
        socket_timeout=0.5)
    try:
        yield connection
    finally:
        try:
            await quantumorm.aclose_all()
        finally:
            quantumorm.close_all()


def scripts_run(redis_client: redis.Redis) -> int:
    stats = redis_client.info("commandstats")
    return sum(int(stats.get(name, {}).get("calls", 0))
               for name in ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_fcall",
                            "cmdstat_fcall_ro"))


def events(redis_client: redis.Redis) -> list[tuple[bytes, bytes]]:
    stream = KeySpace(Memo._meta).changes(0)
    return [(fields[b"op"], fields[b"id"]) for _, fields in redis_client.xrange(stream)]


@pytest.mark.parametrize("write", ["insert", "update", "patch", "bulk insert", "transaction"])
@pytest.mark.parametrize("mode", MODES)
async def test_a_write_whose_reply_timed_out_is_resent_and_found_applied(
        slow_conn: Any, redis_client: Any, relay: Relay, mode: str, write: str) -> None:
    warm = await call(Memo(id="w", title="warm"), "save", mode)  # (connections, scripts)
    assert warm.version > 0
    memo = None
    if write in ("update", "patch"):
        await call(Memo(id="a", title="t"), "save", mode)
        memo = await call(Memo.objects, "get", mode, id="a")
    before, seen = scripts_run(redis_client), len(events(redis_client))
    relay.mute()  # the next reply on the open connections is lost: applied, unanswered
    if write == "insert":
        saved = await call(Memo(id="a", title="t", n=1), "save", mode)
        assert saved.version > 0
    elif write == "update":
        assert memo is not None
        memo.n = 1
        await call(memo, "save", mode)
    elif write == "patch":
        assert await call(Memo.objects.filter(id="a"), "update", mode, n=1) == 1
    elif write == "bulk insert":
        await call(Memo.objects, "bulk_create", mode, [Memo(id="a", title="t", n=1),
                                                       Memo(id="b", title="t", n=1)])
    elif mode == "sync":  # a transaction (one partition: one tx.lua call)
        def block() -> None:
            with slow_conn.transaction_sync() as tx:
                tx.save(Memo(id="a", title="t", n=1))
                tx.save(Memo(id="b", title="t", n=1))
        await asyncio.to_thread(block)
    else:
        async with slow_conn.transaction() as tx:
            tx.save(Memo(id="a", title="t", n=1))
            tx.save(Memo(id="b", title="t", n=1))
    # sent twice, applied once: the second attempt found the first one's write id
    assert scripts_run(redis_client) - before == 2
    inserts = ("insert", "bulk insert", "transaction")
    kind = b"create" if write in inserts else b"update"
    ids = ["a", "b"] if write in ("bulk insert", "transaction") else ["a"]
    assert events(redis_client)[seen:] == [(kind, sortable.id_key(i)) for i in ids]
    stored = await call(Memo.objects, "get", mode, id="a")
    assert stored.n == 1
    # one write id per application: format 3 (what inserts store, a transaction's too)
    # keeps them in the document's header (W: the newest id alone, then each older id with
    # its version)
    ks = KeySpace(Memo._meta)
    headed = stored_module.header(redis_client.get(ks.doc(0, "a")))
    assert headed is not None
    version, w, _ = headed
    assert version == stored.version
    assert len(w) == (16 if write in inserts else 16 + 32)
    assert not redis_client.exists(ks.meta(0, "a"))  # (no expiry, nothing listed)
    assert await call(Memo.objects.filter(title="t"), "count", mode) == len(ids)


@pytest.mark.parametrize("mode", MODES)
async def test_a_delete_whose_reply_timed_out_is_not_resent(
        slow_conn: Any, redis_client: Any, relay: Relay, mode: str) -> None:
    memo = await call(Memo(id="d", title="t"), "save", mode)
    before = scripts_run(redis_client)
    relay.mute()
    with pytest.raises(BackendTimeoutError):
        await call(memo, "delete", mode)
    assert scripts_run(redis_client) - before == 1  # applied, not sent again
    assert not redis_client.exists(KeySpace(Memo._meta).doc(0, "d"))


@pytest.mark.parametrize("mode", MODES)
async def test_a_read_whose_reply_timed_out_is_not_resent(
        slow_conn: Any, redis_client: Any, relay: Relay, mode: str) -> None:
    await call(Memo(id="r", title="t"), "save", mode)
    before = redis_client.info("commandstats")
    relay.mute()
    with pytest.raises(BackendTimeoutError):
        await call(Memo.objects.filter(title="t"), "all", mode)
    after = redis_client.info("commandstats")
    sent = {name: int(after[name]["calls"]) - int(before.get(name, {}).get("calls", 0))
            for name in after if name.startswith(("cmdstat_eval", "cmdstat_fcall"))}
    assert sum(sent.values()) == 1, sent


@pytest.mark.parametrize("mode", MODES)
async def test_a_write_held_by_a_paused_server_is_resent_once_and_applied_once(
        redis_url: str, redis_client: Any, mode: str) -> None:
    """The server holds writes (CLIENT PAUSE WRITE, from another connection) longer than
    the socket timeout: the first attempt gives up, the resend waits behind the pause on a
    fresh connection, and the write is applied once."""
    redis_client.flushdb()
    quantumorm.create_connection(url=redis_url, name="default", make_default=True,
                                 socket_timeout=1.0)
    try:
        await call(Memo(id="w", title="warm"), "save", mode)
        before = redis_client.info("stats")["total_connections_received"]
        # (half a second longer than the timeout: room for a slow start of the write;
        # the resend, sent after the timeout and a backoff of at most 50 ms, waits less
        # than the timeout for the pause to end)
        redis_client.execute_command("CLIENT", "PAUSE", 1500, "WRITE")
        saved = await call(Memo(id="a", title="t", n=1), "save", mode)
        assert saved.version > 0
        assert [e for e in events(redis_client) if e[1] == sortable.id_key("a")] == [
            (b"create", sortable.id_key("a"))]
        assert redis_client.info("stats")["total_connections_received"] > before  # fresh
        assert (await call(Memo.objects, "get", mode, id="a")).n == 1
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
        await quantumorm.aclose_all()
        quantumorm.close_all()
