"""Format 3 (bench/format3.md, step 3): ``filter(id=x).update(...)`` (``patch.lua``) and
``touch``/``persist`` (``expire.lua``) accept a document stored as
``\\x01<version>\\0<W>\\0<payload>`` with no meta hash, and keep it format 3.

Documents are made by hand, as test_format3_readers.py makes them: inserted in format 2,
then their key rewritten with the format-3 header and their meta hash deleted (a
format-3 document without an expiry has none). After each write, :func:`check` compares
every index with the entries ``index_keys`` gives for each stored document (computed from
its stored JSON), the header (version, ``W`` chained: this write's id first, then the
previous newest id and version) and the change event.

* the patch derives the old entries in Lua (``_derive.lua``) from the stored member text:
  int, str (escapes, non-ASCII, NUL), bool, an array, a float, a datetime, an enum;
  operators (``inc``); a member absent, a kind not derived (an embedded document's index),
  a compressed payload: ``ENTRIES``/``COMPRESSED``, nothing written, and the update reads
  and writes the document whole (compare-and-set);
* a resent patch is recognised at each position of ``W``; a header that does not read is
  refused (CorruptDocumentError), nothing written;
* an expiring document's sweep record (``m``: ``v`` and every index's list, no ``r``)
  follows the patch; once expired, the sweep leaves no entry;
* touch derives every index's entries (a compound one too) into a sweep record; persist
  deletes it; an index not derived: the client's entries, checked by the version.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import time
from typing import Any

import pytest
from helpers import call
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantumorm import (
    ArrayField,
    BooleanField,
    CorruptDocumentError,
    DateTimeField,
    Document,
    EnumField,

    FloatField,
    IntField,
    StringField,
    compression,
    sortable,
)
from quantumorm.backends.redis import derived, stored, twophase, wire, writeids
from quantumorm.backends.redis.commands import script
from quantumorm.backends.redis.commands import RedisPlan
from quantumorm.backends.redis.replies import WriteReply, write_reply
from quantumorm.engine.contract import Expiry
from quantumorm.backends.redis.keys import KeySpace, manifest_field
from quantumorm.backends.redis.writes import index_members

MODE = "async"
NEWEST = b"00c0ffee12345678"
LONG_W = NEWEST + b"".join(b"%016x%016d" % (0xabc0 + k, 40 - k) for k in range(3))


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(int):
    """An int of a class of its own: an enum of such values is not derived (its repr may
    differ from int's)."""


class Rank(enum.Enum):
    LOW = Level(1)
    HIGH = Level(2)


class Card(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    active = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    score = FloatField(indexed=True)
    at = DateTimeField(indexed=True)
    color = EnumField(Color, indexed=True)
    rank = EnumField(Rank, indexed=True)
    mail = StringField()
    city = StringField()
    level = IntField()
    note = StringField()
    code = StringField(unique=True)

    class Meta:
        collection = "f3p_cards"
        indexes = [{"fields": ["city", "level"]}, {"fields": ["mail"], "casefold": True}]


class Boxed(Document):
    name = StringField(indexed=True)
    body = StringField()

    class Meta:
        collection = "f3p_boxed"
        compress = {"codec": "zlib", "min_size": 1}


def card(id: str, **values: Any) -> Card:
    base: dict[str, Any] = dict(name="ann", age=30, active=True, tags=["a", "b"], score=1.5,
                                at=dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC),
                                color=Color.RED, rank=Rank.LOW, mail="A@b.example", note="n", city="Oslo", level=3,
                                code=f"c-{id}")
    base.update(values)
    return Card(id=id, **base)


def to_format_3(redis_client: Any, model: Any, id: str, w: bytes = NEWEST,
                keep_meta: bool = False) -> int:
    """The format-2 document ``id`` stored again in format 3 (version and payload kept,
    ``w`` its write ids), its meta hash deleted unless ``keep_meta``; its version."""
    keys = KeySpace(model._meta)
    p = keys.partition_of(id)
    version, payload = stored.split(redis_client.get(keys.doc(p, id)))
    assert redis_client.set(keys.doc(p, id), b"\x01%d\x00%s\x00%s" % (version, w, payload),
                            keepttl=True)
    if not keep_meta:
        redis_client.delete(keys.meta(p, id))
    return version


def header(redis_client: Any, model: Any, id: str) -> tuple[int, bytes, bytes]:
    keys = KeySpace(model._meta)
    held = stored.header(redis_client.get(keys.doc(keys.partition_of(id), id)))
    assert held is not None, "not a format-3 document"
    return held


def expected_entries(redis_client: Any, model: Any) -> dict[str, set[bytes]]:
    """Every index's members as the stored documents (read from their JSON, any format)
    imply them: ``field.index_keys`` of the loaded values, as a writer makes them."""
    options, keys = model._meta, KeySpace(model._meta)
    out: dict[str, set[bytes]] = {index.name: set() for index in options.indexes}
    for p in range(options.partitions):
        for member in redis_client.zrange(keys.ids(p), 0, -1):
            id = sortable.id_from_key(bytes(member))
            version, payload = stored.split(redis_client.get(keys.doc(p, id)), b"1")
            data = json.loads(compression.decompress(payload))
            values = model.from_storage(id, version, data)._values()
            for index in options.indexes:
                out[index.name].update(m + sortable.id_key(id)
                                       for m in index_members(options, index, values))
    return out


def actual_entries(redis_client: Any, model: Any) -> dict[str, set[bytes]]:
    options, keys = model._meta, KeySpace(model._meta)
    return {index.name: {bytes(m) for p in range(options.partitions)
                         for m in redis_client.zrange(keys.index(p, index.name), 0, -1)}
            for index in options.indexes}


def check(redis_client: Any, model: Any) -> None:
    """Every index holds exactly the entries its stored documents imply."""
    assert actual_entries(redis_client, model) == expected_entries(redis_client, model)


def sweep_record_of(redis_client: Any, model: Any, id: str) -> dict[bytes, bytes]:
    """What a format-3 document's sweep record must hold: its version and every index's
    list of entries."""
    options, keys = model._meta, KeySpace(model._meta)
    p = keys.partition_of(id)
    version, payload = stored.split(redis_client.get(keys.doc(p, id)))
    values = model.from_storage(id, version, json.loads(
        compression.decompress(payload)))._values()
    out = {b"v": b"%d" % version}
    for index in options.indexes:
        out[manifest_field(options, index).encode()] = sortable.pack_list(
            index_members(options, index, values))
    return out


def expire_now(redis_client: Any, keys: KeySpace, id: str) -> None:
    """The document ``id`` expired now, due in its schedule (its sweep may purge it)."""
    p = keys.partition_of(id)
    redis_client.pexpire(keys.doc(p, id), 1)
    redis_client.zadd(keys.ttl(p), {sortable.id_key(id): 1})
    while redis_client.exists(keys.doc(p, id)):
        time.sleep(0.002)


def last_event(redis_client: Any, model: Any, id: str) -> dict[bytes, bytes]:
    keys = KeySpace(model._meta)
    entries = redis_client.xrevrange(keys.changes(keys.partition_of(id)), count=1)
    return dict(entries[0][1])


def assert_chained(before: tuple[int, bytes, bytes], after: tuple[int, bytes, bytes]) -> None:
    """``after``'s W: its write's id, then ``before``'s newest id and version, then its
    older ones (RECENT = 4 writes kept)."""
    old_version, old_w, _ = before
    version, w, _ = after
    assert version > old_version
    assert len(w) == min(16 + 32 * 3, 16 + len(old_w) + 16 if old_w else 16)
    if old_w:
        assert w[16:48] == old_w[:16] + b"%016d" % old_version
        assert w[48:] == old_w[16:16 + 32 * 2]
    assert writeids.version_in_header(w, version, w[:16]) == version


async def patched(redis_client: Any, model: Any, id: str, **changes: Any) -> int:
    """``filter(id=id).update(**changes)`` of a format-3 document that stays one: its
    count; the header chained and the update's event checked, the indexes exact."""
    before = header(redis_client, model, id)
    count = await call(model.objects.filter(id=id), "update", MODE, **changes)
    after = header(redis_client, model, id)
    assert_chained(before, after)
    event = last_event(redis_client, model, id)
    assert (event[b"op"], event[b"v"], event[b"w"]) == (
        b"update", b"%d" % after[0], after[1][:16])
    check(redis_client, model)
    return int(count)


@pytest.mark.parametrize("w", [b"", NEWEST, LONG_W], ids=["empty", "newest", "long"])
@pytest.mark.parametrize("changes", [
    {"age": 31}, {"age": -12345678901234567890123}, {"name": "bob"},
    {"name": 'qu"ote\\back\nline\ttab'}, {"name": "é漢字🎉"}, {"name": "nul\x00byte"},
    {"active": False}, {"tags": ["x", "y", "x"]}, {"tags": []}, {"score": -0.25},
    {"score": 1e300}, {"at": dt.datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC)},
    {"color": Color.BLUE}, {"note": "plain, no index"}, {"name": None},
    {"age": 7, "name": "two", "active": False},
], ids=lambda c: "-".join(c))
async def test_a_patch_of_a_format_3_document_derives_its_old_entries(
        conn: Any, redis_client: Any, changes: dict[str, Any], w: bytes) -> None:
    await call(card("a"), "save", MODE)
    await call(card("b", name="ann", age=31), "save", MODE)
    to_format_3(redis_client, Card, "a", w)
    assert await patched(redis_client, Card, "a", **changes) == 1
    assert not redis_client.exists(KeySpace(Card._meta).meta(0, "a"))  # (no meta made)
    got = await call(Card.objects, "get", MODE, id="a")
    for name, value in changes.items():
        assert getattr(got, name) == value, name
    # from stored escapes, non-ASCII, NUL and odd values, the next patch derives again
    assert await patched(redis_client, Card, "a", name="again", age=1, tags=["z"],
                         score=2.0, active=True) == 1


async def test_stored_texts_the_derivation_reads_and_those_it_leaves(
        conn: Any, redis_client: Any) -> None:
    keys = KeySpace(Card._meta)
    await call(card("a"), "save", MODE)
    to_format_3(redis_client, Card, "a")
    version, w, payload = header(redis_client, Card, "a")
    data = json.loads(payload)
    # a datetime stored with another offset (derived to its UTC instant), a float in
    # exponent form, a string with escapes in the stored text
    data["at"], data["score"], data["name"] = "2024-05-06T09:08:09+02:00", 1e-7, "a\"b\\c"
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    redis_client.set(keys.doc(0, "a"), b"\x01%d\x00%s\x00%s" % (version, w, text))
    # the index entries as that document implies them
    for index in Card._meta.indexes:
        key = keys.index(0, index.name)
        redis_client.delete(key)
    values = Card.from_storage("a", version, data)._values()
    for index in Card._meta.indexes:
        for m in index_members(Card._meta, index, values):
            redis_client.zadd(keys.index(0, index.name), {m + sortable.id_key("a"): 0})
    check(redis_client, Card)
    assert await patched(redis_client, Card, "a", at=dt.datetime(2001, 1, 1, tzinfo=dt.UTC),
                         score=3.0, name="plain") == 1


@pytest.mark.usefixtures("format2_writes")  # (format 2 beside format 3)
async def test_operators_and_several_documents(conn: Any, redis_client: Any) -> None:
    for id in "abc":
        await call(card(id, age=10), "save", MODE)
    for id in "ac":
        to_format_3(redis_client, Card, id, LONG_W)
    count = await call(Card.objects.filter(id__in=["a", "b", "c", "zz"]), "update", MODE,
                       inc__age=5)
    assert count == 3
    check(redis_client, Card)
    got = await call(Card.objects, "get_many", MODE, ids=["a", "b", "c"])
    assert [d.age for d in got] == [15, 15, 15]
    for id in "ac":  # (read and written by a compare-and-set, still format 3)
        assert header(redis_client, Card, id)[0] == got["abc".index(id)].version
    assert stored.header(redis_client.get(KeySpace(Card._meta).doc(0, "b"))) is None


async def test_a_member_absent_or_a_kind_not_derived_reads_and_writes_it_whole(
        conn: Any, redis_client: Any) -> None:
    keys = KeySpace(Card._meta)
    await call(card("a"), "save", MODE)
    await call(card("b"), "save", MODE)
    # "rank": an enum of values of an int subclass, not derived
    version = to_format_3(redis_client, Card, "a")
    before = redis_client.get(keys.doc(0, "a"))
    assert await call(Card.objects.filter(id="a"), "update", MODE, rank=Rank.HIGH) == 1
    got = await call(Card.objects, "get", MODE, id="a")
    assert got.rank is Rank.HIGH and got.version > version
    assert redis_client.get(keys.doc(0, "a")) != before
    assert header(redis_client, Card, "a")[0] == got.version  # (still format 3)
    check(redis_client, Card)
    # the member absent from the stored JSON (written before the field was)
    version = to_format_3(redis_client, Card, "b")
    _, w, payload = header(redis_client, Card, "b")
    data = json.loads(payload)
    del data["age"]
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    redis_client.set(keys.doc(0, "b"), b"\x01%d\x00%s\x00%s" % (version, w, text))
    # (its index entry as a reader makes it: the field's default)
    values = Card.from_storage("b", version, data)._values()
    key = keys.index(0, "age")
    redis_client.zrem(key, *[m for m in redis_client.zrange(key, 0, -1)
                             if m.endswith(sortable.id_key("b"))])
    redis_client.zadd(key, {m + sortable.id_key("b"): 0 for m in index_members(
        Card._meta, next(i for i in Card._meta.indexes if i.name == "age"), values)})
    check(redis_client, Card)
    assert await call(Card.objects.filter(id="b"), "update", MODE, age=44) == 1
    got = await call(Card.objects, "get", MODE, id="b")
    assert got.age == 44 and header(redis_client, Card, "b")[0] == got.version
    check(redis_client, Card)


def patch_call(conn: Any, model: Any, id: str, expire: Any = Expiry.KEEP,
               **values: Any) -> Any:
    """The patch.lua call record of setting ``values`` on document ``id``."""
    fields = model._meta.fields
    storage = {fields[name].db_name: fields[name].to_storage(value)
               for name, value in values.items()}
    return conn.backend._state(model._meta).writes.patch(id, values, storage, expire).call()


def send(conn: Any, call_: Any) -> WriteReply:
    (reply,) = conn.store.sync_executor().execute(RedisPlan((call_,)))
    return write_reply(list(reply))


def test_the_patch_script_answers_entries_with_nothing_written(
        conn: Any, redis_client: Any) -> None:
    card("a").save_sync()
    version = to_format_3(redis_client, Card, "a")
    snapshot = {k: redis_client.dump(k) for k in redis_client.scan_iter()}
    reply = send(conn, patch_call(conn, Card, "a", rank=Rank.HIGH))
    assert (reply.status, reply.version) == ("ENTRIES", version)
    # a new expiry with no sweep record to update: only a read can make one
    reply = send(conn, patch_call(conn, Card, "a", expire=60000, age=3))
    assert (reply.status, reply.version) == ("ENTRIES", version)
    assert {k: redis_client.dump(k) for k in redis_client.scan_iter()} == snapshot
    # a member name written with an escape ("\u0061ge" is "age" again, which Python reads
    # last): the scan of the raw key texts would take the first, so no old text is derived
    key = KeySpace(Card._meta).doc(0, "a")
    raw = redis_client.get(key)
    redis_client.set(key, raw[:-1] + b',"\\u0061ge":31}')
    snapshot = {k: redis_client.dump(k) for k in redis_client.scan_iter()}
    reply = send(conn, patch_call(conn, Card, "a", age=3))
    assert (reply.status, reply.version) == ("ENTRIES", version)
    assert {k: redis_client.dump(k) for k in redis_client.scan_iter()} == snapshot


async def test_a_compressed_format_3_document_is_read_and_written_whole(
        conn: Any, redis_client: Any) -> None:
    keys = KeySpace(Boxed._meta)
    await call(Boxed(id="a", name="n", body="é" * 200), "save", MODE)
    to_format_3(redis_client, Boxed, "a")
    assert await call(Boxed.objects.filter(id="a"), "update", MODE, name="m") == 1
    got = await call(Boxed.objects, "get", MODE, id="a")
    assert got.name == "m" and got.body == "é" * 200
    assert stored.header(redis_client.get(keys.doc(0, "a"))) is not None  # (still format 3)
    check(redis_client, Boxed)


@pytest.mark.parametrize("at", range(5))
def test_a_resent_patch_is_recognised_at_each_position_of_w(
        conn: Any, redis_client: Any, at: int) -> None:
    keys = KeySpace(Card._meta)
    card("a").save_sync()
    to_format_3(redis_client, Card, "a")
    first = patch_call(conn, Card, "a", age=50)
    done = send(conn, first)
    assert done.status == "OK"
    for k in range(at):  # (newer writes push it down W)
        assert send(conn, patch_call(conn, Card, "a", age=60 + k)).status == "OK"
    before = redis_client.get(keys.doc(0, "a"))
    again = send(conn, first)
    if at < 4:  # (RECENT = 4 writes: the id at 0, 16, 48 or 80 of W)
        assert (again.status, again.version) == ("OK", done.version)
        assert redis_client.get(keys.doc(0, "a")) == before  # (nothing written again)
    else:  # (out of W: written again, as a format-2 patch past its "r")
        assert again.status == "OK" and again.version > done.version
    check(redis_client, Card)


@pytest.mark.parametrize("old", [0, 7, 100, 10**9, 1200 * 10**13, 10**30, -5, -100, 12, 1234,
                                 12340, 123456, 1234567, 12345678, 123456789, 999999999])
async def test_the_common_patch_derives_each_stored_int_form(
        conn: Any, redis_client: Any, old: int) -> None:
    # (patch.lua writes derived_entry's int out in place: trailing zeros dropped, each
    # size from 1 to 9 digits (its head a constant), ten digits and more, zero; a negative one goes through the general derivation)
    await call(card("a", age=old), "save", MODE)
    await call(card("b", age=old), "save", MODE)
    to_format_3(redis_client, Card, "a", LONG_W)
    assert await patched(redis_client, Card, "a", age=old + 1) == 1
    assert await patched(redis_client, Card, "a", age=old) == 1
    assert (await call(Card.objects, "get", MODE, id="a")).age == old


@pytest.mark.parametrize("version", [5, 12345678901234])
async def test_a_header_of_a_short_version_is_chained_padded(
        conn: Any, redis_client: Any, version: int) -> None:
    # (a version of fewer than 16 digits, made by hand: W's older versions are 16 digits)
    keys = KeySpace(Card._meta)
    await call(card("a"), "save", MODE)
    to_format_3(redis_client, Card, "a", LONG_W)
    _, w, payload = header(redis_client, Card, "a")
    redis_client.set(keys.doc(0, "a"), b"\x01%d\x00%s\x00%s" % (version, w, payload))
    assert await patched(redis_client, Card, "a", age=77) == 1


def test_a_format_3_documents_meta_key_holding_another_type_is_refused(
        conn: Any, redis_client: Any) -> None:
    # (the common patch asks whether a meta hash is there in the schedule's EXISTS; one
    # there, of another type, is refused as the meta hash's HMGET refuses it)
    card("a").save_sync()
    to_format_3(redis_client, Card, "a")
    keys = KeySpace(Card._meta)
    redis_client.set(keys.meta(0, "a"), b"foreign")
    snapshot = {k: redis_client.dump(k) for k in redis_client.scan_iter()}
    reply = send(conn, patch_call(conn, Card, "a", age=3))
    assert (reply.status, reply.name) == ("WRONGTYPE", keys.meta(0, "a"))
    assert {k: redis_client.dump(k) for k in redis_client.scan_iter()} == snapshot


@pytest.mark.parametrize("damaged", [
    b"\x01", b"\x0112", b"\x01+5\x00\x00{}", b"\x015\x00" + b"A" * 16 + b"\x00{}",
    b"\x015\x00" + b"a" * 17 + b"\x00{}"])
async def test_a_header_that_does_not_read_is_refused_nothing_written(
        conn: Any, redis_client: Any, damaged: bytes) -> None:
    keys = KeySpace(Card._meta)
    await call(card("a"), "save", MODE)
    to_format_3(redis_client, Card, "a")
    redis_client.set(keys.doc(0, "a"), damaged)
    snapshot = {k: redis_client.dump(k) for k in redis_client.scan_iter()}
    with pytest.raises(CorruptDocumentError, match="header"):
        await call(Card.objects.filter(id="a"), "update", MODE, age=1)
    assert {k: redis_client.dump(k) for k in redis_client.scan_iter()} == snapshot


class Timed(Document):
    name = StringField(indexed=True)
    n = IntField(indexed=True)
    tags = ArrayField(IntField(), indexed=True)
    city = StringField()
    level = IntField()

    class Meta:
        collection = "f3p_timed"
        indexes = [{"fields": ["city", "level"]}]


async def test_an_expiring_document_keeps_its_sweep_record_and_is_swept_clean(
        conn: Any, redis_client: Any) -> None:
    keys = KeySpace(Timed._meta)
    for id in "ab":
        doc = await call(Timed(id=id, name="x", n=1, tags=[1, 2], city="c", level=-7), "save", MODE)
        await call(doc, "touch", MODE, 60)
    to_format_3(redis_client, Timed, "a", LONG_W)
    # (its sweep record: the version and every index's list, as a touch writes it)
    redis_client.hset(keys.meta(0, "a"), mapping=sweep_record_of(redis_client, Timed, "a"))
    assert redis_client.hgetall(keys.meta(0, "a")) == sweep_record_of(redis_client, Timed, "a")
    assert await patched(redis_client, Timed, "a", n=5, tags=[3, -4, 3]) == 1
    assert redis_client.hgetall(keys.meta(0, "a")) == sweep_record_of(redis_client, Timed, "a")
    assert redis_client.pttl(keys.doc(0, "a")) > 0
    # a patch that removes the expiry deletes it... (persist below); expiry, then the sweep
    expire_now(redis_client, keys, "a")
    await call(Timed.objects, "sweep", MODE)
    assert not redis_client.exists(keys.meta(0, "a"))
    assert all(not m.endswith(sortable.id_key("a"))
               for k in redis_client.scan_iter(match=keys.tag(0).replace("{", "[{]") + "*")
               if redis_client.type(k) == b"zset" for m in redis_client.zrange(k, 0, -1))
    check(redis_client, Timed)


async def test_touch_and_persist_of_a_format_3_document(conn: Any, redis_client: Any) -> None:
    keys = KeySpace(Timed._meta)
    docs = [await call(Timed(id=id, name="x", n=i, tags=[i, 9], city="c", level=i), "save", MODE)
            for i, id in enumerate("ab")]
    to_format_3(redis_client, Timed, "a")
    before = redis_client.get(keys.doc(0, "a"))
    assert await call(docs[0], "touch", MODE, 60) is True
    assert redis_client.get(keys.doc(0, "a")) == before  # (no new version)
    assert redis_client.hgetall(keys.meta(0, "a")) == sweep_record_of(redis_client, Timed, "a")
    assert redis_client.pttl(keys.doc(0, "a")) > 0
    assert await call(docs[0], "persist", MODE) is True
    assert not redis_client.exists(keys.meta(0, "a"))
    assert redis_client.pttl(keys.doc(0, "a")) == -1
    assert redis_client.zscore(keys.ttl(0), sortable.id_key("a")) is None
    # touched again, then expired and swept: no entry left
    assert await call(docs[0], "touch", MODE, 60) is True
    expire_now(redis_client, keys, "a")
    await call(Timed.objects, "sweep", MODE)
    check(redis_client, Timed)
    assert not redis_client.exists(keys.meta(0, "a"))
    # a format-2 document's touch and persist leave its meta hash as it was
    meta = redis_client.hgetall(keys.meta(0, "b"))
    assert await call(docs[1], "touch", MODE, 60) is True
    assert await call(docs[1], "persist", MODE) is True
    assert redis_client.hgetall(keys.meta(0, "b")) == meta


@pytest.mark.usefixtures("format2_writes")  # (format 2 beside format 3)
@pytest.mark.parametrize("op", ["touch", "persist"])
def test_a_touch_before_any_format_3_document_was_met(conn: Any, redis_client: Any,
                                                      op: str) -> None:
    """A touch sends what a format-2 document needs until a script answers FORMAT3: a
    format-3 document with its sweep record is touched as it is (the record is current),
    persisted with the record deleted; one without is read, its record written."""
    keys = KeySpace(Timed._meta)
    docs = {id: Timed(id=id, name="x", n=i, tags=[i], city="c", level=i).save_sync()
            for i, id in enumerate("abc")}
    for id in "ab":
        to_format_3(redis_client, Timed, id)
    assert docs["b"].touch_sync(60) is True  # (b: a sweep record made)
    Timed._meta.__dict__.pop("_qorm_headed_touch", None)  # (no FORMAT3 met yet)
    record = redis_client.hgetall(keys.meta(0, "b"))
    assert record == sweep_record_of(redis_client, Timed, "b")
    for id in "bac":  # (b first: a touch finding its document and sweep record)
        before = redis_client.get(keys.doc(0, id))
        if op == "touch":
            assert docs[id].touch_sync(30) is True
            assert 0 < redis_client.pttl(keys.doc(0, id)) <= 30_000
        else:
            assert docs[id].persist_sync() is True
            assert redis_client.pttl(keys.doc(0, id)) == -1
            assert redis_client.zscore(keys.ttl(0), sortable.id_key(id)) is None
        assert redis_client.get(keys.doc(0, id)) == before
    if op == "touch":
        for id in "ab":  # (format 3: each with its current sweep record)
            assert redis_client.hgetall(keys.meta(0, id)) == sweep_record_of(
                redis_client, Timed, id)
    else:
        assert not redis_client.exists(keys.meta(0, "a"), keys.meta(0, "b"))
    assert redis_client.hgetall(keys.meta(0, "c"))[b"r"]  # (format 2: as it was)
    check(redis_client, Timed)


def test_touch_of_an_index_not_derived_takes_the_clients_entries(
        conn: Any, redis_client: Any) -> None:
    keys = KeySpace(Card._meta)
    doc = card("a").save_sync()
    card("b").save_sync()
    version = to_format_3(redis_client, Card, "a")
    # ("rank" and the case-folded "mail" are not derived: ENTRIES, then the entries read)
    assert doc.touch_sync(60) is True
    assert redis_client.hgetall(keys.meta(0, "a")) == sweep_record_of(redis_client, Card, "a")
    # entries of another version than the stored one: VERSION, nothing written
    state = conn.backend._state(Card._meta)
    items = [state.writes.layout, *derived.touch_items(Card._meta), b"%d" % (version - 1),
             *[b""] * len(Card._meta.indexes)]
    before = {k: redis_client.dump(k) for k in redis_client.scan_iter()}
    reply = redis_client.evalsha(
        script("expire").sha, 5, keys.doc(0, "a"), keys.ttl(0), keys.tag(0) + ":locks",
        keys.meta(0, "a"), keys.state(0), sortable.id_key("a"), "5000", wire.items(items))
    assert reply == [b"VERSION", version]
    assert {k: redis_client.dump(k) for k in redis_client.scan_iter()} == before
    expire_now(redis_client, keys, "a")
    Card.objects.sweep_sync()
    check(redis_client, Card)
    assert not redis_client.exists(keys.meta(0, "a"))


def test_a_patch_sets_or_removes_the_expiry_and_its_sweep_record_follows(
        conn: Any, redis_client: Any) -> None:
    keys, id_key = KeySpace(Timed._meta), sortable.id_key("a")
    doc = Timed(id="a", name="x", n=1, tags=[1], city="c", level=1).save_sync()
    to_format_3(redis_client, Timed, "a", LONG_W)
    assert doc.touch_sync(60) is True
    before = header(redis_client, Timed, "a")
    # milliseconds: a new expiry, the sweep record following the new entries
    reply = send(conn, patch_call(conn, Timed, "a", expire=90_000, n=2, tags=[5, 6]))
    assert reply.status == "OK"
    after = header(redis_client, Timed, "a")
    assert_chained(before, after)
    assert 60_000 < redis_client.pttl(keys.doc(0, "a")) <= 90_000
    assert redis_client.zscore(keys.ttl(0), id_key) > time.time() * 1000 + 60_000
    assert redis_client.hgetall(keys.meta(0, "a")) == sweep_record_of(redis_client, Timed, "a")
    check(redis_client, Timed)
    # persist: the script cannot tell a listed index's fields, which the sweep record keeps,
    # from the others: ENTRIES, nothing written; written whole by a save, the expiry and
    # the sweep record gone
    snapshot = {k: redis_client.dump(k) for k in redis_client.scan_iter()}
    reply = send(conn, patch_call(conn, Timed, "a", expire=Expiry.PERSIST, n=3))
    assert (reply.status, reply.version) == ("ENTRIES", after[0])
    assert {k: redis_client.dump(k) for k in redis_client.scan_iter()} == snapshot
    loaded = Timed.get_sync(id="a")
    loaded.n = 3
    loaded.save_sync(ttl=None)
    assert_chained(after, header(redis_client, Timed, "a"))
    assert redis_client.pttl(keys.doc(0, "a")) == -1
    assert redis_client.zscore(keys.ttl(0), id_key) is None
    assert not redis_client.exists(keys.meta(0, "a"))
    check(redis_client, Timed)
    # "keep" of a document with no expiry: no sweep record made
    assert send(conn, patch_call(conn, Timed, "a", n=4)).status == "OK"
    assert not redis_client.exists(keys.meta(0, "a"))
    check(redis_client, Timed)


def test_a_locked_format_3_document_and_a_resend(conn: Any, redis_client: Any) -> None:
    keys = KeySpace(Card._meta)
    card("a").save_sync()
    to_format_3(redis_client, Card, "a")
    applied = patch_call(conn, Card, "a", age=8)
    first = send(conn, applied)
    assert first.status == "OK"
    record = twophase.record_key("qorm", "t1")
    redis_client.hset(twophase.locks_key(keys.tag(0)), sortable.id_key("a"), record)
    before = {k: redis_client.dump(k) for k in redis_client.scan_iter()}
    refused = send(conn, patch_call(conn, Card, "a", age=9))
    assert (refused.status, refused.name) == ("LOCKED", record)
    assert {k: redis_client.dump(k) for k in redis_client.scan_iter()} == before
    # (applied before the lock was taken: recognised in W, not refused)
    again = send(conn, applied)
    assert (again.status, again.version) == ("OK", first.version)
    assert {k: redis_client.dump(k) for k in redis_client.scan_iter()} == before


def test_a_unique_value_held_by_another_is_refused(conn: Any, redis_client: Any) -> None:
    card("a").save_sync()
    card("b").save_sync()
    to_format_3(redis_client, Card, "a")
    before = {k: redis_client.dump(k) for k in redis_client.scan_iter()}
    reply = send(conn, patch_call(conn, Card, "a", code="c-b"))
    assert (reply.status, reply.name) == ("UNIQUE", "code")
    assert {k: redis_client.dump(k) for k in redis_client.scan_iter()} == before
    assert send(conn, patch_call(conn, Card, "a", code="c-free")).status == "OK"
    check(redis_client, Card)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(age=st.integers(min_value=-10**30, max_value=10**30),
       name=st.text(max_size=12),
       score=st.floats(allow_nan=False, allow_infinity=False),
       tags=st.lists(st.text(max_size=4), max_size=4))
def test_random_values_of_derived_kinds(redis_client: Any, conn: Any, age: int,
                                        name: str, score: float, tags: list[str]) -> None:
    if not Card.objects.filter(id="h").exists_sync():
        card("h").save_sync()
        to_format_3(redis_client, Card, "h")
    if stored.header(redis_client.get(KeySpace(Card._meta).doc(0, "h"))) is None:
        to_format_3(redis_client, Card, "h")
    for changes in ({"age": age}, {"name": name}, {"score": score}, {"tags": tags}):
        before = header(redis_client, Card, "h")
        assert Card.objects.filter(id="h").update_sync(**changes) == 1
        after = header(redis_client, Card, "h")
        if after[2] == before[2]:  # (the value it had already: nothing written)
            assert after == before
        else:
            assert_chained(before, after)
        check(redis_client, Card)
        got = Card.objects.get_sync(id="h")
        ((name_, value),) = changes.items()
        assert getattr(got, name_) == value
