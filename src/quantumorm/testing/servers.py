"""Private redis-servers for tests: started on a free loopback port, stopped by their pid.

:func:`start_redis_server` starts one (no persistence, in a given work directory, retried on
another port when the chosen one was taken before the server bound it) and waits until it
answers PING; :func:`stop` stops it. :class:`SessionRedis` shares one server between every
fixture of a test session that asks for it (started on first use, stopped when the last user
lets go), or hands out the URL of ``$QUANTUMORM_TEST_REDIS_URL`` instead.

Nothing here needs redis-py: readiness is a PING written on a plain socket, so that the
pytest plugin can be imported (and skip its tests with a helpful message) in an environment
that lacks the driver or the server.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: the URL of a server to use instead of starting one (keys are only deleted by namespace)
URL_VARIABLE = "QUANTUMORM_TEST_REDIS_URL"
#: set (to 1) where the tests must not be skipped: a missing server fails them instead
REQUIRE_VARIABLE = "QUANTUMORM_TESTING_REQUIRE"
START_TIMEOUT = 10.0  # seconds for redis-server to answer PING
START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it
INSTALL_HINT = ("install redis-server (Debian/Ubuntu: apt-get install redis-server; macOS: "
                f"brew install redis) or set {URL_VARIABLE} to a server the tests may write to")


class ServerUnavailable(RuntimeError):
    """The server cannot be had here (not installed, or its driver is not); the message says
    how to install it. The fixtures skip the tests that need it (or fail them where
    :data:`REQUIRE_VARIABLE` is set)."""


class ServerFailed(RuntimeError):
    """The server is installed but did not start; the message holds the end of its log.
    Always an error, never a skip."""


def required() -> bool:
    """Whether ``$QUANTUMORM_TESTING_REQUIRE`` asks for failures instead of skips."""
    return os.environ.get(REQUIRE_VARIABLE, "").strip().lower() in ("1", "true", "yes")


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (another process may take it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """In the child: get SIGTERM if the parent dies without stopping it (Linux only)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server this process started (SIGTERM, then SIGKILL after 10 s)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _command(*args: str) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(arg.encode()), arg.encode()) for arg in args)


def ping(url: str, password: str | None = None, timeout: float = 1.0) -> bool:
    """True when the server at ``url`` (``redis://host:port``) answers PING (after AUTH with
    ``password`` or the URL's credentials)."""
    parts = urlsplit(url)
    password = password if password is not None else (
        unquote(parts.password) if parts.password else None)
    commands: list[tuple[str, ...]] = [("PING",)]
    if password is not None:
        user = unquote(parts.username) if parts.username else "default"
        commands.insert(0, ("AUTH", user, password))
    request = b"".join(_command(*command) for command in commands)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379),
                                      timeout=timeout) as sock:
            sock.sendall(request)
            reply = b""
            # one line per command (AUTH's +OK or -ERR, then PING's +PONG or -NOAUTH...)
            while reply.count(b"\r\n") < len(commands):
                chunk = sock.recv(256)
                if not chunk:
                    return False
                reply += chunk
            return reply.split(b"\r\n")[-2] == b"+PONG"
    except OSError:
        return False


def executable() -> str:
    """The redis-server on PATH, or :class:`ServerUnavailable` saying how to install it."""
    found = shutil.which("redis-server")
    if found is None:
        raise ServerUnavailable(f"redis-server is not on PATH: {INSTALL_HINT}")
    return found


def start_redis_server(workdir: Path, extra: tuple[str, ...] = (),
                       password: str | None = None,
                       program: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start redis-server on 127.0.0.1 (no persistence, files in ``workdir``) and wait for
    PING; return the process and its ``redis://127.0.0.1:PORT/0`` URL (without the
    password). ``extra`` are more server options (``"--requirepass", "s3cret"``: then pass
    ``password`` too, for the readiness check). Raises :class:`ServerFailed` with the end of
    the server's log when it did not start after :data:`START_ATTEMPTS` ports, and
    :class:`ServerUnavailable` when redis-server is not installed."""
    program = program or executable()
    log = workdir / "redis.log"
    for _ in range(START_ATTEMPTS):
        port = free_port()
        with log.open("ab") as output:
            process = subprocess.Popen(
                [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no", *extra],
                cwd=workdir, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,
            )
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + START_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if ping(url, password):
                return process, url
            time.sleep(0.05)
        stop(process)  # exited (port taken?) or never answered: try another port
    details = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise ServerFailed(f"redis-server did not start on 127.0.0.1 after "
                            f"{START_ATTEMPTS} attempts; its log:\n{details}")


class SessionRedis:
    """One redis-server shared by the fixtures of a session: :meth:`acquire` starts it on
    first use (or returns ``$QUANTUMORM_TEST_REDIS_URL``, or the URL held in
    ``url_variables``' first set variable), :meth:`release` stops it after the last user."""

    def __init__(self, url_variables: tuple[str, ...] = (URL_VARIABLE,)) -> None:
        self.url_variables = url_variables
        self.users = 0
        self.url: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.workdir: tempfile.TemporaryDirectory[str] | None = None

    def external(self) -> str | None:
        """The URL of the server named by the environment, if one is."""
        for variable in self.url_variables:
            url = os.environ.get(variable)
            if url:
                return url
        return None

    def acquire(self, environment: bool = True) -> str:
        """The server's URL; ``environment=False``: a private server even where the
        environment names one (for fixtures that flush the database)."""
        url = self.external() if environment else None
        if url:
            return url
        if self.url is None:
            program = executable()
            workdir = tempfile.TemporaryDirectory(prefix="quantumorm-redis-")
            try:
                self.process, self.url = start_redis_server(Path(workdir.name), program=program)
            except BaseException:
                workdir.cleanup()
                raise
            self.workdir = workdir
        self.users += 1
        return self.url

    def release(self, environment: bool = True) -> None:
        if environment and self.external():
            return
        self.users -= 1
        if self.users <= 0:
            self.stop()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop(process)
        if self.workdir is not None:
            self.workdir.cleanup()
            self.workdir = None
        self.url, self.users = None, 0


#: the session's server, shared by the plugin's fixtures and any conftest that asks
session = SessionRedis()

__all__ = ["INSTALL_HINT", "REQUIRE_VARIABLE", "START_ATTEMPTS", "START_TIMEOUT",
           "URL_VARIABLE", "ServerFailed", "ServerUnavailable", "SessionRedis",
           "die_with_parent", "executable", "free_port", "ping", "required", "session",
           "start_redis_server", "stop"]
