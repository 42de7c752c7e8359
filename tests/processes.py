"""Helpers for tests that stop a server's process to make it stall (a send that cannot
finish, a probe that gets no answer)."""

from __future__ import annotations

import os
import signal
import time


def stop_process(pid: int) -> None:
    """Stop the process ``pid`` (SIGSTOP) and wait, a bounded time, until the kernel says it
    is stopped: then it is certain that nothing it was sent is answered. The caller sends
    SIGCONT when done."""
    os.kill(pid, signal.SIGSTOP)
    for _ in range(200):
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rpartition(")")[2].split()[0] in ("T", "t"):
                return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not stop")
