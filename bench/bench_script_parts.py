"""Server time per script call: the scripts as sent (shared parts cut to what each uses,
``luachunks.py``) against the same scripts with the shared parts whole.

Both texts are loaded on one private server; the ORM's calls are sent by the SHA of one or
the other (``reloads.script`` swapped), in alternating blocks of the same operations, and
``INFO commandstats`` gives the EVALSHA microseconds per call of each block (the server's
time in the script, its commands included). Reports the medians over the rounds and their
ratio (cut / whole) per operation: save insert, update (load-set-save), patch
(``filter(id=).update()``), delete, insert_many (per call of 100), query eq and range,
count, get_many.

Usage: bench/bench_script_parts.py [--n 5000] [--block 200] [--rounds 7]. It starts a
private redis-server on a free 127.0.0.1 port (no persistence; stopped at exit).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import tempfile
from collections.abc import Callable
from typing import Any

import redis
from bench_redis import start_server, stop_server  # (this folder)
from bench_write_commands import RNG, Person, person  # (this folder)

from quantumorm import close_all, create_connection
from quantumorm.backends.redis import reloads
from quantumorm.backends.redis.commands import SCRIPT_NAMES, Script, full_source, script

CUT = script


def whole(name: str) -> Script:
    source = full_source(name)
    return Script(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())


def script_time(client: redis.Redis) -> tuple[int, int]:
    """(calls, microseconds) of script calls so far (EVALSHA, FCALL and their _RO)."""
    stats: dict[str, Any] = client.info("commandstats")
    calls = usec = 0
    for name in ("cmdstat_evalsha", "cmdstat_evalsha_ro", "cmdstat_fcall",
                 "cmdstat_fcall_ro"):
        if name in stats:
            calls += int(stats[name]["calls"])
            usec += int(stats[name]["usec"])
    return calls, usec


def block(client: redis.Redis, variant: Callable[[str], Script], op: Callable[[int], Any],
          start: int, size: int) -> float:
    reloads.script = variant  # type: ignore[assignment]
    calls0, usec0 = script_time(client)
    for i in range(start, start + size):
        op(i)
    calls1, usec1 = script_time(client)
    return (usec1 - usec0) / max(1, calls1 - calls0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="qbench-parts-")
    server, url = start_server(workdir)
    try:
        client = redis.Redis.from_url(url)
        for name in SCRIPT_NAMES:
            client.script_load(whole(name).source)
            client.script_load(CUT(name).source)
        create_connection("redis", url, make_default=True)
        objects = Person.objects
        for _ in range(0, args.n, 1000):
            objects.bulk_create_sync([person() for _ in range(1000)])
        # (each variant's calls name its own SHA: checked in the slow log)
        client.config_set("slowlog-log-slower-than", 0)
        for variant in (whole, CUT):
            reloads.script = variant  # type: ignore[assignment]
            client.slowlog_reset()
            person().save_sync()
            sent = {bytes(e["command"]).split()[1] for e in client.slowlog_get(16)
                    if bytes(e["command"]).startswith(b"EVALSHA")}
            assert sent == {variant("save").sha.encode()}, sent
        client.config_set("slowlog-log-slower-than", 10000)
        size, rounds = args.block, args.rounds
        docs: list[Person] = []
        ops: list[tuple[str, Callable[[int], Any]]] = [
            ("save insert", lambda i: docs.append(person().save_sync())),
            ("save update", lambda i: (setattr(docs[i], "age", RNG.randrange(100)),
                                       docs[i].save_sync())),
            ("patch filter(id=).update", lambda i: objects.filter(id=docs[i].id).update_sync(
                age=RNG.randrange(100))),
            ("delete", lambda i: docs[i].delete_sync()),
            ("insert_many (100)", lambda i: objects.bulk_create_sync(
                [person() for _ in range(100)])),
            ("query eq", lambda i: objects.filter(name=f"n{i % 100}").all_sync()),
            ("query range+order+limit", lambda i: objects.filter(
                age__gte=i % 90, age__lt=i % 90 + 10).order_by("age").limit(100).all_sync()),
            ("count", lambda i: objects.filter(age__gte=i % 90, age__lt=i % 90 + 10)
             .count_sync()),
        ]
        print(f"{'operation':28} {'whole µs':>9} {'cut µs':>8} {'cut/whole':>9}"
              f"  (EVALSHA usec per call, medians of {rounds} paired blocks of {size})")
        for title, op in ops:
            if title == "save update":
                docs.clear()
                docs.extend(person().save_sync() for _ in range(2 * size * rounds))
            elif title == "delete":  # (each block deletes its own documents)
                docs.clear()
                docs.extend(person().save_sync() for _ in range(2 * size * rounds))
            small = title == "insert_many (100)"
            n = max(1, size // 20) if small else size
            full_times, cut_times, ratios = [], [], []
            for r in range(rounds):
                at = 2 * r * n
                # (alternating which goes first, so that drift favours neither)
                if r % 2:
                    c = block(client, CUT, op, at, n)
                    w = block(client, whole, op, at + n, n)
                else:
                    w = block(client, whole, op, at, n)
                    c = block(client, CUT, op, at + n, n)
                full_times.append(w)
                cut_times.append(c)
                ratios.append(c / w)
            print(f"{title:28} {statistics.median(full_times):9.1f} "
                  f"{statistics.median(cut_times):8.1f} {statistics.median(ratios):9.3f}")
        reloads.script = CUT
        close_all()
    finally:
        stop_server(server)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
