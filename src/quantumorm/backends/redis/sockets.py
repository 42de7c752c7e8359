"""The blocking TCP connection of a single server: its socket timeout kept by the kernel.

Python's socket timeout (``settimeout``) makes the socket non-blocking and has CPython
``poll()`` it before each ``send`` and each ``recv``: every round trip of a connection with
a timeout is five system calls (the pool's check, a poll and a send, a poll and a receive)
where three do. The kernel's own timeouts (``SO_SNDTIMEO``, ``SO_RCVTIMEO``) bound each
call of a blocking socket alike, without the polls: about 1.2 µs of client CPU less per
round trip on a loopback connection (``bench/bench_syscalls.py`` counts the calls).

:class:`KernelTimedConnection` connects as redis-py's ``Connection`` does (the connect
timeout is Python's, as before), then hands the socket timeout to the kernel. A send or a
receive that runs out of time fails there with ``EAGAIN``, which redis-py reports as a
``ConnectionError``: it is raised as the ``TimeoutError`` Python's timeout gave (the
connection is disconnected either way), so the exchange judges a stalled server as before.
64-bit Linux only (the ``timeval`` layout is the platform's); elsewhere, and for TLS or Unix
sockets, redis-py's connections are used as they are. A redis-py call that sets a timeout
of its own for one read (``read_response(timeout=...)``) puts the socket back in Python's
mode, which it restores after: the connection is then timed as before, only slower.
"""

from __future__ import annotations

import socket
import struct
import sys
from typing import Any

import redis
from redis import exceptions as rx

#: whether connections hand their socket timeout to the kernel on this platform: 64-bit
#: Linux, where ``struct timeval`` is two longs (a 32-bit build may pass a 64-bit time_t
#: layout under the same option name, which ``timeval()`` does not write)
SUPPORTED = (sys.platform.startswith("linux") and hasattr(socket, "SO_RCVTIMEO")
             and struct.calcsize("@l") == 8)


def timeval(seconds: float) -> bytes:
    """``seconds`` as the kernel's ``struct timeval`` (never zero: that means no timeout)."""
    micros = max(1, round(seconds * 1e6))
    return struct.pack("@ll", micros // 1_000_000, micros % 1_000_000)


def _expired(exc: BaseException) -> bool:
    """Did a kernel timeout raise ``exc``? (A blocking socket fails with EAGAIN only when
    its SO_RCVTIMEO or SO_SNDTIMEO runs out; redis-py chains that error to its own.)"""
    return isinstance(exc.__cause__ or exc.__context__, BlockingIOError)


class KernelTimedConnection(redis.Connection):
    """redis-py's TCP ``Connection`` whose ``socket_timeout`` the kernel keeps (see the
    module's docstring)."""

    def _connect(self) -> Any:
        sock = super()._connect()  # type: ignore[no-untyped-call]
        seconds = self.socket_timeout
        if seconds:  # (None: no timeout at all, left to redis-py; QuantumORM sets one)
            value = timeval(float(seconds))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
            sock.settimeout(None)
        return sock

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        try:
            super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]
        except rx.ConnectionError as exc:
            if _expired(exc):
                raise rx.TimeoutError("Timeout writing to socket") from None
            raise

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except rx.ConnectionError as exc:
            if _expired(exc):
                host = self._host_error()  # type: ignore[no-untyped-call]
                raise rx.TimeoutError(f"Timeout reading from {host}") from None
            raise


__all__ = ["SUPPORTED", "KernelTimedConnection", "timeval"]
