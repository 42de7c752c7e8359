"""``filter(id=...)``.update() on Redis, with no save receiver: one ``save.lua`` call in mode
"patch" and no read, leaving the stored bytes, the indexes and the change events exactly as
a load-set-save would."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call, snapshot, stored_payload

from quantumorm import (
    ArrayField,
    BooleanField,
    BulkWriteError,
    CorruptDocumentError,
    DateTimeField,
    Document,
    DocumentTooLargeError,
    IntField,
    JSONField,
    StringField,
    WrongTypeError,
    create_connection,
)
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.backends.redis.stored import header as header_of


class Person(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    active = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    born = DateTimeField()
    extra = JSONField()
    email = StringField(unique=True)

    class Meta:
        collection = "ubi_people"


def scripts_called(redis_client: Any) -> int:
    stats = redis_client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0)
               for name in ("evalsha", "eval", "evalsha_ro", "eval_ro", "fcall", "fcall_ro"))


def person(id: str) -> Person:
    return Person(id=id, name="Ann \"é\" {x}", age=3, active=True, tags=["a", "b,c"],
                  born=datetime(2020, 1, 2, tzinfo=timezone.utc), extra={"z": [1, {"y": "]"}]},
                  email=f"{id}@x")


@pytest.mark.parametrize("mode", MODES)
async def test_one_round_trip_and_the_bytes_a_save_would_store(
        conn: Any, redis_client: Any, mode: str) -> None:
    ks = KeySpace(Person._meta)
    await call(Person.objects, "bulk_create", mode, [person("p"), person("q")])
    feed = Person.objects.changes(wait=0)
    await call(feed, "read", mode)
    before = scripts_called(redis_client)
    assert await call(Person.objects.filter(id="p"), "update", mode,
                      age=40, tags=["b,c", "d"], name="Bo", email=None) == 1
    assert scripts_called(redis_client) - before == 1  # no query first
    q = await call(Person.objects, "get", mode, id="q")
    q.age, q.tags, q.name, q.email = 40, ["b,c", "d"], "Bo", None
    await call(q, "save", mode)
    assert stored_payload(redis_client, ks.doc(0, "p")) == stored_payload(redis_client,
                                                                          ks.doc(0, "q"))
    assert_indexes_consistent(redis_client, Person)
    p = await call(Person.objects, "get", mode, id="p")
    events = await call(feed, "read", mode)
    assert [(e.op, e.id, e.version, e.changed) for e in events] == [
        ("update", "p", p.version, ("name", "age", "tags", "email")),
        ("update", "q", q.version, ("name", "age", "tags", "email"))]
    # only what differs is "changed"; nothing different: no write, no event
    assert await call(Person.objects.filter(id="p"), "update", mode, age=41, name="Bo") == 1
    assert await call(Person.objects.filter(id="p"), "update", mode, age=41) == 1
    assert [(e.id, e.changed) for e in await call(feed, "read", mode)] == [("p", ("age",))]
    # a field the stored document lacks (written before the field existed) is added
    raw = redis_client.get(ks.doc(0, "p")).decode()
    lacking = raw.replace(',"born":"2020-01-02T00:00:00+00:00"', "")
    assert lacking != raw
    redis_client.set(ks.doc(0, "p"), lacking, keepttl=True)
    when = datetime(2021, 5, 6, tzinfo=timezone.utc)
    assert await call(Person.objects.filter(id="p"), "update", mode, born=when) == 1
    assert (await call(Person.objects, "get", mode, id="p")).born == when
    assert_indexes_consistent(redis_client, Person)


def stored_format(request: Any, form: str) -> None:
    """Inserts store ``form`` ("2": format2_writes, as before format 3; "3": the default)."""
    if form == "2":
        request.getfixturevalue("format2_writes")
    else:
        assert form == "3"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", ["2", "3"])
async def test_refusals_write_nothing(conn: Any, redis_client: Any, request: Any, mode: str,
                                      form: str) -> None:
    stored_format(request, form)
    ks = KeySpace(Person._meta)
    await call(person("p"), "save", mode)
    await call(person("other"), "save", mode)
    key = ks.index(0, "age")
    saved = redis_client.dump(key)
    redis_client.delete(key)
    redis_client.set(key, "written by someone else")
    before = snapshot(redis_client)
    with pytest.raises(BulkWriteError) as error:
        await call(Person.objects.filter(id="p"), "update", mode, age=9)
    assert isinstance(error.value.errors[0][1], WrongTypeError)
    assert snapshot(redis_client) == before
    redis_client.delete(key)
    redis_client.restore(key, 0, saved)
    # a stored value that is no JSON object: format 2's meta hash beside JSON alone (format
    # 1), format 3's header kept before it (a format-3 document has no meta hash)
    headed = header_of(redis_client.get(ks.doc(0, "other")))
    assert (headed is None) == (form == "2")
    redis_client.set(ks.doc(0, "other"), b"[1, 2]" if headed is None else
                     b"\x01%d\x00%s\x00[1, 2]" % headed[:2], keepttl=True)
    before = snapshot(redis_client)
    with pytest.raises(CorruptDocumentError):
        await call(Person.objects.filter(id="other"), "update", mode, age=9)
    assert snapshot(redis_client) == before
    small = create_connection(url=conn.url, name="small", max_document_bytes=200)
    before = snapshot(redis_client)
    with pytest.raises(DocumentTooLargeError):
        await call(Person.objects.using("small").filter(id="p"), "update", mode,
                   name="x" * 300)
    assert snapshot(redis_client) == before
    del small


@pytest.mark.parametrize("mode", MODES)
async def test_a_patch_reads_the_whole_stored_document(conn: Any, redis_client: Any,
                                                       mode: str) -> None:
    """Damage after the patched member refuses the patch as a read would (nothing written);
    of a member stored twice, the patch replaces the last, the one reads see."""
    ks = KeySpace(Person._meta)
    await call(person("cut"), "save", mode)
    await call(person("twice"), "save", mode)
    key = ks.doc(0, "cut")
    redis_client.set(key, redis_client.get(key)[:-1], keepttl=True)  # no closing brace
    before = snapshot(redis_client)
    with pytest.raises(CorruptDocumentError):
        await call(Person.objects.filter(id="cut"), "update", mode, name="first member")
    assert snapshot(redis_client) == before
    key = ks.doc(0, "twice")
    redis_client.set(key, redis_client.get(key)[:-1] + b',"name":"again"}', keepttl=True)
    assert (await call(Person.objects, "get", mode, id="twice")).name == "again"
    await call(Person.objects.filter(id="twice"), "update", mode, name="patched")
    assert (await call(Person.objects, "get", mode, id="twice")).name == "patched"
    found = await call(Person.objects.filter(name="patched"), "all", mode)
    assert [d.id for d in found] == ["twice"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", ["2", "3"])
async def test_a_foreign_key_at_the_stream_refuses_updates_and_deletes_untouched(
        conn: Any, redis_client: Any, request: Any, mode: str, form: str) -> None:
    """An update's first write is its change event: the XADD's WRONGTYPE error is the
    refusal, before anything is written (also when an expired document waits for a purge:
    format 2 keeps a meta hash for every document, format 3 a sweep record for one that
    expires)."""
    stored_format(request, form)
    ks = KeySpace(Person._meta)
    p = await call(person("p"), "save", mode)
    await call(person("gone"), "save", mode, **({} if form == "2" else {"ttl": 600}))
    assert redis_client.hget(ks.meta(0, "gone"), "v")
    stale = await call(Person.objects, "get", mode, id="gone")
    redis_client.delete(ks.doc(0, "gone"))  # as if it expired: its leftovers stay
    stream = ks.changes(0)
    redis_client.delete(stream)
    redis_client.set(stream, "not a stream")
    before = snapshot(redis_client)
    p.age = 77
    with pytest.raises(WrongTypeError):
        await call(p, "save", mode)
    with pytest.raises(BulkWriteError):
        await call(Person.objects.filter(id="p"), "update", mode, age=78)
    stale.age = 5
    with pytest.raises(WrongTypeError):  # the purge of its leftovers would emit an event
        await call(stale, "save", mode)
    with pytest.raises(WrongTypeError):
        await call(p, "delete", mode)
    assert snapshot(redis_client) == before


@pytest.mark.parametrize("mode", MODES)
async def test_several_ids_in_one_round_trip(conn: Any, redis_client: Any, mode: str) -> None:
    ks = KeySpace(Person._meta)
    await call(Person.objects, "bulk_create", mode,
               [person(id) for id in ("a", "b", "c", "twin")])
    feed = Person.objects.changes(wait=0)
    await call(feed, "read", mode)
    before = scripts_called(redis_client)
    # "gone" does not exist: it is not counted; each of the others is patched in place
    assert await call(Person.objects.filter(id__in=["a", "gone", "b", "c"]), "update", mode,
                      age=50, tags=["x"]) == 3
    assert scripts_called(redis_client) - before == 4  # one patch call per id, no query
    twin = await call(Person.objects, "get", mode, id="twin")
    twin.age, twin.tags = 50, ["x"]
    await call(twin, "save", mode)
    for id in ("a", "b", "c"):  # the bytes a load-set-save stores
        mine, twin_bytes = stored_payload(redis_client, ks.doc(0, id)), stored_payload(
            redis_client, ks.doc(0, "twin"))
        assert mine is not None and twin_bytes is not None
        assert mine.replace(id.encode() + b"@x", b"") == twin_bytes.replace(b"twin@x", b"")
    assert [(e.op, e.id) for e in await call(feed, "read", mode)] == [
        ("update", "a"), ("update", "b"), ("update", "c"), ("update", "twin")]
    assert_indexes_consistent(redis_client, Person)
    assert sorted(d.id for d in await call(Person.objects.filter(age=50), "all", mode)) == [
        "a", "b", "c", "twin"]


@pytest.mark.parametrize("mode", MODES)
async def test_several_ids_one_refused(conn: Any, redis_client: Any, mode: str) -> None:
    await call(Person.objects, "bulk_create", mode, [person(id) for id in ("a", "b", "c")])
    # a unique value can be given to one document only: the first id gets it, the others
    # are refused, and the error carries the documents written (as stored after the update)
    with pytest.raises(BulkWriteError) as error:
        await call(Person.objects.filter(id__in=["a", "b", "c"]), "update", mode,
                   email="same@x", age=7)
    assert [position for position, _ in error.value.errors] == [1, 2]
    assert [(d.id, d.email, d.age) for d in error.value.written] == [("a", "same@x", 7)]
    stored = {d.id: (d.email, d.age) for d in await call(Person.objects, "all", mode)}
    assert stored == {"a": ("same@x", 7), "b": ("b@x", 3), "c": ("c@x", 3)}
    assert_indexes_consistent(redis_client, Person)


@pytest.mark.parametrize("mode", MODES)
async def test_values_sent_apart_match_the_stored_text(conn: Any, redis_client: Any,
                                                       mode: str) -> None:
    """Each patched value travels as its own JSON text (no fragment for the script to
    parse): setting the values a document already holds (escapes, non-ASCII, nested JSON,
    a datetime, an int, a bool) finds them equal byte for byte, so nothing is written and
    no event sent; one value that differs among them is the only one replaced, and the
    only "changed"."""
    ks = KeySpace(Person._meta)
    await call(person("p"), "save", mode)
    feed = Person.objects.changes(wait=0)
    await call(feed, "read", mode)
    stored = redis_client.get(ks.doc(0, "p"))
    same = {"name": "Ann \"é\" {x}", "tags": ["a", "b,c"], "extra": {"z": [1, {"y": "]"}]},
            "born": datetime(2020, 1, 2, tzinfo=timezone.utc), "age": 3, "active": True}
    assert await call(Person.objects.filter(id="p"), "update", mode, **same) == 1
    assert redis_client.get(ks.doc(0, "p")) == stored  # (the version too: nothing written)
    assert await call(feed, "read", mode) == []
    assert await call(Person.objects.filter(id="p"), "update", mode,
                      **{**same, "extra": {"z": [2]}}) == 1
    assert [e.changed for e in await call(feed, "read", mode)] == [("extra",)]
    payload = stored_payload(redis_client, ks.doc(0, "p"))
    assert payload is not None and b'"extra":{"z":[2]}' in payload
    assert payload.replace(b'"extra":{"z":[2]}', b"") == stored.split(b"\0", 2)[2].replace(
        b'"extra":{"z":[1,{"y":"]"}]}', b"")
    assert_indexes_consistent(redis_client, Person)



def test_constants_as_one_array_past_stream_max_patch_alike(
        conn: Any, redis_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """patch.lua reads its constants, expiry, values, id key and write id (ARGV[1]) as
    MessagePack values one after another and, past writes.STREAM_MAX constants (a patch of
    very many fields), as one MessagePack array: both give the same replies, stored bytes
    and indexes."""
    from quantumorm.backends.redis import writes
    from quantumorm.backends.redis.commands import script
    from quantumorm.engine.contract import Expiry

    ks = KeySpace(Person._meta)
    Person.objects.bulk_create_sync([person("p"), person("q")])
    sha = redis_client.script_load(script("patch").source)
    values = {"age": 40, "tags": ["b,c", "d"], "name": "Bo"}
    fields = Person._meta.fields
    storage = {fields[name].db_name: fields[name].to_storage(value)
               for name, value in values.items()}
    replies = []
    for id, stream_max in (("p", writes.STREAM_MAX), ("q", 0)):
        monkeypatch.setattr(writes, "STREAM_MAX", stream_max)
        layout = writes.WriteLayout(Person._meta, ks)
        (patch,) = layout.patches([id], values, storage, Expiry.KEEP)
        sent = patch.call()
        first = sent.args[0][0]
        assert (first & 0xF0 == 0x90 or first == 0xDC) == (stream_max == 0)  # (an array's head)
        reply = redis_client.evalsha(sha, len(sent.keys), *sent.keys, *sent.args)
        assert reply[0] == b"OK" and reply[2] == patch.id_key
        replies.append(reply)
        # the same values again: nothing to change, the stored version
        again = redis_client.evalsha(sha, len(sent.keys), *sent.keys, sent.args[0][:-16]
                                     + b"%016x" % (len(replies) + 7))
        assert again == reply
    payload = stored_payload(redis_client, ks.doc(0, "p"))
    assert payload is not None and b'"name":"Bo"' in payload
    assert payload.replace(b"p@x", b"q@x") == stored_payload(redis_client, ks.doc(0, "q"))
    assert Person.objects.get_sync(id="q").name == "Bo"
    assert_indexes_consistent(redis_client, Person)


@pytest.mark.parametrize("form", ["2", "3"])
def test_each_patch_stores_its_version_text_and_keeps_the_four_newest_write_ids(
        conn: Any, redis_client: Any, request: Any, form: str) -> None:
    """A patch's version is the server's time in µs (its microseconds padded to 6 digits:
    the patches of one second in ten have fewer) or the clock + 1: the document's prefix,
    the meta hash's "v", its entry in the recent write ids ("r": write id, then the version
    in 16 digits, newest first, at most 4) and the change event all hold it; the entries of
    the earlier writes follow, unchanged. Format 3 (what inserts store): the header holds
    the version and W (this write's id alone, then each older id and version, at most 4
    ids), no meta hash."""
    if form == "2":
        request.getfixturevalue("format2_writes")
    ks = KeySpace(Person._meta)
    Person.objects.bulk_create_sync([person("v")])
    if form == "2":
        entries: list[bytes] = [redis_client.hget(ks.meta(0, "v"), "r")]
    else:  # (the older writes of W: id and version each, newest first)
        first = header_of(redis_client.get(ks.doc(0, "v")))
        assert first is not None and len(first[1]) == 16
        entries = [first[1] + b"%016d" % first[0]]
    last, short = 0, 0
    # (until a version whose microseconds have fewer than 6 digits, which comes once per
    # second of patches: the time goes on, it is not drawn at random)
    for age in range(1, 100_000):
        if short and age > 6:
            break
        assert Person.objects.filter(id="v").update_sync(age=age % 100) == 1
        version = Person.objects.get_sync(id="v").version
        # (the time in µs has 16 digits until 2286; each version above the one before)
        assert 10**15 <= version < 10**16 and version > last
        last, short = version, short + (version % 10**6 < 10**5)
        stored = redis_client.get(ks.doc(0, "v"))
        meta = redis_client.hgetall(ks.meta(0, "v"))
        if form == "3":
            headed = header_of(stored)
            assert headed is not None and headed[0] == version and not meta
            assert stored.startswith(b"\x01%d\0" % version)
            w = headed[1]
            assert len(w) == 16 + 32 * min(len(entries), 3)
            assert w[16:] == b"".join(entries)[:96]
            entries.insert(0, w[:16] + b"%016d" % version)
            event = redis_client.xrevrange(ks.changes(0), count=1)[0][1]
            assert event[b"v"] == b"%d" % version and event[b"w"] == w[:16]
            continue
        assert stored.startswith(b"\0%d\0" % version)
        assert meta[b"v"] == b"%d" % version
        recent = meta[b"r"]
        assert len(recent) == 32 * min(len(entries) + 1, 4)
        assert recent[16:32] == b"%016d" % version
        assert recent[32:] == b"".join(entries)[:96]
        entries.insert(0, recent[:32])
        event = redis_client.xrevrange(ks.changes(0), count=1)[0][1]
        assert event[b"v"] == b"%d" % version and event[b"w"] == recent[:16]
    assert short
