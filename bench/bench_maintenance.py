"""QuantumORM's maintenance operations on Redis: reindex(), verify() and repair(), by size.

For each collection size N (``--documents``), on one private server:

* **reindex**: N documents are written by a first declaration of the model (indexes on
  ``name`` and ``age``); a second declaration of the same ``Meta.collection`` adds an index
  on ``city`` and a field ``plan`` with a default and an index (as a new release would,
  see tests/integration/test_index_lifecycle.py), so both indexes start *building*.
  ``Model.objects.reindex_sync()`` builds them -> documents/s. The baseline is hand-written
  redis-py doing the same work on a second collection holding the same N documents, without
  the ORM's guarantees (no version check per document, no checkpoints, no unique checks, no
  removal of older entries, no schema states): walk the ids ZSET in batches (ZRANGE BYLEX),
  MGET the documents, decode them, compute the index members with the ORM's own encodings
  (the fields' ``index_keys``, ``quantumorm.sortable``), and send one pipeline per batch:
  one ZADD per index, an HSET of the meta fields per document, and the SET of the document
  with the default stored into it (what reindex() also does; KEEPTTL). Both results must
  be identical, key by key (checked: index members, meta fields, stored documents).
* **verify**: ``verify_sync()`` on the collection just built (every index ready) ->
  documents/s and index entries/s. (Its search for unlisted keys SCANs the whole database;
  here the database holds only this collection: the baseline's is deleted first.)
* **repair**: ``repair_sync()`` on that healthy collection (one verifying pass that finds
  nothing to fix), then after deleting the meta hashes of 1% of the documents (the fixing
  pass, then a verify of the result) -> seconds.

Fairness: both sides use the same process, server, client library (hiredis) and batch size
(``--batch``, the ORM's default 500); each round loads two fresh collections with the same
seeded documents (bench_redis's ``make_docs``: names, ages, 20 cities, a float, a 20-word
bio) and times the two builds one after the other, alternating which goes first from round
to round. ``ratio`` = ORM seconds / baseline seconds (as in bench_redis: > 1 means slower).

Usage: bench/bench_maintenance.py [--documents 10000 100000] [--rounds 2] [--batch 500].
It starts a private redis-server on a free 127.0.0.1 port (no persistence; stopped at exit)
unless REDIS_URL is set; only the benchmark's own keys are ever deleted (never FLUSHDB).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import tempfile
import time

import redis
from bench_redis import dumps, make_docs, start_server, stop_server  # (this folder)

from quantumorm import Document, FloatField, IntField, StringField, create_connection, sortable
from quantumorm.backends.redis.keys import KeySpace, meta_field

NAMESPACE = "qmaint"
ADDED = ("city", "plan")  # the indexes the second declaration adds (plan: a new field)
PLAN = "free"  # plan's default, stored into every document by the build
DAMAGED = 0.01  # share of documents whose meta hash is deleted before the second repair


def declare(collection: str, release: int) -> type[Document]:
    """The model as release 1 (indexes on name and age) or release 2 (also city, and a
    new field ``plan`` with a default, indexed) declares it; same collection."""
    fields = {"name": StringField(indexed=True), "age": IntField(indexed=True),
              "city": StringField(indexed=release > 1), "score": FloatField(),
              "bio": StringField()}
    if release > 1:
        fields["plan"] = StringField(default=PLAN, indexed=True)
    meta = type("Meta", (), {"collection": collection, "namespace": NAMESPACE,
                             "changes": False})
    return type(f"Account{release}", (Document,), {"__module__": __name__, **fields,
                                                   "Meta": meta})


# -- baseline: hand-written redis-py ------------------------------------------------------

class Baseline:
    """reindex()'s work for ``model``'s ADDED indexes, written by hand on its key layout
    (one partition): no version checks, no checkpoints, no unique checks, no removal of
    older entries, no schema state; ZADD only adds, HSET only sets."""

    def __init__(self, client: redis.Redis, model: type[Document], batch: int) -> None:
        keys, fields = KeySpace(model._meta), model._meta.fields
        self.r, self.batch = client, batch
        self.ids = keys.ids(0)
        self.doc_prefix, self.meta_prefix = keys.doc_prefix(0), keys.meta_prefix(0)
        self.indexes = [(keys.index(0, name), fields[name], meta_field(fields[name]))
                        for name in ADDED]
        self.plan = fields["plan"].db_name

    def run(self) -> int:
        done, low = 0, b"-"
        while True:
            id_keys = self.r.zrange(self.ids, low, b"+", bylex=True, offset=0, num=self.batch)
            if not id_keys:
                return done
            names = [sortable.escape_id(sortable.id_from_key(k)) for k in id_keys]
            raws = self.r.mget([self.doc_prefix + name for name in names])
            members: list[dict[bytes, int]] = [{} for _ in self.indexes]
            pipe = self.r.pipeline(transaction=False)
            for id_key, name, raw in zip(id_keys, names, raws, strict=True):
                if raw is None:
                    continue  # deleted since listed
                data = json.loads(raw)
                filled = self.plan not in data
                if filled:
                    data[self.plan] = PLAN
                meta = {}
                for (_, field, mfield), into in zip(self.indexes, members, strict=True):
                    encodings = field.index_keys(data.get(field.db_name))
                    into.update(dict.fromkeys([e + id_key for e in encodings], 0))
                    meta[mfield] = sortable.pack_list(encodings)
                pipe.hset(self.meta_prefix + name, mapping=meta)
                if filled:
                    pipe.set(self.doc_prefix + name, dumps(data), keepttl=True)
                done += 1
            for (key, _, _), into in zip(self.indexes, members, strict=True):
                if into:
                    pipe.zadd(key, into)
            pipe.execute()
            low = b"(" + id_keys[-1]


# -- the workload -------------------------------------------------------------------------

def timed(fn):
    gc.collect()
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def load(model: type[Document], docs: list[dict], batch: int) -> None:
    model.objects.bulk_create_sync([model(**d) for d in docs], batch_size=batch)


def wipe(raw: redis.Redis, model: type[Document]) -> None:
    """Delete one collection's keys (and nothing else)."""
    for pattern in KeySpace(model._meta).patterns():
        keys = list(raw.scan_iter(match=pattern, count=1000))
        for i in range(0, len(keys), 1000):
            raw.unlink(*keys[i:i + 1000])


def same_result(raw: redis.Redis, orm: type[Document], base: type[Document]) -> list[str]:
    """Where the two builds differ: index members, meta fields, stored documents."""
    ko, kb = KeySpace(orm._meta), KeySpace(base._meta)
    bad = [f"index {name}" for name in ADDED
           if raw.zrange(ko.index(0, name), 0, -1) != raw.zrange(kb.index(0, name), 0, -1)]
    names = [sortable.escape_id(sortable.id_from_key(k)) for k in raw.zrange(ko.ids(0), 0, -1)]
    if names != [sortable.escape_id(sortable.id_from_key(k))
                 for k in raw.zrange(kb.ids(0), 0, -1)]:
        return bad + ["ids"]
    mfields = [meta_field(orm._meta.fields[name]) for name in ADDED]

    def stored(ks: KeySpace, chunk: list[str]) -> list:
        pipe = raw.pipeline(transaction=False)
        pipe.mget([ks.doc_prefix(0) + n for n in chunk])
        for n in chunk:
            pipe.hmget(ks.meta_prefix(0) + n, mfields)
        return pipe.execute()

    for i in range(0, len(names), 1000):
        chunk = names[i:i + 1000]
        got_orm, got_base = stored(ko, chunk), stored(kb, chunk)
        if got_orm[0] != got_base[0]:
            bad.append(f"documents {chunk[0]}..")
        if got_orm[1:] != got_base[1:]:
            bad.append(f"meta fields {chunk[0]}..")
    return bad


def damage(raw: redis.Redis, model: type[Document], share: float, seed: int) -> int:
    """Delete the meta hashes of ``share`` of the documents (seeded choice)."""
    keys = KeySpace(model._meta)
    names = [sortable.escape_id(sortable.id_from_key(k)) for k in raw.zrange(keys.ids(0), 0, -1)]
    chosen = random.Random(seed).sample(names, max(1, round(len(names) * share)))
    for i in range(0, len(chosen), 1000):
        raw.delete(*(keys.meta_prefix(0) + n for n in chosen[i:i + 1000]))
    return len(chosen)


def one_round(raw, client, n: int, turn: int, batch: int, docs: list[dict]) -> dict:
    """Load two collections of ``n`` documents, build their added indexes (the ORM's way and
    the baseline's, in turns), compare, then verify and repair the ORM's."""
    names = {side: f"maint_{n}_r{turn}_{side}" for side in ("orm", "base")}
    old = {side: declare(name, 1) for side, name in names.items()}
    for side in old:
        load(old[side], docs, batch)
    new = {side: declare(name, 2) for side, name in names.items()}
    out = {"n": n, "round": turn}
    baseline = Baseline(client, new["base"], batch)
    builds = {"orm": lambda: new["orm"].objects.reindex_sync(batch_size=batch),
              "base": baseline.run}
    for side in ("orm", "base") if turn % 2 else ("base", "orm"):
        out[side], result = timed(builds[side])
        if side == "orm":
            if not (result.ready and result.documents == n and result.backfilled == n
                    and result.indexes == ADDED):
                sys.exit(f"reindex did not build what it should:\n{result}")
        elif result != n:
            sys.exit(f"baseline built {result} documents, not {n}")
    out["first"] = "orm" if turn % 2 else "base"
    out["mismatch"] = same_result(raw, new["orm"], new["base"])
    wipe(raw, new["base"])

    Model = new["orm"]
    out["verify"], verified = timed(lambda: Model.objects.verify_sync(batch_size=batch))
    if not verified.ok or verified.documents != n or verified.building:
        sys.exit(f"verify after the build is not clean:\n{verified}")
    out["verified"], out["entries"] = verified.documents, verified.entries
    out["repair_ok"], repaired = timed(lambda: Model.objects.repair_sync(batch_size=batch))
    if not repaired.ok or repaired.fixed:
        sys.exit(f"repair of a healthy collection changed something:\n{repaired}")
    out["damaged"] = damage(raw, Model, DAMAGED, seed=turn)
    out["repair_bad"], repaired = timed(lambda: Model.objects.repair_sync(batch_size=batch))
    if not repaired.ok:
        sys.exit(f"repair did not repair:\n{repaired}")
    out["found"], out["fixed"] = dict(repaired.before.problems), dict(repaired.fixed)
    wipe(raw, Model)
    return out


def report(rows: list[dict]) -> None:
    head = (f"{'documents':>9} | {'round':>5} | {'first':>5} | {'orm s':>7} | {'orm docs/s':>10} | "
            f"{'base s':>7} | {'base docs/s':>11} | {'ratio':>6}")
    print("reindex (index on city + defaulted indexed field plan, added to N documents)")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        n = r["n"]
        print(f"{n:>9} | {r['round']:>5} | {r['first']:>5} | {r['orm']:>7.2f} | "
              f"{n / r['orm']:>10,.0f} | {r['base']:>7.2f} | {n / r['base']:>11,.0f} | "
              f"{r['orm'] / r['base']:>5.2f}x")
    head = (f"{'documents':>9} | {'round':>5} | {'verify s':>8} | {'docs/s':>8} | "
            f"{'entries':>8} | {'entries/s':>9} | {'repair healthy s':>16} | "
            f"{'repair 1% s':>13}")
    print("\nverify and repair (on the collection reindex built; x: seconds / verify's)")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        v = r["verify"]
        print(f"{r['n']:>9} | {r['round']:>5} | {v:>8.2f} | {r['verified'] / v:>8,.0f} | "
              f"{r['entries']:>8} | {r['entries'] / v:>9,.0f} | "
              f"{r['repair_ok']:>9.2f} ({r['repair_ok'] / v:.1f}x) | "
              f"{r['repair_bad']:>6.2f} ({r['repair_bad'] / v:.1f}x)")
    print()
    for r in rows:
        print(f"N={r['n']} round {r['round']}: meta hashes deleted: {r['damaged']}; repair "
              f"found {r['found']}, fixed {r['fixed']}")


def bench(url: str, args) -> None:
    raw = redis.Redis.from_url(url)
    print(f"redis-server {raw.info('server')['redis_version']} at {url} | Python "
          f"{platform.python_version()} ({platform.python_implementation()}) | redis-py "
          f"{redis.__version__}, hiredis {'yes' if redis.utils.HIREDIS_AVAILABLE else 'no'}")
    print(f"documents: {', '.join(map(str, args.documents))} | rounds: {args.rounds} | "
          f"batch: {args.batch}\n")
    conn = create_connection("redis", url, name="bench-maintenance", make_default=True)
    client = redis.Redis.from_url(url)
    rows, bad = [], []
    try:
        for n in args.documents:
            docs = make_docs(n, 1, max(1, n // 10))
            for turn in range(1, args.rounds + 1):
                row = one_round(raw, client, n, turn, args.batch, docs)
                rows.append(row)
                bad += [f"N={n} round {turn}: {m}" for m in row["mismatch"]]
    finally:
        conn.close()
        client.close()
        raw.close()
    report(rows)
    print(f"\nthe two builds compared key by key (index members, meta fields, documents): "
          f"{'identical' if not bad else 'DIFFERENT: ' + '; '.join(bad)}")
    if bad:
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, nargs="+", default=[10_000, 100_000],
                        help="collection sizes, one run each (default 10000 100000)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="fresh collections and builds per size (default 2)")
    parser.add_argument("--batch", type=int, default=500,
                        help="documents per batch, both sides (default 500, the ORM's)")
    args = parser.parse_args()
    if min(args.documents) < 100 or args.rounds < 1 or args.batch < 1:
        parser.error("need --documents >= 100, --rounds >= 1, --batch >= 1")
    if os.environ.get("REDIS_URL"):
        return bench(os.environ["REDIS_URL"], args)
    with tempfile.TemporaryDirectory(prefix="qbench-redis-") as workdir:
        proc, url = start_server(workdir)
        try:
            bench(url, args)
        finally:
            stop_server(proc)


if __name__ == "__main__":
    main()
