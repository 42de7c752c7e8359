"""A private redis-server that a test can stop and start again on the same port, keeping
its data across the restart (``SHUTDOWN SAVE``, then loaded from the RDB file): the
entries, leases and write marks of before the restart come back, as they would with
persistence."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RestartableRedis:
    def __init__(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail("redis-server is not on PATH", pytrace=False)
        self.executable = executable
        self.workdir = tempfile.TemporaryDirectory(prefix="qorm-cache-redis-")
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        log = Path(self.workdir.name) / "redis.log"
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [self.executable, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", self.workdir.name,
                 "--dbfilename", "dump.rdb", "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError):
                    time.sleep(0.02)
        finally:
            client.close()
        pytest.fail(f"redis-server did not start on port {self.port}: "
                    f"{log.read_text(errors='replace')[-1000:]}", pytrace=False)

    def stop(self) -> None:
        """SHUTDOWN SAVE (the data is written to the RDB file), and wait for the exit."""
        process = self.process
        if process is None:
            return
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=5)
        try:
            client.shutdown(save=True)
        except redis.ConnectionError:
            pass
        finally:
            client.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
        self.restarts += 1

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.workdir.cleanup()
