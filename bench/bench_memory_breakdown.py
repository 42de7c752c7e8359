"""Where each byte per document goes on issue 12's workload, the ORM's layout against the
floor's, and what shorter encodings inside the ORM's layout would save, measured.

It loads N documents of ``bench_workload.py``'s model with ``bulk_create`` and with the
floor's script (``workload_floor.py``), then reports:

* **by kind of key**: ``MEMORY USAGE key SAMPLES 0`` summed per kind (documents, meta
  hashes, each index, ids, stream...), per document, for both sides; and the ``used_memory``
  delta of each load;
* **anatomy of a meta hash**: its fields and the mean length of each value, its encoding
  (listpack while every value is at most ``hash-max-listpack-value`` bytes and it has at
  most ``hash-max-listpack-entries`` fields), and the per-key cost of an empty hash;
* **what-ifs**, each measured, never estimated by arithmetic: a sample of the loaded meta
  hashes (or a whole index) is copied, transformed, to scratch keys whose names have the
  same length, and their ``MEMORY USAGE`` is compared with copies left as they are. The
  transformations are encodings the current code does NOT read (each would be a layout
  change for every script, ``verify()``/``repair()`` and reindex): a shorter write id in
  "r", one-character meta field names, no "r", no index values in the meta hash, no meta
  hash, numbers with a 2-digit exponent, and the floor's score-per-value numeric index;
* **a long value**: one document whose indexed string is longer than
  ``hash-max-listpack-value`` (its meta hash becomes a hash table), with the server's
  setting, and with the setting raised to 256.

Usage: bench/bench_memory_breakdown.py [--n 20000] [--sample 2000] [--json]. Starts a
private redis-server on a free 127.0.0.1 port (stopped at exit) unless REDIS_URL is set;
only its own keys are deleted (the scratch keys under ``{qbenchmem}``), and CONFIG SET is
used only on a server it started.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Callable
from typing import Any

import redis
from bench_redis import redis_server  # (this folder)
from bench_workload import (
    ORM_PATTERN,
    Person,
    batches,
    floor_ops,
    keys_of,
    make_docs,
    memory_by_kind,
    orm_ops,
    wipe,
)
from workload_floor import Floor

from quantumorm import create_connection, sortable

SCRATCH = "{qbenchmem}"


def usage(admin: redis.Redis, keys: list[bytes]) -> float:
    """Mean ``MEMORY USAGE`` of the keys (every element counted)."""
    pipe = admin.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return statistics.fmean(used or 0 for used in pipe.execute())


def scratch_name(key: bytes, n: int) -> bytes:
    """A scratch key name of the same length as ``key`` (its memory depends on it)."""
    tag = SCRATCH.encode() + b":"
    body = b"%d:" % n + key
    name = (tag + body)[:len(key)]
    return name if len(name) == len(key) else (tag + b"x" * len(key))[:len(key)]


def copies(admin: redis.Redis, metas: list[bytes],
           transform: Callable[[dict[bytes, bytes]], dict[bytes, bytes]]) -> float:
    """Mean memory of the meta hashes ``metas`` copied through ``transform`` (an empty
    result: no key at all, 0 bytes)."""
    pipe = admin.pipeline(transaction=False)
    for key in metas:
        pipe.hgetall(key)
    names = []
    write = admin.pipeline(transaction=False)
    for n, (key, fields) in enumerate(zip(metas, pipe.execute(), strict=True)):
        changed = transform(fields)
        if changed:
            name = scratch_name(key, n)
            names.append(name)
            write.hset(name, mapping=changed)
    write.execute()
    if not names:
        return 0.0
    total = usage(admin, names) * len(names) / len(metas)
    admin.delete(*names)
    return total


def short_exponent(encoding: bytes) -> bytes:
    """A number's encoding with a 2-digit exponent instead of 10 (what a shorter encoding
    of the same order would cost: ``sortable.encode_number`` keeps 10 digits)."""
    if encoding[:1] in (b"\x18", b"\x10") and len(encoding) > 12:
        return encoding[:1] + encoding[9:]
    return encoding


def relisted(value: bytes, change: Callable[[bytes], bytes]) -> bytes:
    return sortable.pack_list([change(item) for item in sortable.unpack_list(value)])


def what_ifs(admin: redis.Redis, metas: list[bytes]) -> dict[str, float]:
    """Bytes per document of each transformation of the meta hashes (less the copies as
    they are), and the index what-ifs."""
    def rename(fields: dict[bytes, bytes]) -> dict[bytes, bytes]:
        return {(k[2:3] if k.startswith(b"f:") else k): v for k, v in fields.items()}

    transforms: dict[str, Callable[[dict[bytes, bytes]], dict[bytes, bytes]]] = {
        "as stored (control)": lambda f: f,
        '"r" with an 8-hex-digit write id (24 characters, not 32)':
            lambda f: {**f, b"r": f[b"r"][8:]},
        "one-character meta field names (f:name -> n)": rename,
        'no "r" (write ids of the last writes)': lambda f: {k: v for k, v in f.items()
                                                            if k != b"r"},
        'no index values ("v" and "r" only)': lambda f: {k: v for k, v in f.items()
                                                         if k in (b"v", b"r")},
        "numbers with a 2-digit exponent (f:age)":
            lambda f: {**f, b"f:age": relisted(f[b"f:age"], short_exponent)},
        "8-hex write id, one-character names and 2-digit exponents together": lambda f: rename(
            {**f, b"r": f[b"r"][8:], b"f:age": relisted(f[b"f:age"], short_exponent)}),
        "no meta hash (the version is in the document key already)": lambda f: {},
    }
    control = copies(admin, metas, transforms["as stored (control)"])
    out = {"meta hash, as stored (control copy)": control}
    for label, transform in transforms.items():
        if label != "as stored (control)":
            out[f"meta hash: {label}"] = copies(admin, metas, transform) - control
    return out


def index_what_ifs(admin: redis.Redis, prefix: str, n: int) -> dict[str, float]:
    """The age index copied as it is, with 2-digit exponents, and as the floor keeps it
    (score = age, member = id key): bytes per document, less the copy as it is."""
    key = f"{prefix}:i:age".encode()
    members = admin.zrange(key, 0, -1)
    out: dict[str, float] = {}
    variants: dict[str, dict[bytes, float]] = {
        "as stored": {m: 0.0 for m in members},
        "2-digit exponent": {short_exponent(sortable.split_member(m)[0])
                             + sortable.split_member(m)[1]: 0.0 for m in members},
        "score = age, member = id key": {
            sortable.split_member(m)[1]: float(_age(sortable.split_member(m)[0]))
            for m in members},
    }
    for label, mapping in variants.items():
        name = scratch_name(key, 0)
        items = list(mapping.items())
        for i in range(0, len(items), 1000):
            admin.zadd(name, dict(items[i:i + 1000]))
        out[label] = (admin.memory_usage(name, samples=0) or 0) / n
        admin.delete(name)
    base = out["as stored"]
    return {"index age, as stored (copy)": base,
            **{f"index age: {k}": v - base for k, v in out.items() if k != "as stored"}}


def _age(encoding: bytes) -> int:
    if encoding == b"\x14\x00":
        return 0
    digits = encoding[11:-1].decode()
    exponent = int(encoding[1:11]) - 5_000_000_000
    return int(digits.ljust(exponent, "0"))


def anatomy(admin: redis.Redis, metas: list[bytes]) -> dict[str, Any]:
    pipe = admin.pipeline(transaction=False)
    for key in metas:
        pipe.hgetall(key)
    rows = pipe.execute()
    lengths: dict[str, list[int]] = {}
    for fields in rows:
        for k, v in fields.items():
            lengths.setdefault(k.decode(), []).append(len(v))
    encodings = {admin.object("encoding", key) for key in metas[:200]}
    empty = scratch_name(metas[0], 0)
    admin.hset(empty, b"v", b"1")
    one_field = admin.memory_usage(empty, samples=0)
    admin.delete(empty)
    return {"key name length": statistics.fmean(len(k) for k in metas),
            "mean value length per field": {k: statistics.fmean(v)
                                            for k, v in sorted(lengths.items())},
            "encodings": sorted(e.decode() if isinstance(e, bytes) else str(e)
                                for e in encodings),
            "hash of one small field (the per-key cost)": one_field,
            "mean meta hash": usage(admin, metas)}


def long_value(admin: redis.Redis, started: bool) -> dict[str, Any]:
    """A meta hash with one value over hash-max-listpack-value: as the server is set, and
    (on a server this benchmark started) with the setting at 256."""
    limit = int(admin.config_get("hash-max-listpack-value")["hash-max-listpack-value"])
    out: dict[str, Any] = {"hash-max-listpack-value": limit}
    short = Person(id="long-1", name="x" * 20, age=1, active=True, tags=["a"], created_at=None)
    long = Person(id="long-2", name="x" * (limit + 10), age=1, active=True, tags=["a"],
                  created_at=None)
    Person.objects.bulk_create_sync([short, long])
    meta = [k for k in keys_of(admin, ORM_PATTERN) if k.endswith((b":m:long-1", b":m:long-2"))]
    for key in sorted(meta):
        out[key.decode(errors="replace")] = {
            "encoding": admin.object("encoding", key),
            "bytes": admin.memory_usage(key, samples=0)}
    if started:
        admin.config_set("hash-max-listpack-value", 256)
        for key in sorted(meta):  # (a copy is encoded afresh under the new setting)
            name = scratch_name(key, 0)
            admin.hset(name, mapping=admin.hgetall(key))
            out[key.decode(errors="replace") + " at 256"] = {
                "encoding": admin.object("encoding", name),
                "bytes": admin.memory_usage(name, samples=0)}
            admin.delete(name)
        admin.config_set("hash-max-listpack-value", limit)
    Person.objects.filter(id__in=["long-1", "long-2"]).delete_sync()
    return out


def run(url: str, args: argparse.Namespace, started: bool) -> dict[str, Any]:
    admin = redis.Redis.from_url(url)
    data = make_docs(args.n, max(1, args.n // 10), seed=1)
    create_connection("redis", url, name="bench-memory", make_default=True)
    sides = {"orm": orm_ops(), "floor": floor_ops(Floor(redis.Redis.from_url(url)))}
    out: dict[str, Any] = {"n": args.n, "sample": args.sample, "used_memory_per_doc": {},
                           "by_kind": {}}
    try:
        for side, ops in sides.items():
            wipe(admin, side, keep_schema=False)
            ops["bulk"](data[:10])
            wipe(admin, side)
            before = int(admin.info("memory")["used_memory"])
            for chunk in batches(data):
                ops["bulk"](chunk)
            out["used_memory_per_doc"][side] = (
                int(admin.info("memory")["used_memory"]) - before) / args.n
            out["by_kind"][side] = memory_by_kind(admin, side, args.n)
        metas = [k for k in keys_of(admin, ORM_PATTERN) if b"}:m:" in k][:args.sample]
        out["meta hash anatomy"] = anatomy(admin, metas)
        out["what-ifs (bytes per document)"] = {
            **what_ifs(admin, metas),
            **index_what_ifs(admin, ORM_PATTERN.rstrip("*") + ":p0}", args.n)}
        out["a long indexed value"] = long_value(admin, started)
    finally:
        for side in sides:
            wipe(admin, side, keep_schema=False)
        leftovers = keys_of(admin, SCRATCH + "*")
        if leftovers:
            admin.delete(*leftovers)
    return out


def report(out: dict[str, Any]) -> str:
    kinds = sorted(set(out["by_kind"]["orm"]) | set(out["by_kind"]["floor"]))
    lines = [f"N = {out['n']:,}; MEMORY USAGE per document by kind of key",
             "| kind | ORM | floor | ORM - floor |", "|---|---:|---:|---:|"]
    for kind in kinds:
        orm, floor = out["by_kind"]["orm"].get(kind, 0.0), out["by_kind"]["floor"].get(kind, 0.0)
        lines.append(f"| {kind} | {orm:,.1f} | {floor:,.1f} | {orm - floor:+,.1f} |")
    totals = {s: sum(out["by_kind"][s].values()) for s in ("orm", "floor")}
    lines.append(f"| **sum** | {totals['orm']:,.1f} | {totals['floor']:,.1f} | "
                 f"{totals['orm'] - totals['floor']:+,.1f} |")
    used = out["used_memory_per_doc"]
    lines.append(f"| used_memory delta | {used['orm']:,.1f} | {used['floor']:,.1f} | "
                 f"{used['orm'] - used['floor']:+,.1f} |")
    lines += ["", "Meta hash anatomy: " + json.dumps(out["meta hash anatomy"]), "",
              "| what-if (a layout change: not read by the current code) | bytes per document |",
              "|---|---:|"]
    for label, value in out["what-ifs (bytes per document)"].items():
        lines.append(f"| {label} | {value:+,.1f} |")
    lines += ["", "A long indexed value: " + json.dumps(out["a long indexed value"],
                                                        default=str)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="documents loaded per side")
    parser.add_argument("--sample", type=int, default=2000, help="meta hashes copied")
    parser.add_argument("--json", action="store_true", help="one JSON object, not a table")
    args = parser.parse_args()
    started = not os.environ.get("REDIS_URL")
    with redis_server("bench-memory-") as url:
        out = run(url, args, started)
    print(json.dumps(out, indent=1, default=str) if args.json else report(out))


if __name__ == "__main__":
    main()
