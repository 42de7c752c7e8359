"""Update operators on a QuerySet: script calls, server commands and time per document.

``qs.update(inc__views=1, push__tags="x")`` over N matching documents, against the same
change made by N instance operators (``doc.inc`` then ``doc.push`` on loaded documents) and
by ``update_one``/``modify`` on one document. Script calls and commands are ``INFO
commandstats`` deltas on a private server (deterministic for a tree); times are one run's
wall clock on a shared machine (indicative only).

Usage: bench/bench_update_operators.py [--n 200]. It starts a private redis-server on a
free 127.0.0.1 port (no persistence; stopped at exit).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import redis
from bench_redis import start_server, stop_server  # (this folder)

from quantumorm import ArrayField, Document, IntField, StringField, close_all, create_connection


class Post(Document):
    title = StringField(indexed=True)
    views = IntField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)

    class Meta:
        collection = "bench_updops"


def stats(client: redis.Redis) -> tuple[int, int]:
    info: dict[str, Any] = client.info("commandstats")
    scripts = sum(info.get(f"cmdstat_{name}", {}).get("calls", 0)
                  for name in ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro"))
    commands = sum(value.get("calls", 0) for name, value in info.items()
                   if name.startswith("cmdstat_") and name != "cmdstat_info")
    return scripts, commands


def measure(client: redis.Redis, label: str, n: int, work: Callable[[], Any]) -> None:
    s0, c0 = stats(client)
    start = time.perf_counter()
    work()
    elapsed = time.perf_counter() - start
    s1, c1 = stats(client)
    print(f"{label:<44} scripts {s1 - s0:>5}  commands {c1 - c0:>6}  "
          f"{elapsed * 1e6 / n:>8.0f} us/doc")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    n = parser.parse_args().n
    workdir = tempfile.mkdtemp(prefix="qorm-bench-updops-")
    proc, url = start_server(workdir)
    try:
        create_connection(backend="redis", url=url, make_default=True)
        client = redis.Redis.from_url(url)
        Post.objects.bulk_create_sync([Post(title="t", views=i, tags=["a"]) for i in range(n)])
        qs = Post.objects.filter(title="t")
        measure(client, f"qs.update(inc, push) over {n}", n,
                lambda: qs.update_sync(inc__views=1, push__tags="x"))

        def instance_ops() -> None:
            for doc in qs.all_sync():
                doc.inc_sync("views", 1)
                doc.push_sync("tags", "x")
        measure(client, f"doc.inc + doc.push on {n} loaded", n, instance_ops)
        measure(client, "update_one(inc) x 50", 50,
                lambda: [qs.order_by("views").update_one_sync(inc__views=1)
                         for _ in range(50)])
        measure(client, "modify(new=True, inc) x 50", 50,
                lambda: [qs.order_by("views").modify_sync(new=True, inc__views=1)
                         for _ in range(50)])
        client.close()
    finally:
        close_all()
        stop_server(proc)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
