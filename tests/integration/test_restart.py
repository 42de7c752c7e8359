"""A standalone server restarted under a live connection: the pools reconnect, the scripts
(gone with the restart) are loaded again, and data persisted by the server is intact."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import assert_indexes_consistent

import quantumorm
from quantumorm import Document, IntField, StringField


class Entry(Document):
    name = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "restart_entries"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    executable = shutil.which("redis-server")
    assert executable, "redis-server is not on PATH"
    process = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "yes", "--appendfsync", "always", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return process
            except redis.ConnectionError:
                time.sleep(0.05)
    finally:
        client.close()
    process.kill()
    process.wait()
    pytest.fail(f"redis-server did not start on port {port}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # SIGTERM: the server flushes its append-only file and exits
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.redis
async def test_a_restart_mid_run_reconnects_and_reloads_scripts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from quantumorm.backends.redis.backend import RedisBackend

    settled: list[str] = []  # (observes the lost-reply path; everything else is real)
    original = RedisBackend._settle_allocating

    def observed(self: Any, options: Any, call: Any) -> Any:
        settled.append(options.model_name)
        return original(self, options, call)

    monkeypatch.setattr(RedisBackend, "_settle_allocating", observed)
    port = _free_port()
    process = _launch(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        quantumorm.create_connection(url=url, name="restarting", make_default=True)
        entries = await Entry.objects.bulk_create(
            [Entry(id=f"e{i}", name="x", n=i) for i in range(20)])
        # the blocking pool, from a worker thread (refused on the loop's thread)
        await asyncio.to_thread(Entry(id="s", name="sync", n=100).save_sync)
        assert await Entry.objects.filter(n__gte=10).count() == 11

        _stop(process)
        process = _launch(port, tmp_path)  # same port, same data directory

        # each pool's first command after the restart is a write: the pool notices the
        # dead socket before sending (never a write sent into the void), the script cache
        # is empty (NOSCRIPT: loaded again)
        doc = Entry(id="e3", name="x", n=3)
        doc._version = next(e.version for e in entries if e.id == "e3")  # as if loaded
        doc._stored = doc.clean()
        doc.n = 300
        await asyncio.to_thread(doc.save_sync)
        await Entry(id="new", name="y", n=7).save()
        assert await asyncio.to_thread(Entry.objects.filter(n__lt=5).count_sync) == 4
        assert [e.id for e in await Entry.objects.filter(n__gte=100).order_by("n")] == ["s", "e3"]
        assert await Entry.objects.count() == 22

        # again, and this time the first write lets the server allocate its id: it is looked
        # up (not found: the server never saw it) and sent again, once
        _stop(process)
        process = _launch(port, tmp_path)
        created = await Entry(name="auto", n=8).save()
        await asyncio.to_thread(Entry(name="auto", n=9).save_sync)
        assert sorted(e.n for e in await Entry.objects.filter(name="auto")) == [8, 9]
        assert created.id == "1" and await Entry.objects.count() == 24
        assert settled == ["Entry"]  # the async pool's dead socket; the blocking one saw it
        raw = redis.Redis.from_url(url)
        try:
            assert_indexes_consistent(raw, Entry)
        finally:
            raw.close()
    finally:
        try:
            await quantumorm.aclose_all()
        finally:
            quantumorm.close_all()
            _stop(process)
