"""``Meta.compress`` on Redis: memory per document and get / save latency, per codec and size.

For each document size (``--sizes``, bytes of JSON: by default 200 B, 2 KB and 20 KB) and
each setting (compression off, then zstd, lz4 and zlib, each with ``min_size`` 64 so that
every size is compressed), one collection of N seeded, text-like documents (a post: title,
author, tags, paragraphs drawn from a Zipf-weighted English vocabulary, comments) is loaded
with ``bulk_create`` on one private server. Every collection holds the same documents,
with the same two indexes (author, views) and no change stream (``Meta.changes = False``:
the stream is not what is measured). Reported per size and setting:

* **stored B**: the average length of the stored value (STRLEN of the document keys), and
  the compression ratio against the JSON;
* **doc key B**: ``MEMORY USAGE`` of the document keys (the value with Redis's own
  overhead and allocator rounding), averaged over a sample;
* **mem/doc B**: ``used_memory`` after the load minus before, per document (everything a
  document costs: its key, meta hash, id and index entries, which compression leaves as
  they are);
* **get µs / save µs**: median and p95 of ``Model.objects.get_sync(id=...)`` and of an
  update ``doc.views += 1; doc.save_sync()`` (one field changed: the whole document is
  encoded, compressed and stored again) on random ids. The settings take turns call by
  call, in rotating order, so a busy machine slows them alike.

``ratio`` columns divide by the same size with compression off (< 1: smaller or faster).
A last table times the codecs alone (``Compression.encode`` and ``decompress`` in Python,
no server) on the same documents.

Usage: bench/bench_compression.py [--n 3000] [--iterations 2000] [--sizes 200 2000 20000].
It starts a private redis-server on a free 127.0.0.1 port (no persistence; stopped at exit)
unless REDIS_URL is set; only the benchmark's own keys are ever deleted (never FLUSHDB).
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import redis
from bench_redis import redis_server  # (this folder)

from quantumorm import (
    ArrayField,
    Document,
    IntField,
    JSONField,
    StringField,
    close_all,
    compression,
    create_connection,
)
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.engine.contract import encode_document

NAMESPACE = "qbcompress"
SETTINGS: list[tuple[str, Any]] = [
    ("off", False),
    ("zstd", {"codec": "zstd", "min_size": 64}),
    ("lz4", {"codec": "lz4", "min_size": 64}),
    ("zlib", {"codec": "zlib", "min_size": 64}),
]
VOCABULARY = (
    "the of and to a in is that it for was on with as he she they be at by this had from "
    "not but have are or an which one you were all we there can her been has more if will "
    "would their when who so what out up about into than them only other time new some "
    "could these two may first then do any like my now over such our man me even most made "
    "after also did many before must through back years where much your way well down "
    "should because each just those people how too little state good very make world still "
    "own see men work long get here between both life being under never day same another "
    "know while last might us great old year off come since against go came right used "
    "take three order customer shipment warehouse invoice delivery Berlin Zürich Tuesday "
    "report quarterly revenue growth market product team release version update feature "
    "performance memory latency server database query index document cluster replica").split()
AUTHORS = [f"author{i:03d}" for i in range(300)]
TAGS = ["news", "tech", "finance", "sport", "travel", "food", "science", "culture", "music",
        "design", "health", "policy"]


def post_fields() -> dict[str, Any]:
    return {"__module__": __name__, "title": StringField(), "author": StringField(indexed=True),
            "views": IntField(indexed=True), "tags": ArrayField(StringField()),
            "body": StringField(), "comments": JSONField()}


def declare(size: int, label: str, compress: Any) -> type[Document]:
    meta = type("Meta", (), {"namespace": NAMESPACE, "collection": f"posts_{size}_{label}",
                             "compress": compress, "changes": False})
    return type(f"Post{size}{label}", (Document,), {**post_fields(), "Meta": meta})


class Writer:
    """Seeded text: sentences of Zipf-weighted words (a few names and numbers mixed in)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.weights = [1 / (rank + 1) for rank in range(len(VOCABULARY))]

    def sentence(self) -> str:
        rng = self.rng
        words = rng.choices(VOCABULARY, self.weights, k=rng.randint(6, 18))
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randint(2, 2026)))
        return " ".join(words).capitalize() + rng.choice(".....?!")

    def text(self, length: int) -> str:
        out: list[str] = []
        total = 0
        while total < length:
            out.append(self.sentence())
            total += len(out[-1]) + 1
        return " ".join(out)[:length]


def make_posts(n: int, size: int, seed: int) -> list[dict[str, Any]]:
    """N documents whose JSON is about ``size`` bytes each."""
    writer, rng = Writer(seed), random.Random(seed + 1)
    posts = []
    for _ in range(n):
        comments = [{"author": rng.choice(AUTHORS), "likes": rng.randint(0, 500),
                     "text": writer.text(rng.randint(40, 160))}
                    for _ in range(max(0, size // 900))]
        post = {"title": writer.text(rng.randint(20, 60)), "author": rng.choice(AUTHORS),
                "views": rng.randint(0, 100_000), "tags": rng.sample(TAGS, 3),
                "body": "", "comments": comments}
        room = size - len(encode_document(post))
        post["body"] = writer.text(max(0, room))
        posts.append(post)
    return posts


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20, method="inclusive")[-1]


def wipe(raw: redis.Redis) -> None:
    keys = list(raw.scan_iter(match=f"{{{NAMESPACE}:*", count=1000))
    for i in range(0, len(keys), 1000):
        raw.unlink(*keys[i:i + 1000])


def used_memory(raw: redis.Redis) -> int:
    gc.collect()
    return int(raw.info("memory")["used_memory"])


def bench_size(raw: redis.Redis, size: int, args: argparse.Namespace) -> None:
    posts = make_posts(args.n, size, seed=size)
    json_sizes = [len(encode_document(p)) for p in posts]
    models = {label: declare(size, label, compress) for label, compress in SETTINGS}
    # warm-up: the scripts loaded, client buffers grown, before any memory is measured
    warm = declare(size, "warmup", {"codec": "zstd", "min_size": 64})
    warm.objects.bulk_create_sync([warm(id=str(i), **p) for i, p in enumerate(posts[:400])],
                                  batch_size=200)
    wipe(raw)
    memory: dict[str, dict[str, float]] = {}
    for label, model in models.items():
        model.objects.count_sync()  # first use: the stored schema, before the measure
        before = used_memory(raw)
        model.objects.bulk_create_sync([model(id=str(i), **p) for i, p in enumerate(posts)],
                                       batch_size=200)
        after = used_memory(raw)
        keys = KeySpace(model._meta)
        sample = range(0, args.n, max(1, args.n // 200))
        pipe = raw.pipeline(transaction=False)
        for i in sample:
            pipe.strlen(keys.doc(0, str(i)))
            pipe.memory_usage(keys.doc(0, str(i)), samples=0)
        got = pipe.execute()
        memory[label] = {"stored": statistics.fmean(got[0::2]),
                         "key": statistics.fmean(got[1::2]),
                         "per_doc": (after - before) / args.n}
    # latency: the settings take turns, call by call, in rotating order
    rng = random.Random(size)
    gets: dict[str, list[float]] = {label: [] for label in models}
    saves: dict[str, list[float]] = {label: [] for label in models}
    labels = list(models)
    for it in range(args.warmup + args.iterations):
        id = str(rng.randrange(args.n))
        turn = labels[it % len(labels):] + labels[:it % len(labels)]
        for label in turn:
            model = models[label]
            t0 = time.perf_counter_ns()
            doc = model.objects.get_sync(id=id)
            t1 = time.perf_counter_ns()
            doc.views += 1
            doc.save_sync()
            t2 = time.perf_counter_ns()
            if it >= args.warmup:
                gets[label].append((t1 - t0) / 1e3)
                saves[label].append((t2 - t1) / 1e3)
    for model in models.values():  # every setting reads back the same documents
        assert model.objects.get_sync(id="7").body == posts[7]["body"]
    off = memory["off"]
    print(f"\n## {size} B documents (JSON: mean {statistics.fmean(json_sizes):.0f} B), "
          f"N = {args.n}, {args.iterations} gets and saves each\n")
    head = (f"| {'setting':<7} | {'stored B':>8} | {'ratio':>5} | {'doc key B':>9} | "
            f"{'ratio':>5} | {'mem/doc B':>9} | {'ratio':>5} | {'get µs med':>10} | "
            f"{'p95':>6} | {'ratio':>5} | {'save µs med':>11} | {'p95':>6} | {'ratio':>5} |")
    print(head)
    print("|" + "|".join("-" * (len(cell)) for cell in head.split("|")[1:-1]) + "|")
    off_get, off_save = statistics.median(gets["off"]), statistics.median(saves["off"])
    for label in models:
        m, g, s = memory[label], gets[label], saves[label]
        print(f"| {label:<7} | {m['stored']:>8.0f} | {m['stored'] / off['stored']:>5.2f} | "
              f"{m['key']:>9.0f} | {m['key'] / off['key']:>5.2f} | {m['per_doc']:>9.0f} | "
              f"{m['per_doc'] / off['per_doc']:>5.2f} | {statistics.median(g):>10.1f} | "
              f"{p95(g):>6.1f} | {statistics.median(g) / off_get:>5.2f} | "
              f"{statistics.median(s):>11.1f} | {p95(s):>6.1f} | "
              f"{statistics.median(s) / off_save:>5.2f} |")
    wipe(raw)


def bench_codecs(sizes: list[int]) -> None:
    print("\n## The codecs alone (Python, no server): µs per document, median of 2000\n")
    print("| size B | codec | stored/JSON | compress µs | decompress µs |")
    print("|-------:|-------|------------:|------------:|--------------:|")
    for size in sizes:
        docs = [encode_document(p) for p in make_posts(200, size, seed=size)]
        for codec in compression.Codec:
            packer = compression.Compression(codec, min_size=1)
            packed = [packer.encode(d) for d in docs]
            ratio = sum(map(len, packed)) / sum(map(len, docs))
            times: dict[str, list[float]] = {"c": [], "d": []}
            for i in range(2000):
                d, p = docs[i % len(docs)], packed[i % len(docs)]
                t0 = time.perf_counter_ns()
                packer.encode(d)
                t1 = time.perf_counter_ns()
                compression.decompress(p)
                t2 = time.perf_counter_ns()
                times["c"].append((t1 - t0) / 1e3)
                times["d"].append((t2 - t1) / 1e3)
            print(f"| {size:>6} | {codec:<5} | {ratio:>11.2f} | "
                  f"{statistics.median(times['c']):>11.1f} | "
                  f"{statistics.median(times['d']):>13.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=3000, help="documents per collection")
    parser.add_argument("--iterations", type=int, default=2000,
                        help="timed gets and saves per setting and size")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2000, 20_000],
                        help="bytes of JSON per document (default 200 2000 20000)")
    args = parser.parse_args()
    if args.n < 10 or args.iterations < 20 or min(args.sizes) < 100:
        parser.error("need --n >= 10, --iterations >= 20, --sizes >= 100")
    with redis_server("qbench-compress-") as url:
        raw = redis.Redis.from_url(url)
        info = raw.info("server")
        print(f"redis-server {info['redis_version']} (allocator "
              f"{raw.info('memory').get('mem_allocator', '?')}) | Python "
              f"{platform.python_version()} | redis-py {redis.__version__} | zstandard "
              f"{_version('zstandard')} | lz4 {_version('lz4')}")
        create_connection(backend="redis", url=url, name="bench", make_default=True)
        try:
            wipe(raw)
            for size in args.sizes:
                bench_size(raw, size, args)
        finally:
            wipe(raw)
            close_all()
            raw.close()
    bench_codecs(args.sizes)


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
