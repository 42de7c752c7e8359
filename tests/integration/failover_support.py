"""What the failover tests share: a partitioned model, concurrent writers (threads and
asyncio tasks) that record what was acknowledged, and the check that nothing acknowledged
was lost."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from helpers import assert_indexes_consistent

import quantumorm
from quantumorm import Document, IntField, StringField

#: enough attempts to outlast a failover (1 s node timeout, then an election): ~15 s
PATIENT = {"retries": 20, "wait_replicas": 1, "wait_timeout": 0.5}


class Ledger(Document):
    owner = StringField(indexed=True)
    n = IntField(indexed=True, default=0)

    class Meta:
        collection = "fo_ledger"
        partitions = 8


def run_writers(duration: float, trigger: Any, at: float) -> dict[str, Any]:
    """4 asyncio tasks and 2 threads insert documents and bump their own counter while
    ``trigger()`` runs ``at`` seconds in. Returns what was acknowledged, and any error."""
    acked: dict[str, Any] = {"inserted": [], "counters": {}, "errors": []}
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def note(kind: str, value: Any) -> None:
        with lock:
            if kind == "inserted":
                acked["inserted"].append(value)
            elif kind == "counter":
                acked["counters"][value[0]] = value[1]
            else:
                acked["errors"].append(value)

    def thread_writer(k: int) -> None:
        counter = Ledger.objects.get_sync(id=f"counter-{k}")
        n = 0
        while time.monotonic() < stop_at:
            try:
                doc = Ledger(id=f"t{k}-{n}", owner=f"w{k}", n=n).save_sync()
                note("inserted", doc.id)
                note("counter", (counter.id, counter.inc_sync("n")))
            except Exception as exc:  # reported by the test
                note("error", repr(exc))
            n += 1

    async def task_writer(k: int) -> None:
        counter = await Ledger.objects.get(id=f"counter-{k}")
        n = 0
        while time.monotonic() < stop_at:
            try:
                doc = await Ledger(id=f"a{k}-{n}", owner=f"w{k}", n=n).save()
                note("inserted", doc.id)
                note("counter", (counter.id, await counter.inc("n")))
            except Exception as exc:
                note("error", repr(exc))
            n += 1

    async def main() -> None:
        await Ledger.objects.bulk_create([Ledger(id=f"counter-{k}", owner="c")
                                          for k in range(6)])
        threads = [threading.Thread(target=thread_writer, args=(k,)) for k in range(2)]
        for thread in threads:
            thread.start()
        timer = threading.Timer(at, trigger)
        timer.start()
        try:
            await asyncio.gather(*(task_writer(k) for k in range(2, 6)))
        finally:
            for thread in threads:
                thread.join()
            timer.join()
            await quantumorm.get_connection().aclose()  # this loop's clients (kept registered)

    asyncio.run(main())
    return acked


@contextlib.contextmanager
def connected(url: str, **options: Any) -> Iterator[None]:
    """The default connection on ``url`` for the block; every connection closed after."""
    quantumorm.create_connection(url=url, name="default", make_default=True, **options)
    try:
        yield
    finally:
        quantumorm.close_all()


def verify(raw: Any, acked: dict[str, Any]) -> None:
    """Nothing acknowledged was lost and the indexes are exact (``raw``: a plain redis-py
    client of the deployment, closed here)."""
    try:
        _verify(raw, acked)
    finally:
        raw.close()


def _verify(raw: Any, acked: dict[str, Any]) -> None:
    assert acked["errors"] == []
    stored = {doc.id: doc for doc in Ledger.objects.all_sync()}
    lost = [id for id in acked["inserted"] if id not in stored]
    assert lost == [], f"{len(lost)} acknowledged inserts lost: {lost[:10]}"
    for id, value in acked["counters"].items():
        assert stored[id].n == value, (id, stored[id].n, value)
    assert len(acked["inserted"]) > 20, acked  # the writers did write, before and after
    assert_indexes_consistent(raw, Ledger)
