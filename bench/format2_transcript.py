"""Format-2 writes, two trees: the same operations' replies and stored bytes, compared.

Format 3's step 3 (bench/format3.md) must leave the format-2 path as it was: same replies,
same stored bytes. This runs one sequence of writes of format-2 documents (single and bulk
inserts, loaded saves of one and several fields, unique and array indexes, expiries set,
kept and removed, a stale save, a resent insert, loaded, stale and blind deletes, a soft
delete, a count, a transaction) with each tree in a subprocess
(``PYTHONPATH=<tree>/src``), on one private redis-server flushed between them, and prints
each step's outcome and the whole keyspace after it, normalised where a run cannot repeat
itself (versions are the server's time, write ids random, stream ids time): every
16-digit version as ``V``, a meta hash's ``r`` and an event's ``w`` by their lengths. The
two transcripts must be equal.

Usage: bench/format2_transcript.py --old <tree> [--new <tree>] --port P
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

WORKER = r'''
import json, re, sys
import redis
import quantumorm
from quantumorm import ArrayField, Document, IntField, StringField, create_connection
from quantumorm.backends.redis.keys import KeySpace

url = sys.argv[1]
VERSION = re.compile(rb"1\d{15}")


class Item(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    email = StringField(unique=True)
    note = StringField()

    class Meta:
        collection = "f2t_items"
        indexes = [("name", "age")]
        changes = True


def norm(value):
    if isinstance(value, bytes):
        return VERSION.sub(b"V", value).decode("latin-1")
    if isinstance(value, int) and value > 10**15:
        return "V"
    if isinstance(value, (list, tuple)):
        return [norm(v) for v in value]
    if isinstance(value, dict):
        return {norm(k): norm(v) for k, v in sorted(value.items())}
    return value


def keyspace(rc):
    out = {}
    for key in sorted(rc.scan_iter(count=1000)):
        kind = rc.type(key).decode()
        if kind == "string":
            value = rc.get(key)
        elif kind == "hash":
            value = {k: (b"len%d" % len(v) if k == b"r" else v)
                     for k, v in rc.hgetall(key).items()}
        elif kind == "zset":
            value = [[m, s if s < 10**12 else "T"] for m, s in
                     rc.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            value = [{k: (b"len%d" % len(v) if k == b"w" else v) for k, v in f.items()}
                     for _, f in rc.xrange(key)]
        else:
            value = kind
        out[key.decode("latin-1")] = norm(value)
    return out


rc = redis.Redis.from_url(url)
rc.flushall()
create_connection(backend="redis", url=url, name="default", make_default=True)
steps = []


def step(name, fn):
    try:
        got = fn()
        if isinstance(got, Document):
            got = [got.id, got.version]
        elif isinstance(got, list):
            got = [[d.id, d.version] if isinstance(d, Document) else d for d in got]
        outcome = norm(got)
    except Exception as exc:  # (the refusal's class and message, normalised)
        outcome = [type(exc).__name__, norm(str(exc).encode())]
    steps.append({"step": name, "outcome": outcome, "keys": keyspace(rc)})


def item(id, **kw):
    values = {"name": "ann", "age": 30, "tags": ["x", "y"], "email": f"{id}@e.x", "note": "n"}
    values.update(kw)
    return Item(id=id, **values)


step("insert a", lambda: item("a").save_sync())
step("insert b", lambda: item("b", name="bob", tags=[]).save_sync())
step("insert taken", lambda: item("a", email="z@e.x").save_sync())
step("bulk", lambda: Item.objects.bulk_create_sync([item(f"k{n}", age=n) for n in range(5)]))
step("bulk taken", lambda: Item.objects.bulk_create_sync([item("k1", email="q@e.x")]))
a = Item.objects.get_sync(id="a")
a.age = 31
step("save one field", lambda: a.save_sync())
a.tags, a.name = ["y", "z", "z"], "anne"
step("save several", lambda: a.save_sync())
stale = Item.objects.get_sync(id="b")
b = Item.objects.get_sync(id="b")
b.email = "a@e.x"
step("unique conflict", lambda: b.save_sync())
b.email, b.note = "b2@e.x", "m"
step("save b", lambda: b.save_sync())
stale.age = 1
step("stale save", lambda: stale.save_sync())
step("stale delete", lambda: stale.delete_sync())
a.note = "ttl"
step("expiry set", lambda: a.save_sync(ttl=1000))
a.age = 40
step("expiry kept", lambda: a.save_sync())
a.age = 41
step("expiry removed", lambda: a.save_sync(ttl=None))
step("count", lambda: Item.objects.filter(age__gte=2).count_sync())
step("update by query", lambda: Item.objects.filter(id="k2").update_sync(note="p"))
step("delete loaded", lambda: Item.objects.get_sync(id="k0").delete_sync())
step("delete blind", lambda: Item.objects.filter(id="k1").delete_sync())
step("delete blind missing", lambda: Item.objects.filter(id="nope").delete_sync())
step("soft delete", lambda: Item.objects.get_sync(id="k3").delete_sync(soft=True, ttl=100))
def tx():
    with quantumorm.get_connection().transaction_sync() as t:
        doc = Item.objects.get_sync(id="k4")
        doc.age = 99
        t.save(doc)
        t.save(item("t1", email="t1@e.x"))
step("transaction", tx)
step("patch indexed", lambda: Item.objects.filter(id="k2").update_sync(age=7))
step("patch tags", lambda: Item.objects.filter(id="k2").update_sync(tags=["q", "q", "r"]))
step("patch unique conflict", lambda: Item.objects.filter(id="k2").update_sync(email="b2@e.x"))
step("patch unique", lambda: Item.objects.filter(id="k2").update_sync(email="new@e.x"))
k2 = Item.objects.get_sync(id="k2")
step("touch", lambda: k2.touch_sync(100))
step("touch again", lambda: k2.touch_sync(200))
step("persist", lambda: k2.persist_sync())
step("persist again", lambda: k2.persist_sync())
k2.age = 8
step("save after persist", lambda: k2.save_sync())


class Folded(Document):
    """A listed index (case-folded): a format-2 document's touch and persist."""

    name = StringField(indexed=True)
    title = StringField()

    class Meta:
        collection = "f2t_folded"
        indexes = [{"fields": ["title"], "casefold": True}]


step("folded insert", lambda: Folded(id="f1", name="a", title="Hello").save_sync())
f1 = Folded.objects.get_sync(id="f1")
step("folded touch", lambda: f1.touch_sync(100))
step("folded patch", lambda: Folded.objects.filter(id="f1").update_sync(title="World"))
step("folded persist", lambda: f1.persist_sync())
step("folded delete", lambda: Folded.objects.filter(id="f1").delete_sync())

# transactions: checks, expiry set / kept / removed, conflicts, unique values moved between
# rows, and meta hashes without "r" (repair() writes them so) or missing
tx_conn = quantumorm.get_connection()
for n in range(6):
    item(f"x{n}", age=n).save_sync()
meta_of = {id: KeySpace(Item._meta).meta(0, id) for id in ("x0", "x5")}


def tx_check_ttl_delete():
    with tx_conn.transaction_sync() as t:
        t.get(Item, "x0")
        doc = t.get(Item, "x1")
        doc.age = 50
        t.save(doc, ttl=1000)
        t.delete(t.get(Item, "x2"))


def tx_keep():
    with tx_conn.transaction_sync() as t:
        doc = t.get(Item, "x1")
        doc.tags = ["k"]
        t.save(doc)


def tx_persist():
    with tx_conn.transaction_sync() as t:
        doc = t.get(Item, "x1")
        doc.note = "p"
        t.save(doc, ttl=None)


step("tx check, expiry, delete", tx_check_ttl_delete)
step("tx expiry kept", tx_keep)
step("tx expiry removed", tx_persist)
tx_stale = Item.objects.get_sync(id="x3")
fresh = Item.objects.get_sync(id="x3")
fresh.age = 77
fresh.save_sync()


def tx_stale_save():
    with tx_conn.transaction_sync() as t:
        tx_stale.age = 78
        t.save(tx_stale)


def tx_stale_delete():
    with tx_conn.transaction_sync() as t:
        t.delete(tx_stale)


def tx_unique():
    with tx_conn.transaction_sync() as t:
        doc = t.get(Item, "x4")
        doc.email = "x5@e.x"
        t.save(doc)


def tx_unique_swap():
    with tx_conn.transaction_sync() as t:
        four, five = t.get(Item, "x4"), t.get(Item, "x5")
        five.email, four.email = "free@e.x", "x5@e.x"
        t.save(five)
        t.save(four)


def tx_update_x0():
    with tx_conn.transaction_sync() as t:
        doc = t.get(Item, "x0")
        doc.age = 5
        t.save(doc)


def tx_delete_x0():
    with tx_conn.transaction_sync() as t:
        t.delete(t.get(Item, "x0"))


def tx_meta_missing():
    with tx_conn.transaction_sync() as t:
        doc = t.get(Item, "x4")
        doc.age = 9
        t.save(doc)
        other = Item.objects.get_sync(id="x5")
        other.age = 9
        t.save(other)


def tx_check_meta_missing():
    with tx_conn.transaction_sync() as t:
        t.get(Item, "x5")
        doc = t.get(Item, "x4")
        doc.age = 10
        t.save(doc)


step("tx stale save", tx_stale_save)
step("tx stale delete", tx_stale_delete)
step("tx unique conflict", tx_unique)
step("tx unique swap", tx_unique_swap)
rc.hdel(meta_of["x0"], "r")
step("tx update, meta without r", tx_update_x0)
rc.hdel(meta_of["x0"], "r")
step("tx delete, meta without r", tx_delete_x0)
rc.delete(meta_of["x5"])
step("tx update, meta missing", tx_meta_missing)
step("tx check, meta missing", tx_check_meta_missing)
json.dump(steps, sys.stdout)
'''


def transcript(tree: Path, url: str) -> list[dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    done = subprocess.run([sys.executable, "-c", WORKER, url], env=env, check=True,
                          capture_output=True, text=True)
    result: list[dict[str, object]] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, type=Path)
    parser.add_argument("--new", type=Path, default=HERE.parent)
    parser.add_argument("--port", required=True, type=int)
    args = parser.parse_args()
    exe = shutil.which("redis-server") or sys.exit("redis-server not on PATH")
    with tempfile.TemporaryDirectory(prefix="f2t-") as work:
        server = subprocess.Popen(
            [exe, "--port", str(args.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", work], stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            if server.poll() is not None:
                sys.exit(f"redis-server did not start on port {args.port}")
            url = f"redis://127.0.0.1:{args.port}/0"
            old, new = transcript(args.old, url), transcript(args.new, url)
        finally:
            server.terminate()
            server.wait()
    if old == new:
        print(f"equal: {len(old)} steps, replies and keyspaces")
        return
    a = json.dumps(old, indent=1, sort_keys=True).splitlines()
    b = json.dumps(new, indent=1, sort_keys=True).splitlines()
    print("\n".join(difflib.unified_diff(a, b, "old", "new", lineterm="")))
    sys.exit(1)


if __name__ == "__main__":
    main()
