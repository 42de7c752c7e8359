"""What each kind of index costs: server commands per write and memory per document.

For one model (``name`` string, ``age`` int, ``active`` bool, ``tags`` a list of 2 strings)
declared with no index, one index of each kind, a compound index, all four single-field
indexes, and with or without change events, it inserts ``--n`` documents (the first 200 one
by one, the rest with ``bulk_create``), updates one document's ``age``, and reports:

* insert: server commands per ``save()`` of a new document (``INFO commandstats`` deltas:
  the commands a script calls count as well as the EVALSHA);
* update: server commands of one ``save()`` that changed ``age`` (the field of the age
  and compound indexes);
* memory per document (``metrics.memory_usage``: the document and meta keys of sampled
  documents, measured with ``MEMORY USAGE``; and the collection's shared structures, the
  indexes, id set and stream, divided by the document count; the server samples nested
  values, so read these to about ±10%).

Usage: bench/bench_index_cost.py [--n 2000]. It starts a private redis-server on a free
127.0.0.1 port (or uses $REDIS_URL, flushing its database), stopped at exit.
"""

from __future__ import annotations

import argparse
from typing import Any

import redis
from bench_redis import redis_server  # (this folder)

from quantumorm import (
    BooleanField,
    Document,
    IntField,
    ListField,
    StringField,
    close_all,
    create_connection,
    metrics,
)

CASES: list[tuple[str, tuple[str, ...], bool]] = [
    ("no index", (), False),
    ("no index, change events", (), True),
    ("name (string)", ("name",), False),
    ("age (int)", ("age",), False),
    ("active (bool)", ("active",), False),
    ("tags (list of 2)", ("tags",), False),
    ("compound (name, age)", ("compound",), False),
    ("all four", ("name", "age", "active", "tags"), False),
    ("all four, change events", ("name", "age", "active", "tags"), True),
]


def model(position: int, indexed: tuple[str, ...], changes: bool) -> Any:
    meta: dict[str, Any] = {"collection": f"cost{position}", "namespace": "qcost",
                            "changes": changes}
    if "compound" in indexed:
        meta["indexes"] = [("name", "age")]
    return type(f"Cost{position}", (Document,), {
        "name": StringField(indexed="name" in indexed),
        "age": IntField(indexed="age" in indexed),
        "active": BooleanField(indexed="active" in indexed),
        "tags": ListField(StringField(), indexed="tags" in indexed),
        "Meta": type("Meta", (), meta),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    n = max(parser.parse_args().n, 400)
    with redis_server("qorm-bench-index-cost-") as url:
        raw = redis.Redis.from_url(url)
        raw.flushdb()
        create_connection(url=url, make_default=True)

        def calls() -> int:  # (this INFO call itself counts once in the next reading)
            return sum(int(v["calls"]) for v in raw.info("commandstats").values())

        print(f"{'indexes':26} {'insert':>7} {'update':>7} {'doc+meta B':>11} "
              f"{'shared B':>9} {'total B/doc':>12}")
        for position, (label, indexed, changes) in enumerate(CASES):
            cls = model(position, indexed, changes)
            cls.objects.count_sync()  # the schema is stored before counting
            docs = [cls(name=f"user{i:06d}", age=i % 90, active=i % 2 == 0,
                        tags=[f"t{i % 10}", f"t{i % 7 + 10}"]) for i in range(n)]
            before = calls()
            for doc in docs[:200]:
                doc.save_sync()
            insert = (calls() - before - 1) / 200
            cls.objects.bulk_create_sync(docs[200:])
            docs[0].age = 99
            before = calls()
            docs[0].save_sync()
            update = calls() - before - 1
            usage = metrics.memory_usage_sync(cls, samples=200)
            print(f"{label:26} {insert:7.1f} {update:7d} {usage.bytes_per_document:11.0f} "
                  f"{usage.structure_bytes / n:9.0f} {usage.total_bytes / n:12.0f}")
        close_all()
        raw.close()


if __name__ == "__main__":
    main()
