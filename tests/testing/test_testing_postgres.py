"""The private PostgreSQL server of quantumorm.testing.postgres: what is left when things go
wrong (a failing initdb, a test process killed before it could stop its server)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import postgres_support
from quantumorm.testing import ServerFailed, ServerUnavailable, postgres

GONE_WITHIN = 120.0  # seconds: a liveness bound for a slow, shared machine, not a timing


@pytest.fixture
def temp_root() -> Iterator[Path]:
    """A temporary directory for the server's (when running as root the server runs as
    nobody, who must be able to reach it: not under pytest's 0700 tmp_path)."""
    root = Path(tempfile.mkdtemp(prefix="qorm-pg-test-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def installed() -> None:
    """Skip without PostgreSQL, or fail where it is required (CI: see postgres_support)."""
    try:
        postgres.driver()
    except ServerUnavailable as error:
        postgres_support.skip(str(error))
    if postgres.binaries() is None:
        postgres_support.skip("PostgreSQL server binaries are not installed")


@pytest.mark.usefixtures("installed")
def test_a_failing_initdb_is_server_failed_and_leaves_nothing(
        temp_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))  # where mkdtemp puts its dir
    server = postgres.PostgresServer(initdb_options=("--no-such-option",))
    with pytest.raises(ServerFailed, match=r"initdb exited \d+:[\s\S]*no-such-option"):
        server.start()
    assert server.workdir is None and server.process is None and server.url is None
    assert list(temp_root.iterdir()) == []


def _dead(pid: int) -> bool:
    """Gone, or a zombie nobody reaps (its parent was killed)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


STARTER = """
import sys, time, tempfile
tempfile.tempdir = sys.argv[1]
from quantumorm.testing.postgres import PostgresServer
server = PostgresServer()
server.start()
print(server.process.pid, flush=True)
time.sleep(600)
"""

# The starter's orphans must not go to init, which may stop them itself (some container
# inits send SIGTERM to the processes they inherit): a subreaper between the test and the
# starter inherits the server, sends it nothing, and reports the two pids.
REAPER = """
import ctypes, subprocess, sys, time
ctypes.CDLL(None, use_errno=True).prctl(36, 1)  # PR_SET_CHILD_SUBREAPER
starter = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]],
                           stdout=subprocess.PIPE, text=True)
print(starter.pid, starter.stdout.readline().strip(), flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
@pytest.mark.usefixtures("installed")
def test_the_server_dies_with_a_killed_test_process(temp_root: Path) -> None:
    reaper = subprocess.Popen(
        [sys.executable, "-c", REAPER, STARTER, str(temp_root)], stdout=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    server = 0
    try:
        assert reaper.stdout is not None
        starter, server = (int(pid) for pid in reaper.stdout.readline().split())
        assert not _dead(server)
        os.kill(starter, signal.SIGKILL)  # no chance to stop its server
        deadline = time.monotonic() + GONE_WITHIN
        while not _dead(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _dead(server), f"postgres (pid {server}) outlived the process that started it"
    finally:
        if server and not _dead(server):
            os.kill(server, signal.SIGTERM)  # the server this test started, left behind
        reaper.kill()
        reaper.wait()
