"""``patch.lua`` (an update by id: ``filter(id=x).update(...)``) on a real server: each of
its replies and refusals, called directly through the call record the writer sends. A
refusal writes nothing; an expired document's leftovers are purged on the way; a resent
patch is recognised by its write id; events on and off; the three kinds of expiry; the
bounded sweep after a write."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from typing import Any

import pytest
from helpers import assert_indexes_consistent, snapshot

from quantumorm import (
    ArrayField,
    BooleanField,
    DateTimeField,
    Document,
    FloatField,
    IntField,
    JSONField,
    StringField,
    sortable,
)
from quantumorm.backends.redis import twophase, writes
from quantumorm.backends.redis.commands import RedisPlan, _lua
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.engine.contract import Expiry


class Gauge(Document):
    name = StringField(indexed=True)
    n = IntField(indexed=True)
    label = StringField(unique=True)
    note = StringField()

    class Meta:
        collection = "ps_gauges"


class Quiet(Document):
    n = IntField(indexed=True)

    class Meta:
        collection = "ps_quiet"
        changes = False


class Timed(Document):
    n = IntField(indexed=True)

    class Meta:
        collection = "ps_timed"
        ttl = 30


def patch(conn: Any, model: type[Document], id: str, expire: Expiry | int = Expiry.KEEP,
          limit: int | None = None, **values: Any) -> Any:
    """The patch.lua call record of setting ``values`` on document ``id``."""
    fields = model._meta.fields
    storage = {fields[name].db_name: fields[name].to_storage(value)
               for name, value in values.items()}
    layout = conn.backend._state(model._meta).writes
    if limit is not None:
        # (the limit is one of the constants each patch shape remembers: set per
        # connection in the product, changed here, so the shapes are made again)
        layout.max_document_bytes = limit
        layout._patch_by.clear()
    try:
        return layout.patch(id, values, storage, expire).call()
    finally:
        if limit is not None:
            layout.max_document_bytes = 16 * 1024 * 1024
            layout._patch_by.clear()


def send(conn: Any, call: Any) -> list[Any]:
    (reply,) = conn.store.sync_executor().execute(RedisPlan((call,)))
    return list(reply)


def gauges(conn: Any) -> KeySpace:
    Gauge(id="g", name="a", n=1, label="one").save_sync()
    Gauge(id="h", name="b", n=2, label="two").save_sync()
    return KeySpace(Gauge._meta)


def stored_format(request: Any, form: str) -> None:
    """Inserts store ``form`` ("2": format2_writes, as before format 3; "3": the default)."""
    if form == "2":
        request.getfixturevalue("format2_writes")


def head(stored: bytes) -> bytes:
    """The stored value's prefix before its payload: ``\0<version>\0`` (format 2), the
    whole header ``\x01<version>\0<W>\0`` (format 3)."""
    end = stored.index(b"\0", 1)
    if stored[:1] == b"\x01":
        end = stored.index(b"\0", end + 1)
    return stored[:end + 1]


def payload(stored: bytes) -> bytes:
    """The stored value's JSON, after its version prefix or header."""
    return stored[len(head(stored)):]


def events(model: type[Document]) -> list[tuple[str, str, tuple[str, ...] | None]]:
    return [(e.op, e.id, e.changed) for e in model.objects.changes(since="0").read_sync()]


def test_a_patch_writes_what_a_save_writes(conn: Any, redis_client: Any) -> None:
    gauges(conn)
    reply = send(conn, patch(conn, Gauge, "g", n=5, note="x"))
    assert reply[0] == b"OK" and reply[2] == sortable.id_key("g")
    doc = Gauge.objects.get_sync(id="g")
    assert (doc.n, doc.note, doc.version) == (5, "x", reply[1])
    assert Gauge.objects.filter(n=5).count_sync() == 1
    assert Gauge.objects.filter(n=1).count_sync() == 0
    assert events(Gauge)[-1] == ("update", "g", ("n", "note"))
    assert_indexes_consistent(redis_client, Gauge)
    # nothing different: the stored version, nothing written (no event)
    before = snapshot(redis_client)
    assert send(conn, patch(conn, Gauge, "g", n=5)) == [b"OK", reply[1], reply[2]]
    assert snapshot(redis_client) == before
    # of several members, only those whose value changes are the event's "f"
    send(conn, patch(conn, Gauge, "g", n=5, note="y"))
    assert events(Gauge)[-1] == ("update", "g", ("note",))


@pytest.mark.parametrize("where", ["state", "ttl", "ids", "doc", "meta", "moved index",
                                   "unmoved index", "unique index", "stream"])
def test_a_key_of_another_type_is_refused_with_nothing_written(
        conn: Any, redis_client: Any, where: str) -> None:
    ks = gauges(conn)
    key = {"state": ks.state(0), "ttl": ks.ttl(0), "ids": ks.ids(0), "doc": ks.doc(0, "g"),
           "meta": ks.meta(0, "g"), "moved index": ks.index(0, "n"),
           "unmoved index": ks.index(0, "name"), "unique index": ks.index(0, "label"),
           "stream": ks.changes(0)}[where]
    call = patch(conn, Gauge, "g", n=7, name="a", label="uno")
    redis_client.delete(key)
    redis_client.hset(key, "x", "foreign") if where == "doc" else redis_client.set(key, "x")
    before = snapshot(redis_client)
    assert send(conn, call) == [b"WRONGTYPE", key.encode()]
    assert snapshot(redis_client) == before


@pytest.mark.parametrize("where", ["state", "ttl", "ids", "doc", "meta", "moved index",
                                   "stream"])
def test_a_one_field_patch_refuses_a_key_of_another_type_with_nothing_written(
        conn: Any, redis_client: Any, where: str) -> None:
    """The common patch (one member, one index whose single entry moves: the path patch.lua
    writes out in place) refuses as the general path does; a refused event takes back the
    entry it moved."""
    ks = gauges(conn)
    key = {"state": ks.state(0), "ttl": ks.ttl(0), "ids": ks.ids(0), "doc": ks.doc(0, "g"),
           "meta": ks.meta(0, "g"), "moved index": ks.index(0, "n"),
           "stream": ks.changes(0)}[where]
    call = patch(conn, Gauge, "g", n=7)
    redis_client.delete(key)
    redis_client.hset(key, "x", "foreign") if where == "doc" else redis_client.set(key, "x")
    before = snapshot(redis_client)
    assert send(conn, call) == [b"WRONGTYPE", key.encode()]
    assert snapshot(redis_client) == before


def test_a_newer_layout_is_refused_with_nothing_written(conn: Any, redis_client: Any) -> None:
    ks = gauges(conn)
    layout = conn.backend._state(Gauge._meta).writes
    layout.layout = b"5"  # (the caller's, as the backend sets it from the stored schema)
    redis_client.hset(ks.state(0), "layout", 6)
    before = snapshot(redis_client)
    assert send(conn, patch(conn, Gauge, "g", n=7)) == [b"LAYOUT", b"6"]
    assert snapshot(redis_client) == before
    layout.layout = b"7"  # (a newer layout of the caller: recorded with the clock)
    assert send(conn, patch(conn, Gauge, "g", n=7))[0] == b"OK"
    assert redis_client.hget(ks.state(0), "layout") == b"7"
    layout.layout = b""


@pytest.mark.parametrize("form", ["2", "3"])
def test_missing_and_expired(conn: Any, redis_client: Any, request: Any, form: str) -> None:
    stored_format(request, form)
    ks = gauges(conn)
    before = snapshot(redis_client)
    assert send(conn, patch(conn, Gauge, "nope", n=7)) == [b"MISSING"]
    assert snapshot(redis_client) == before
    # an expired document (its key gone, its meta hash and entries left): purged, MISSING.
    # Format 2 keeps a meta hash for every document; format 3 only while it expires (its
    # sweep record): Timed's (Meta.ttl)
    model, id = (Gauge, "g") if form == "2" else (Timed, "t")
    if form == "3":
        Timed(id="t", n=1).save_sync()
        ks = KeySpace(Timed._meta)
        assert redis_client.hget(ks.meta(0, "t"), "v")
    redis_client.delete(ks.doc(0, id))
    assert send(conn, patch(conn, model, id, n=7)) == [b"MISSING"]
    assert not redis_client.exists(ks.meta(0, id))
    assert redis_client.zscore(ks.ids(0), sortable.id_key(id)) is None
    assert_indexes_consistent(redis_client, model)
    assert events(model)[-1][:2] == ("expire", id)


@pytest.mark.parametrize("form", ["2", "3"])
def test_stored_text_a_patch_cannot_splice(conn: Any, redis_client: Any, request: Any,
                                           form: str) -> None:
    stored_format(request, form)
    ks = gauges(conn)
    stored = redis_client.get(ks.doc(0, "g"))
    version_part = head(stored)  # (format 3: the whole header, W kept)
    assert version_part[:1] == (b"\0" if form == "2" else b"\x01")
    for payload, reply in [(b"[1, 2]", [b"CORRUPT"]), (b'{"n": 1', [b"CORRUPT"]),
                           (b'{"n": 1} x', [b"CORRUPT"]), (b"\xff\x00zz", [b"COMPRESSED"])]:
        redis_client.set(ks.doc(0, "g"), version_part + payload)
        before = snapshot(redis_client)
        assert send(conn, patch(conn, Gauge, "g", n=7)) == reply, payload
        assert snapshot(redis_client) == before
    redis_client.set(ks.doc(0, "g"), stored)
    before = snapshot(redis_client)
    (status, size) = send(conn, patch(conn, Gauge, "g", limit=80, note="x" * 100))
    assert status == b"TOOLARGE" and size > 100
    assert snapshot(redis_client) == before


@pytest.mark.parametrize("form", ["2", "3"])
@pytest.mark.parametrize("field", ["n", "note"])
def test_the_size_limit_is_the_new_json_s_exact_size(conn: Any, redis_client: Any,
                                                      request: Any, form: str,
                                                      field: str) -> None:
    """The limit applies to the JSON as the patch leaves it, not to the stored value with
    its header: at exactly its size the patch is written, one byte less is TOOLARGE with
    that size (a format-3 payload is read in place after its header: an offset wrong by
    the header's length shows here)."""
    stored_format(request, form)
    ks = gauges(conn)
    Gauge.objects.filter(id="g").update_sync(note="y")  # (no null: the plain pattern's)
    value: Any = 123456 if field == "n" else "x" * 40
    expected = json.loads(payload(redis_client.get(ks.doc(0, "g"))))
    expected[field] = value
    size = len(json.dumps(expected, separators=(",", ":")).encode())
    before = snapshot(redis_client)
    assert send(conn, patch(conn, Gauge, "g", limit=size - 1, **{field: value})) == [
        b"TOOLARGE", size]
    assert snapshot(redis_client) == before
    assert send(conn, patch(conn, Gauge, "g", limit=size, **{field: value}))[0] == b"OK"
    assert json.loads(payload(redis_client.get(ks.doc(0, "g"))))[field] == value


def test_a_unique_value_held_by_another_is_refused(conn: Any, redis_client: Any) -> None:
    gauges(conn)
    before = snapshot(redis_client)
    assert send(conn, patch(conn, Gauge, "g", n=9, label="two")) == [
        b"UNIQUE", b"label", sortable.id_key("h")]
    assert snapshot(redis_client) == before
    assert send(conn, patch(conn, Gauge, "g", label="one"))[0] == b"OK"  # (its own value)
    # (a numeric id: its key prefix is found from its keys as well)
    Gauge(id="12", name="c", n=3, label="three").save_sync()
    assert send(conn, patch(conn, Gauge, "12", label="two")) == [
        b"UNIQUE", b"label", sortable.id_key("h")]
    assert send(conn, patch(conn, Gauge, "g", label="three")) == [
        b"UNIQUE", b"label", sortable.id_key("12")]
    redis_client.delete(KeySpace(Gauge._meta).doc(0, "12"))  # (expired: the value is free)
    assert send(conn, patch(conn, Gauge, "g", label="three"))[0] == b"OK"


def test_a_lock_and_a_resend(conn: Any, redis_client: Any) -> None:
    ks = gauges(conn)
    applied = patch(conn, Gauge, "g", n=8)
    first = send(conn, applied)
    assert send(conn, applied) == first  # a resent patch: applied once
    assert [op for op, id, _ in events(Gauge) if id == "g"] == ["create", "update"]
    record = twophase.record_key("qorm", "t1")
    redis_client.hset(twophase.locks_key(ks.tag(0)), sortable.id_key("g"), record)
    before = snapshot(redis_client)
    assert send(conn, patch(conn, Gauge, "g", n=9)) == [b"LOCKED", record.encode()]
    assert snapshot(redis_client) == before
    # (applied before the lock was taken: recognised, not refused)
    assert send(conn, applied) == first


def test_events_off(conn: Any, redis_client: Any) -> None:
    Quiet(id="q", n=1).save_sync()
    call = patch(conn, Quiet, "q", n=2)
    assert call.keys[-1] != KeySpace(Quiet._meta).changes(0)
    assert send(conn, call)[0] == b"OK"
    assert Quiet.objects.get_sync(id="q").n == 2
    assert not redis_client.exists(KeySpace(Quiet._meta).changes(0))
    assert_indexes_consistent(redis_client, Quiet)


@pytest.mark.parametrize("form", ["2", "3"])
def test_expiry_keep_persist_and_milliseconds(conn: Any, redis_client: Any, request: Any,
                                              form: str) -> None:
    stored_format(request, form)
    Timed(id="t", n=1).save_sync()
    ks, id_key = KeySpace(Timed._meta), sortable.id_key("t")
    assert send(conn, patch(conn, Timed, "t", n=2))[0] == b"OK"  # keep
    assert 0 < redis_client.pttl(ks.doc(0, "t")) <= 30_000
    at = redis_client.zscore(ks.ttl(0), id_key)
    assert send(conn, patch(conn, Timed, "t", expire=90_000, n=3))[0] == b"OK"
    assert 30_000 < redis_client.pttl(ks.doc(0, "t")) <= 90_000
    assert redis_client.zscore(ks.ttl(0), id_key) > at
    # nothing different but the expiry: written (a new version), not "unchanged"
    version = Timed.objects.get_sync(id="t").version
    if form == "3":  # (a persist of a document with a sweep record: ENTRIES, nothing
        before = snapshot(redis_client)  # written; the client writes it whole)
        assert send(conn, patch(conn, Timed, "t", expire=Expiry.PERSIST, n=3)) == [
            b"ENTRIES", version]
        assert snapshot(redis_client) == before
        return
    assert send(conn, patch(conn, Timed, "t", expire=Expiry.PERSIST, n=3))[1] > version
    assert redis_client.pttl(ks.doc(0, "t")) == -1
    assert redis_client.zscore(ks.ttl(0), id_key) is None
    assert Timed.objects.get_sync(id="t").n == 3
    assert_indexes_consistent(redis_client, Timed)


@pytest.mark.parametrize("gone", ["gone", "77"])
def test_a_patch_sweeps_due_documents(conn: Any, redis_client: Any, gone: str) -> None:
    Timed(id="t", n=1).save_sync()
    Timed(id=gone, n=5).save_sync()
    ks = KeySpace(Timed._meta)
    redis_client.delete(ks.doc(0, gone))  # (expired: its schedule entry made due)
    redis_client.zadd(ks.ttl(0), {sortable.id_key(gone): 1})
    assert send(conn, patch(conn, Timed, "t", n=2))[0] == b"OK"
    assert not redis_client.exists(ks.meta(0, gone))
    assert redis_client.zscore(ks.ttl(0), sortable.id_key(gone)) is None
    assert events(Timed)[-1][:2] == ("expire", gone)
    assert_indexes_consistent(redis_client, Timed)


class TimedMany(Document):
    n = IntField(indexed=True)
    name = StringField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)

    class Meta:
        collection = "ps_timed_many"
        ttl = 30
        partitions = 3


@pytest.mark.parametrize("form", ["2", "3"])
def test_a_patch_sends_the_touched_indexes_keys_alone_and_purges_every_index(
        conn: Any, redis_client: Any, request: Any, form: str) -> None:
    """A patch is sent the keys of the indexes it touches and no other (each key sent costs
    the server); its purge of an expired document and its sweep, which remove entries from
    every index, build the other indexes' names in the slot of the keys sent."""
    stored_format(request, form)
    ks = KeySpace(TimedMany._meta)
    ids = [str(i) for i in range(12)]
    TimedMany.objects.bulk_create_sync(
        [TimedMany(id=id, n=int(id), name=f"x{id}", tags=["a", id]) for id in ids])
    call = patch(conn, TimedMany, "1", n=50)
    p = ks.partition_of("1")
    assert call.keys == (ks.doc(p, "1"), ks.meta(p, "1"), ks.ids(p), ks.ttl(p), ks.state(p),
                         ks.index(p, "n"), ks.changes(p))
    # an expired document: MISSING, its entries purged from every index
    redis_client.delete(ks.doc(p, "1"))
    assert send(conn, call) == [b"MISSING"]
    assert not redis_client.exists(ks.meta(p, "1"))
    assert ("expire", "1") in [e[:2] for e in events(TimedMany)]
    # a due document of the partition of the one patched: swept from every index
    other = next(id for id in ids[2:] if ks.partition_of(id) == ks.partition_of("0"))
    redis_client.delete(ks.doc(ks.partition_of("0"), other))
    redis_client.zadd(ks.ttl(ks.partition_of("0")), {sortable.id_key(other): 1})
    assert send(conn, patch(conn, TimedMany, "0", name="y"))[0] == b"OK"
    assert not redis_client.exists(ks.meta(ks.partition_of("0"), other))
    assert ("expire", other) in [e[:2] for e in events(TimedMany)]
    assert_indexes_consistent(redis_client, TimedMany)
    assert TimedMany.objects.filter(tags__contains="a").count_sync() == 10


WIDE = 4100  # (past the ~8,000 values Lua's C stack takes from one call)
Wide = type("Wide", (Document,), {
    **{f"f{i}": StringField() for i in range(WIDE)},
    "Meta": type("Meta", (), {"collection": "it_patch_wide"})})


def test_a_patch_of_thousands_of_fields_is_written_whole(conn: Any, redis_client: Any) -> None:
    # (its constants are one MessagePack array: as strings one after another, the script's
    # unpack returned each as a value of its own and overflowed the stack)
    Wide(id="w", **{f"f{i}": "a" for i in range(WIDE)}).save_sync()
    assert Wide.objects.filter(id="w").update_sync(**{f"f{i}": "b" for i in range(WIDE)}) == 1
    stored = Wide.objects.get_sync(id="w")
    assert {getattr(stored, f"f{i}") for i in range(WIDE)} == {"b"}


class Aged(Document):
    age = IntField(indexed=True)

    class Meta:
        collection = "ps_aged"


# patch_json() alone (_write.lua's general splice), for what patch.lua's written-out
# common path must give
_SPLICE = _lua("_prelude") + _lua("_write") + r"""
local out = patch_json(ARGV[1], {{'"age"', ARGV[2]}}, {"age"})
return out or "refused"
"""


@pytest.mark.parametrize("form", ["2", "3"])
def test_the_one_member_patch_stores_what_the_general_splice_gives(
        conn: Any, redis_client: Any, request: Any, form: str) -> None:
    """patch.lua's common path (one member: the stored JSON proven plain, the member's span
    found by a plain search) stores exactly the text patch_json() makes of every stored
    JSON, blanks, nested members of the same name, escapes and damage included (CORRUPT
    where patch_json refuses), and moves the index entry."""
    docs = [json.dumps({**doc, "age": 1} if rng.random() < 0.8 else doc, ensure_ascii=False,
                       separators=(",", ":") if rng.random() < 0.6 else (", ", " : "))
            for rng in [random.Random(3)]
            for doc in [{f"k{i}": rng.choice([1, "age", "a\\b", [1, {"age": 2}], None])
                         for i in range(rng.randrange(4))} for _ in range(60)]]
    docs += ['{"age":1}', ' {"age" :1 }', '{"age":1,"x":{"age":2}}', '{"x":"age","age":1}',
             '{"age":1,"age":2}', '{"age":"1"}', '{"age":[1, 2]}', '{"age":{"a":"}"}}',
             '{"age":1} x', '{"age":1', '[1]', '{"x":1}', '{"age":1,"n":"a\\"b"}',
             '{"age":17}']
    ks, id_key = KeySpace(Aged._meta), sortable.id_key("a")
    outcomes: list[bool] = []  # (refused or not, per document)
    stored_format(request, form)
    for doc in docs:
        redis_client.delete(ks.doc(0, "a"), ks.meta(0, "a"), ks.index(0, "age"))
        redis_client.zrem(ks.ids(0), id_key)
        # (format 3 has no meta hash: its index entry is the stored member's, which Python
        # reads last; format 2's meta hash lists the entry 1 whatever the JSON says)
        Aged(id="a", age=json.loads(doc)["age"] if form == "3" and _derivable_age(doc)
             else 1).save_sync()
        stored = redis_client.get(ks.doc(0, "a"))
        redis_client.set(ks.doc(0, "a"), head(stored) + doc.encode())
        want = redis_client.eval(_SPLICE, 0, doc, "7")
        before = snapshot(redis_client)
        reply = send(conn, patch(conn, Aged, "a", age=7))
        outcomes.append(want == b"refused")
        if want == b"refused":
            assert reply == [b"CORRUPT"], doc
            continue
        if form == "3" and not _derivable_age(doc):
            # format 3 derives the old entry from the stored member's text: without an int
            # member "age" plainly written, ENTRIES (nothing written; the client then reads
            # and writes the document whole)
            assert reply[0] == b"ENTRIES", doc
            assert snapshot(redis_client) == before, doc
            continue
        assert reply[0] == b"OK", doc
        after = redis_client.get(ks.doc(0, "a"))
        assert after[len(head(after)):] == want, doc
        assert redis_client.zcount(ks.index(0, "age"), "-inf", "+inf") == 1
        assert Aged.objects.filter(age=7).count_sync() == 1, doc
    assert outcomes.count(False) > 40 and outcomes.count(True) >= 3


class Shaped(Document):
    s = StringField(indexed=True)
    n = IntField(indexed=True)
    b = BooleanField()
    tags = ArrayField(StringField(), indexed=True)
    nums = ArrayField(IntField())
    at = DateTimeField()
    r = FloatField()

    class Meta:
        collection = "ps_shaped"


_SHAPED_SPLICE = _lua("_prelude") + _lua("_write") + r"""
local out = patch_json(ARGV[1], {{ARGV[3], ARGV[2]}}, {"x"})
return out or "refused"
"""


def _shaped_docs() -> list[str]:
    """Stored texts of Shaped: as Python writes them (strings holding brackets, braces,
    quotes' neighbours, commas and colons), and damaged or reshaped: an array's quote
    removed or added, a bracket or a brace in an array's string, a nested object, nulls,
    blanks, another order, a member twice, text after the object, a raw NUL in a string."""
    rng = random.Random(5)
    pieces = ["a", "]", "[", "{", "}", ",", ":", '"', "x,y", "t1", "", " "]
    docs = []
    for _ in range(60):
        def text() -> str:
            return "".join(rng.choice(pieces) for _ in range(rng.randrange(4))).replace(
                '"', "q")
        values = {"s": text(), "n": rng.choice([0, 7, -3, 120, 10**20]),
                  "b": rng.random() < 0.5, "tags": [text() for _ in range(rng.randrange(4))],
                  "nums": [rng.randrange(-5, 500) for _ in range(rng.randrange(3))],
                  "at": "2026-01-02T03:04:05+00:00", "r": rng.choice([0.5, -1e-07, 3.0])}
        doc = json.dumps(values, separators=(",", ":"), ensure_ascii=False)
        docs.append(doc)
        # (damage or another form, a quote's place or a bracket's moved in the text)
        at = rng.randrange(len(doc))
        docs.append(rng.choice([
            doc[:at] + '"' + doc[at:], doc[:at] + doc[at + 1:], doc[:at] + "]" + doc[at:],
            doc[:at] + "{" + doc[at:], doc.replace('"tags":[', '"tags":["x",', 1),
            doc.replace('"tags":[', '"tags":["]",', 1), doc.replace(',"b":', ',"z":{"n":1},"b":'),
            doc.replace('"s":"', '"s":null,"q":"', 1), doc + " x", doc[:-1],
            doc.replace(":", " : "), doc.replace('"n":', '"n":1,"n":', 1),
            doc.replace('"s":"', '"s":"\0', 1), doc.replace('"at":"', '"at":"\0', 1)]))
    return docs


def test_the_plain_pattern_patch_stores_what_the_general_splice_gives(
        conn: Any, redis_client: Any) -> None:
    """The common patch's plain pattern (writes.plain_pattern: the whole stored JSON as Python
    writes the model's documents, in one find) finds the member where patch_json() does, and
    refuses (CORRUPT) where it does, on every text, the damaged and reshaped ones too: what
    the pattern does not prove goes to the cjson proof or the scan."""
    ks, id_key = KeySpace(Shaped._meta), sortable.id_key("a")
    assert writes.plain_pattern(Shaped._meta, "n").startswith(b"^({")
    outcomes = []
    for doc in _shaped_docs():
        for name, value in (("n", 77), ("s", "new")):
            redis_client.delete(ks.doc(0, "a"), ks.index(0, "n"), ks.index(0, "s"),
                                ks.index(0, "tags"))
            redis_client.zrem(ks.ids(0), id_key)
            try:  # (the document Python reads of the text, its entries as that implies)
                values = Shaped.from_storage("a", 1, json.loads(doc))._values()
                Shaped(id="a", **{k: v for k, v in values.items()
                                  if k in Shaped._meta.fields}).save_sync()
            except ValueError:  # (a text Python does not read: a document saved beside it)
                Shaped(id="a", s="x", n=1, b=True, tags=[], nums=[],
                       at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), r=1.0).save_sync()
            stored = redis_client.get(ks.doc(0, "a"))
            redis_client.set(ks.doc(0, "a"), head(stored) + doc.encode())
            text = json.dumps(value)
            want = redis_client.eval(_SHAPED_SPLICE, 0, doc, text, json.dumps(name))
            before = snapshot(redis_client)
            reply = send(conn, patch(conn, Shaped, "a", **{name: value}))
            outcomes.append(want == b"refused")
            if want == b"refused":
                assert reply == [b"CORRUPT"], doc
                continue
            if reply[0] == b"ENTRIES":  # (an old entry not derived: nothing written)
                assert snapshot(redis_client) == before, doc
                continue
            assert reply[0] == b"OK", (doc, reply)
            after = redis_client.get(ks.doc(0, "a"))
            assert after[len(head(after)):] == want, doc
    assert outcomes.count(False) > 60 and outcomes.count(True) > 10
    # (many texts are read by the pattern, their arrays' quotes even (1); some match it
    # with an array's quotes odd (2), a quote added: left to the cjson proof)
    pattern = writes.plain_pattern(Shaped._meta, "n")
    matched = [redis_client.eval(
        "local _, _, before, text, rest, t1, t2 = string.find(ARGV[1], ARGV[2]) "
        "if not before then return 0 end "
        "return (select(2, string.gsub(t1, '\"', '')) + "
        "select(2, string.gsub(t2, '\"', ''))) % 2 + 1", 0, doc, pattern)
        for doc in _shaped_docs()]
    assert matched.count(1) >= 30 and matched.count(2) >= 1


def _round17_pattern(options: Any, target: str) -> bytes:
    """plain_pattern as round 17 wrote it: every byte of a key text but a letter or a digit
    escaped, a string as '"[^"]*"', each set's items escaped (the model's fields all of the
    kinds it reads, no array before ``target``)."""
    parts = []
    for name, field in options.fields.items():
        if isinstance(field, ArrayField):
            value = rb"(%[[^%[%]{}]*%])"
        elif isinstance(field, (StringField, DateTimeField)):
            value = b'"[^"]*"'
        else:
            value = rb"[%w%.%+%-]+"
        if name == target:
            value = b"()(" + value + b")()"
        key = re.sub(rb"([^A-Za-z0-9\x80-\xff])", rb"%\1", json.dumps(field.db_name).encode())
        parts.append(key + b":" + value)
    return b"^{" + b",".join(parts) + b"}$"


#: the plain pattern's find and patch.lua's test of its arrays (ARGV[3] "count": round
#: 17's count of every quote, its pattern capturing the value's span; else patch.lua's, the
#: texts around the value captured, each array's text read less its strings): the texts
#: before the member's value, of the value and after it, or false
_PLAIN_FIND = r"""
local _, _, first, old1, after, arrays, more = string.find(ARGV[1], ARGV[2])
if first and ARGV[3] == "count" then
  first, after = string.sub(ARGV[1], 1, first - 1), string.sub(ARGV[1], after)
end
if ARGV[3] == "count" then
  if arrays then
    local _, quotes = string.gsub(arrays, '"', "")
    if quotes % 2 == 1 then first = nil end
    if more then
      _, quotes = string.gsub(more, '"', "")
      if quotes % 2 == 1 then first = nil end
    end
  end
elseif arrays and (not string.find(string.gsub(arrays, '%b""', ""), '^%[[^][{}"]*%]$')
                   or more and not string.find(string.gsub(more, '%b""', ""),
                                               '^%[[^][{}"]*%]$')) then
  first = nil
end
return first and {first, old1, after} or false
"""


def test_the_plain_pattern_proves_what_round_17s_proved_and_splices_as_patch_json(
        redis_client: Any) -> None:
    """The plain pattern written for the matcher's least cost (``%b""`` strings, ``%b[]``
    arrays, sets without escapes, key texts escaped only where a byte is magic, the texts
    around the value captured) and patch.lua's reading of each array less its strings
    prove every text round 17's pattern and quote count proved, the member at the same
    span; and each text they prove (an array's string holding a bracket too) is one the
    general splice (patch_json) reads with the member there: the same new document. On
    Python's texts and on texts damaged or reshaped at random (quotes, brackets, braces,
    blanks, a NUL, a percent sign...)."""
    rng = random.Random(18)
    pieces = ['"', "[", "]", "{", "}", ",", ":", " ", "a", "0", "-", ".", "+", "%", "null",
              '""', "\0", "\n", "_", "é", '"]"', '"["', '"{"']
    texts = []
    for doc in _shaped_docs():
        texts.append(doc)
        for _ in range(12):
            text = doc
            for _ in range(rng.choice([1, 1, 2, 3])):
                at, piece = rng.randrange(len(text) + 1), rng.choice(pieces)
                text = rng.choice([text[:at] + piece + text[at:], text[:at] + text[at + 2:],
                                   text[:at] + piece + text[at + 1:]])
            texts.append(text)
    sha, splice = redis_client.script_load(_PLAIN_FIND), redis_client.script_load(
        _SHAPED_SPLICE)
    proven = more = 0
    for target, value in (("n", b"77"), ("s", b'"new"'), ("b", b"false")):
        new, old = writes.plain_pattern(Shaped._meta, target), _round17_pattern(
            Shaped._meta, target)
        assert new != old
        for text in texts:
            want = redis_client.evalsha(sha, 0, text, old, "count")
            got = redis_client.evalsha(sha, 0, text, new, "arrays")
            if want is not None:
                assert got == want, (target, text)
                proven += 1
            elif got is not None:
                more += 1
            if got is not None:
                assert redis_client.evalsha(splice, 0, text, value, b'"%s"' % target.encode()
                                            ) == got[0] + value + got[2], (target, text)
    assert proven > 200 and more > 10  # (and many are not)


def test_the_plain_pattern_of_a_model() -> None:
    pattern = writes.plain_pattern(Shaped._meta, "n")
    # (each part as the Lua matcher reads it at the least cost per byte: a string as %b"",
    # an array as %b[], sets with no escaped item but %w, key texts with no "%" before a
    # quote or a colon; the texts before and after the value captured, the arrays inside
    # the second)
    assert pattern == (b'^({"s":%b"","n":)([%w.+-]+)(,"b":[%w.+-]+,'
                       b'"tags":(%b[]),"nums":(%b[]),"at":%b"","r":[%w.+-]+})$')
    # (none: a patch of an array, a field of a kind it does not know)
    assert writes.plain_pattern(Shaped._meta, "tags") == b""
    assert writes.plain_pattern(Loose._meta, "n") == b""  # (a JSON field)


class ArrayFirst(Document):
    tags = ArrayField(StringField(), indexed=True)
    n = IntField(indexed=True)
    s = StringField()

    class Meta:
        collection = "ps_array_first"


@pytest.mark.parametrize("model", [Shaped, ArrayFirst])
def test_every_scalar_field_is_patched_by_id_wherever_it_stands(
        conn: Any, redis_client: Any, model: type[Document]) -> None:
    """A patch of each scalar field of a model whose arrays stand before, between or after
    it writes what a load and save would, its index entries exact: patch.lua reads the plain
    pattern's captures as the target's three, then the arrays' after it, so a field after an
    array has no plain pattern (Lua numbers captures by where they open) and takes the cjson
    proof."""
    values: dict[str, Any] = {"s": "x", "n": 1, "b": True, "tags": ["a", "b"], "nums": [1, 2],
                              "at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "r": 1.5}
    new: dict[str, Any] = {"s": "y", "n": 9, "b": False,
                           "at": dt.datetime(2027, 2, 3, tzinfo=dt.UTC), "r": 2.25}
    fields = model._meta.fields
    model(id="a", **{k: v for k, v in values.items() if k in fields}).save_sync()
    for name, value in new.items():
        if name not in fields:
            continue
        assert model.objects.filter(id="a").update_sync(**{name: value}) == 1
        got = model.objects.get_sync(id="a")
        assert getattr(got, name) == value
        values[name] = value
        assert {k: getattr(got, k) for k in fields if k != "id"} == {
            k: v for k, v in values.items() if k in fields}
    assert_indexes_consistent(redis_client, model)


def test_no_plain_pattern_for_a_field_after_an_array_a_wide_model_or_nested_arrays() -> None:
    assert writes.plain_pattern(Shaped._meta, "at") == b""  # (after tags and nums)
    assert writes.plain_pattern(ArrayFirst._meta, "n") == b""
    assert writes.plain_pattern(Nested._meta, "n") == b""  # (an array of arrays)
    assert writes.plain_pattern(TooWide._meta, "f0") == b""  # (more than PLAIN_FIELDS)
    assert writes.plain_pattern(JustNarrow._meta, "f0") != b""


class Nested(Document):
    n = IntField(indexed=True)
    grid = ArrayField(ArrayField(IntField()))

    class Meta:
        collection = "ps_nested"


TooWide = type("TooWide", (Document,), {
    **{f"f{i}": IntField() for i in range(writes.PLAIN_FIELDS + 1)},
    "Meta": type("Meta", (), {"collection": "ps_too_wide"})})
JustNarrow = type("JustNarrow", (Document,), {
    **{f"f{i}": IntField() for i in range(writes.PLAIN_FIELDS)},
    "Meta": type("Meta", (), {"collection": "ps_just_narrow"})})


class Loose(Document):
    n = IntField(indexed=True)
    extra = JSONField()

    class Meta:
        collection = "ps_loose"


def _derivable_age(doc: str) -> bool:
    """Whether a format-3 patch can derive the old entry of ``doc``'s member "age" (an int;
    no member name here is written with an escape)."""
    try:
        data = json.loads(doc)
    except ValueError:
        return False
    return isinstance(data, dict) and type(data.get("age")) is int


@pytest.mark.usefixtures("format2_writes")  # (the meta hash's lists: format 2's)
@pytest.mark.parametrize("form", ["leading zero", "longer", "13 digits"])
def test_the_one_field_patch_reads_its_index_list_as_the_general_path(
        conn: Any, redis_client: Any, form: str) -> None:
    """The common patch takes a meta list of exactly one value ("len:bytes", its length at
    most 12 digits, leading zeros read as digits) as its single entry; any other list goes
    to the general path, which refuses one that does not read, with nothing written."""
    ks = gauges(conn)
    meta, field = ks.meta(0, "g"), "f:n"
    listed = redis_client.hget(meta, field)
    size, _, value = listed.partition(b":")
    redis_client.hset(meta, field, {"leading zero": b"0" + listed, "longer": listed + b"x",
                                    "13 digits": b"0" * (13 - len(size)) + listed}[form])
    before = snapshot(redis_client)
    reply = send(conn, patch(conn, Gauge, "g", n=7))
    if form == "leading zero":
        assert reply[0] == b"OK"
        members = redis_client.zrange(ks.index(0, "n"), 0, -1)
        assert not [m for m in members if m.startswith(value)]  # (the old entry removed)
        assert Gauge.objects.filter(n=7).count_sync() == 1
        assert redis_client.hget(meta, field) != listed and Gauge.objects.get_sync(id="g").n == 7
    else:
        assert reply == [b"DAMAGED", meta.encode(), field.encode()]
        assert snapshot(redis_client) == before
