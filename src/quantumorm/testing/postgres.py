"""A private PostgreSQL server for tests: initdb into a temp dir, a free loopback port.

:class:`SessionPostgres` starts the server on first use (one per test session, shared by every
fixture that asks) and returns its URL; it stops it (by its pid) when the last user lets go.
:func:`reset` empties the database between tests.

PostgreSQL refuses to run as root, so when the tests run as root (CI, containers) initdb and
the server run as the unprivileged ``nobody`` user, owning the data directory; a normal user
runs them as themselves. Nothing listens but 127.0.0.1 (no Unix socket is made).

Without the server binaries (Debian: ``apt-get install postgresql``) or psycopg,
:class:`~quantumorm.testing.servers.ServerUnavailable` says which is missing; the fixtures
turn it into a skip (or a failure where required).
"""

from __future__ import annotations

import glob
import importlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from .servers import ServerFailed, ServerUnavailable, die_with_parent, free_port

#: the URL of a server to use instead of starting one (its ``public`` schema is dropped
#: and recreated before each test that resets it: point it at a scratch database)
URL_VARIABLE = "QUANTUMORM_TEST_POSTGRES_URL"
START_TIMEOUT = 30.0  # seconds for the server to accept connections
START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it
UNPRIVILEGED = "nobody"
INSTALL_HINT = ("install the PostgreSQL server binaries (Debian/Ubuntu: apt-get install "
                f"postgresql) or set {URL_VARIABLE}")


def driver() -> ModuleType:
    """psycopg (and psycopg_pool, which the backend needs), or :class:`ServerUnavailable`
    saying how to install them. (Imported on demand: the plugin loads without them.)"""
    for module in ("psycopg_pool", "psycopg"):
        try:
            found = importlib.import_module(module)
        except ImportError:
            raise ServerUnavailable(f"{module} is not installed "
                                    "(pip install 'quantumorm[postgres]')") from None
    return found


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


class PostgresServer:
    """One private server: :meth:`start` returns its URL, :meth:`stop` stops it by its pid
    and removes its files."""

    def __init__(self, initdb_options: tuple[str, ...] = ()) -> None:
        self.url: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir: str | None = None
        #: more initdb arguments (``"--data-checksums"``...)
        self.initdb_options = initdb_options

    def start(self) -> str:
        """Start the server; returns its URL. :class:`ServerUnavailable` when the binaries or
        psycopg are missing; :class:`ServerFailed` (with initdb's or the server's output)
        when they are there but initdb or the server fails. Nothing is left behind on
        failure: no process, no directory."""
        bindir = binaries()
        if bindir is None:
            raise ServerUnavailable("PostgreSQL server binaries (initdb, postgres) are not "
                                    f"installed: {INSTALL_HINT}")
        psycopg = driver()
        self.workdir = tempfile.mkdtemp(prefix="quantumorm-postgres-")
        try:
            return self._start(bindir, psycopg, self.workdir)
        except BaseException:
            self.stop()
            raise

    def _start(self, bindir: Path, psycopg: ModuleType, workdir: str) -> str:
        data = Path(workdir, "data")
        data.mkdir()
        # the server gets SIGTERM if this process dies without stopping it (a killed pytest)
        run_as: dict[str, Any] = {
            "preexec_fn": die_with_parent if sys.platform == "linux" else None}
        if os.geteuid() == 0:
            user = pwd.getpwnam(UNPRIVILEGED)
            for path in (workdir, data):
                os.chown(path, user.pw_uid, user.pw_gid)
            # (the child sets its user before preexec_fn runs, and a change of user would
            # clear the parent-death signal: it is set as the unprivileged user)
            run_as.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
        env = {**os.environ, "HOME": workdir, "LC_ALL": "C"}
        log = Path(workdir, "postgres.log")
        try:
            subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A",
                            "trust", "-E", "UTF8", "--locale=C", "--no-sync",
                            *self.initdb_options],
                           check=True, env=env, cwd=workdir, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **run_as)
        except subprocess.CalledProcessError as error:
            output = (error.stderr or b"").decode(errors="replace")[-2000:]
            raise ServerFailed(f"initdb exited {error.returncode}:\n{output}") from None
        except OSError as error:
            raise ServerFailed(f"initdb could not be run: {error}") from None
        for _ in range(START_ATTEMPTS):
            port = free_port()
            with log.open("ab") as output:
                self.process = subprocess.Popen(
                    [str(bindir / "postgres"), "-D", str(data), "-p", str(port),
                     "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                     "-c", "fsync=off", "-c", "synchronous_commit=off",
                     "-c", "full_page_writes=off", "-c", "max_connections=300"],
                    env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=output,
                    stderr=subprocess.STDOUT, **run_as)
            url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
            if self._wait(psycopg, url):
                self.url = url
                return url
            self._stop_process()
        details = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
        raise ServerFailed(f"postgres did not start on 127.0.0.1; its log:\n{details}")

    def _wait(self, psycopg: ModuleType, url: str) -> bool:
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


class SessionPostgres:
    """One server shared by a session's fixtures: :meth:`acquire` starts it on first use
    (or returns the ``external`` URL given, checking only that psycopg is there);
    :meth:`release` stops it after the last user."""

    def __init__(self) -> None:
        self.server = PostgresServer()
        self.users = 0

    def acquire(self, external: str | None = None) -> str:
        driver()
        if external:
            return external
        if self.server.url is None:
            self.server.start()
        self.users += 1
        assert self.server.url is not None
        return self.server.url

    def release(self, external: str | None = None) -> None:
        if external:
            return
        self.users -= 1
        if self.users <= 0:
            self.server.stop()
            self.users = 0


#: the session's server, shared by the plugin's fixtures and any conftest that asks
session = SessionPostgres()


def reset(url: str) -> None:
    """An empty ``public`` schema: every table, sequence and index of the last test gone."""
    with driver().connect(url, autocommit=True) as db:
        db.execute("DROP SCHEMA IF EXISTS public CASCADE")
        db.execute("CREATE SCHEMA public")


__all__ = ["INSTALL_HINT", "URL_VARIABLE", "PostgresServer", "SessionPostgres", "binaries",
           "driver", "reset", "session"]
