"""Never stale across processes: writers in two other processes increment counters
through the ORM on the same SQLite file and cache; readers here check that every read sees
every write that had completed (as the writers reported) before the read began."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from cache_models import Counter

from quantumorm.cache.dispatch import Pause

WRITER = Path(__file__).with_name("cache_writer.py")
IDS = ["a", "b", "c"]
WRITES = 150


class LateFiller:
    """The primary backend, with a pause after each load by id: this process's fills land
    late, so that writes of the other processes often begin and finish in between (the
    race a fill must lose)."""

    def __init__(self, primary: Any) -> None:
        self.primary = primary

    def __getattr__(self, name: str) -> Any:
        return getattr(self.primary, name)

    def get_many(self, options: Any, ids: Any) -> Any:
        rows = yield from self.primary.get_many(options, ids)
        yield Pause(0.003)
        return rows


def test_reads_here_see_every_write_completed_in_other_processes(
        cached: dict[str, Any], primary_url: str) -> None:
    Counter.objects.bulk_create_sync([Counter(id=id) for id in IDS])
    backend = Counter._connection().backend
    backend.primary = LateFiller(backend.primary)
    completed = dict.fromkeys(IDS, 0)
    lock = threading.Lock()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(WRITER.parent), *os.environ.get("PYTHONPATH", "").split(os.pathsep)])}
    writers = [subprocess.Popen(
        [sys.executable, str(WRITER), primary_url, cached["url"], str(WRITES), str(seed),
         ",".join(IDS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for seed in (1, 2)]

    def follow(process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            id, value = line.split()
            with lock:
                completed[id] = max(completed[id], int(value))

    followers = [threading.Thread(target=follow, args=(w,)) for w in writers]
    for follower in followers:
        follower.start()
    stale: list[tuple[str, int, int]] = []
    reads = 0
    rng = random.Random(3)
    while any(w.poll() is None for w in writers) or reads < 200:
        with lock:
            floors = dict(completed)
        docs = ([Counter.objects.get_sync(id=rng.choice(IDS))] if rng.randrange(2)
                else [d for d in Counter.objects.get_many_sync(IDS) if d is not None])
        for doc in docs:
            reads += 1
            if doc.n < floors[doc.id]:
                stale.append((doc.id, doc.n, floors[doc.id]))
    for follower in followers:
        follower.join()
    for writer in writers:
        assert writer.wait() == 0, writer.stderr.read() if writer.stderr else ""
    assert stale == []
    assert sum(completed.values()) > 0
    final = Counter.objects.cached(False).get_many_sync(IDS)
    assert sum(d.n for d in final if d is not None) == 2 * WRITES
    # (whether the race happened in a run depends on timing, so it is not asserted: with a
    # fill script that ignores leases, this test sees stale reads in most runs)
    assert Counter.objects.cache_stats().hits > 0
