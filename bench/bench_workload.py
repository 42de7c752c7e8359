"""Issue 12's workload: QuantumORM vs hand-written redis-py + Lua, side by side in one run.

The model (``Person``): ``name`` (about 10 documents per value), ``age`` (int 0-99),
``active`` (bool), ``tags`` (5 of 20), ``created_at`` (datetime); indexes on name, age,
active and tags; change events ON (the default ``Meta.changes``), as the issue asks.

The ORM side is the blocking public API as a user writes it (``bulk_create_sync`` for the
load, ``get_many_sync([id])`` and ``get_sync(id=...)``, load-set-``save_sync()`` for an
update, load-``delete_sync()`` for a delete, ``save_sync()`` of a new document, and
``filter(...).all_sync()`` / ``count_sync()`` for the queries).

The hand-written side (``workload_hand.py``) is redis-py with ONE Lua script per operation
over a plain layout: the document's JSON in a string key; a SET of ids per (field, value)
for name, active and each tag; one ZSET of ids scored by age; an id counter. Each write is
one EVALSHA that keeps the indexes (an update or delete script reads the old JSON with cjson
to move the entries); each query is one EVALSHA (SMEMBERS; ZRANGEBYSCORE; SINTER of two
sets, then ZMSCORE of the candidates' ages; then MGET); a count is ZCOUNT; a get is GET and
``json.loads``; the load is pipelined EVALSHA of a multi-document insert script. It keeps no
versions, no unique checks, no TTLs, no change events and no schema: what it skips is what
the ORM's guarantees cost. Scripts build key names from a prefix (standalone Redis; the
prefix is one hash tag, as the ORM's keys are). Documents come back as ``json.loads`` gives
them (``created_at`` an ISO string; the ORM's is a ``datetime``).

The third side, the **floor** (``workload_floor.py``, whose docstring gives its design), is
hand-written redis-py with one Lua script per operation too, but it keeps the guarantees
the plain side skips and the ORM gives: a version per document from a per-partition clock,
compare-and-set on update and delete, TTL consistency (an expiry schedule swept by writes;
queries and counts skip expired documents), a change event per write (XADD, capped),
indexes that serve equality, ranges and order on every indexed field (lex-ordered ZSETs for
strings, score ZSETs for numbers), an id ZSET, and key type checks before a script's first
write; its reads return the version with the document. Where the ORM cannot come within
1.3x of the plain side, issue 12 asks it to come within 1.1x of the floor.

What is measured, per operation and side:

* **median µs**: wall time per call in a pass where the two sides take turns call by call
  (alternating who goes first), after a warm-up, so a busy machine slows both alike;
* **round trips**: calls of redis-py's ``Connection.send_packed_command`` (one per command
  sent alone, one per pipeline), counted by wrapping it during a separate counting pass;
* **server commands**: the delta of ``INFO commandstats`` calls summed over all commands (the
  commands a script runs count too), less the INFO call itself, per operation;
* **client CPU**: ``time.process_time()`` of this process per operation, and **server CPU**:
  the delta of ``used_cpu_sys + used_cpu_user`` of the redis-server process (``INFO cpu``),
  both in the counting pass, where each side runs its block of calls alone;
* **Python calls**: every function call per operation (``cProfile``), in a third pass;
* **memory per document**: the ``used_memory`` delta after loading the N documents into each
  side alone (separate key prefixes; everything the ORM writes counts, its change stream
  included), and the number of keys of each side (SCAN of its prefix); and the same load
  broken down by kind of key (documents, meta hashes, each index, ids, schedule, stream...):
  ``MEMORY USAGE key SAMPLES 0`` summed per kind over a SCAN, per document.

The query results are cross-checked: on the first iterations every side must return the
same documents as the ORM (get, equality and compound queries), the same ages in the same
order and the same ids below the last age (range + order by + limit, where ties at the cut
may differ), and the same counts (the floor against the ORM, or the plain side when the ORM
does not run); each floor row must carry a positive integer version.

Usage: bench/bench_workload.py [--n 50000] [--iterations 500] [--warmup 50]
[--sides orm,hand,floor] [--json]. The sides take turns call by call, in an order that
rotates. It starts a private redis-server on a free 127.0.0.1 port (no persistence; stopped
at exit) unless REDIS_URL is set; only the benchmark's own keys are ever deleted (never
FLUSHDB).
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
import redis.connection
from bench_redis import redis_server  # (this folder)
from workload_floor import FLOOR, VERSION, Floor, key_kind
from workload_hand import HAND, HandWritten

from quantumorm import (
    ArrayField,
    BooleanField,
    DateTimeField,
    Document,
    IntField,
    StringField,
    create_connection,
)

NAMESPACE = "qbenchwl"
ORM_PATTERN = "{" + NAMESPACE + ":people*"  # every key of the collection, its schema included
TAGS = [f"t{i}" for i in range(20)]
BATCH = 500  # documents per bulk call on both sides (the ORM's default batch_size)
CHECKED = 20  # iterations whose results are cross-checked
PROFILED = 200  # most iterations per operation under cProfile (calls per op are exact)
PROFILED_COMPOUND = 20
RANGE_WIDTH = 10  # the range query and the count: age in [a, a + 10)
COMPOUND = {"active": True, "age__gt": 60, "tags__contains": "t7"}
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


class Person(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    active = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    created_at = DateTimeField()

    class Meta:
        collection = "people"
        namespace = NAMESPACE  # change events: the default (on)


def make_docs(n: int, names: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"name": f"name{rng.randrange(names):06d}", "age": rng.randrange(100),
             "active": rng.random() < 0.5, "tags": rng.sample(TAGS, 5),
             "created_at": EPOCH + dt.timedelta(seconds=rng.randrange(10**8))}
            for _ in range(n)]


# -- the operations, as functions of one parameter ----------------------------------------

Ops = dict[str, Callable[[Any], Any]]


def orm_ops() -> Ops:
    objects = Person.objects

    def update(arg: tuple[str, int]) -> Any:  # load, set one (indexed) field, save
        person = objects.get_many_sync([arg[0]])[0]
        person.age = arg[1]
        return person.save_sync()

    def delete(id: str) -> Any:  # load, delete
        return objects.get_many_sync([id])[0].delete_sync()

    return {
        "bulk": lambda docs: objects.bulk_create_sync([Person(**d) for d in docs]),
        "get": lambda id: objects.get_many_sync([id])[0],
        "get_q": lambda id: objects.get_sync(id=id),
        "eq": lambda name: objects.filter(name=name).all_sync(),
        "range": lambda age: objects.filter(age__gte=age, age__lt=age + RANGE_WIDTH)
        .order_by("age").limit(100).all_sync(),
        "compound": lambda _: objects.filter(**COMPOUND).all_sync(),
        "count": lambda age: objects.filter(age__gte=age, age__lt=age + RANGE_WIDTH).count_sync(),
        "update": update,
        # the same change without a load: one script, no read (no save receiver connected)
        "update_q": lambda arg: objects.filter(id=arg[0]).update_sync(age=arg[1]),
        "insert": lambda doc: Person(**doc).save_sync().id,
        "delete": delete,
    }


def hand_ops(hand: HandWritten) -> Ops:
    return {"bulk": hand.bulk, "get": hand.get, "get_q": hand.get, "eq": hand.eq,
            "range": lambda age: hand.range(age, age + RANGE_WIDTH, 100),
            "compound": hand.compound,
            "count": lambda age: hand.count(age, age + RANGE_WIDTH),
            "update": lambda arg: hand.update(*arg),
            "update_q": lambda arg: hand.update(*arg), "insert": hand.insert,
            "delete": hand.delete}


def floor_ops(floor: Floor) -> Ops:
    return {"bulk": floor.bulk, "get": floor.get, "get_q": floor.get, "eq": floor.eq,
            "range": lambda age: floor.range(age, age + RANGE_WIDTH, 100),
            "compound": lambda _: floor.compound(True, "t7", 60),
            "count": lambda age: floor.count(age, age + RANGE_WIDTH),
            "update": lambda arg: floor.update(*arg),  # load, CAS save
            "update_q": lambda arg: floor.update_q(*arg), "insert": floor.insert,
            "delete": floor.delete}  # load, CAS delete


OPS = [("get", "get by id: get_many([id])"), ("get_q", "get by id: get(id=)"),
       ("eq", "equality query (~10 rows)"), ("range", "range + order by + limit 100"),
       ("compound", "active & age > 60 & \"t7\" in tags"), ("count", "count of a range"),
       ("update", "update one field by id"),
       ("update_q", "update one field by id: filter(id=).update()"),
       ("insert", "single insert"),
       ("delete", "delete by id")]  # run in this order: delete removes what insert made
LABELS = {"bulk": f"bulk insert, per document (round trips: per call of {BATCH})", **dict(OPS)}
SIDES = ("orm", "hand", "floor")
#: blocks of each operation's calls per side in the counted pass (see counted_ops)
COUNTED_BLOCKS = 10
PREFIXES = {"orm": ORM_PATTERN, "hand": HAND + "*", "floor": FLOOR + "*"}


def params(n: int, count: int, seed: int, ages: dict[str, int]) -> dict[str, list[Any]]:
    """The same parameters, in the same order, for both sides (delete: filled in as the
    inserts return ids). ``ages`` is every loaded document's age as the updates planned so
    far leave it: each update sets a new value (the ORM saves nothing for an unchanged
    document, which would make its update look cheaper than it is)."""
    rng = random.Random(seed)
    ids = lambda: [str(rng.randint(1, n)) for _ in range(count)]
    names = max(1, n // 10)
    plan = {"get": ids(), "get_q": ids(),
            "eq": [f"name{rng.randrange(names):06d}" for _ in range(count)],
            "range": [rng.randrange(100 - RANGE_WIDTH) for _ in range(count)],
            "compound": [None] * count,
            "count": [rng.randrange(100 - RANGE_WIDTH) for _ in range(count)],
            "update": [], "update_q": [], "insert": make_docs(count, names, seed + 1),
            "delete": [None] * count}
    for key in ("update", "update_q"):
        for id in ids():
            ages[id] = (ages[id] + rng.randrange(1, 100)) % 100
            plan[key].append((id, ages[id]))
    return plan


# -- cross-check --------------------------------------------------------------------------

def as_rows(result: Any) -> Any:
    """Any side's result as plain stored data: a dict per document (the ORM's as stored; the
    floor's without its version, which must be a positive int: else the row cannot match)."""
    if isinstance(result, Document):
        return result.to_dict(storage=True)
    if isinstance(result, list):
        return [as_rows(r) for r in result]
    if isinstance(result, dict) and VERSION in result:
        row = {k: v for k, v in result.items() if k != VERSION}
        version = result[VERSION]
        return row if isinstance(version, int) and version > 0 else {"bad version": version}
    return result


def same(key: str, orm: Any, hand: Any) -> bool:
    """Whether two sides' results of ``key`` agree (``orm``, ``hand``: any two sides)."""
    orm, hand = as_rows(orm), as_rows(hand)
    if key in ("eq", "compound"):
        by_id = lambda rows: sorted(rows, key=lambda row: int(row["id"]))
        return bool(by_id(orm) == by_id(hand))
    if key == "range":  # same ages in order; ties at the limit's cut may pick other ids
        if [r["age"] for r in orm] != [r["age"] for r in hand]:
            return False
        last = orm[-1]["age"] if orm else None
        below = lambda rows: sorted(int(r["id"]) for r in rows if r["age"] != last)
        return below(orm) == below(hand)
    return bool(orm == hand)


# -- measuring ----------------------------------------------------------------------------

class RoundTrips:
    """Counts redis-py's ``send_packed_command`` calls (one per command sent alone, one per
    pipeline) while installed; both sides' clients are redis-py, so one wrapper counts both."""

    count = 0

    @classmethod
    @contextmanager
    def counting(cls) -> Iterator[None]:
        original = redis.connection.AbstractConnection.send_packed_command

        def send(self: Any, *args: Any, **kwargs: Any) -> Any:
            cls.count += 1
            return original(self, *args, **kwargs)

        redis.connection.AbstractConnection.send_packed_command = send  # type: ignore
        try:
            yield
        finally:
            redis.connection.AbstractConnection.send_packed_command = original  # type: ignore


def server_stats(admin: redis.Redis) -> tuple[int, float]:
    """(commands executed so far, less INFO's own; server CPU seconds so far)."""
    info = admin.info("commandstats", "cpu")
    calls = sum(v["calls"] for k, v in info.items()
                if k.startswith("cmdstat_") and k != "cmdstat_info")
    return calls, float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def measure(admin: redis.Redis, fn: Callable[[Any], Any], args: list[Any],
            per: int) -> dict[str, float]:
    """Round trips, server commands, client and server CPU of ``fn`` over ``args``, divided
    by ``per`` (the number of operations: calls, or documents for the load)."""
    gc.collect()
    with RoundTrips.counting():
        calls0, cpu0 = server_stats(admin)
        trips0, client0 = RoundTrips.count, time.process_time()
        for arg in args:
            fn(arg)
        client1, trips1 = time.process_time(), RoundTrips.count
    calls1, cpu1 = server_stats(admin)
    return {"round_trips": (trips1 - trips0) / per, "commands": (calls1 - calls0) / per,
            "client_cpu_us": (client1 - client0) * 1e6 / per,
            "server_cpu_us": (cpu1 - cpu0) * 1e6 / per}


def python_calls(fn: Callable[[Any], Any], args: list[Any], per: int) -> float:
    profile = cProfile.Profile()
    profile.enable()
    for arg in args:
        fn(arg)
    profile.disable()
    # (summed over the profiler's own entries, one per code object: pstats merges those of
    # one label, e.g. every dataclass-made ``<string>:2(__init__)``, and counted one only)
    return sum(entry.callcount for entry in profile.getstats()) / per


def keys_of(admin: redis.Redis, pattern: str) -> list[bytes]:
    return list(admin.scan_iter(match=pattern, count=1000))


def wipe(admin: redis.Redis, side: str, keep_schema: bool = True) -> None:
    """Delete one side's keys (the ORM's stored schema stays, as in any application, unless
    ``keep_schema`` is false)."""
    keys = [k for k in keys_of(admin, PREFIXES[side])
            if not (keep_schema and k.endswith(b"}:schema"))]
    for i in range(0, len(keys), 1000):
        admin.delete(*keys[i:i + 1000])


def kind_of(side: str, key: bytes) -> str:
    """A key's kind, for the memory breakdown (one name per kind across the sides where the
    kinds are alike: documents, index <field>, ids, ttl, stream)."""
    if side == "floor":
        return key_kind(key)
    rest = key.decode(errors="replace").split("}:", 1)[1]
    if side == "orm":
        if rest.startswith(("d:", "m:", "z:")):
            return {"d": "documents", "m": "meta hashes", "z": "soft-deleted"}[rest[0]]
        if rest.startswith("i:"):
            return "index " + rest[2:]
        return {"ids": "ids", "ttl": "ttl", "x": "stream"}.get(
            rest, "other (state, seq, schema)")
    if rest.startswith("d:"):
        return "documents"
    field = rest.split(":", 1)[0]
    return {"name": "index name", "age": "index age", "active": "index active",
            "tag": "index tags"}.get(field, "other (seq)")


def memory_by_kind(admin: redis.Redis, side: str, n: int) -> dict[str, float]:
    """Bytes per document by kind of key: ``MEMORY USAGE key SAMPLES 0`` (every element
    counted) of each of the side's keys, summed per kind."""
    totals: dict[str, float] = {}
    keys = keys_of(admin, PREFIXES[side])
    for i in range(0, len(keys), 1000):
        pipe = admin.pipeline(transaction=False)
        for key in keys[i:i + 1000]:
            pipe.memory_usage(key, samples=0)
        for key, used in zip(keys[i:i + 1000], pipe.execute(), strict=True):
            kind = kind_of(side, key)
            totals[kind] = totals.get(kind, 0.0) + (used or 0) / n
    return dict(sorted(totals.items()))


def batches(docs: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [docs[i:i + BATCH] for i in range(0, len(docs), BATCH)]


def turns(sides: dict[str, Ops], i: int) -> list[str]:
    """The sides in the order they take turn ``i``: rotated every call, so that each goes
    first, second... alike (two sides: alternating)."""
    names = list(sides)
    k = i % len(names)
    return names[k:] + names[:k]


def reference(sides: dict[str, Ops]) -> str | None:
    """The side the floor's results are checked against: the ORM, else the plain side."""
    return next((s for s in ("orm", "hand") if s in sides), None)


def pairs(sides: dict[str, Ops]) -> list[tuple[str, str, str]]:
    """The cross-checks to run: (suffix of the check's name, side, side)."""
    out = [("", "orm", "hand")] if "orm" in sides and "hand" in sides else []
    ref = reference(sides)
    if "floor" in sides and ref:
        out.append((" (floor)", ref, "floor"))
    return out


def load_alone(admin: redis.Redis, sides: dict[str, Ops], data: list[dict[str, Any]],
               out: dict[str, Any]) -> None:
    """Each side loads the data set alone: memory per document (in all, and by kind of key),
    keys, and the load's round trips, commands and CPU; then its keys are deleted again."""
    for side, ops in sides.items():
        wipe(admin, side)
        gc.collect()
        before = int(admin.info("memory")["used_memory"])
        calls = batches(data)
        counts = out["counts"][side]["bulk"] = measure(admin, ops["bulk"], calls, len(data))
        counts["round_trips"] *= len(data) / len(calls)  # per bulk call, not per document
        used = int(admin.info("memory")["used_memory"]) - before
        keys = keys_of(admin, PREFIXES[side])
        out["memory"][side] = {"bytes_per_doc": used / len(data), "keys": len(keys)}
        out["memory_by_kind"][side] = memory_by_kind(admin, side, len(data))
        wipe(admin, side)


def timed_load(sides: dict[str, Ops], data: list[dict[str, Any]],
               out: dict[str, Any]) -> None:
    """The sides load the data set batch by batch, taking turns (rotating who goes first);
    the median µs per document over the batches."""
    samples: dict[str, list[float]] = {side: [] for side in sides}
    ids: dict[str, list[str]] = {side: [] for side in sides}
    for i, chunk in enumerate(batches(data)):
        for side in turns(sides, i):
            t = time.perf_counter_ns()
            got = sides[side]["bulk"](chunk)
            samples[side].append((time.perf_counter_ns() - t) / 1e3 / len(chunk))
            ids[side] += [doc.id if isinstance(doc, Document) else doc for doc in got]
    for side in sides:
        out["median_us"][side]["bulk"] = statistics.median(samples[side])
    # the parameters name documents by id: every side must have given the same ones
    expected = [str(i) for i in range(1, len(data) + 1)]
    out["cross_check"]["load ids"] = all(ids[side] == expected for side in sides)


def timed_ops(sides: dict[str, Ops], plan: dict[str, list[Any]], warmup: int,
              out: dict[str, Any]) -> None:
    """Every operation, the sides taking turns call by call; the first timed results are
    cross-checked."""
    created: dict[str, list[str]] = {side: [] for side in sides}
    for key, _ in OPS:
        gc.collect()
        samples: dict[str, list[int]] = {side: [] for side in sides}
        results: dict[str, list[Any]] = {side: [] for side in sides}
        for i, arg in enumerate(plan[key]):
            for side in turns(sides, i):
                this = created[side][i] if key == "delete" else arg
                t = time.perf_counter_ns()
                got = sides[side][key](this)
                ns = time.perf_counter_ns() - t
                if key == "insert":
                    created[side].append(got)
                if i >= warmup:
                    samples[side].append(ns)
                    if len(results[side]) < CHECKED:
                        results[side].append(got)
        for side in sides:
            out["median_us"][side][key] = statistics.median(samples[side]) / 1e3
        first = next(iter(sides))
        if key == "compound":
            out["compound_rows"] = len(results[first][0]) if results[first] else 0
        if key == "eq":
            out["eq_rows"] = [len(r) for r in results[first]]
        for suffix, a, b in pairs(sides):
            if key not in ("update", "update_q", "insert", "delete"):
                out["cross_check"][key + suffix] = all(
                    same(key, x, y) for x, y in zip(results[a], results[b], strict=True))
            if key == "insert":
                out["cross_check"]["insert ids" + suffix] = created[a] == created[b]
            if key in ("update", "update_q"):  # the updated documents read back alike
                ids = [id for id, _ in plan[key][:CHECKED]]
                out["cross_check"][key + suffix] = all(
                    same("get", sides[a]["get"](id), sides[b]["get"](id)) for id in ids)


def counted_ops(admin: redis.Redis, sides: dict[str, Ops], plan: dict[str, list[Any]],
                out: dict[str, Any]) -> None:
    """Round trips, server commands, client and server CPU per call of each operation, the
    sides taking turns by blocks of its calls (COUNTED_BLOCKS, the order turned round each
    time) so that a slow spell of the machine falls on every side alike; each side's
    figures are its blocks' totals over its calls."""
    created: dict[str, list[str]] = {side: [] for side in sides}
    for key, _ in OPS:
        totals: dict[str, dict[str, float]] = {side: {} for side in sides}
        for block in range(COUNTED_BLOCKS):
            names = list(sides)
            names = names[block % len(names):] + names[:block % len(names)]
            for side in names:
                made, call = created[side], sides[side][key]
                # (an insert keeps its id: the delete blocks delete what it made)
                fn = call
                if key == "insert":
                    fn = lambda arg: made.append(call(arg))  # noqa: B023, E731
                part = (made if key == "delete" else plan[key])[block::COUNTED_BLOCKS]
                if not part:
                    continue
                for name, value in measure(admin, fn, part, 1).items():
                    totals[side][name] = totals[side].get(name, 0.0) + value
        for side in sides:
            calls = len(created[side]) if key == "delete" else len(plan[key])
            out["counts"][side][key] = {name: value / calls
                                        for name, value in totals[side].items()}


def profiled_ops(sides: dict[str, Ops], plan: dict[str, list[Any]], bulk: list[Any],
                 out: dict[str, Any]) -> None:
    """Python function calls per operation under cProfile (a pass of its own: the profiler
    slows the calls it counts)."""
    for side, ops in sides.items():
        created: list[str] = []
        record = lambda arg: created.append(ops["insert"](arg))  # noqa: B023
        for key, _ in OPS:
            fn = record if key == "insert" else ops[key]
            args = list(created if key == "delete" else plan[key])
            if key == "compound":  # the same query each time (and the slowest): a few do
                args = args[:PROFILED_COMPOUND]
            out["python_calls"][side][key] = python_calls(fn, args, len(args))
        out["python_calls"][side]["bulk"] = python_calls(ops["bulk"], [bulk], len(bulk))


def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    admin = redis.Redis.from_url(url)
    names = max(1, args.n // 10)
    data = make_docs(args.n, names, seed=1)
    chosen = [side for side in SIDES if side in args.sides]
    out: dict[str, Any] = {
        "n": args.n, "iterations": args.iterations, "warmup": args.warmup, "sides": chosen,
        "redis": admin.info("server")["redis_version"], "python": platform.python_version(),
        "redis_py": redis.__version__, "hiredis": redis.utils.HIREDIS_AVAILABLE,
        "median_us": {s: {} for s in chosen}, "counts": {s: {} for s in chosen},
        "python_calls": {s: {} for s in chosen}, "memory": {}, "memory_by_kind": {},
        "cross_check": {}}
    conn = create_connection("redis", url, name="bench-workload", make_default=True)
    client = redis.Redis.from_url(url)
    try:
        for side in SIDES:
            wipe(admin, side, keep_schema=False)
        make = {"orm": orm_ops, "hand": lambda: hand_ops(HandWritten(client)),
                "floor": lambda: floor_ops(Floor(client))}
        sides = {side: make[side]() for side in chosen}
        for side in chosen:  # warm-up: connections, scripts, the ORM's schema
            sides[side]["bulk"](data[:10])
            wipe(admin, side)
        load_alone(admin, sides, data, out)
        timed_load(sides, data, out)
        ages = {str(i): doc["age"] for i, doc in enumerate(data, 1)}  # ids: 1, 2, ...
        count = args.warmup + args.iterations
        timed_ops(sides, params(args.n, count, 7, ages), args.warmup, out)
        counted_ops(admin, sides, params(args.n, args.iterations, 8, ages), out)
        profiled = min(args.iterations, PROFILED)
        profiled_ops(sides, params(args.n, profiled, 9, ages),
                     make_docs(min(BATCH, args.n), names, seed=10), out)
    finally:
        for side in SIDES:
            wipe(admin, side, keep_schema=False)
        conn.close()
        client.close()
        admin.close()
    return out


# -- the report ---------------------------------------------------------------------------

def pair(values: dict[str, Any], fmt: str) -> str:
    """``ORM / hand``, a side that did not run shown as "–"."""
    return " / ".join(fmt.format(values[s]) if s in values else "–" for s in ("orm", "hand"))


def ratio(values: dict[str, Any], top: str, bottom: str) -> str:
    if top not in values or bottom not in values:
        return "–"
    return f"{values[top] / values[bottom]:.2f}x"


def table(out: dict[str, Any]) -> str:
    sides = out["sides"]
    lines = [
        "| operation | ORM ÷ hand-written | ORM ÷ floor | median µs (ORM / hand) "
        "| round trips (ORM / hand) | server commands per op (ORM / hand) "
        "| client CPU µs (ORM / hand) | server CPU µs (ORM / hand) "
        "| Python calls per op (ORM / hand) | floor µs | floor commands per op |",
        "|---|---:|---:|---|---|---|---|---|---|---:|---:|"]
    for key in ["bulk", *(k for k, _ in OPS)]:
        med = {s: out["median_us"][s][key] for s in sides}
        count = {s: out["counts"][s][key] for s in sides}
        field = lambda name: {s: count[s][name] for s in sides}  # noqa: B023
        label = LABELS[key]
        if key == "compound":
            label += f" ({out['compound_rows']} rows)"
        floor_us = f"{med['floor']:,.1f}" if "floor" in med else "–"
        floor_commands = f"{count['floor']['commands']:,.2f}" if "floor" in count else "–"
        lines.append(
            f"| {label} | {ratio(med, 'orm', 'hand')} | {ratio(med, 'orm', 'floor')} "
            f"| {pair(med, '{:,.1f}')} "
            f"| {pair(field('round_trips'), '{:.3g}')} | {pair(field('commands'), '{:,.2f}')} "
            f"| {pair(field('client_cpu_us'), '{:,.0f}')} "
            f"| {pair(field('server_cpu_us'), '{:,.0f}')} "
            f"| {pair({s: out['python_calls'][s][key] for s in sides}, '{:,.0f}')} "
            f"| {floor_us} | {floor_commands} |")
    mem = out["memory"]
    per_doc = {s: mem[s]["bytes_per_doc"] for s in sides}
    keys = {s: mem[s]["keys"] for s in sides}
    floor_mem = (f"{per_doc['floor']:,.0f} B | keys {keys['floor']:,}" if "floor" in mem
                 else "– | –")
    lines.append(f"| memory per document | {ratio(per_doc, 'orm', 'hand')} "
                 f"| {ratio(per_doc, 'orm', 'floor')} | {pair(per_doc, '{:,.0f} B')} "
                 f"| keys {pair(keys, '{:,}')} | | | | | {floor_mem} |")
    return "\n".join(lines)


def memory_table(out: dict[str, Any]) -> str:
    """Bytes per document by kind of key, per side (MEMORY USAGE, SAMPLES 0)."""
    sides, by_kind = out["sides"], out["memory_by_kind"]
    kinds = sorted({kind for s in sides for kind in by_kind[s]},
                   key=lambda k: (not k.startswith("documents"), k))
    names = {"orm": "ORM", "hand": "hand", "floor": "floor"}
    lines = ["| bytes per document, by kind of key | " + " | ".join(names[s] for s in sides)
             + " |", "|---|" + "---:|" * len(sides)]
    for kind in kinds:
        lines.append(f"| {kind} | " + " | ".join(
            f"{by_kind[s][kind]:,.1f}" if kind in by_kind[s] else "" for s in sides) + " |")
    lines.append("| sum of MEMORY USAGE | " + " | ".join(
        f"{sum(by_kind[s].values()):,.1f}" for s in sides) + " |")
    lines.append("| used_memory delta | " + " | ".join(
        f"{out['memory'][s]['bytes_per_doc']:,.1f}" for s in sides) + " |")
    return "\n".join(lines)


def report(out: dict[str, Any]) -> None:
    print(f"redis-server {out['redis']} | Python {out['python']} | redis-py {out['redis_py']}"
          f" (hiredis {'yes' if out['hiredis'] else 'no'}) | documents: {out['n']:,} | "
          f"iterations: {out['iterations']} (+{out['warmup']} warm-up) | change events on | "
          f"sides: {', '.join(out['sides'])}\n")
    print(table(out))
    print()
    print(memory_table(out))
    if "floor" in out["sides"]:
        by_kind = out["memory_by_kind"]
        extra = ""
        if "hand" in by_kind:  # the same JSON in both: the difference is the version prefix
            extra = (f": {by_kind['floor']['documents'] - by_kind['hand']['documents']:,.1f} B"
                     " per document, the floor's documents less the plain side's")
        print("\n(versions: the ORM's are in each document's header with its recent write "
              "ids (format 3; a meta hash only for an expiring document or a listed index); "
              "the floor's are the first 17 bytes of "
              f"each document string (version and expiry flag){extra}, and the clock of its "
              "state hash)")
    bad = [key for key, ok in out["cross_check"].items() if not ok]
    eq = out["eq_rows"]
    print(f"\nequality query rows: {min(eq, default=0)}-{max(eq, default=0)}; compound query "
          f"rows: {out['compound_rows']}")
    print("cross-check: " + ("passed (" + ", ".join(out["cross_check"]) + ")" if not bad
                             else "FAILED: " + ", ".join(bad)))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--n", type=int, default=50000, help="documents loaded (default 50000)")
    parser.add_argument("--iterations", type=int, default=500,
                        help="measured calls per operation (default 500)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed calls per operation")
    parser.add_argument("--sides", default=",".join(SIDES),
                        help="comma-separated sides to run: orm, hand, floor (default all)")
    parser.add_argument("--json", action="store_true", help="one JSON object, not a table")
    args = parser.parse_args()
    if args.n < 20 or args.iterations < 1 or args.warmup < 0:
        parser.error("need --n >= 20, --iterations >= 1, --warmup >= 0")
    args.sides = {side.strip() for side in args.sides.split(",") if side.strip()}
    if not args.sides or not args.sides <= set(SIDES):
        parser.error(f"--sides: one or more of {', '.join(SIDES)}")
    with redis_server("qbench-workload-") as url:
        out = run(url, args)
    if args.json:
        print(json.dumps(out, indent=1, sort_keys=True))
    else:
        report(out)
    if not all(out["cross_check"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
