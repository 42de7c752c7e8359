"""A write whose change event goes to a key of another type is refused with nothing
written: an insert's first writes (its id's ZADD, an allocation's INCR) and a delete's (its
id's ZREM) are taken back when the XADD after them is refused, so the sequence, the id
index and every other key stay exactly as they were.

An expired document's leftovers: format 2 keeps a meta hash (version, write ids, entries)
for every document, format 3 (what inserts store) only for one that expires (its sweep
record); each test runs on both, the expired documents of format 3 saved with a TTL."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call, snapshot

from quantumorm import Document, IntField, StringField, VersionConflict, WrongTypeError
from quantumorm.backends.redis.keys import KeySpace


class Entry(Document):
    title = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "wr_entries"


def stored_format(request: Any, form: str) -> dict[str, Any]:
    """Inserts store ``form`` ("2": format2_writes, as before format 3; "3": the default);
    the save arguments of a document that is to expire (its leftovers: format 3 keeps a
    sweep record only for a document with an expiry)."""
    if form == "2":
        request.getfixturevalue("format2_writes")
        return {}
    assert form == "3"
    return {"ttl": 600}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sequence", ["absent", "present"])
@pytest.mark.parametrize("form", ["2", "3"])
async def test_a_foreign_stream_refuses_inserts_and_deletes_untouched(
        conn: Any, redis_client: Any, request: Any, mode: str, sequence: str,
        form: str) -> None:
    expiring = stored_format(request, form)
    ks = KeySpace(Entry._meta)
    kept = await call(Entry(id="kept", title="k", n=1), "save", mode)
    if sequence == "present":  # an allocated id before: the counter exists
        await call(Entry(title="first", n=2), "save", mode)
    gone = await call(Entry(id="gone", title="g", n=3), "save", mode, **expiring)
    assert redis_client.hget(ks.meta(0, "gone"), "v")
    redis_client.delete(ks.doc(0, "gone"))  # as if it expired: its leftovers stay
    stream = ks.changes(0)
    redis_client.delete(stream)
    redis_client.set(stream, "not a stream")
    before = snapshot(redis_client)
    for doc in (Entry(title="auto", n=4), Entry(id="known", title="x", n=5),
                Entry(id="gone", title="again", n=6)):  # (its leftovers: a purge first)
        with pytest.raises(WrongTypeError) as error:
            await call(doc, "save", mode)
        assert error.value.key == stream
        assert snapshot(redis_client) == before
    for doc in (kept, gone):
        with pytest.raises(WrongTypeError):
            await call(doc, "delete", mode)
        assert snapshot(redis_client) == before
    # the stream back: the next allocated id is the one the refused insert would have had
    redis_client.delete(stream)
    auto = await call(Entry(title="auto", n=4), "save", mode)
    assert auto.id == ("2" if sequence == "present" else "1")
    assert await call(kept, "delete", mode)
    await call(Entry(id="gone", title="again", n=6), "save", mode)  # (its leftovers purged)
    assert {d.id for d in await call(Entry.objects, "all", mode)} == {auto.id, "gone"} | (
        {"1"} if sequence == "present" else set())
    assert_indexes_consistent(redis_client, Entry)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", ["2", "3"])
async def test_an_update_at_the_expected_version_finds_a_foreign_or_expired_document(
        conn: Any, redis_client: Any, request: Any, mode: str, form: str) -> None:
    """An update whose meta hash holds the expected version still finds out whether its
    document is alive and of the right type: a foreign value is refused with nothing
    written, an expired document is missing and its leftovers are purged."""
    expiring = stored_format(request, form)
    ks = KeySpace(Entry._meta)
    foreign = await call(Entry(id="foreign", title="f", n=1), "save", mode)
    expired = await call(Entry(id="expired", title="e", n=2), "save", mode, **expiring)
    assert redis_client.hget(ks.meta(0, "expired"), "v")
    redis_client.delete(ks.doc(0, "foreign"))
    redis_client.hset(ks.doc(0, "foreign"), "someone", "else")
    before = snapshot(redis_client)
    foreign.n = 10
    with pytest.raises(WrongTypeError) as error:
        await call(foreign, "save", mode)
    assert error.value.key == ks.doc(0, "foreign")
    assert snapshot(redis_client) == before
    feed = Entry.objects.changes(wait=0)
    await call(feed, "read", mode)
    redis_client.delete(ks.doc(0, "expired"))  # as if it expired: its leftovers stay
    expired.n = 20
    with pytest.raises(VersionConflict):
        await call(expired, "save", mode)
    assert not redis_client.exists(ks.doc(0, "expired"), ks.meta(0, "expired"))
    assert [(e.op, e.id) for e in await call(feed, "read", mode)] == [("expire", "expired")]
    redis_client.delete(ks.doc(0, "foreign"))
    await call(Entry(id="foreign", title="f", n=1), "save", mode)  # (its leftovers purged)
    assert {d.id for d in await call(Entry.objects, "all", mode)} == {"foreign"}
    assert_indexes_consistent(redis_client, Entry)
