"""Memory per document of QuantumORM's layout and of candidate layouts, on issue 12's workload.

What a layout costs is measured, not estimated: the workload of ``bench_workload.py`` (N
people; indexes on name, age, active and tags; change events on) is loaded by the ORM, and
each candidate layout is then built from the ORM's own keys into a key prefix of its own,
with the same bytes wherever the candidate keeps them:

* **orm**: format 2, the layout the study started from (``keys.py``; the ORM writes format 3
  since, and stores format 2 here for the study): the document's JSON in a string, a meta hash
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
* **format3**: the storage format designed in ``bench/format3.md``: no meta hash; the
  document's string carries its version and its recent write ids in a header before the
  JSON (``\x01<version>\0<write ids>\0<JSON>``: the newest write's id alone, its version
  being the document's, then each older write's id and version, 32 characters each, as
  the meta hash's "r" holds them); the indexes, the id index and the change stream as the
  ORM keeps them (a document with an expiry would also have an ``e:<id>`` key with what a
  sweep needs: none in this workload);
* **format3, 4 writes**: format3 once every document has been written four times or more
  (the most recent writes a document keeps: RECENT in ``lua/_write.lua``), its header then
  holding 16 + 3 x 32 characters of write ids and versions (the ORM's meta hash grows alike);
* **format3, 4 dense**: the same with the write ids and versions written in 64 printable
  characters (6 bits each, no NUL and no ``"``): 11 characters per id, 9 per version, so
  11 + 3 x 20 characters (a denser form a later change could choose);
* **floor**: the floor side of ``bench_workload.py`` (``workload_floor.py``), loaded with
  the same documents in the same batches, for the ratio the goal is stated in;
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
from workload_floor import FLOOR, Floor
from workload_hand import HAND, HandWritten

from quantumorm import create_connection

PACKED = "{qbenchlayout-packed}:"
SETS = "{qbenchlayout-sets}:"
FORMAT3 = "{qbenchlayout-format3}:"
FORMAT3_FULL = "{qbenchlayout-format3w}:"  # format3 with four recent writes per document
FORMAT3_DENSE = "{qbenchlayout-format3d}:"  # the same, the write ids written densely
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


def format3(meta: dict[bytes, bytes], payload: bytes) -> bytes:
    """A document's string in format 3 (``bench/format3.md``): ``\x01``, the version,
    ``\0``, the recent writes (the newest one's write id alone: its version is the
    document's; each older one's id and zero-padded version, 32 characters), ``\0``, the
    document as stored (JSON or compressed). No index encodings: they are not stored per
    document."""
    version, recent = meta[b"v"], meta.get(b"r", b"")
    assert recent[16:32].lstrip(b"0") == version, "the newest write is the version's"
    return b"\x01" + version + b"\x00" + recent[:16] + recent[32:] + b"\x00" + payload


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
            payload = json[json.index(b"\x00", 1) + 1:] if json[:1] == b"\x00" else json
            write.set(FORMAT3.encode() + b"d:" + id, format3(meta, payload))
            older = {**meta, b"r": meta[b"r"][:32] + b"0123456789abcdef0000000000000001" * 3}
            write.set(FORMAT3_FULL.encode() + b"d:" + id, format3(older, payload))
            dense = b"x" * 11 + b"0123456789abcdefghij" * 3
            write.set(FORMAT3_DENSE.encode() + b"d:" + id,
                      b"\x01" + meta[b"v"] + b"\x00" + dense + b"\x00" + payload)
        write.execute()
    for index in admin.scan_iter(match=ORM_PATTERN + ":i:*", count=100):
        name = index.rsplit(b":", 1)[1]
        dump = admin.dump(index)
        admin.restore(PACKED.encode() + b"i:" + name, 0, dump, replace=True)
        admin.restore(FORMAT3.encode() + b"i:" + name, 0, dump, replace=True)
        admin.restore(FORMAT3_FULL.encode() + b"i:" + name, 0, dump, replace=True)
        admin.restore(FORMAT3_DENSE.encode() + b"i:" + name, 0, dump, replace=True)
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
            for prefix in (PACKED, SETS, FORMAT3, FORMAT3_FULL, FORMAT3_DENSE):
                admin.restore(prefix + shared, 0, dump, replace=True)


def run(url: str, n: int) -> dict[str, Any]:
    from quantumorm.backends.redis import writes

    # The study's "orm" row is format 2 (a meta hash per document listing its version,
    # recent writes and index encodings), the layout the candidates are built from and
    # measured against: inserts store it (writes.NEW_FORMAT, as tests of such documents
    # do); the "format3" row is what the ORM writes by default since.
    writes.NEW_FORMAT = 2
    admin = redis.Redis.from_url(url)
    create_connection(backend="redis", url=url, make_default=True)
    data = make_docs(n, max(1, n // 10), 1)
    for start in range(0, n, BATCH):
        Person.objects.bulk_create_sync([Person(**d) for d in data[start:start + BATCH]])
    HandWritten(admin).bulk(data)
    floor = Floor(admin)
    for start in range(0, n, BATCH):
        floor.bulk(data[start:start + BATCH])
    build_candidates(admin)
    out: dict[str, Any] = {}
    try:
        for layout, pattern in (("orm", ORM_PATTERN + "*"), ("packed", PACKED + "*"),
                                ("packed+sets", SETS + "*"), ("format3", FORMAT3 + "*"),
                                ("format3, 4 writes", FORMAT3_FULL + "*"),
                                ("format3, 4 dense", FORMAT3_DENSE + "*"),
                                ("floor", FLOOR + "*"), ("plain", HAND + "*")):
            parts, keys = usage(admin, pattern)
            parts.pop("schema", None)
            parts.pop("state", None)
            out[layout] = {"bytes_per_doc": sum(parts.values()) / n, "keys_per_doc": keys / n,
                           "parts": {k: v / n for k, v in parts.most_common()}}
    finally:
        for pattern in (ORM_PATTERN + "*", PACKED + "*", SETS + "*", FORMAT3 + "*",
                        FORMAT3_FULL + "*", FORMAT3_DENSE + "*", FLOOR + "*", HAND + "*"):
            names = list(admin.scan_iter(match=pattern, count=2000))
            for i in range(0, len(names), 1000):
                admin.delete(*names[i:i + 1000])
    return out


def report(out: dict[str, Any], n: int) -> None:
    plain, floor = out["plain"]["bytes_per_doc"], out["floor"]["bytes_per_doc"]
    print(f"{n:,} documents (bench_workload.py's); bytes per document by MEMORY USAGE")
    print(f"{'layout':<17} | {'B/doc':>6} | {'÷ plain':>7} | {'keys/doc':>8} | "
          f"{'÷ floor':>7} | parts (B/doc)")
    for layout, row in out.items():
        parts = ", ".join(f"{k} {v:.0f}" for k, v in row["parts"].items() if v >= 1)
        print(f"{layout:<17} | {row['bytes_per_doc']:>6.0f} | "
              f"{row['bytes_per_doc'] / plain:>6.2f}x | {row['keys_per_doc']:>8.2f} | "
              f"{row['bytes_per_doc'] / floor:>6.2f}x | {parts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50000)
    args = parser.parse_args()
    with redis_server("qorm-bench-layouts-") as url:
        report(run(url, args.n), args.n)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
