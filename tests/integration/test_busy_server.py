"""A server running a script past its busy threshold (``busy-reply-threshold``, formerly
``lua-time-limit``) answers other commands BUSY without running them. A write that meets
it is refused with :class:`ServerBusyError`; a write whose first attempt got no reply in
time and whose resend meets it, with :class:`ServerBusyAfterTimeout` (also a
BackendTimeoutError: the script still running may be that first attempt, so whether the
write was applied is unknown).

The busy script is sent on a raw socket to a private server (its threshold set for the
test) and runs for a fixed time, reading TIME; no timing is asserted, only outcomes. The
threshold is longer than the socket timeout, so the first attempt sent while the script
runs gets no reply in time, and the resend (sent after it) meets the busy phase.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from helpers import MODES, call

import quantumorm
from quantumorm import (
    BackendTimeoutError,
    Document,
    IntField,
    ServerBusyAfterTimeout,
    ServerBusyError,
    StringField,
)

#: the server's busy threshold, and how long the busy script runs (milliseconds)
THRESHOLD_MS, BUSY_MS = 1500, 3500
#: the connection's socket timeout (seconds): shorter than the threshold
SOCKET_TIMEOUT = 1.0

#: a script that runs ``ARGV[1]`` milliseconds (and writes nothing: SCRIPT KILL could stop it)
LOOP = """
local t = redis.call("TIME")
local start = t[1] * 1000 + math.floor(t[2] / 1000)
while true do
  t = redis.call("TIME")
  if t[1] * 1000 + math.floor(t[2] / 1000) - start >= tonumber(ARGV[1]) then break end
end
return 1
"""


class Memo(Document):
    title = StringField(indexed=True)
    n = IntField(default=0)

    class Meta:
        collection = "busy_memos"


def _packed(*args: str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


@pytest.fixture
def busy_server(start_redis: Any) -> Iterator[str]:
    url, _ = start_redis("--busy-reply-threshold", str(THRESHOLD_MS))
    try:
        yield url
    finally:
        quantumorm.close_all()


def _start_busy(url: str) -> socket.socket:
    """Send the busy script on a raw socket (its reply is read by :func:`_end_busy`)."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall(_packed("EVAL", LOOP, "0", str(BUSY_MS)))
    return sock


def _end_busy(sock: socket.socket) -> None:
    """Wait for the busy script's reply (":1"), then close its socket."""
    try:
        assert sock.recv(64).startswith(b":1")
    finally:
        sock.close()


async def _pause(mode: str, seconds: float) -> None:
    # (the busy script must have started before the write is sent; the server is idle)
    if mode == "sync":
        await asyncio.to_thread(__import__("time").sleep, seconds)
    else:
        await asyncio.sleep(seconds)


@pytest.mark.parametrize("mode", MODES)
async def test_a_resend_refused_busy_says_the_outcome_is_unknown(
        busy_server: str, mode: str) -> None:
    quantumorm.create_connection(url=busy_server, name="default", make_default=True,
                                 socket_timeout=SOCKET_TIMEOUT)
    try:
        memo = await call(Memo(id="a", title="t"), "save", mode)  # (scripts, eviction check)
        busy = _start_busy(busy_server)
        try:
            await _pause(mode, 0.2)
            memo.n = 1
            with pytest.raises(ServerBusyAfterTimeout) as raised:
                await call(memo, "save", mode)  # (an update: resent after a timeout)
        finally:
            await asyncio.to_thread(_end_busy, busy)
        error = raised.value
        assert error.outcome_unknown
        assert isinstance(error, BackendTimeoutError) and isinstance(error, ServerBusyError)
        assert "BUSY" in str(error.__cause__)
        # the script over, the document reads, at the version of whichever attempt ran
        stored = await call(Memo.objects, "get", mode, id="a")
        assert stored.version >= memo.version and stored.n in (0, 1)
    finally:
        await quantumorm.aclose_all()
        quantumorm.close_all()


@pytest.mark.parametrize("mode", MODES)
async def test_a_write_refused_busy_at_its_first_attempt_ran_nothing(
        busy_server: str, mode: str) -> None:
    """Sent once the busy phase has begun: BUSY at once, typed; nothing of it ran."""
    quantumorm.create_connection(url=busy_server, name="default", make_default=True,
                                 socket_timeout=SOCKET_TIMEOUT)
    raw = redis.Redis.from_url(busy_server)
    try:
        memo = await call(Memo(id="b", title="t"), "save", mode)
        busy = _start_busy(busy_server)
        try:
            # (past the threshold: the server answers again, BUSY to all but a few)
            await _pause(mode, THRESHOLD_MS / 1000 + 0.3)
            memo.n = 1
            with pytest.raises(ServerBusyError) as raised:
                await call(memo, "save", mode)
        finally:
            await asyncio.to_thread(_end_busy, busy)
        assert type(raised.value) is ServerBusyError and not raised.value.outcome_unknown
        stored = await call(Memo.objects, "get", mode, id="b")
        assert (stored.version, stored.n) == (memo.version, 0)  # not applied
        assert raw.ping()
    finally:
        raw.close()
        await quantumorm.aclose_all()
        quantumorm.close_all()
