"""Helpers of the logging tests (a module of its own: ``conftest`` is a name every test
directory has)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis


def lines(caplog: pytest.LogCaptureFixture, logger: str,
          level: int | None = None) -> list[str]:
    """The messages ``logger`` logged (at ``level`` if given), formatted."""
    return [r.getMessage() for r in caplog.records
            if r.name == logger and (level is None or r.levelno == level)]


def everything(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record of every logger, as a formatted message and its raw parts (the
    arguments and any exception text), so that a secret cannot hide in any of them."""
    parts = []
    for record in caplog.records:
        parts += [record.getMessage(), repr(record.args), str(record.msg),
                  record.exc_text or ""]
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(repr(record.exc_info[1]))
    return "\n".join(parts)


def wait_for(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def killed_when_blocked(client: redis.Redis, command: str) -> Iterator[list[int]]:
    """While the body runs: a thread that waits until a client of the server is blocked in
    ``command`` (``CLIENT LIST``: its cmd, and the ``b`` flag), then kills that client
    (``CLIENT KILL ID``), once. Yields the ids killed."""
    killed: list[int] = []
    stop = threading.Event()

    def blocked() -> list[dict[str, Any]]:
        return [c for c in client.client_list()
                if c.get("cmd") == command and "b" in c.get("flags", "")]

    def killer() -> None:
        while not stop.is_set():
            found = blocked()
            if found:
                for entry in found:
                    client.client_kill_filter(_id=entry["id"])
                    killed.append(int(entry["id"]))
                return
            time.sleep(0.01)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        yield killed
    finally:
        stop.set()
        thread.join(10)


def debug_everywhere(caplog: pytest.LogCaptureFixture) -> None:
    """Capture every record of every logger, DEBUG and below included."""
    caplog.set_level(1)
    caplog.set_level(1, logger="quantumorm")  # (restored after the test, as the root's)
