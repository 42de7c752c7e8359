"""Two trees' ``filter(id=).update()`` (``patch.lua``) on the same corpus: the same replies,
the same stored bytes, the same events, the same refusals.

Each tree runs, in a process of its own, on its own database of one private redis-server
(started here on a loopback port and checked to be the one answering there), the same
corpus: documents bulk-inserted, then patches of one field (an indexed number, string,
boolean, an array, a field with no index, None), of several fields, of unchanged values,
of a missing document and of one whose document is gone but its meta hash left, a unique
value taken, with an expiry scheduled (the sweep), and patches of stored values damaged in
every way ``patch.lua`` tells apart (not JSON, not an object, a backslash, a NUL, a
duplicate or nested member, blanks, a compressed document, no version prefix, keys of
another type, a newer layout). After each step it records the outcome (the count or the
error's class and text) and the whole keyspace with its types and contents; versions,
write ids and layout stamps, which come from the server's clock and a random source, are
replaced by their order of first appearance (a format-3 document's header too: its version
and each write id of its W), stream entry ids and schedule times left out. The documents
are stored in format 3 (the damaged texts after their header; a document's meta hash of
the wrong-type steps replaced only where it has one), or in format 2 with ``--format2``.
The two traces must be equal.

Usage: bench/check_patch_trees.py --old <tree> [--new <tree>] --port P [--format2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKER = r'''
import json, re, sys, time
tree, url, out, format2 = sys.argv[1:5]
sys.path[:0] = [tree + "/src"]
import redis
from quantumorm import (ArrayField, BooleanField, Document, IntField, JSONField, StringField,
                        create_connection)
from quantumorm.backends.redis.keys import KeySpace
if format2 == "1":  # (--format2: documents stored as earlier releases stored them)
    from quantumorm.backends.redis import writes
    writes.NEW_FORMAT = 2

r = redis.Redis.from_url(url)
r.flushdb()
create_connection("redis", url, name="check", make_default=True)


class Person(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    active = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    note = StringField()
    extra = JSONField()

    class Meta:
        collection = "chk_people"


class Badge(Document):
    label = StringField(unique=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "chk_badges"
        changes = False


class Timed(Document):
    n = IntField(indexed=True)

    class Meta:
        collection = "chk_timed"
        ttl = 30


trace = []
keys = KeySpace(Person._meta)
ids = [str(i) for i in range(1, 41)]


seen = {}


def v(text):
    """A version or write id replaced by its order of first appearance."""
    return seen.setdefault(text, "<%d>" % len(seen))


def dump():
    out = {}
    for key in sorted(r.scan_iter(count=1000)):
        kind = r.type(key).decode()
        name = key.decode("latin-1")
        if kind == "string":
            value = r.get(key).decode("latin-1")
            if value.startswith("\0") and value.count("\0") >= 2:
                version, rest = value[1:].split("\0", 1)
                value = ["doc", v(version), rest]
            elif value.startswith("\x01") and value.count("\0") >= 2:
                version, w, rest = value[1:].split("\0", 2)
                value = ["doc3", v(version), [v(w[i:i + 16]) for i in range(0, len(w), 16)], rest]
        elif kind == "hash":
            value = {}
            for field, item in sorted(r.hgetall(key).items()):
                field, item = field.decode("latin-1"), item.decode("latin-1")
                if field in ("v", "clock", "layout"):
                    item = v(item)
                elif field == "r":
                    item = [[v(item[i:i + 16]), v(item[i + 16:i + 32])]
                            for i in range(0, len(item), 32)]
                value[field] = item
        elif kind == "zset":
            scored = r.zrange(key, 0, -1, withscores=True)
            value = [(m.decode("latin-1"), "<at>" if name.endswith("ttl") else s)
                     for m, s in scored]
        elif kind == "stream":
            value = [{k.decode(): v(x.decode()) if k in (b"v", b"w") else x.decode("latin-1")
                      for k, x in fields.items()} for _, fields in r.xrange(key)]
        elif kind == "set":
            value = sorted(m.decode("latin-1") for m in r.smembers(key))
        elif kind == "list":
            value = [m.decode("latin-1") for m in r.lrange(key, 0, -1)]
        else:
            value = kind
        ttl = r.pttl(key)
        out[name] = [kind, value, "ttl" if ttl > 0 else ttl]
    return out


def step(label, fn):
    try:
        got = ["ok", repr(fn())]
    except Exception as error:  # (the refusal: its class and text)
        got = ["error", type(error).__name__, str(error)]
    trace.append([label, got, dump()])


def up(model, id, **values):
    return lambda: model.objects.filter(id=id).update_sync(**values)


def raw(key, value):
    r.delete(key)
    if isinstance(value, bytes):
        r.set(key, value)
    else:
        value(key)


Person.objects.bulk_create_sync([
    Person(id=id, name="n%d" % (int(id) % 7), age=int(id), active=int(id) % 2 == 0,
           tags=["t%d" % (int(id) % 3), "u"], note="x", extra={"a": [1, {"age": 2}]})
    for id in ids])
Badge.objects.bulk_create_sync([Badge(id="b1", label="one", n=1),
                                Badge(id="b2", label="two", n=2)])
Timed.objects.bulk_create_sync([Timed(id="t1", n=1), Timed(id="t2", n=2)])
trace.append(["loaded", None, dump()])
step("age", up(Person, "1", age=50))
step("age again", up(Person, "1", age=50))
step("name", up(Person, "2", name="zed"))
step("active", up(Person, "3", active=True))
step("tags", up(Person, "4", tags=["a", "b,c"]))
step("note", up(Person, "5", note="y"))
step("note None", up(Person, "5", note=None))
step("name None", up(Person, "6", name=None))
step("several", up(Person, "7", age=1, name="q", note="n"))
step("several, one same", up(Person, "7", age=1, name="r"))
step("extra", up(Person, "8", extra={"z": 1}))
step("missing", up(Person, "999", age=3))
step("unique taken", up(Badge, "b2", label="one"))
step("unique free", up(Badge, "b2", label="three"))
step("unique same", up(Badge, "b1", label="one"))
step("ttl model", up(Timed, "t1", n=5))
Person.objects.get_sync(id="9").touch_sync(30)
step("after expiry set", up(Person, "9", age=77))
step("other after schedule", up(Person, "10", age=78))
doc = lambda id: keys.doc(0, id)
meta = lambda id: keys.meta(0, id)
def prefix(id):
    d = r.get(doc(id))
    if d[:1] == b"\x01":
        return d[:d.index(b"\0", d.index(b"\0", 1) + 1) + 1]
    return d[:d.index(b"\0", 1) + 1]
damaged = {
    "11": b"not json",
    "12": b"[1,2]",
    "13": b'{"age":1,"name":"a\\"b"}',
    "14": b'{"age":1,"name":"a\x00b"}',
    "15": b'{"age":1,"age":2}',
    "16": b'{"x":{"age":1}}',
    "17": b' \n{ "age" : 1 , "name":"n"}',
    "18": b'{"age":1,"name":"n"',
    "19": b'{"age":1,"name":"n"}x',
    "20": b'{"age":[1,{"y":"]"}],"name":"n"}',
    "21": b'{"name":"age","age":3}',
    "22": b'{"age":"3"}',
    "23": b'{"age":1e400}',
    "24": b'{"age":1,}',
    "25": b'{"age" 1}',
    "26": b"",
    "27": b"\xff\x00zz",
    "28": b'{"age":tru}',
    "29": b'{"age":01}',
    "30": b'{"age":{"age":1},"n":1}',
}
for id, payload in damaged.items():
    r.set(doc(id), prefix(id) + payload)
    step("damaged " + id, up(Person, id, age=5))
r.set(doc("31"), b'{"age":1}')
step("no version prefix", up(Person, "31", age=5))
r.set(doc("32"), b"\x00123")
step("prefix alone", up(Person, "32", age=5))
r.hset(meta("33"), "f:age", "x:bad")
step("damaged list", up(Person, "33", age=5))
r.hdel(meta("34"), "v")
step("meta without v", up(Person, "34", age=5))
r.delete(meta("35"))
step("meta gone", up(Person, "35", age=5))
r.delete(doc("36"))
step("doc gone", up(Person, "36", age=5))
for id, key in (("37", keys.index(0, "age")), ("38", keys.ids(0)), ("39", keys.changes(0)),
                ("40", meta("40"))):
    saved = r.dump(key)
    if saved is None:  # (a format-3 document's meta hash: none to replace)
        continue
    r.delete(key)
    r.set(key, "foreign")
    step("wrong type " + id, up(Person, id, age=6))
    r.delete(key)
    r.restore(key, 0, saved)
state = keys.state(0)
r.hset(state, "layout", "999999")
step("newer layout", up(Person, "1", age=8))
json.dump(trace, open(out, "w"))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True)
    parser.add_argument("--new", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--port", type=int, required=True, help="the private server's port")
    parser.add_argument("--format2", action="store_true",
                        help="store the documents in format 2 (writes.NEW_FORMAT = 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qorm-patch-check-") as work:
        server = subprocess.Popen(["redis-server", "--port", str(args.port), "--bind",
                                   "127.0.0.1", "--save", "", "--appendonly", "no", "--dir",
                                   work], stdout=subprocess.DEVNULL)
        try:
            import redis
            for _ in range(100):
                try:
                    info = redis.Redis(port=args.port).info("server")
                    break
                except redis.ConnectionError:
                    time.sleep(0.1)
            if int(info["process_id"]) != server.pid:
                raise SystemExit(f"port {args.port} is not this server's")
            traces = []
            for db, tree in ((1, args.old), (2, args.new)):
                out = f"{work}/trace{db}.json"
                subprocess.run([sys.executable, "-c", WORKER, tree,
                                f"redis://127.0.0.1:{args.port}/{db}", out,
                                "1" if args.format2 else "0"], check=True,
                               env={**os.environ, "PYTHONPATH": ""})
                traces.append(json.load(open(out)))
        finally:
            server.terminate()
            server.wait()
    old, new = traces
    bad = [(o[0], o[1], n[1]) for o, n in zip(old, new, strict=True) if o != n]
    for (label, was, now), o, n in zip(bad, [o for o, n in zip(old, new) if o != n],
                                       [n for o, n in zip(old, new) if o != n]):
        print(f"DIFFERS at {label}: {was} -> {now}")
        for key in sorted(set(o[2]) | set(n[2])):
            if o[2].get(key) != n[2].get(key):
                print(f"  {key!r}: {o[2].get(key)!r}\n    -> {n[2].get(key)!r}"[:2000])
    print(f"{len(old)} steps, {len(bad)} differing; outcomes: "
          + ", ".join(f"{s[0]}={s[1][0] if s[1] else '-'}" for s in new))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
