"""Memory per document of QuantumORM's layout and of candidate layouts, on issue 12's workload.

What a layout costs is measured, not estimated: the workload of ``bench_workload.py`` (N
people; indexes on name, age, active and tags; change events on) is loaded by the ORM, and
each candidate layout is then built from the ORM's own keys into a key prefix of its own,
with the same bytes wherever the candidate keeps them:

* **orm**: the layout as it is (``keys.py``): the document's JSON in a string, a meta hash
  per document (version, recent writes, the encodings its index entries were made from), a
  lex-ordered sorted set per index (member = value encoding + id key), the id index, the
  change stream;
* **packed**: the meta hash's fields packed into a header of the document's string (length
  prefixed: a script reads version and encodings without decoding the JSON, and a query's
  MGET brings each row's version with it), values by position: one key per document
  instead of two;
* **packed+sets**: packed, and the two indexes that serve only equality and membership
  (``active``, a bool, and ``tags``, an array: no order, no range) as a set of id keys per
  value instead of sorted-set entries; name and age stay lex-ordered (ranges, prefixes,
  order);
* **plain**: the hand-written side of ``bench_workload.py`` (JSON string, a set per value of
  name, active and tags, a sorted set of ages, integer ids; no versions, no events).

Per layout: bytes per document (``MEMORY USAGE`` of every key, samples 0, summed; the
change stream counted as the ORM keeps it), keys per document, and the parts by kind of key.
Each candidate keeps every guarantee the ORM's layout does, except where named: it is the
layout a follow-up change would store, measured before it is built.

Usage: bench/bench_layouts.py [--n 50000]. Starts a private redis-server unless REDIS_URL is
set; deletes only its own keys.
"""

from __future__ import annotations

import argparse
import collections
import sys
from typing import Any

import redis
from bench_redis import redis_server  # (this folder)
from bench_workload import ORM_PATTERN, Person, make_docs
from workload_hand import HAND, HandWritten

from quantumorm import create_connection

PACKED = "{qbenchlayout-packed}:"
SETS = "{qbenchlayout-sets}:"
SET_INDEXES = (b"active", b"tags")  # equality and membership only: no order, no range
BATCH = 500


def usage(admin: redis.Redis, pattern: str) -> tuple[collections.Counter[str], int]:
    """Bytes by kind of key (the part of the name after the hash tag, ids dropped)."""
    parts: collections.Counter[str] = collections.Counter()
    keys = 0
    pipe = admin.pipeline(transaction=False)
    names = list(admin.scan_iter(match=pattern, count=2000))
    for name in names:
        pipe.memory_usage(name, samples=0)
    for name, size in zip(names, pipe.execute(), strict=True):
        keys += 1
        parts[kind(name)] += int(size or 0)
    return parts, keys


def kind(name: bytes) -> str:
    rest = name.split(b"}", 1)[1] if b"}" in name else name
    rest = rest.lstrip(b":")
    head = rest.split(b":", 1)[0]
    if head in (b"d", b"m", b"s"):
        return {b"d": "documents", b"m": "meta hashes", b"s": "index sets"}[head]
    if head == b"i":
        return "index " + rest.split(b":")[1].decode()
    if HAND.encode() in name:  # the plain side's keys: d:<id>, name:<v>, age, ...
        return {b"age": "index age", b"seq": "counter"}.get(head, f"index {head.decode()}")
    return head.decode()


def pack(meta: dict[bytes, bytes]) -> bytes:
    """The meta hash as a header: its values length-prefixed, by position (the schema names
    the fields' order), so a script reads version and encodings with string.sub, never
    decoding the JSON that follows."""
    body = b"".join(b"%d:%s" % (len(meta[k]), meta[k]) for k in sorted(meta))
    return b"%d:" % len(body) + body


def build_candidates(admin: redis.Redis) -> None:
    docs = [k for k in admin.scan_iter(match=ORM_PATTERN + ":d:*", count=2000)]
    for start in range(0, len(docs), BATCH):
        names = docs[start:start + BATCH]
        read = admin.pipeline(transaction=False)
        for name in names:
            read.get(name)
            read.hgetall(name.replace(b":d:", b":m:"))
        got = read.execute()
        write = admin.pipeline(transaction=False)
        for i, name in enumerate(names):
            json, meta = got[2 * i], got[2 * i + 1]
            id = name.split(b":d:", 1)[1]
            value = pack(meta) + json
            write.set(PACKED.encode() + b"d:" + id, value)
            write.set(SETS.encode() + b"d:" + id, value)
        write.execute()
    for index in admin.scan_iter(match=ORM_PATTERN + ":i:*", count=100):
        name = index.rsplit(b":", 1)[1]
        dump = admin.dump(index)
        admin.restore(PACKED.encode() + b"i:" + name, 0, dump, replace=True)
        if name not in SET_INDEXES:
            admin.restore(SETS.encode() + b"i:" + name, 0, dump, replace=True)
            continue
        members = admin.zrange(index, 0, -1)
        by_value: dict[bytes, list[bytes]] = collections.defaultdict(list)
        for member in members:  # value encoding, then "\0\1" and the id key
            value, idkey = member.split(b"\x00\x01", 1)
            by_value[value].append(idkey)
        for value, ids in by_value.items():
            for i in range(0, len(ids), 1000):
                admin.sadd(SETS.encode() + b"s:" + name + b":" + value, *ids[i:i + 1000])
    for shared in ("ids", "x"):
        for key in admin.scan_iter(match=ORM_PATTERN + ":" + shared, count=100):
            dump = admin.dump(key)
            for prefix in (PACKED, SETS):
                admin.restore(prefix + shared, 0, dump, replace=True)


def run(url: str, n: int) -> dict[str, Any]:
    admin = redis.Redis.from_url(url)
    create_connection(backend="redis", url=url, make_default=True)
    data = make_docs(n, max(1, n // 10), 1)
    for start in range(0, n, BATCH):
        Person.objects.bulk_create_sync([Person(**d) for d in data[start:start + BATCH]])
    HandWritten(admin).bulk(data)
    build_candidates(admin)
    out: dict[str, Any] = {}
    try:
        for layout, pattern in (("orm", ORM_PATTERN + "*"), ("packed", PACKED + "*"),
                                ("packed+sets", SETS + "*"), ("plain", HAND + "*")):
            parts, keys = usage(admin, pattern)
            parts.pop("schema", None)
            parts.pop("state", None)
            out[layout] = {"bytes_per_doc": sum(parts.values()) / n, "keys_per_doc": keys / n,
                           "parts": {k: v / n for k, v in parts.most_common()}}
    finally:
        for pattern in (ORM_PATTERN + "*", PACKED + "*", SETS + "*", HAND + "*"):
            names = list(admin.scan_iter(match=pattern, count=2000))
            for i in range(0, len(names), 1000):
                admin.delete(*names[i:i + 1000])
    return out


def report(out: dict[str, Any], n: int) -> None:
    plain = out["plain"]["bytes_per_doc"]
    print(f"{n:,} documents (bench_workload.py's); bytes per document by MEMORY USAGE")
    print(f"{'layout':<12} | {'B/doc':>6} | {'÷ plain':>7} | {'keys/doc':>8} | parts (B/doc)")
    for layout, row in out.items():
        parts = ", ".join(f"{k} {v:.0f}" for k, v in row["parts"].items() if v >= 1)
        print(f"{layout:<12} | {row['bytes_per_doc']:>6.0f} | "
              f"{row['bytes_per_doc'] / plain:>6.2f}x | {row['keys_per_doc']:>8.2f} | {parts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50000)
    args = parser.parse_args()
    with redis_server("qorm-bench-layouts-") as url:
        report(run(url, args.n), args.n)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
