"""A private PostgreSQL server for the tests: initdb into a temp dir, a free loopback port.

:func:`acquire` starts the server on first use (one per test session, shared by every
conftest that asks) and returns its URL; :func:`release` stops it (by its pid) when the last
user lets go. :func:`reset` empties the database between tests.

PostgreSQL refuses to run as root, so when the tests run as root (CI, containers) initdb and
the server run as the unprivileged ``nobody`` user, owning the data directory; a normal user
runs them as themselves. Nothing listens but 127.0.0.1 (no Unix socket is made).

With ``QORM_TEST_POSTGRES_URL`` set, that server is used instead; its ``public`` schema is
dropped and recreated before each test that uses it, so point it at a scratch database.
Without the server binaries (Debian: ``apt-get install postgresql``; ``./run-tests`` installs
them) or psycopg, the PostgreSQL tests are skipped, saying which is missing; with
``QORM_REQUIRE_POSTGRES=1`` (``.ci/run`` sets it) they fail instead.
"""

from __future__ import annotations

import glob
import importlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

URL_VARIABLE = "QORM_TEST_POSTGRES_URL"
#: set (to 1) in CI: what would skip the PostgreSQL tests fails them instead
REQUIRE_VARIABLE = "QORM_REQUIRE_POSTGRES"
START_TIMEOUT = 30.0  # seconds for the server to accept connections
START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it
UNPRIVILEGED = "nobody"


MARKER = "postgres: needs a real PostgreSQL server (started by the test session)"


def mark(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``postgres`` marker on every test that needs the server (``-m 'not postgres'``
    leaves them out): those using ``postgres_url`` and the postgres cases of the
    parametrized contract suite."""
    config.addinivalue_line("markers", MARKER)
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec is not None else ()
        if "postgres_url" in getattr(item, "fixturenames", ()) or "postgres" in params:
            item.add_marker(pytest.mark.postgres)


def skip(reason: str) -> None:
    """Skip the test, or fail it where PostgreSQL is required (CI)."""
    if os.environ.get(REQUIRE_VARIABLE, "").strip() in ("1", "true", "yes"):
        pytest.fail(f"{reason} ({REQUIRE_VARIABLE} is set)", pytrace=False)
    pytest.skip(reason)


def binaries() -> Path | None:
    """The directory holding initdb and postgres (PATH first, then Debian's layout)."""
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                            key=lambda p: int(Path(p).parent.name)
                            if Path(p).parent.name.isdigit() else 0, reverse=True):
        if Path(candidate, "initdb").exists() and Path(candidate, "postgres").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self) -> None:
        self.users = 0
        self.url: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir: str | None = None

    def start(self) -> str:
        bindir = binaries()
        if bindir is None:
            skip("PostgreSQL server binaries (initdb, postgres) are not installed: "
                        "apt-get install postgresql (./run-tests does), or set "
                        f"{URL_VARIABLE}")
        self.workdir = tempfile.mkdtemp(prefix="qorm-postgres-")
        data = Path(self.workdir, "data")
        data.mkdir()
        run_as: dict[str, Any] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED)
            for path in (self.workdir, data):
                os.chown(path, user.pw_uid, user.pw_gid)
            run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env = {**os.environ, "HOME": self.workdir, "LC_ALL": "C"}
        log = Path(self.workdir, "postgres.log")
        subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A",
                        "trust", "-E", "UTF8", "--locale=C", "--no-sync"],
                       check=True, env=env, cwd=self.workdir, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, **run_as)
        for _ in range(START_ATTEMPTS):
            port = _free_port()
            with log.open("ab") as output:
                self.process = subprocess.Popen(
                    [str(bindir / "postgres"), "-D", str(data), "-p", str(port),
                     "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                     "-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off", "-c", "max_connections=300"],
                    env=env, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=output,
                    stderr=subprocess.STDOUT, **run_as)
            url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
            if self._wait(url):
                self.url = url
                return url
            self._stop_process()
        details = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        self.stop()
        pytest.fail(f"postgres did not start on 127.0.0.1; its log:\n{details}", pytrace=False)

    def _wait(self, url: str) -> bool:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT
        assert self.process is not None
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                psycopg.connect(url, connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.1)
        return False

    def _stop_process(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()  # SIGTERM: "smart" shutdown; SIGINT would be "fast"
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop(self) -> None:
        self._stop_process()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        self.url = None


_server = Server()


def acquire() -> str:
    """The test server's URL (started on first use)."""
    for module in ("psycopg", "psycopg_pool"):
        try:
            importlib.import_module(module)
        except ImportError:
            skip(f"{module} is not installed (pip install 'quantumorm[postgres]')")
    url = os.environ.get(URL_VARIABLE)
    if url:
        return url
    if _server.url is None:
        _server.start()
    _server.users += 1
    assert _server.url is not None
    return _server.url


def release() -> None:
    if os.environ.get(URL_VARIABLE):
        return
    _server.users -= 1
    if _server.users <= 0:
        _server.stop()


def reset(url: str) -> None:
    """An empty ``public`` schema: every table, sequence and index of the last test gone."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute("DROP SCHEMA IF EXISTS public CASCADE")
        db.execute("CREATE SCHEMA public")
