"""The upgrade to format 3, end to end, with an earlier release's code really running.

Format 3's step 6 (bench/format3.md, section 5) upgrades a collection at its first use by
a format-3 process: the schema is stored with format 3 and the next layout, format-2
documents stay as they are until written, and processes of format 2 are refused from then
on. This checks it against an earlier tree (``--old``, a checkout of an earlier commit)
and this one (``--new``), each in a subprocess (``PYTHONPATH=<tree>/src``), on a private
redis-server started on 127.0.0.1 (a free port, stopped by its pid at the end):

1. the old code writes four collections (inserts, ``bulk_create``, expiring documents by
   ``Meta.ttl`` and ``save(ttl=)``, a unique index, a compound index, a case-folded
   (listed) index over 3 partitions, an array index, null, negative and 2**64 ints,
   strings with escapes and non-ASCII, then updates, patches and deletes, and documents
   that expire during the check) and prints what it expects: every document's values;
2. an old process that has already used the collections (first use passed) is kept
   running, waiting;
3. the new code opens them: the schema upgraded (format 3, layout + 1, index states
   kept); every document reads back equal (by id and by a scan); queries (equality,
   range, order, null, count, compound, case-folded, array membership, prefix) answer
   exactly what the reference says; load-set-save, ``filter(id=).update``, loaded and
   blind deletes of format-2 documents (which stay format 2), unique values freed and
   held, taken ids refused (single and bulk); new inserts (single, bulk, expiring) are
   format 3 with only the meta hash format 3 keeps; writes of those; a transaction over
   both formats, touch and persist, a soft delete; expired documents of both formats
   swept, and their ids taken again before the sweep; the queries again; ``verify()``
   ok; ``repair()`` finds nothing; ``reindex()``, then everything again;
4. the old code again, each operation in a fresh process (reads, queries, writes,
   verify, repair, sweep): it must refuse every one with SchemaMismatchError and write
   nothing (the whole keyspace compared);
5. the old process running since before the upgrade: the same operations (a read by id
   consults no schema: it passes if it reads what is stored);
6. the old code's ``reindex()`` (which adopts its declaration over the stored one), then
   the new code once more: reads, queries, verify, and ``repair()`` if verify finds
   damage (``--no-old-reindex`` skips this step);
7. the raw keyspace: meta hashes and documents by format byte, after the old writes and
   after the new code's.

Prints a summary; exits 1 on any mismatch.

Usage: bench/upgrade_check.py --old <tree> [--new <tree>] [--port P] [--no-old-reindex]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: what every process (old or new) shares: the models, the reference and the raw keyspace
RAW = r'''
import json, re, sys, time
import redis

KEY = re.compile(rb"^\{(?:[^}]*:)?([A-Za-z0-9_.-]+):p(\d+)\}:([a-z]+)(?::(.*))?$", re.S)


def raw_keyspace(rc):
    """Per collection: each document's format (by its first byte), each meta hash's fields."""
    out = {}
    for key in rc.scan_iter(count=1000):
        m = KEY.match(key)
        if not m:
            continue
        coll, _, kind, id = m.groups()
        c = out.setdefault(coll.decode(), {"docs": {}, "metas": {}})
        if kind == b"d":
            first = rc.getrange(key, 0, 0)
            c["docs"][id.decode()] = {b"\x00": 2, b"\x01": 3}.get(first, 1)
        elif kind == b"m":
            c["metas"][id.decode()] = sorted(f.decode() for f in rc.hkeys(key))
    return out


def digest(rc):
    """Every key's type, value (DUMP) and whether it expires: what "nothing written"
    compares."""
    out = {}
    for key in sorted(rc.scan_iter(count=1000)):
        out[key.decode("latin-1")] = [rc.type(key).decode(),
                                      (rc.dump(key) or b"").hex(), rc.pttl(key) > 0]
    return out
'''

COMMON = RAW + r'''
import quantumorm
from quantumorm import ArrayField, Document, IntField, StringField, create_connection


class Person(Document):
    """A unique index, a compound one, an int and a str index, an array index."""

    name = StringField(indexed=True)
    age = IntField(indexed=True)
    city = StringField(indexed=True)
    email = StringField(unique=True)
    tags = ArrayField(StringField(), indexed=True)
    note = StringField()

    class Meta:
        collection = "upg_people"
        indexes = [("city", "age")]


class Folded(Document):
    """A case-folded index: listed (its entries stay in the meta hash in format 3)."""

    name = StringField()
    rank = IntField(indexed=True)

    class Meta:
        collection = "upg_folded"
        partitions = 3
        indexes = [{"fields": ["name"], "casefold": True}]


class Session(Document):
    """Every document expires (Meta.ttl): a sweep record in format 3."""

    user = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "upg_sessions"
        ttl = 3600


class Blip(Document):
    """Documents that expire during the check (save(ttl=)): the sweep of what format-2 and
    format-3 documents leave (out of the reference: they are gone by its end)."""

    label = StringField(indexed=True)
    k = IntField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)

    class Meta:
        collection = "upg_blips"


MODELS = {"Person": Person, "Folded": Folded, "Session": Session}
#: seconds the old code's blips live
BLIP_TTL = 8


def outcome(fn):
    """What an operation did: ["ok", value] or [exception class, message]."""
    try:
        got = fn()
        if isinstance(got, Document):
            got = got.to_dict(json=True)
        elif isinstance(got, list):
            got = [d.to_dict(json=True) if isinstance(d, Document) else d for d in got]
        return ["ok", got]
    except Exception as exc:
        return [type(exc).__name__, str(exc)]


# -- the reference: queries as Python answers them on the expected values --------------

def _lt(a, b):
    return a is not None and b is not None and a < b


QUERIES = [
    # (model, name, queryset maker, predicate on a document's values, ordering key or None)
    ("Person", "name = ann", lambda: Person.objects.filter(name="ann"),
     lambda d: d["name"] == "ann", None),
    ("Person", "city = paris", lambda: Person.objects.filter(city="paris"),
     lambda d: d["city"] == "paris", None),
    ("Person", "age >= 30", lambda: Person.objects.filter(age__gte=30),
     lambda d: d["age"] is not None and d["age"] >= 30, None),
    ("Person", "-10 <= age < 40 order by age, limit 5",
     lambda: Person.objects.filter(age__gte=-10, age__lt=40).order_by("age").limit(5),
     lambda d: d["age"] is not None and -10 <= d["age"] < 40, ("age", 5)),
    ("Person", "age < 50 order by -age",
     lambda: Person.objects.filter(age__lt=50).order_by("-age"),
     lambda d: d["age"] is not None and d["age"] < 50, ("-age", None)),
    ("Person", "age is null", lambda: Person.objects.filter(age=None),
     lambda d: d["age"] is None, None),
    ("Person", "city = paris & age > 20 (compound)",
     lambda: Person.objects.filter(city="paris", age__gt=20),
     lambda d: d["city"] == "paris" and d["age"] is not None and d["age"] > 20, None),
    ("Person", "'x' in tags", lambda: Person.objects.filter(tags__contains="x"),
     lambda d: "x" in (d["tags"] or []), None),
    ("Person", "'ü\"q' in tags", lambda: Person.objects.filter(tags__contains='ü"q'),
     lambda d: 'ü"q' in (d["tags"] or []), None),
    ("Person", "email = p3@e.x (unique)", lambda: Person.objects.filter(email="p3@e.x"),
     lambda d: d["email"] == "p3@e.x", None),
    ("Person", "name startswith 'b'", lambda: Person.objects.filter(name__startswith="b"),
     lambda d: (d["name"] or "").startswith("b"), None),
    ("Folded", "name iexact STRASSE (case-folded)",
     lambda: Folded.objects.filter(name__iexact="STRASSE"),
     lambda d: d["name"] is not None and d["name"].casefold() == "strasse", None),
    ("Folded", "name istartswith 'AN' (case-folded)",
     lambda: Folded.objects.filter(name__istartswith="AN"),
     lambda d: d["name"] is not None and d["name"].casefold().startswith("an"), None),
    ("Folded", "rank > 2", lambda: Folded.objects.filter(rank__gt=2),
     lambda d: d["rank"] is not None and d["rank"] > 2, None),
    ("Session", "user = u1", lambda: Session.objects.filter(user="u1"),
     lambda d: d["user"] == "u1", None),
    ("Session", "n >= 2 order by n", lambda: Session.objects.filter(n__gte=2).order_by("n"),
     lambda d: d["n"] is not None and d["n"] >= 2, ("n", None)),
]


def expected(ref, model, pred, order):
    docs = [d for d in ref[model].values() if pred(d)]
    if order is None:
        return sorted(d["id"] for d in docs)
    key, limit = order
    field = key.lstrip("-")
    docs.sort(key=lambda d: (d[field], d["id"]), reverse=key.startswith("-"))
    ids = [d["id"] for d in docs]
    return ids[:limit] if limit else ids
'''

#: the old code writes the collections; prints the reference (and its own reads of it)
OLD_WRITE = COMMON + r'''
url = sys.argv[2]
rc = redis.Redis.from_url(url)
create_connection(backend="redis", url=url, name="default", make_default=True)
ref = {"Person": {}, "Folded": {}, "Session": {}}


def keep(doc):
    ref[type(doc).__name__][doc.id] = doc.to_dict(json=True)


def person(id, **kw):
    values = {"name": "ann", "age": 30, "city": "paris", "email": f"{id}@e.x",
              "tags": ["x", "y"], "note": "n"}
    values.update(kw)
    return Person(id=id, **values)


singles = [
    person("p1"),
    person("p2", name="bob", age=-5, city="rome", tags=[]),
    person("p3", name="béa", age=2**64, city="paris", tags=['ü"q', "x", "x"]),
    person("p4", name='q"uo\\te', age=None, city="oslo", tags=["z"]),
    person("p5", name="ann", age=0, city="rome", tags=["x"], note="tab\there"),
]
for doc in singles:
    doc.save_sync()
bulk = [person(f"b{n}", name="bulk", age=10 * n - 20, city=["paris", "rome"][n % 2],
               tags=[f"t{n % 3}", "x"] if n % 2 else [], email=f"b{n}@e.x")
        for n in range(8)]
Person.objects.bulk_create_sync(bulk)
# expiring documents of a model without Meta.ttl: save(ttl=)
for n in range(3):
    person(f"e{n}", name="exp", age=100 + n, city="lima", tags=["x", f"e{n}"]).save_sync(
        ttl=3600)
folded = [Folded(id="f1", name="Straße", rank=1), Folded(id="f2", name="STRASSE", rank=2),
          Folded(id="f3", name="strasse", rank=3), Folded(id="f4", name="Anna", rank=4),
          Folded(id="f5", name="ANDRÉ", rank=5), Folded(id="f6", name=None, rank=6)]
folded[0].save_sync()
Folded.objects.bulk_create_sync(folded[1:])
Session(id="s1", user="u1", n=1).save_sync()
Session.objects.bulk_create_sync([Session(id=f"s{n}", user=f"u{n % 2}", n=n)
                                  for n in range(2, 7)])

# updates and deletes, by the old code
p1 = Person.objects.get_sync(id="p1")
p1.age, p1.tags, p1.note = 31, ["x", "w"], "saved"
p1.save_sync()
Person.objects.filter(id="b3").update_sync(age=33, tags=["x", "u"])
Person.objects.get_sync(id="b5").delete_sync()
Person.objects.filter(id="b6").delete_sync()
f4 = Folded.objects.get_sync(id="f4")
f4.name = "ANNA-lise"
f4.save_sync()
Folded.objects.filter(id="f6").delete_sync()
Session.objects.filter(id="s6").delete_sync()
s2 = Session.objects.get_sync(id="s2")
s2.n = 20
s2.save_sync()
e0 = Person.objects.get_sync(id="e0")
e0.age = 150
e0.save_sync()

# blips, expiring during the check
for k in range(3):
    Blip(id=f"b{k}", label=f"l{k % 2}", k=k, tags=["x", f"t{k}"]).save_sync(ttl=BLIP_TTL)
blips_until = time.time() + BLIP_TTL

# the reference: what the old code reads back (checked against what was written)
for model in (Person, Folded, Session):
    for doc in model.objects.all_sync():
        keep(doc)
want_ids = {
    "Person": {"p1", "p2", "p3", "p4", "p5", "b0", "b1", "b2", "b3", "b4", "b7", "e0", "e1",
               "e2"},
    "Folded": {"f1", "f2", "f3", "f4", "f5"},
    "Session": {"s1", "s2", "s3", "s4", "s5"},
}
problems = [f"{m}: ids {sorted(ref[m])} != {sorted(ids)}" for m, ids in want_ids.items()
            if set(ref[m]) != ids]
if ref["Person"]["p1"]["age"] != 31 or ref["Person"]["b3"]["tags"] != ["x", "u"] \
        or ref["Folded"]["f4"]["name"] != "ANNA-lise" or ref["Session"]["s2"]["n"] != 20:
    problems.append("the old code's own updates do not read back")
old_queries = {}
for model, name, qs, pred, order in QUERIES:
    got = [d.id for d in qs().all_sync()]
    want = expected(ref, model, pred, order)
    old_queries[name] = got if order else sorted(got)
    if old_queries[name] != want:
        problems.append(f"old code, {name}: {old_queries[name]} != {want}")
json.dump({"ref": ref, "problems": problems, "blips_until": blips_until}, sys.stdout)
'''

#: the new code opens the collections, reads, queries, writes, verifies
NEW_HEAD = COMMON + r'''

url, ref_path = sys.argv[2], sys.argv[3]
rc = redis.Redis.from_url(url)
written = json.load(open(ref_path))
ref, blips_until = written["ref"], written["blips_until"]
create_connection(backend="redis", url=url, name="default", make_default=True)
checks = []  # [name, ok, detail]


def check(name, got, want):
    checks.append([name, got == want, None if got == want else {"got": got, "want": want}])


def raw():
    return raw_keyspace(rc)


def schema_of(coll):
    for key in rc.scan_iter(match=f"*{coll}}}:schema"):
        h = rc.hgetall(key)
        return {"format": int(h[b"format"]), "layout": int(h[b"layout"]),
                "states": sorted({n: i["state"] for n, i in
                                  json.loads(h[b"indexes"]).items()}.items())}
    return None


COLL = {"Person": "upg_people", "Folded": "upg_folded", "Session": "upg_sessions"}
before = {m: schema_of(c) for m, c in COLL.items()}


def run_queries(label):
    for model, name, qs, pred, order in QUERIES:
        q = qs()
        got = [d.id for d in q.all_sync()]
        want = expected(ref, model, pred, order)
        check(f"{label}: {name}", got if order else sorted(got), want)
        check(f"{label}: count of {name}", qs().count_sync() if order is None else len(want),
              len(want))


def read_all(label):
    for model, docs in ref.items():
        cls = MODELS[model]
        got = {d.id: d.to_dict(json=True) for d in cls.objects.all_sync()}
        check(f"{label}: {model} scan reads back every document", got, docs)
        by_id = {id: outcome(lambda: cls.objects.get_sync(id=id)) for id in docs}
        check(f"{label}: {model} get by id", by_id, {id: ["ok", d] for id, d in docs.items()})


'''

NEW = NEW_HEAD + r'''
# -- first use: the upgrade -------------------------------------------------------------
read_all("opened")
after = {m: schema_of(c) for m, c in COLL.items()}
for m in COLL:
    b, a = before[m], after[m]
    check(f"{m}: schema format 2 -> 3, layout + 1, index states kept",
          [a["format"], a["layout"], a["states"]], [3, b["layout"] + 1, b["states"]])
    check(f"{m}: schema before was format 2", b["format"], 2)
run_queries("opened")


def fmt(coll, id):
    return raw()[coll]["docs"].get(id)


def meta(coll, id):
    return raw()[coll]["metas"].get(id)


# -- writes of format-2 documents ---------------------------------------------------------
b1 = Blip.objects.get_sync(id="b1")  # (the blips expire later: BLIP_TTL)
b1.k, b1.tags = 11, ["y"]
b1.save_sync()
Blip.objects.filter(id="b2").update_sync(label="l9", tags=["x", "z"])
check("expiring format-2 documents written by the new code keep their expiry",
      [Blip.objects.get_sync(id=id).ttl_sync() is not None for id in ("b1", "b2")],
      [True, True])
p = Person.objects.get_sync(id="p1")
check("p1 is format 2 before its save", fmt("upg_people", "p1"), 2)
p.age, p.city, p.tags, p.name, p.email = 45, "rome", ["x", "v", "v"], "anne", "p1new@e.x"
p.save_sync()
ref["Person"]["p1"] = Person.objects.get_sync(id="p1").to_dict(json=True)
check("load-set-save of a format-2 document (every index changed)",
      [ref["Person"]["p1"][k] for k in ("age", "city", "tags", "name", "email")],
      [45, "rome", ["x", "v", "v"], "anne", "p1new@e.x"])
n = Person.objects.filter(id="p2").update_sync(age=41, tags=["x", "q"], name="bob2")
check("filter(id=).update of a format-2 document: 1 updated", n, 1)
ref["Person"]["p2"].update(age=41, tags=["x", "q"], name="bob2")
n = Person.objects.filter(id="p3").update_sync(note="patched only")
ref["Person"]["p3"]["note"] = "patched only"
n = Person.objects.filter(id="p4").update_sync(age=7)
ref["Person"]["p4"]["age"] = 7
Person.objects.get_sync(id="p5").delete_sync()
del ref["Person"]["p5"]
check("filter(id=).delete of a format-2 document", Person.objects.filter(id="b0").delete_sync(),
      1)
del ref["Person"]["b0"]
e1 = Person.objects.get_sync(id="e1")
e1.age = 111
e1.save_sync()
ref["Person"]["e1"]["age"] = 111
Person.objects.filter(id="e2").update_sync(city="quito")
ref["Person"]["e2"]["city"] = "quito"
f1 = Folded.objects.get_sync(id="f1")
f1.name = "Anneliese"
f1.save_sync()
ref["Folded"]["f1"]["name"] = "Anneliese"
Folded.objects.filter(id="f2").update_sync(name="strasse")
ref["Folded"]["f2"]["name"] = "strasse"
Folded.objects.filter(id="f3").delete_sync()
del ref["Folded"]["f3"]
s3 = Session.objects.get_sync(id="s3")
s3.n = 30
s3.save_sync()
ref["Session"]["s3"]["n"] = 30
Session.objects.filter(id="s4").update_sync(user="u1")
ref["Session"]["s4"]["user"] = "u1"
Session.objects.get_sync(id="s5").delete_sync()
del ref["Session"]["s5"]
# unique values: p1's old one freed (taken by a new document), p3's still held
check("a unique value a format-2 document gave up is free",
      outcome(lambda: Person(id="n1", name="new", age=50, city="oslo", email="p1@e.x",
                             tags=["x"]).save_sync())[0], "ok")
ref["Person"]["n1"] = Person.objects.get_sync(id="n1").to_dict(json=True)
check("a unique value a format-2 document holds is refused",
      outcome(lambda: Person(id="n9", email="p3@e.x").save_sync())[0], "UniqueViolation")
try:  # (a queryset's update reports each document's refusal in a BulkWriteError)
    Person.objects.filter(id="p2").update_sync(email="p3@e.x")
    refused = "nothing"
except Exception as exc:
    refused = [type(e).__name__ for _, e in getattr(exc, "errors", [(0, exc)])]
check("a unique value a format-2 document holds is refused (patch)", refused,
      ["UniqueViolation"])
check("an id a format-2 document holds is refused",
      outcome(lambda: Person(id="p2", email="zz@e.x").save_sync())[0], "DuplicateIdError")
try:
    Person.objects.bulk_create_sync([Person(id="p2", email="zz2@e.x"),
                                      Person(id="n10", name="bulk", age=-70, email="n10@e.x")])
    refused = "nothing"
except Exception as exc:
    refused = [[n, type(e).__name__] for n, e in getattr(exc, "errors", [(-1, exc)])]
check("bulk_create: an id a format-2 document holds refused, the other written",
      [refused, fmt("upg_people", "n10")], [[[0, "DuplicateIdError"]], 3])
ref["Person"]["n10"] = Person.objects.get_sync(id="n10").to_dict(json=True)
written2 = {(c, id): f for c, ids in raw().items() for id, f in ids["docs"].items()}
ref_formats = {id: written2.get(("upg_people", id)) for id in ("p1", "p2", "p3", "p4")}

# -- new inserts: format 3 ------------------------------------------------------------------
Person.objects.bulk_create_sync([
    Person(id=f"n{k}", name="new", age=60 + k, city="paris", email=f"n{k}@e.x",
           tags=["x", f"n{k}"]) for k in range(2, 6)])
Person(id="n6", name="newexp", age=66, city="lima", email="n6@e.x", tags=[]).save_sync(
    ttl=3600)
Folded(id="f7", name="ÄNNCHEN", rank=7).save_sync()
Folded.objects.bulk_create_sync([Folded(id="f8", name="Strasse", rank=8)])
Folded(id="f9", name="Anja", rank=9).save_sync(ttl=3600)
Session(id="s7", user="u1", n=7).save_sync()
Session.objects.bulk_create_sync([Session(id="s8", user="u0", n=8)])
for model, ids in (("Person", ["n2", "n3", "n4", "n5", "n6"]), ("Folded", ["f7", "f8", "f9"]),
                   ("Session", ["s7", "s8"])):
    for id in ids:
        ref[model][id] = MODELS[model].objects.get_sync(id=id).to_dict(json=True)
ks = raw()
new_ids = {"upg_people": ["n1", "n2", "n3", "n4", "n5", "n6"], "upg_folded": ["f7", "f8", "f9"],
           "upg_sessions": ["s7", "s8"]}
for coll, ids in new_ids.items():
    check(f"{coll}: new inserts are format 3", {id: ks[coll]["docs"][id] for id in ids},
          {id: 3 for id in ids})
check("upg_people: no meta hash for new non-expiring documents",
      {id: ks["upg_people"]["metas"].get(id) for id in new_ids["upg_people"][:5]},
      {id: None for id in new_ids["upg_people"][:5]})
person_fields = ["f:age", "f:city", "f:email", "f:name", "f:tags", "v", "x:city__age"]
check("upg_people: save(ttl=) insert keeps a sweep record (v + every index, no r)",
      ks["upg_people"]["metas"].get("n6"), person_fields)
check("upg_folded: new documents keep only the listed index's field (an expiring one: a "
      "sweep record)", {id: ks["upg_folded"]["metas"].get(id) for id in new_ids["upg_folded"]},
      {"f7": ["f:name__casefold"], "f8": ["f:name__casefold"],
       "f9": ["f:name__casefold", "f:rank", "v"]})
check("upg_sessions: new documents keep a sweep record (v + every index, no r)",
      {id: ks["upg_sessions"]["metas"].get(id) for id in new_ids["upg_sessions"]},
      {id: ["f:n", "f:user", "v"] for id in new_ids["upg_sessions"]})

# -- writes of format-3 documents ------------------------------------------------------------
n2 = Person.objects.get_sync(id="n2")
n2.age, n2.tags = 12, ["y"]
n2.save_sync()
ref["Person"]["n2"].update(age=12, tags=["y"])
Person.objects.filter(id="n3").update_sync(city="rome", age=-3)
ref["Person"]["n3"].update(city="rome", age=-3)
Person.objects.get_sync(id="n4").delete_sync()
del ref["Person"]["n4"]
Person.objects.filter(id="n5").delete_sync()
del ref["Person"]["n5"]
Folded.objects.filter(id="f7").update_sync(name="straße")
ref["Folded"]["f7"]["name"] = "straße"
ks = raw()
check("format-3 documents stay format 3 when written",
      [ks["upg_people"]["docs"].get(i) for i in ("n2", "n3")] + [ks["upg_folded"]["docs"]["f7"]],
      [3, 3, 3])

# -- a transaction over both formats, touch and persist, a soft delete ----------------------
with quantumorm.get_connection().transaction_sync() as t:
    a, b = t.get(Person, "p3"), t.get(Person, "n2")
    a.age, a.tags = 77, ["x", "tx"]
    b.age, b.city = 78, "oslo"
    t.save(a)
    t.save(b)
    t.delete(t.get(Person, "b7"))
ref["Person"]["p3"].update(age=77, tags=["x", "tx"])
ref["Person"]["n2"].update(age=78, city="oslo")
del ref["Person"]["b7"]
ks = raw()
check("a transaction keeps each document's format",
      [ks["upg_people"]["docs"].get(id) for id in ("p3", "n2", "b7")], [2, 3, None])
for id in ("p2", "n3"):
    doc = Person.objects.get_sync(id=id)
    touched = doc.touch_sync(3600)
    swept = meta("upg_people", id)
    persisted = doc.persist_sync()
    check(f"touch and persist of {id} (format {fmt('upg_people', id)})",
          [touched, swept, persisted, meta("upg_people", id), doc.ttl_sync()],
          [True, sorted(person_fields + (["r"] if id == "p2" else [])), True,
           sorted(person_fields + ["r"]) if id == "p2" else None, None])
doc = Person.objects.get_sync(id="b1")
doc.delete_sync(soft=True, ttl=3600)
del ref["Person"]["b1"]
check("a soft delete of a format-2 document",
      [outcome(lambda: Person.objects.get_sync(id="b1"))[0], meta("upg_people", "b1")],
      ["DoesNotExist", None])

# -- expiries: kept by writes, and the sweep of both formats ----------------------------------
lives = {m: {id: cls.objects.get_sync(id=id).ttl_sync() is not None for id in ref[m]}
         for m, cls in MODELS.items()}
check("expiries kept (e*, n6, every Session), none gained",
      sorted(f"{m}:{id}" for m in lives for id, on in lives[m].items() if on),
      sorted([f"Person:{id}" for id in ("e0", "e1", "e2", "n6") if id in ref["Person"]]
             + ["Folded:f9"] + [f"Session:{id}" for id in ref["Session"]]))
Blip(id="b7", label="l1", k=7, tags=["x"]).save_sync(ttl=1)
Blip(id="b8", label="l0", k=8, tags=[]).save_sync(ttl=1)
ks = raw()
check("blips: two format-2 (kept so by their writes), two format-3 with a sweep record",
      [ks["upg_blips"]["docs"], sorted(ks["upg_blips"]["metas"].items())],
      [{"b0": 2, "b1": 2, "b2": 2, "b7": 3, "b8": 3},
       [(id, ["f:k", "f:label", "f:tags", "r", "v"]) for id in ("b0", "b1", "b2")]
       + [(id, ["f:k", "f:label", "f:tags", "v"]) for id in ("b7", "b8")]])
time.sleep(max(blips_until - time.time(), 1.0) + 0.3)
check("expired blips are not read", [Blip.objects.count_sync(),
                                     outcome(lambda: Blip.objects.get_sync(id="b7"))[0],
                                     outcome(lambda: Blip.objects.get_sync(id="b1"))[0]],
      [0, "DoesNotExist", "DoesNotExist"])
blip_report = Blip.objects.verify_sync()
check("verify() of expired, unswept blips: ok", [blip_report.ok, blip_report.problems],
      [True, {}])
ks = raw()
check("expired blips: their meta hashes left for the sweep",
      sorted(ks["upg_blips"]["metas"]), ["b0", "b1", "b2", "b7", "b8"])
# ids of expired documents not swept yet, taken again by format-3 inserts (the leftover
# purged by the insert): b0 and b1 format 2, b7 format 3; single and bulk, with and without
# an expiry
Blip(id="b0", label="again", k=100, tags=["x", "a"]).save_sync()
Blip.objects.bulk_create_sync([Blip(id="b1", label="again", k=101, tags=["b"])])
Blip(id="b7", label="again", k=107, tags=["x"]).save_sync(ttl=3600)
ks = raw()
check("ids of expired documents taken again: format 3, the leftover meta purged",
      [{id: ks["upg_blips"]["docs"].get(id) for id in ("b0", "b1", "b7")},
       {id: ks["upg_blips"]["metas"].get(id) for id in ("b0", "b1", "b7")}],
      [{"b0": 3, "b1": 3, "b7": 3},
       {"b0": None, "b1": None, "b7": ["f:k", "f:label", "f:tags", "v"]}])
Blip.objects.sweep_sync()
blips = {"b0": {"id": "b0", "label": "again", "k": 100, "tags": ["x", "a"]},
         "b1": {"id": "b1", "label": "again", "k": 101, "tags": ["b"]},
         "b7": {"id": "b7", "label": "again", "k": 107, "tags": ["x"]}}
check("blips after the sweep: exactly the three inserted again",
      {d.id: d.to_dict(json=True) for d in Blip.objects.all_sync()}, blips)
check("blips: queries after the sweep",
      [sorted(d.id for d in Blip.objects.filter(tags__contains="x").all_sync()),
       sorted(d.id for d in Blip.objects.filter(k__gte=0).all_sync()),
       Blip.objects.filter(label="l1").count_sync(), Blip.objects.count_sync()],
      [["b0", "b7"], ["b0", "b1", "b7"], 0, 3])
left = sorted(k.decode() for k in rc.scan_iter(match="*upg_blips*")
              if rc.type(k) in (b"string", b"hash") and not k.endswith((b":state", b":schema")))
check("after the sweep only the three documents and b7's sweep record are left", left,
      sorted(k.decode() for k in rc.scan_iter(match="*upg_blips*")
             if k.endswith((b":d:b0", b":d:b1", b":d:b7", b":m:b7"))))
entries = sum(rc.zcard(k) for k in rc.scan_iter(match="*upg_blips*:i:*"))
check("blip index entries: exactly the three documents' (label, k, distinct tags)",
      entries, 3 + 3 + 4)
blip_report = Blip.objects.verify_sync()
check("verify() after the sweep: ok", [blip_report.ok, blip_report.problems], [True, {}])

# -- after every write: reads, queries, verify -------------------------------------------------
read_all("after writes")
run_queries("after writes")
verify = {}
for model, cls in MODELS.items():
    report = cls.objects.verify_sync()
    verify[model] = {"ok": report.ok, "problems": report.problems,
                     "samples": report.samples, "documents": report.documents}
    check(f"{model}: verify() ok", [report.ok, report.problems], [True, {}])
# -- the tools: repair() finds nothing to do, reindex() rebuilds, and the same holds after --
for model, cls in MODELS.items():
    report = cls.objects.repair_sync()
    check(f"{model}: repair() of a clean upgraded collection: nothing found",
          [report.before.problems, report.fixed, report.after.ok], [{}, {}, True])
before_reindex = raw()
reindexed = {}
for model, cls in MODELS.items():
    report = cls.objects.reindex_sync()
    reindexed[model] = [report.ready, report.documents]
    check(f"{model}: reindex() ready", report.ready, True)
after_reindex = raw()
read_all("after reindex")
run_queries("after reindex")
for model, cls in MODELS.items():
    report = cls.objects.verify_sync()
    check(f"{model}: verify() ok after reindex", [report.ok, report.problems], [True, {}])
json.dump({"checks": checks, "ref": ref, "reindexed": reindexed,
           "reindex_formats": [before_reindex, after_reindex], "verify": verify, "schemas": [before, after],
           "written_formats": ref_formats},
          sys.stdout)
'''

#: the new code once more (after the old code's reindex()): the schema, every document,
#: the queries, verify()
NEW_AGAIN = NEW_HEAD + r'''
read_all("again")
run_queries("again")
after = {m: schema_of(c) for m, c in COLL.items()}
verify = {}
for model, cls in MODELS.items():
    report = cls.objects.verify_sync()
    verify[model] = {"ok": report.ok, "problems": report.problems,
                     "samples": report.samples, "documents": report.documents}
    check(f"{model}: verify() ok", [report.ok, report.problems], [True, {}])
repaired = {}
if not all(v["ok"] for v in verify.values()):  # (what the old code left: can repair() mend it?)
    for model, cls in MODELS.items():
        report = cls.objects.repair_sync()
        repaired[model] = {"fixed": report.fixed, "after ok": report.after.ok}
    mended = len(checks)
    read_all("after repair()")
    run_queries("after repair()")
    repaired["checks passed"] = [sum(1 for c in checks[mended:] if c[1]), len(checks) - mended]
json.dump({"checks": checks, "schemas": [before, after], "verify": verify,
           "repaired": repaired, "formats": raw()}, sys.stdout)
'''

#: one operation of the old code, after the upgrade (a fresh process, or one still
#: running: "running" does a first use, says "ready", then runs every operation on a line)
OLD_AGAIN = COMMON + r'''
url, ops = sys.argv[2], sys.argv[3]
create_connection(backend="redis", url=url, name="default", make_default=True)


def p1():
    doc = Person.objects.get_sync(id="p2")
    doc.age = 99
    return doc.save_sync()


OPS = {
    "reindex()": lambda: str(Person.objects.reindex_sync()),
    "count": lambda: Person.objects.filter(age__gte=0).count_sync(),
    "query": lambda: [d.id for d in Person.objects.filter(city="paris").all_sync()],
    "get format-2 doc": lambda: Person.objects.get_sync(id="b3"),
    "get format-3 doc": lambda: Person.objects.get_sync(id="n2"),
    "insert": lambda: Person(id="old1", name="old", email="old1@e.x").save_sync(),
    "bulk_create": lambda: Person.objects.bulk_create_sync([Person(id="old2", email="o2@e.x")]),
    "load-set-save": p1,
    "filter(id=).update": lambda: Person.objects.filter(id="b2").update_sync(age=98),
    "filter(id=).delete": lambda: Person.objects.filter(id="b4").delete_sync(),
    "Folded insert": lambda: Folded(id="old3", name="X").save_sync(),
    "Session query": lambda: Session.objects.filter(user="u1").count_sync(),
    "verify()": lambda: str(Person.objects.verify_sync()),
    "repair()": lambda: str(Person.objects.repair_sync()),
    "sweep()": lambda: Session.objects.sweep_sync(),
    "Folded verify()": lambda: str(Folded.objects.verify_sync()),
    "Folded repair()": lambda: str(Folded.objects.repair_sync()),
}
if ops == "running":
    # first use before the upgrade: the schema checked and kept by this connection
    Person.objects.filter(age__gte=0).count_sync()
    Folded.objects.filter(rank__gte=0).count_sync()
    Session.objects.filter(n__gte=0).count_sync()
    print("ready", flush=True)
    sys.stdin.readline()
    # (not its reindex(), which adopts its declaration: step 6, once the rest is done)
    json.dump({name: outcome(fn) for name, fn in OPS.items() if name != "reindex()"},
              sys.stdout)
else:
    json.dump(outcome(OPS[ops]), sys.stdout)
'''
OLD_OPS = ["count", "query", "get format-2 doc", "get format-3 doc", "insert", "bulk_create",
           "load-set-save", "filter(id=).update", "filter(id=).delete", "Folded insert",
           "Session query", "verify()", "repair()", "sweep()", "Folded verify()",
           "Folded repair()"]


def run(tree: Path, code: str, *args: str) -> Any:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    done = subprocess.run([sys.executable, "-c", code, *args], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"a worker of {tree} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def free_port(low: int, high: int) -> int:
    for port in range(low, high + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    sys.exit(f"no free port in {low}-{high}")


def counts(raw: dict[str, Any]) -> dict[str, Any]:
    """Per collection: documents by format, meta hashes by kind."""
    out = {}
    for coll, c in sorted(raw.items()):
        formats: dict[str, int] = {}
        for f in c["docs"].values():
            formats[f"format {f}"] = formats.get(f"format {f}", 0) + 1
        kinds: dict[str, int] = {}
        for id, fields in c["metas"].items():
            kind = ("format-2 meta (v, r, entries)" if "r" in fields else
                    "sweep record (v, entries)" if "v" in fields else "listed entries only")
            kinds[kind] = kinds.get(kind, 0) + 1
        out[coll] = {"documents": dict(sorted(formats.items())), "meta hashes":
                     sum(kinds.values()), "meta kinds": dict(sorted(kinds.items()))}
    return out


def step6(reindex: dict[str, Any], again: dict[str, Any]) -> list[str]:
    """Step 6's summary: the old code's reindex() after the upgrade, and the new code once
    more after it; the mismatches."""
    failures: list[str] = []
    print("\nthe old code's reindex() of Person (a fresh process), after all that:")
    kind, detail = reindex["outcome"]
    print(f"  reindex()            -> {kind}: {str(detail)[:300]}")
    print(f"  schema format stored after it: {reindex['schema format']}")
    print(f"  keys changed: {reindex['keys changed']}")
    print(f"  then the old code's count -> {reindex['then count']}")
    if kind != "SchemaMismatchError" or reindex["keys changed"]:
        failures.append(f"old reindex(): {kind} {str(detail)[:200]} (keys changed: "
                        f"{reindex['keys changed']})")
    passed = sum(1 for _, ok, _ in again["checks"] if ok)
    print(f"  the new code once more: {passed}/{len(again['checks'])} checks passed")
    for name, ok, detail in again["checks"]:
        if not ok:
            failures.append(f"new again: {name}: "
                            f"{json.dumps(detail, ensure_ascii=False)[:600]}")
    b, a = again["schemas"][0]["Person"], again["schemas"][1]["Person"]
    print(f"  Person schema (format/layout) {b['format']}/{b['layout']} -> "
          f"{a['format']}/{a['layout']}")
    for m, v in again["verify"].items():
        print(f"  verify() {m}: ok={v['ok']} problems={v['problems']} samples={v['samples']}")
    if again["repaired"]:
        print(f"  repair() by the new code then: {again['repaired']}")

    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, type=Path)
    parser.add_argument("--new", type=Path, default=HERE.parent)
    parser.add_argument("--port", type=int, help="default: the first free one of 42200-42299")
    parser.add_argument("--no-old-reindex", action="store_true",
                        help="skip step 6 (the old code's reindex(), which adopts its "
                             "declaration over the upgraded schema)")
    args = parser.parse_args()
    exe = shutil.which("redis-server") or sys.exit("redis-server not on PATH")
    port = args.port or free_port(42200, 42299)
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="upg-") as work:
        server = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", work], stdout=subprocess.DEVNULL)
        running = None
        try:
            import redis

            rc = redis.Redis(host="127.0.0.1", port=port)
            for _ in range(50):
                try:
                    rc.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.1)
            url = f"redis://127.0.0.1:{port}/0"
            common: dict[str, Any] = {}
            exec(RAW, common)  # (raw_keyspace, digest)

            # 1. the old code writes
            written = run(args.old, OLD_WRITE, "old", url)
            failures += [f"old write: {p}" for p in written["problems"]]
            raw_old = common["raw_keyspace"](rc)
            ref_path = Path(work) / "ref.json"
            ref_path.write_text(json.dumps(written))

            # 2. an old process past its first use, kept waiting
            env = {**os.environ, "PYTHONPATH": str(args.old / "src")}
            running = subprocess.Popen([sys.executable, "-c", OLD_AGAIN, "old", url, "running"],
                                       env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
            assert running.stdout is not None and running.stdin is not None
            if running.stdout.readline().strip() != "ready":
                sys.exit(f"the running old process did not start: {running.stderr.read()}")

            # 3. the new code
            new = run(args.new, NEW, "new", url, str(ref_path))
            raw_new = common["raw_keyspace"](rc)

            # 4. the old code again, each operation in a fresh process
            refusals = {}
            for op in OLD_OPS:
                before = common["digest"](rc)
                got = run(args.old, OLD_AGAIN, "old", url, op)
                after = common["digest"](rc)
                changed = sorted(k for k in set(before) | set(after)
                                 if before.get(k) != after.get(k))
                refusals[op] = {"outcome": got, "keys changed": changed}

            # 5. the old process running since before the upgrade
            before = common["digest"](rc)
            out, err = running.communicate("go\n", timeout=120)
            running = None
            after = common["digest"](rc)
            if not out:
                sys.exit(f"the running old process failed: {err}")
            late = {"outcomes": json.loads(out),
                    "keys changed": sorted(k for k in set(before) | set(after)
                                           if before.get(k) != after.get(k))}

            # 6. the old code's reindex() (an explicit adoption of its declaration), then
            # the old code once more, and the new code once more
            reindex: dict[str, Any] = {}
            again: dict[str, Any] = {}
            if not args.no_old_reindex:
                before = common["digest"](rc)
                reindexed = run(args.old, OLD_AGAIN, "old", url, "reindex()")
                after = common["digest"](rc)
                schema_key = next(k for k in after if k.endswith("upg_people}:schema"))
                reindex = {"outcome": reindexed,
                           "schema format": rc.hget(schema_key, "format"),
                           "keys changed": sorted(k for k in set(before) | set(after)
                                                  if before.get(k) != after.get(k)),
                           "then count": run(args.old, OLD_AGAIN, "old", url, "count")}
                ref_path.write_text(json.dumps({"ref": new["ref"], "blips_until": 0}))
                again = run(args.new, NEW_AGAIN, "new", url, str(ref_path))
        finally:
            if running is not None:
                running.kill()
                running.wait()
            server.terminate()
            server.wait()

    # -- the summary -------------------------------------------------------------------------
    print(f"old: {args.old}  new: {args.new}  redis port {port}")
    schemas_before, schemas_after = new["schemas"]
    print("\nschemas (format, layout) before -> after the new code's first use:")
    for m in schemas_before:
        b, a = schemas_before[m], schemas_after[m]
        print(f"  {m:8} {b['format']}/{b['layout']} -> {a['format']}/{a['layout']}"
              f"  index states {dict(a['states'])}")
    passed = sum(1 for _, ok, _ in new["checks"] if ok)
    print(f"\nnew code: {passed}/{len(new['checks'])} checks passed")
    for name, ok, detail in new["checks"]:
        if not ok:
            failures.append(f"new: {name}: {json.dumps(detail, ensure_ascii=False)[:600]}")
    print("  format of format-2 documents after the new code wrote them:",
          new["written_formats"])
    for m, v in new["verify"].items():
        print(f"  verify() {m}: ok={v['ok']} documents={v['documents']} problems={v['problems']}")

    print("  reindex() [ready, documents]:", new["reindexed"])
    rb, ra = (counts(r) for r in new["reindex_formats"])
    for coll in sorted(rb):
        print(f"  reindex() {coll}: documents {rb[coll]['documents']} -> "
              f"{ra[coll]['documents']}; meta {rb[coll]['meta kinds']} -> "
              f"{ra[coll]['meta kinds']}")

    print("\nthe old code again, each operation in a fresh process:")
    for op, r in refusals.items():
        kind, detail = r["outcome"]
        print(f"  {op:20} -> {kind}: {str(detail)[:300]}")
        if r["keys changed"]:
            print(f"  {'':20}    keys changed: {r['keys changed']}")
        if kind != "SchemaMismatchError" or r["keys changed"]:
            failures.append(f"old again, {op}: {kind} {str(detail)[:200]}"
                            f" (keys changed: {r['keys changed']})")
    print("\nthe old process running since before the upgrade:")
    for op, (kind, detail) in late["outcomes"].items():
        print(f"  {op:20} -> {kind}: {str(detail)[:300]}")
        # (a read by id consults no schema, bench/format3.md section 5: it passes when it
        # reads the document as the new code left it)
        id = {"get format-2 doc": "b3", "get format-3 doc": "n2"}.get(op)
        if id is not None and kind == "ok":
            if detail != new["ref"]["Person"][id]:
                failures.append(f"old running, {op}: read {detail}, stored "
                                f"{new['ref']['Person'][id]}")
        elif kind != "SchemaMismatchError":
            failures.append(f"old running, {op}: {kind} {str(detail)[:200]}")
    if late["keys changed"]:
        print(f"  keys changed: {late['keys changed']}")
        failures.append(f"old running: keys changed: {late['keys changed']}")

    if reindex:
        failures += step6(reindex, again)

    print("\nraw keyspace: after the old writes -> after the new code:")
    c_old, c_new = counts(raw_old), counts(raw_new)
    for coll in sorted(set(c_old) | set(c_new)):
        o, n = c_old.get(coll, {}), c_new.get(coll, {})
        print(f"  {coll}:")
        print(f"    documents    {o.get('documents')} -> {n.get('documents')}")
        print(f"    meta hashes  {o.get('meta hashes')} {o.get('meta kinds')}")
        print(f"              -> {n.get('meta hashes')} {n.get('meta kinds')}")

    if failures:
        print(f"\nFAILED: {len(failures)} mismatches")
        for f in failures:
            print("  " + f)
        sys.exit(1)
    print("\nok: every check passed")


if __name__ == "__main__":
    main()
