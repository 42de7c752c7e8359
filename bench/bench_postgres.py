"""QuantumORM on PostgreSQL vs hand-written psycopg: per-operation latency, same server.

The workload of ``bench_redis.py`` (the same documents, parameters, operations, order and
cross-check; its functions are imported), with (a) QuantumORM's public API on a
``Meta.backend = "postgres"`` model (sync; async with ``--async``) and (b) psycopg used
directly (``psycopg.Connection`` / ``AsyncConnection``, autocommit) on the table a team
would write by hand: typed columns (``name``/``city`` ``text COLLATE "C"``, ``age int``,
``score float8``, ``bio text``), a bigint identity id, a version column, and a b-tree index
per indexed field. Each baseline operation is ONE statement: an insert is ``INSERT ...
RETURNING``; an update is the load, then ``UPDATE ... WHERE id = %s AND version = %s`` (a
compare-and-set in one statement under READ COMMITTED); a delete is likewise one
version-checked ``DELETE``; queries are one ``SELECT`` with ``ORDER BY`` id (or age, id);
bulk loads are ``executemany`` (psycopg pipelines it).

What the ORM does that the baseline skips, by design: validation and model instances, the
exact JSON text and a jsonb copy of each document, sort-key encodings of every field (exact
order and equality for every type), a SERIALIZABLE transaction per write with guard
statements (existence, version, unique indexes) that report typed errors, and the auto-id
sequence read before an insert.

``--arrays`` measures the array-membership choice instead (``tags__contains`` through the
GIN index over the element keys, against the same model without it, which scans): query,
count and insert latency, QuantumORM only.

Usage: bench/bench_postgres.py [--n 10000] [--iterations 2000] [--warmup 200] [--async]
[--arrays].
Starts a private PostgreSQL server (initdb into a temp dir as an unprivileged user when run
as root, a free 127.0.0.1 port, stopped at exit) unless POSTGRES_URL is set; only the
benchmark's own tables are dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import platform
import pwd
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
from pathlib import Path
from typing import Any

import psycopg
from bench_redis import BATCH, CHECKED, OPS, UserFields, bump, make_docs, orm_ops, report, run_both

from quantumorm import ArrayField, Document, StringField, create_connection

TABLE = "pgbench_users"  # the baseline's table
ORM_TABLE = '"qbench:users"'  # the ORM's (namespace qbench, collection users)
COLUMNS = ("name", "age", "city", "score", "bio")
SELECT = f"SELECT id, version, {', '.join(COLUMNS)} FROM {TABLE}"


class PgUser(UserFields):
    class Meta:
        backend = "postgres"
        collection = "users"  # (a collection is not inherited from an abstract model)


def _row(row: tuple[Any, ...]) -> tuple[str, int, dict[str, Any]]:
    return str(row[0]), int(row[1]), dict(zip(COLUMNS, row[2:], strict=True))


class Baseline:
    """Blocking psycopg: one statement per operation (update: two)."""

    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self.db = db

    def bulk(self, docs):
        with self.db.cursor() as cur:
            cur.executemany(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES "
                            "(%s, %s, %s, %s, %s)", [tuple(d[c] for c in COLUMNS) for d in docs])

    def insert(self, doc):
        row = self.db.execute(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES "
                              "(%s, %s, %s, %s, %s) RETURNING id, version",
                              tuple(doc[c] for c in COLUMNS)).fetchone()
        assert row is not None
        return str(row[0]), int(row[1]), doc

    def get(self, id):
        row = self.db.execute(f"{SELECT} WHERE id = %s", (int(id),)).fetchone()
        return None if row is None else _row(row)

    def query(self, sql, params):
        return [_row(r) for r in self.db.execute(sql, params).fetchall()]

    def count(self, age):
        row = self.db.execute(f"SELECT count(*) FROM {TABLE} WHERE age >= %s", (age,)).fetchone()
        assert row is not None
        return int(row[0])

    def update(self, id):
        _, version, doc = self.get(id)
        doc["age"] = bump(doc["age"])
        row = self.db.execute(f"UPDATE {TABLE} SET age = %s, version = version + 1 "
                              "WHERE id = %s AND version = %s RETURNING version",
                              (doc["age"], int(id), version)).fetchone()
        if row is None:
            raise RuntimeError("baseline: version conflict")
        return id, int(row[0]), doc

    def delete(self, row):
        id, version, _ = row
        gone = self.db.execute(f"DELETE FROM {TABLE} WHERE id = %s AND version = %s",
                               (int(id), version)).rowcount
        return gone == 1


class AsyncBaseline:
    """The psycopg ``AsyncConnection`` twin of :class:`Baseline`."""

    def __init__(self, db: psycopg.AsyncConnection[Any]) -> None:
        self.db = db

    async def bulk(self, docs):
        async with self.db.cursor() as cur:
            await cur.executemany(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES "
                                  "(%s, %s, %s, %s, %s)",
                                  [tuple(d[c] for c in COLUMNS) for d in docs])

    async def insert(self, doc):
        cur = await self.db.execute(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES "
                                    "(%s, %s, %s, %s, %s) RETURNING id, version",
                                    tuple(doc[c] for c in COLUMNS))
        row = await cur.fetchone()
        assert row is not None
        return str(row[0]), int(row[1]), doc

    async def get(self, id):
        row = await (await self.db.execute(f"{SELECT} WHERE id = %s", (int(id),))).fetchone()
        return None if row is None else _row(row)

    async def query(self, sql, params):
        return [_row(r) for r in await (await self.db.execute(sql, params)).fetchall()]

    async def count(self, age):
        cur = await self.db.execute(f"SELECT count(*) FROM {TABLE} WHERE age >= %s", (age,))
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def update(self, id):
        _, version, doc = await self.get(id)
        doc["age"] = bump(doc["age"])
        cur = await self.db.execute(f"UPDATE {TABLE} SET age = %s, version = version + 1 "
                                    "WHERE id = %s AND version = %s RETURNING version",
                                    (doc["age"], int(id), version))
        row = await cur.fetchone()
        if row is None:
            raise RuntimeError("baseline: version conflict")
        return id, int(row[0]), doc

    async def delete(self, row):
        id, version, _ = row
        cur = await self.db.execute(f"DELETE FROM {TABLE} WHERE id = %s AND version = %s",
                                    (int(id), version))
        return cur.rowcount == 1


def base_ops(b: Baseline | AsyncBaseline) -> dict:
    return {
        "get": b.get, "get_q": b.get, "count": b.count, "update": b.update, "insert": b.insert,
        "delete": b.delete, "bulk": b.bulk,
        "eq": lambda name: b.query(f"{SELECT} WHERE name = %s ORDER BY id", (name,)),
        "range": lambda age: b.query(  # age in [age, age + 10), by age then id, first 10
            f"{SELECT} WHERE age >= %s AND age < %s ORDER BY age, id LIMIT 10",
            (age, age + 10)),
        "and": lambda ca: b.query(f"{SELECT} WHERE city = %s AND age = %s ORDER BY id", ca),
    }


# -- a private server -----------------------------------------------------------------------

def _bindir() -> Path:
    found = shutil.which("initdb")
    if found and shutil.which("postgres"):
        return Path(found).parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                  else 0)
    if not dirs:
        sys.exit("initdb/postgres not found (apt-get install postgresql, or set POSTGRES_URL)")
    return Path(dirs[-1])


@contextmanager
def postgres_server() -> Iterator[str]:
    """$POSTGRES_URL, or a private server started for the block and stopped after it."""
    url = os.environ.get("POSTGRES_URL")
    if url:
        yield url
        return
    bindir, workdir = _bindir(), tempfile.mkdtemp(prefix="qbench-postgres-")
    data = Path(workdir, "data")
    data.mkdir()
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        user = pwd.getpwnam("nobody")
        for path in (workdir, data):
            os.chown(path, user.pw_uid, user.pw_gid)
        run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    env = {**os.environ, "HOME": workdir, "LC_ALL": "C"}
    proc = None
    try:
        subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--locale=C", "--no-sync"], check=True, env=env,
                       cwd=workdir, stdout=subprocess.DEVNULL, **run_as)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        proc = subprocess.Popen([str(bindir / "postgres"), "-D", str(data), "-p", str(port),
                                 "-c", "listen_addresses=127.0.0.1",
                                 "-c", "unix_socket_directories="],
                                env=env, cwd=workdir, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **run_as)
        url, deadline = f"postgresql://postgres@127.0.0.1:{port}/postgres", time.monotonic() + 30
        while True:
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit("postgres did not start")
                time.sleep(0.1)
        yield url
    finally:
        if proc is not None:
            proc.terminate()  # SIGTERM to this pid only
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


# -- the run ----------------------------------------------------------------------------------

async def bench(url: str, args) -> None:
    raw = psycopg.connect(url, autocommit=True)
    version = raw.execute("SHOW server_version").fetchone()
    print(f"PostgreSQL {version[0] if version else '?'} at {url} | Python "
          f"{platform.python_version()} ({platform.python_implementation()}) | psycopg "
          f"{psycopg.__version__} (impl {psycopg.pq.__impl__})")
    print(f"mode: {'async' if args.async_ else 'sync'} | documents: {args.n} | "
          f"iterations: {args.iterations} (+{args.warmup} warm-up) | bulk: batches of {BATCH}\n")
    raw.execute(f"DROP TABLE IF EXISTS {TABLE}")
    raw.execute(f"CREATE TABLE {TABLE} (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
                "version bigint NOT NULL DEFAULT 1, name text COLLATE \"C\", age int, "
                "city text COLLATE \"C\", score float8, bio text)")
    for column in ("name", "age", "city"):
        raw.execute(f"CREATE INDEX ON {TABLE} ({column})")

    async def wipe() -> None:  # both tables emptied, both id counters back to 1
        raw.execute(f"TRUNCATE {TABLE} RESTART IDENTITY")
        exists = raw.execute("SELECT to_regclass(%s)", (ORM_TABLE,)).fetchone()
        if exists and exists[0] is not None:
            raw.execute(f"TRUNCATE {ORM_TABLE}")
            raw.execute('ALTER SEQUENCE "qbench:users!ids" RESTART')

    conn = create_connection("postgres", url, name="bench", make_default=True)
    client: Any = (await psycopg.AsyncConnection.connect(url, autocommit=True) if args.async_
                   else psycopg.connect(url, autocommit=True))
    try:
        base = AsyncBaseline(client) if args.async_ else Baseline(client)
        samples, results = await run_both(
            {"orm": orm_ops(args.async_, PgUser), "base": base_ops(base)}, data_for(args),
            args, wipe)
        (orm_s, base_s), (orm_r, base_r) = samples.values(), results.values()
    finally:
        conn.close()
        await conn.aclose()
        (await client.close()) if args.async_ else client.close()
        for table in (TABLE, ORM_TABLE, '"qbench:users!ids"', '"qbench:users!versions"'):
            raw.execute(f"DROP TABLE IF EXISTS {table}" if "!" not in table
                        else f"DROP SEQUENCE IF EXISTS {table}")
        raw.execute('DELETE FROM "qorm#schemas" WHERE name = %s', ("qbench:users",))
        raw.close()
    report(orm_s, base_s)
    bad = [label for label, key in OPS if orm_r[key] != base_r[key]]
    sizes = [len(rows) for rows in orm_r["eq"] + orm_r["and"]]
    print(f"\nresults cross-checked on {CHECKED} iterations per operation: "
          f"{'identical' if not bad else 'DIFFERENT: ' + ', '.join(bad)} "
          f"(eq/AND queries returned {min(sizes)}-{max(sizes)} docs)")
    if bad:
        sys.exit(1)


class Tagged(Document):
    tags = ArrayField(StringField(), indexed=True)  # GIN over the element keys
    name = StringField()

    class Meta:
        backend = "postgres"
        namespace = "qbench"
        collection = "tagged"


class TaggedScan(Document):
    tags = ArrayField(StringField())  # no index: membership is a scan
    name = StringField()

    class Meta:
        backend = "postgres"
        namespace = "qbench"
        collection = "tagged_scan"


def _array_op(model: type[Document], key: str, tag: str) -> object:
    if key == "query":
        return model.objects.filter(tags__contains=tag).all_sync()
    if key == "count":
        return model.objects.filter(tags__contains=tag).count_sync()
    return model(tags=[tag, "new"], name="x").save_sync()


def arrays(url: str, args) -> None:
    """tags__contains with and without the GIN index, and what the index costs a write."""
    rng = random.Random(3)
    vocabulary = [f"tag{i:04d}" for i in range(2000)]
    docs = [{"tags": rng.sample(vocabulary, 3), "name": f"n{i}"} for i in range(args.n)]
    conn = create_connection("postgres", url, name="arrays", make_default=True)
    try:
        print(f"arrays: {args.n} documents, 3 of 2000 tags each (~{3 * args.n // 2000} per tag) "
              f"| iterations: {args.iterations}\n")
        print(f"{'operation':<34} | {'GIN med µs':>10} | {'scan med µs':>11} | {'ratio':>6}")
        print("-" * 70)
        rows = {}
        for model in (Tagged, TaggedScan):
            model.objects.delete_sync()
            model.objects.bulk_create_sync([model(**d) for d in docs], batch_size=BATCH)
            with psycopg.connect(url, autocommit=True) as raw:
                raw.execute(f'ANALYZE "qbench:{model._meta.collection}"')
            times: dict[str, list[float]] = {"query": [], "count": [], "insert": []}
            for i in range(args.warmup + args.iterations):
                tag = vocabulary[i % len(vocabulary)]
                for key in times:
                    t = time.perf_counter_ns()
                    _array_op(model, key, tag)
                    if i >= args.warmup:
                        times[key].append((time.perf_counter_ns() - t) / 1e3)
            rows[model] = {k: statistics.median(v) for k, v in times.items()}
            plan = model.objects.filter(tags__contains="tag0007").explain_sync()
            print(f"  {model.__name__}: {plan.details['postgres plan']}")
        for label, key in (("tags__contains (all matches)", "query"),
                           ("count(tags__contains)", "count"), ("insert (single)", "insert")):
            gin, scan = rows[Tagged][key], rows[TaggedScan][key]
            print(f"{label:<34} | {gin:>10.1f} | {scan:>11.1f} | {gin / scan:>5.2f}x")
        for model in (Tagged, TaggedScan):
            model.objects.delete_sync()
    finally:
        conn.close()


def data_for(args) -> list[dict]:
    return make_docs(args.n, 1, max(1, args.n // 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10000, help="documents loaded (default 10000)")
    parser.add_argument("--iterations", type=int, default=2000, help="timed calls per operation")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls per operation")
    parser.add_argument("--async", dest="async_", action="store_true",
                        help="QuantumORM's async API against psycopg's AsyncConnection")
    parser.add_argument("--arrays", action="store_true",
                        help="measure array membership: the GIN index against a scan")
    args = parser.parse_args()
    if args.n < BATCH or args.iterations < 1 or args.warmup < 0:
        parser.error(f"need --n >= {BATCH}, --iterations >= 1, --warmup >= 0")
    if not args.async_:
        # the sync run times blocking calls made from the one coroutine on a loop where
        # nothing else runs: allowed knowingly (a worker thread would time the thread hop)
        os.environ["QUANTUMORM_ALLOW_SYNC_IN_LOOP"] = "1"
    with postgres_server() as url:
        if args.arrays:
            arrays(url, args)
        else:
            asyncio.run(bench(url, args))


if __name__ == "__main__":
    main()
