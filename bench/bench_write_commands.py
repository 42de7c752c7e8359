"""Server commands and round trips per write, and the client's Python calls per write.

What a write costs the server is mostly the commands its script runs; this script counts
them with ``INFO commandstats`` deltas (the commands a script calls are counted as well as
the EVALSHA itself) on a private server, for the model of issue 12's benchmark (indexes on
``name``, ``age``, ``active`` and ``tags``, an array of 5; change events on, the default):
an insert, an update by load-set-save, a transaction updating two documents it read, a
delete of a loaded document, a bulk insert, and
``filter(id=x).update(...)`` / ``filter(id=x).delete()``. Deterministic for a given tree,
so two trees compare exactly (``PYTHONPATH=<tree>/src``). ``--profile`` adds Python calls
per operation (cProfile).

Usage: bench/bench_write_commands.py [--n 200] [--profile]. It starts a private
redis-server on a free 127.0.0.1 port (no persistence; stopped at exit).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import pstats
import random
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import redis
from bench_redis import start_server, stop_server  # (this folder)

from quantumorm import (
    ArrayField,
    BooleanField,
    DateTimeField,
    Document,
    IntField,
    StringField,
    close_all,
    create_connection,
    get_connection,
)


class Person(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    active = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    created_at = DateTimeField()

    class Meta:
        collection = "people"
        namespace = "qwrites"


RNG = random.Random(1)
TAGS = [f"t{i}" for i in range(20)]


def person() -> Person:
    return Person(name=f"n{RNG.randrange(100)}", age=RNG.randrange(100),
                  active=RNG.random() < 0.5, tags=RNG.sample(TAGS, 5),
                  created_at=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))


def commands(client: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def per_op(client: redis.Redis, run: Callable[[], Any], n: int) -> dict[str, float]:
    """Commands per operation while ``run`` does ``n`` operations (INFO itself excluded)."""
    before = commands(client)
    run()
    after = commands(client)
    out = {name: (count - before.get(name, 0)) / n for name, count in after.items()
           if count != before.get(name, 0) and name != "info"}
    return dict(sorted(out.items()))


def python_calls(run: Callable[[], Any], n: int) -> float:
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    return pstats.Stats(profiler).total_calls / n  # type: ignore[attr-defined,no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    n = args.n
    workdir = tempfile.mkdtemp(prefix="qbench-writes-")
    server, url = start_server(workdir)  # (always private: it reads the server's counters)
    try:
        client = redis.Redis.from_url(url)
        create_connection("redis", url, make_default=True)
        person().save_sync()  # (the schema and scripts are loaded by the first write)
        docs: list[Person] = []
        ids = [p.id for p in Person.objects.bulk_create_sync([person() for _ in range(n)])]

        def update() -> None:
            for doc in docs:
                doc.age = (doc.age or 0) + 1
                doc.save_sync()

        def transact() -> None:  # two documents read and written in one transaction
            connection = get_connection()
            for first, second in zip(ids[0::2], ids[1::2], strict=False):
                with connection.transaction_sync() as tx:
                    a, b = tx.get(Person, first), tx.get(Person, second)
                    a.age, b.age = (a.age or 0) + 1, (b.age or 0) + 1
                    tx.save(a)
                    tx.save(b)

        rows: list[tuple[str, Callable[[], Any], int]] = [
            ("insert (save)", lambda: docs.extend(person().save_sync() for _ in range(n)), n),
            ("update (load-set-save)", update, n),
            ("transaction, per document", transact, 2 * (n // 2)),
            ("delete (loaded document)", lambda: [d.delete_sync() for d in docs], n),
            ("bulk insert, per document",
             lambda: Person.objects.bulk_create_sync([person() for _ in range(1000)]), 1000),
            ("filter(id=x).update(age=..)",
             lambda: [Person.objects.filter(id=i).update_sync(age=RNG.randrange(100))
                      for i in ids], n),
            ("filter(id=x).delete()",
             lambda: [Person.objects.filter(id=i).delete_sync() for i in ids], n),
        ]
        print(f"{'operation':30} {'scripts':>7} {'commands':>8}  by command")
        for name, run, count in rows:
            seen = per_op(client, run, count)
            scripts = sum(v for k, v in seen.items() if k.startswith("eval"))
            inner = sum(v for k, v in seen.items() if not k.startswith("eval"))
            detail = " ".join(f"{k}={v:.2f}" for k, v in seen.items())
            print(f"{name:30} {scripts:7.2f} {inner:8.2f}  {detail}")
        if args.profile:
            fresh = [person() for _ in range(n)]
            for name, run in [
                ("save_sync insert", lambda: [d.save_sync() for d in fresh]),
                ("save_sync update", lambda: [(setattr(d, "age", 7), d.save_sync())
                                              for d in fresh]),
                ("delete_sync", lambda: [d.delete_sync() for d in fresh[: n // 2]]),
                ("filter(id=x).update_sync", lambda: [
                    Person.objects.filter(id=d.id).update_sync(age=8) for d in fresh[n // 2:]]),
                ("filter(id=x).delete_sync", lambda: [
                    Person.objects.filter(id=d.id).delete_sync() for d in fresh[n // 2:]]),
            ]:
                count = n if name.startswith("save") else n // 2
                print(f"python calls/op {name:28} {python_calls(run, count):8.1f}")
        close_all()
    finally:
        stop_server(server)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
