"""A single server's blocking connections keep their socket timeout in the kernel
(``backends/redis/sockets.py``): one system call per send and per receive instead of a
poll before each, with the same timeouts and the same typed errors, on a real server."""

from __future__ import annotations

import os
import signal
import socket
import struct
import time
from typing import Any

import pytest
import redis

import quantumorm
from quantumorm import Document, IntField
from quantumorm.backends.redis.executor import _round_trip
from quantumorm.backends.redis.pooling import WaitingConnectionPool
from quantumorm.backends.redis.sockets import SUPPORTED
from quantumorm.errors import BackendTimeoutError

pytestmark = pytest.mark.skipif(not SUPPORTED,
                                reason="kernel-kept socket timeouts: 64-bit Linux only")


def test_timeval_is_the_kernels_struct() -> None:
    from quantumorm.backends.redis import sockets

    assert sockets.timeval(5) == struct.pack("@ll", 5, 0)
    assert sockets.timeval(0.75) == struct.pack("@ll", 0, 750_000)
    assert sockets.timeval(2.5) == struct.pack("@ll", 2, 500_000)
    assert sockets.timeval(1e-9) == struct.pack("@ll", 0, 1)  # (zero: no timeout at all)


def _timeouts(sock: socket.socket) -> tuple[float, float]:
    """The kernel's receive and send timeouts of ``sock``, in seconds."""
    size = struct.calcsize("@ll")
    out = []
    for option in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO):
        whole, micros = struct.unpack("@ll", sock.getsockopt(socket.SOL_SOCKET, option, size))
        out.append(whole + micros / 1e6)
    return out[0], out[1]


def test_a_connections_pooled_sockets_are_timed_by_the_kernel(redis_url: str) -> None:
    class Timed(Document):
        n = IntField()

        class Meta:
            collection = "kernel_timed"
            connection = "kernel_timed"

    conn = quantumorm.create_connection(url=redis_url, name="kernel_timed", socket_timeout=0.75)
    try:
        Timed(id="1", n=1).save_sync()
        assert Timed.objects.get_many_sync(["1"])[0].n == 1
        pool = conn.store.sync_executor().client.connection_pool
        (lent,) = pool._available_connections
        assert lent._sock.gettimeout() is None  # (blocking: no poll before each call)
        # (the kernel keeps its timeouts in clock ticks: 0.75 s reads back as 0.752 at 250 Hz)
        assert all(0.75 <= seconds < 0.761 for seconds in _timeouts(lent._sock))
    finally:
        conn.close()


def test_tls_and_unix_socket_pools_keep_redis_pys_connections() -> None:
    from quantumorm.backends.redis import sockets

    assert WaitingConnectionPool.from_url("redis://127.0.0.1:1/0").connection_class is (
        sockets.KernelTimedConnection)
    for url, kind in (("rediss://127.0.0.1:1/0", redis.SSLConnection),
                      ("unix:///tmp/no-such-redis.sock", redis.UnixDomainSocketConnection)):
        pool = WaitingConnectionPool.from_url(url, socket_timeout=1.0)
        assert pool.connection_class is kind


def test_a_stalled_reply_is_a_timeout_error_in_time(redis_url: str, redis_client: Any) -> None:
    pool = WaitingConnectionPool.from_url(redis_url, socket_timeout=0.3)
    try:
        assert _round_trip(pool, [("EVAL", "return 1", 0)]) == [1]
        redis_client.execute_command("CLIENT", "PAUSE", 1200, "ALL")
        started = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            _round_trip(pool, [("EVAL", "return 'late'", 0)])
        assert 0.25 < time.monotonic() - started < 1.0
        assert all(conn._sock is None for conn in pool._available_connections)
        redis_client.execute_command("CLIENT", "UNPAUSE")
        assert _round_trip(pool, [("EVAL", "return 2", 0)]) == [2]
    finally:
        pool.disconnect()


def _stop(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)
    for _ in range(200):
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rpartition(")")[2].split()[0] in ("T", "t"):
                return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not stop")


def test_a_send_that_cannot_finish_is_a_timeout_error(start_redis: Any) -> None:
    """A stopped server reads nothing: a command larger than the sockets' buffers cannot be
    sent whole, and the kernel's send timeout ends the wait with a TimeoutError."""
    url, _ = start_redis()
    admin = redis.Redis.from_url(url)
    pid = int(admin.info("server")["process_id"])
    pool = WaitingConnectionPool.from_url(url, socket_timeout=0.3)
    try:
        assert _round_trip(pool, [("EVAL", "return 1", 0)]) == [1]
        _stop(pid)
        try:
            started = time.monotonic()
            with pytest.raises(redis.exceptions.TimeoutError):
                _round_trip(pool, [("EVAL", "return 1", 0, b"x" * (64 << 20))])
            assert time.monotonic() - started < 5.0
        finally:
            os.kill(pid, signal.SIGCONT)
        assert _round_trip(pool, [("EVAL", "return 2", 0)]) == [2]
    finally:
        pool.disconnect()
        admin.close()


def test_the_orm_raises_its_timeout_error_on_a_stalled_server(redis_url: str,
                                                               redis_client: Any) -> None:
    class Slow(Document):
        n = IntField()

        class Meta:
            collection = "kernel_slow"
            connection = "kernel_slow"

    conn = quantumorm.create_connection(url=redis_url, name="kernel_slow", socket_timeout=0.3)
    try:
        Slow(id="1", n=1).save_sync()
        redis_client.execute_command("CLIENT", "PAUSE", 1200, "ALL")
        started = time.monotonic()
        with pytest.raises(BackendTimeoutError):
            Slow.objects.get_many_sync(["1"])
        assert time.monotonic() - started < 1.0
        redis_client.execute_command("CLIENT", "UNPAUSE")
        assert Slow.objects.get_many_sync(["1"])[0].n == 1
    finally:
        conn.close()
