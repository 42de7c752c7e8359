"""QuantumORM vs hand-written redis-py: per-operation latency on the same Redis server.

One workload, one process, one server: (a) QuantumORM's public API (sync; async with
``--async``); (b) redis-py used directly (``redis`` / ``redis.asyncio``) on the same kinds of
structures: ``d:<id>`` STRING (JSON document), ``v:<id>`` STRING (version), a lex ZSET per
indexed field (member = encoded value + 12-digit id), an ``ids`` ZSET, an id counter. Each
baseline write is ONE Lua call that compare-and-sets on the version (an insert expects
none), allocates the id if needed, writes the JSON, bumps the version and moves the index
entries; a read is MGET; a query is one small Lua call (ZRANGEBYLEX, then MGET of documents
and versions); a count is ZLEXCOUNT.

Fairness: same server, process, seeded data and parameters, in the same order; both sides
bulk-load the same N documents (into separate keys, side by side), get the same warm-up and
have their scripts loaded first, and take turns call by call (alternating who goes first),
so a busy machine slows both alike. The baseline is competent code for THIS model
(fixed-width encodings, EVALSHA, pipelines without MULTI, the client passing the index
entries of the version it CAS-es on), makes the round trips the semantics need (update =
load + modify + CAS-save on both sides) and returns decoded documents with versions; both
sides' ids and documents must be identical (checked). Versions are not compared by value:
the ORM's are clock values (microseconds, never repeating), the baseline's write counts;
the check is that each ORM result carries a positive integer version.
What it skips (validation, model instances, query planning, general encodings and scripts,
a meta hash per document, type checks) is the ORM's cost by design.

The ORM model runs with ``Meta.changes = False`` by default, as the baseline keeps no change
log; ``--changes`` turns the stream on to show what change events cost.

Usage: bench/bench_redis.py [--n 10000] [--iterations 2000] [--warmup 200] [--async]
[--changes]. It
starts a private redis-server on a free 127.0.0.1 port (no persistence; stopped at exit)
unless REDIS_URL is set; only the benchmark's own keys are ever deleted (never FLUSHDB).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio  # also binds redis

from quantumorm import Document, FloatField, IntField, StringField, create_connection

NAMESPACE, BASE = "qbench", "qbench-bl:users:"
INDEXED = ("name", "age", "city")
CITIES = [f"city{i:02d}" for i in range(20)]
WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor".split()
BATCH, CHECKED = 500, 25  # bulk batch size; iterations whose results are cross-checked
bump = lambda age: 18 if age >= 80 else age + 1  # the update: age + 1, wrapping at 80
dumps = functools.partial(json.dumps, separators=(",", ":"))  # compact JSON, as the ORM's


class UserFields(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    city = StringField(indexed=True)
    score = FloatField()
    bio = StringField()

    class Meta:
        abstract = True
        collection = "users"
        namespace = NAMESPACE


class User(UserFields):
    """What the baseline does: no change log (the default run)."""

    class Meta:
        changes = False


class UserWithChanges(UserFields):
    """The same with the change stream on (``--changes``): each write also XADDs an event,
    which the baseline does not; the ratio then shows what events cost."""

    class Meta:
        changes = True


def make_docs(n: int, seed: int, names: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"name": f"user{rng.randrange(names):06d}", "age": rng.randint(18, 80),
             "city": rng.choice(CITIES), "score": round(rng.uniform(0, 100), 3),
             "bio": " ".join(rng.choices(WORDS, k=20))} for _ in range(n)]


# -- baseline: hand-written redis-py ------------------------------------------------------

SCRIPTS = {"save": """
-- KEYS: doc, version, ids, seq, then an index key per (old, new) encoding pair in ARGV[4..]
-- ARGV: expected version ("0": must not exist), id ("": allocate; KEYS[1..2] are prefixes)
local id, dk, vk = ARGV[2], KEYS[1], KEYS[2]
if id == "" then id = tostring(redis.call("INCR", KEYS[4])); dk, vk = dk .. id, vk .. id end
local cur = redis.call("GET", vk) or "0"
if cur ~= ARGV[1] then return {"CONFLICT", cur} end
local sfx = string.format("%012d", tonumber(id))
for i = 5, #KEYS do
  if ARGV[2 * i - 6] ~= "" then redis.call("ZREM", KEYS[i], ARGV[2 * i - 6] .. sfx) end
  redis.call("ZADD", KEYS[i], 0, ARGV[2 * i - 5] .. sfx)
end
redis.call("SET", dk, ARGV[3])
if cur == "0" then redis.call("ZADD", KEYS[3], 0, sfx) end
return {id, redis.call("INCR", vk)}
""", "delete": """
-- KEYS: doc, version, ids, index keys; ARGV: expected version, id suffix, encodings
if redis.call("GET", KEYS[2]) ~= ARGV[1] then return 0 end
for i = 4, #KEYS do redis.call("ZREM", KEYS[i], ARGV[i - 1] .. ARGV[2]) end
redis.call("DEL", KEYS[1], KEYS[2])
redis.call("ZREM", KEYS[3], ARGV[2])
return 1
""", "query": """
-- KEYS[1] index to scan, KEYS[2] optional index that must also hold ARGV[7] .. id
-- ARGV: doc prefix, version prefix, min, max, offset, count, [encoding]
local key, lo, hi, other, want = KEYS[1], ARGV[3], ARGV[4], KEYS[2], ARGV[7]
if other then  -- AND of two equalities: scan the smaller range, probe the other index
  local olo, ohi = "[" .. want, "(" .. want .. "\\255"
  if redis.call("ZLEXCOUNT", other, olo, ohi) < redis.call("ZLEXCOUNT", key, lo, hi) then
    key, other, lo, hi, want = other, key, olo, ohi, string.sub(lo, 2)
  end
end
local out = {}
for _, m in ipairs(redis.call("ZRANGEBYLEX", key, lo, hi, "LIMIT", ARGV[5], ARGV[6])) do
  local sfx = string.sub(m, -12)
  if not other or redis.call("ZSCORE", other, want .. sfx) then
    local id = tostring(tonumber(sfx))
    local got = redis.call("MGET", ARGV[1] .. id, ARGV[2] .. id)
    out[#out + 1] = id; out[#out + 1] = got[2]; out[#out + 1] = got[1]
  end
end
return out
"""}


def enc(field: str, value) -> bytes:
    if field == "age":
        return b"%020d" % (value + (1 << 63))  # fixed width: byte order = numeric order
    return value.encode() + b"\x00"


def eq_range(field: str, value) -> tuple[bytes, bytes]:
    e = enc(field, value)
    return b"[" + e, b"(" + e + b"\xff"


class Baseline:
    """Blocking redis-py: one client call (update: two) per operation around pure helpers
    that :class:`AsyncBaseline`, its redis.asyncio twin, shares."""

    def __init__(self, client, sha: dict[str, str]) -> None:
        self.r, self.sha = client, sha
        self.dk, self.vk, self.ids, self.seq = BASE + "d:", BASE + "v:", BASE + "ids", BASE + "seq"
        self.ik = {f: f"{BASE}i:{f}" for f in INDEXED}
        self.insert_keys = (self.dk, self.vk, self.ids, self.seq, *self.ik.values())

    def _insert(self, doc):
        pairs = [x for f in INDEXED for x in (b"", enc(f, doc[f]))]
        return (self.sha["save"], 7, *self.insert_keys, "0", "", dumps(doc), *pairs)

    def _update(self, id, reply):  # the CAS save of the age bump, from the loaded document
        doc, version = json.loads(reply[0]), reply[1]
        old, doc["age"] = doc["age"], bump(doc["age"])
        keys = (self.dk + id, self.vk + id, self.ids, self.seq, self.ik["age"])
        return (self.sha["save"], 5, *keys, version, id, dumps(doc), enc("age", old),
                enc("age", doc["age"])), doc

    def _delete(self, row):
        id, version, doc = row
        return (self.sha["delete"], 6, self.dk + id, self.vk + id, self.ids, *self.ik.values(),
                version, b"%012d" % int(id), *(enc(f, doc[f]) for f in INDEXED))

    def _query(self, field, lo, hi, count=-1, also=()):  # also: (field, value) to AND with
        keys = (self.ik[field], *(self.ik[f] for f in also[:1]))
        return (self.sha["query"], len(keys), *keys, self.dk, self.vk, lo, hi, 0, count,
                *([enc(*also)] if also else []))

    @staticmethod
    def _saved(reply, doc):
        if reply[0] == b"CONFLICT":
            raise RuntimeError(f"baseline: version conflict (stored {reply[1]!r})")
        return reply[0].decode(), int(reply[1]), doc

    @staticmethod
    def _rows(reply):
        return [(reply[i].decode(), int(reply[i + 1]), json.loads(reply[i + 2]))
                for i in range(0, len(reply), 3)]

    def _pipe(self, docs):  # one pipeline (no MULTI) of insert script calls
        pipe = self.r.pipeline(transaction=False)
        for doc in docs:
            pipe.evalsha(*self._insert(doc))
        return pipe

    def bulk(self, docs):
        return [self._saved(r, d) for r, d in zip(self._pipe(docs).execute(), docs, strict=True)]

    def insert(self, doc):
        return self._saved(self.r.evalsha(*self._insert(doc)), doc)

    def get(self, id):
        raw, version = self.r.mget(self.dk + id, self.vk + id)
        return None if raw is None else (id, int(version), json.loads(raw))

    def query(self, *args):
        return self._rows(self.r.evalsha(*self._query(*args)))

    def count(self, age):
        return self.r.zlexcount(self.ik["age"], b"[" + enc("age", age), b"+")

    def update(self, id):
        call, doc = self._update(id, self.r.mget(self.dk + id, self.vk + id))
        return self._saved(self.r.evalsha(*call), doc)

    def delete(self, row):
        return self.r.evalsha(*self._delete(row)) == 1


class AsyncBaseline(Baseline):
    async def bulk(self, docs):
        replies = await self._pipe(docs).execute()
        return [self._saved(r, d) for r, d in zip(replies, docs, strict=True)]

    async def insert(self, doc):
        return self._saved(await self.r.evalsha(*self._insert(doc)), doc)

    async def get(self, id):
        raw, version = await self.r.mget(self.dk + id, self.vk + id)
        return None if raw is None else (id, int(version), json.loads(raw))

    async def query(self, *args):
        return self._rows(await self.r.evalsha(*self._query(*args)))

    async def count(self, age):
        return await self.r.zlexcount(self.ik["age"], b"[" + enc("age", age), b"+")

    async def update(self, id):
        call, doc = self._update(id, await self.r.mget(self.dk + id, self.vk + id))
        return self._saved(await self.r.evalsha(*call), doc)

    async def delete(self, row):
        return await self.r.evalsha(*self._delete(row)) == 1


# -- the workload -------------------------------------------------------------------------

def orm_ops(is_async: bool, User: type[UserFields]) -> dict:
    """QuantumORM's public API for each operation: ``await x()``, or ``x_sync()``."""
    sfx = "" if is_async else "_sync"

    def terminal(build, method="all"):
        name = method + sfx
        return lambda arg: getattr(build(arg), name)()

    async def first_async(docs):
        return (await docs)[0]

    first = first_async if is_async else (lambda docs: docs[0])

    def update_sync(id):  # load, modify one (indexed) field, compare-and-set save
        user = User.objects.get_many_sync([id])[0]
        user.age = bump(user.age)
        return user.save_sync()

    async def update_async(id):
        user = (await User.objects.get_many([id]))[0]
        user.age = bump(user.age)
        return await user.save()

    return {
        "get": lambda id: first(getattr(User.objects, "get_many" + sfx)([id])),
        "get_q": lambda id: getattr(User.objects, "get" + sfx)(id=id),
        "eq": terminal(lambda name: User.objects.filter(name=name)),
        "range": terminal(lambda age: User.objects.filter(
            age__gte=age, age__lt=age + 10).order_by("age").limit(10)),
        "and": terminal(lambda ca: User.objects.filter(city=ca[0], age=ca[1])),
        "count": terminal(lambda age: User.objects.filter(age__gte=age), "count"),
        "update": update_async if is_async else update_sync,
        "insert": terminal(lambda doc: User(**doc), "save"),
        "delete": terminal(lambda user: user, "delete"),
        "bulk": lambda docs: getattr(User.objects, "bulk_create" + sfx)(
            [User(**d) for d in docs], batch_size=BATCH),
    }


def base_ops(b: Baseline) -> dict:
    return {
        "get": b.get, "get_q": b.get, "count": b.count, "update": b.update, "insert": b.insert,
        "delete": b.delete, "bulk": b.bulk,
        "eq": lambda name: b.query("name", *eq_range("name", name)),
        "range": lambda age: b.query(  # age in [age, age + 10), by age then id, first 10
            "age", b"[" + enc("age", age), b"(" + enc("age", age + 10), 10),
        "and": lambda ca: b.query("city", *eq_range("city", ca[0]), -1, ("age", ca[1])),
    }


OPS = [("get by id (get_many)", "get"), ("get by id (get(id=))", "get_q"),  # run in this order
       ("eq query (~10 docs)", "eq"), ("range+order_by+limit10", "range"),
       ("AND query (2 indexes)", "and"), ("count (age >= x)", "count"),
       ("update 1 field (CAS)", "update"), ("insert (single)", "insert"), ("delete", "delete")]


def params(n: int, count: int, seed: int = 7) -> dict[str, list]:
    """The same parameters, in the same order, for both sides."""
    rng, names = random.Random(seed), max(1, n // 10)
    ids = lambda: [str(rng.randint(1, n)) for _ in range(count)]
    return {
        "get": ids(), "get_q": ids(), "update": ids(),
        "eq": [f"user{rng.randrange(names):06d}" for _ in range(count)],
        "range": [rng.randint(18, 75) for _ in range(count)],
        "and": [(rng.choice(CITIES), rng.randint(18, 80)) for _ in range(count)],
        "count": [rng.randint(18, 80) for _ in range(count)],
        "insert": make_docs(count, seed + 1, names),
    }


def norm(result):
    """A comparable form of either side's result: (id, stored data), lists, ints. Versions
    differ by design (the ORM's are clock values, the baseline's write counts): an ORM
    result must carry a positive integer one, a baseline row is (id, version, data)."""
    if isinstance(result, Document):
        if not (isinstance(result.version, int) and result.version > 0):
            raise RuntimeError(f"orm: no version on {result!r}")
        data = result.to_dict(storage=True)
        return (data.pop("id"), data)
    if isinstance(result, tuple) and len(result) == 3:
        return (result[0], result[2])
    if isinstance(result, list):
        return [norm(r) for r in result]
    return result


async def timed(fn, arg, is_async):
    t = time.perf_counter_ns()
    out = (await fn(arg)) if is_async else fn(arg)
    return time.perf_counter_ns() - t, out


async def run_both(sides, data, args, wipe):
    """Bulk-load the data set on both sides, then time every operation; the two sides take
    turns call by call (alternating who goes first), so both see the same machine load.
    ``sides`` maps "orm"/"base" to their operation tables."""
    is_async, warmup = args.async_, args.warmup
    for fns in sides.values():
        await timed(fns["bulk"], data[:BATCH], is_async)  # warm-up batch (connections, scripts)
    await wipe()
    samples = {name: {"bulk": []} for name in sides}
    results = {name: {} for name in sides}
    order = list(sides)
    for i in range(0, len(data), BATCH):
        chunk = data[i:i + BATCH]
        for name in order if (i // BATCH) % 2 == 0 else order[::-1]:
            ns, _ = await timed(sides[name]["bulk"], chunk, is_async)
            samples[name]["bulk"].append(ns / len(chunk))
    plan = params(args.n, warmup + args.iterations)
    created = {name: [] for name in sides}
    for _, key in OPS:
        gc.collect()
        times = {name: [] for name in sides}
        outs = {name: [] for name in sides}
        for i in range(warmup + args.iterations):
            for name in order if i % 2 == 0 else order[::-1]:
                arg = created[name][i] if key == "delete" else plan[key][i]
                ns, out = await timed(sides[name][key], arg, is_async)
                if key == "insert":
                    created[name].append(out)  # what "delete" deletes, in order
                if i >= warmup:
                    times[name].append(ns)
                    if len(outs[name]) < CHECKED:
                        outs[name].append(norm(out))
        for name in sides:
            samples[name][key], results[name][key] = times[name], outs[name]
    return samples, results


def start_server(workdir: str) -> tuple[subprocess.Popen, str]:
    exe = shutil.which("redis-server") or sys.exit("redis-server not on PATH (or set REDIS_URL)")
    for _ in range(3):  # a free port can be taken before the server binds it: retry
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", workdir],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        url, deadline = f"redis://127.0.0.1:{port}/0", time.monotonic() + 10
        with redis.Redis.from_url(url, socket_connect_timeout=0.5) as probe:
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    if probe.ping():
                        return proc, url
                except redis.ConnectionError:
                    time.sleep(0.05)
        stop_server(proc)
    sys.exit("redis-server did not start")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()  # SIGTERM to this pid only (a no-op if it already exited)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def redis_server(prefix: str) -> Iterator[str]:
    """The URL in $REDIS_URL, or that of a private redis-server started for the block (the
    benchmarks' shared way to find a server; ``prefix`` names its temporary directory)."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as workdir:
        proc, url = start_server(workdir)
        try:
            yield url
        finally:
            stop_server(proc)


def report(orm, base):
    p95 = lambda xs: statistics.quantiles(xs, n=20, method="inclusive")[-1]
    head = (f"{'operation':<24} | {'orm med µs':>10} | {'base med µs':>11} | {'ratio':>6} | "
            f"{'orm p95':>8} | {'base p95':>8}")
    print(head + "\n" + "-" * len(head))
    for label, key in [("bulk insert (per doc)", "bulk"), *OPS]:
        om, bm = statistics.median(orm[key]) / 1e3, statistics.median(base[key]) / 1e3
        print(f"{label:<24} | {om:>10.1f} | {bm:>11.1f} | {om / bm:>5.2f}x | "
              f"{p95(orm[key]) / 1e3:>8.1f} | {p95(base[key]) / 1e3:>8.1f}")


async def bench(url: str, args) -> None:
    raw = redis.Redis.from_url(url)
    print(f"redis-server {raw.info('server')['redis_version']} at {url} | Python "
          f"{platform.python_version()} ({platform.python_implementation()}) | redis-py "
          f"{redis.__version__}, hiredis {'yes' if redis.utils.HIREDIS_AVAILABLE else 'no'}")
    events = " | change events on (orm only)" if args.changes else ""
    print(f"mode: {'async' if args.async_ else 'sync'}{events} | documents: {args.n} | "
          f"iterations: {args.iterations} (+{args.warmup} warm-up) | bulk: batches of {BATCH}\n")

    async def wipe(keep_schema=True):  # only this benchmark's keys: both collections...
        # ...and their counters; the ORM's stored schema ({ns:coll}:schema) stays until the
        # end, as in any application (written at the model's first use, in the warm-up)
        for pattern in (f"{{{NAMESPACE}:*", BASE + "*"):
            keys = [k for k in raw.scan_iter(match=pattern, count=1000)
                    if not (keep_schema and k.endswith(b"}:schema"))]
            for i in range(0, len(keys), 1000):
                raw.delete(*keys[i:i + 1000])

    data = make_docs(args.n, 1, max(1, args.n // 10))
    conn = create_connection("redis", url, name="bench", make_default=True)
    client = (redis.asyncio.Redis if args.async_ else redis.Redis).from_url(url)
    try:
        await wipe()
        sha = {name: raw.script_load(source) for name, source in SCRIPTS.items()}
        base = (AsyncBaseline if args.async_ else Baseline)(client, sha)
        samples, results = await run_both(
            {"orm": orm_ops(args.async_, UserWithChanges if args.changes else User),
             "base": base_ops(base)}, data, args, wipe)
        (orm_s, base_s), (orm_r, base_r) = samples.values(), results.values()
        await wipe(keep_schema=False)
    finally:
        conn.close()
        await conn.aclose()  # closes the asyncio pool (nothing to do after a sync run)
        (await client.aclose()) if args.async_ else client.close()
        raw.close()
    report(orm_s, base_s)
    bad = [label for label, key in OPS if orm_r[key] != base_r[key]]
    sizes = [len(rows) for rows in orm_r["eq"] + orm_r["and"]]
    print(f"\nresults cross-checked on {CHECKED} iterations per operation: "
          f"{'identical' if not bad else 'DIFFERENT: ' + ', '.join(bad)} "
          f"(eq/AND queries returned {min(sizes)}-{max(sizes)} docs)")
    if bad:
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10000, help="documents loaded (default 10000)")
    parser.add_argument("--iterations", type=int, default=2000, help="timed calls per operation")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls per operation")
    parser.add_argument("--async", dest="async_", action="store_true",
                        help="QuantumORM's async API against redis.asyncio")
    parser.add_argument("--changes", action="store_true",
                        help="the ORM model keeps its change stream (the baseline has none)")
    args = parser.parse_args()
    if args.n < BATCH or args.iterations < 1 or args.warmup < 0:
        parser.error(f"need --n >= {BATCH}, --iterations >= 1, --warmup >= 0")
    if not args.async_:
        # the sync run times blocking calls made from the one coroutine on a loop where
        # nothing else runs: allowed knowingly (a worker thread would time the thread hop)
        os.environ["QUANTUMORM_ALLOW_SYNC_IN_LOOP"] = "1"
    with redis_server("qbench-redis-") as url:
        asyncio.run(bench(url, args))


if __name__ == "__main__":
    main()
