"""The form of ``query.lua``'s "rows" reply, against real Redis.

Each row is {escaped id, value} when the value (the document key's, as stored) carries its
version (format 2 or 3: its first byte is 0 or 1), else {escaped id, version, value} (format
1: the meta hash's version). The escaped id is the id as its document key holds it
(``sortable.escape_id``: a numeric id's digits), so the script makes no id key per row,
and no ``false`` goes out per row: the exact walk (the common query) and the rest of the
script (its ``emit_ids`` and ``emit``) answer alike, and ``results.rows`` reads the rows
of either form in one reply.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from quantumorm import Document, IntField, StringField
from quantumorm.backends.redis import stored, wire
from quantumorm.backends.redis.commands import script
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.backends.redis.reader import locked_reply
from quantumorm.backends.redis.replies import layout_refused
from quantumorm.sortable import escape_id

#: numeric ids, ids without escapes and ids with them (a "%", a space, a slash, non-ASCII)
IDS = ["7", "12", "300", "abc", "LOCKED", "LAYOUT", "a b", "x/y%z", "é"]


class Rower(Document):
    tag = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "rows_reply"


WALK = [b"WALK", b"2", b"0", b"0", b"[ q\x00", b"( q\x00\xff", b"1", b"0", b"0", b"T", b"0",
        b"0"]
#: (the program's tokens, ARGV[6]): the exact walk of the ``tag`` index (KEYS[2]); the same
#: walk with every candidate checked alive (the rest of the script's walk, then emit_ids);
#: a RANGE driver of it (gather, then emit)
PROGRAMS: dict[str, tuple[list[bytes], str]] = {
    "exact walk": (WALK, "0"),
    "verified walk": (WALK, "1"),
    "range": ([b"RANGE", b"2", b"1", b"[ q\x00", b"( q\x00\xff", b"1", b"0", b"0", b"T",
               b"0", b"0"], "0"),
}


def _load() -> None:
    Rower.objects.bulk_create_sync([Rower(id=id, tag="q", n=i) for i, id in enumerate(IDS)])


def _ask(conn: Any, redis_client: redis.Redis, program: tuple[list[bytes], str]) -> Any:
    state = conn.backend._state(Rower._meta)
    (keys, doc_prefix, meta_prefix), = state.query_layout()
    sent = (*keys[:2], *keys[-2:])  # (the id index, ``tag``'s, the state hash, the schedule)
    tokens, verify = program
    return redis_client.eval(script("query").source, len(sent), *sent, doc_prefix,
                             meta_prefix, "rows", "0", "-1", verify, wire.program(tokens),
                             state.writes.layout)


def _by_id(reply: list[Any]) -> dict[bytes, list[Any]]:
    """Each row's items after its escaped id, by escaped id (the rule results.py reads)."""
    rows, i = {}, 0
    while i < len(reply):
        own = reply[i + 1][:1] in (stored.VERSIONED, stored.HEADED)
        rows[reply[i]] = reply[i + 1:i + (2 if own else 3)]
        i += 2 if own else 3
    return rows


def _stored(redis_client: redis.Redis, id: str) -> bytes:
    keys = KeySpace(Rower._meta)
    return redis_client.get(keys.doc(keys.partition_of(id), id))  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_rows_are_named_by_their_escaped_id_with_no_version_item(
        conn: Any, redis_client: redis.Redis, name: str) -> None:
    _load()
    reply = _ask(conn, redis_client, PROGRAMS[name])
    assert len(reply) == 2 * len(IDS)
    assert {bytes(e) for e in reply[0::2]} == {escape_id(id).encode() for id in IDS}
    for id in IDS:
        assert _by_id(reply)[escape_id(id).encode()] == [_stored(redis_client, id)]


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_a_format_1_row_keeps_its_version_item_and_the_rows_read_back(
        conn: Any, redis_client: redis.Redis, name: str) -> None:
    """A row whose value carries no version (format 1, written by the earliest releases:
    the JSON alone, the version in the meta hash) has its version item; the rows around it
    keep their form, and the ORM reads them all, with their versions."""
    _load()
    keys = KeySpace(Rower._meta)
    before = {d.id: d.version for d in Rower.objects.all_sync()}
    for id in ("12", "LOCKED", "x/y%z"):
        p = keys.partition_of(id)
        version, payload = stored.split(_stored(redis_client, id))
        redis_client.set(keys.doc(p, id), payload)
        redis_client.hset(keys.meta(p, id), "v", str(version))
    rows = _by_id(_ask(conn, redis_client, PROGRAMS[name]))
    for id in IDS:
        got = rows[escape_id(id).encode()]
        if id in ("12", "LOCKED", "x/y%z"):
            assert got[0] == str(before[id]).encode() and got[1][:1] == b"{"
        else:
            assert got == [_stored(redis_client, id)]
    found = Rower.objects.filter(tag="q").all_sync()
    assert sorted((d.id, d.version, d.n) for d in found) == sorted(
        (id, before[id], i) for i, id in enumerate(IDS))


def test_a_rows_reply_of_one_row_named_locked_is_not_a_lock_wrapper(
        conn: Any, redis_client: redis.Redis) -> None:
    """{"LOCKED", answer, holders} wraps an answer while two-phase commits hold locks: its
    holders are a list. A row of format 1 whose id is "LOCKED" is three items too, the
    first "LOCKED": its version and value are no list, and it is read as the row it is."""
    assert not locked_reply([b"LOCKED", b"5", b'{"tag":"q"}'])
    assert locked_reply([b"LOCKED", [b"7", b"\x01..."], [b"tx1"]])
    assert locked_reply([b"LOCKED", 3, []])
    Rower.objects.bulk_create_sync([Rower(id="LOCKED", tag="q", n=1)])
    keys = KeySpace(Rower._meta)
    p = keys.partition_of("LOCKED")
    version, payload = stored.split(_stored(redis_client, "LOCKED"))
    redis_client.set(keys.doc(p, "LOCKED"), payload)
    redis_client.hset(keys.meta(p, "LOCKED"), "v", str(version))
    assert _ask(conn, redis_client, PROGRAMS["exact walk"]) == [
        b"LOCKED", str(version).encode(), payload]
    found = Rower.objects.filter(tag="q").all_sync()
    assert [(d.id, d.version, d.n) for d in found] == [("LOCKED", version, 1)]


def test_a_rows_reply_of_one_row_named_layout_is_not_a_layout_refusal(
        conn: Any, redis_client: Any) -> None:
    """{"LAYOUT", n} refuses a caller whose schema is outdated: n is plain digits. A rows
    reply of one format-2 or format-3 row whose id is "LAYOUT" is two items too, the first
    "LAYOUT": its value starts with 0 or 1, and it is read as the row it is (the query, its
    first() and its window, each answered by that row alone)."""
    assert layout_refused([b"LAYOUT", b"12"]) and layout_refused(["LAYOUT", "3"])
    assert layout_refused(-2)
    assert not layout_refused([b"LAYOUT", b"\x01170\x00\x00{}"])
    assert not layout_refused([b"LAYOUT", b"\x00170\x00{}"])
    assert not layout_refused([b"LAYOUT", "\u00b2"])  # (a digit to str.isdigit, not ASCII)
    Rower.objects.bulk_create_sync([Rower(id="LAYOUT", tag="q", n=1),
                                    Rower(id="M", tag="r", n=2)])
    only = Rower.objects.filter(tag="q")
    assert [d.id for d in only.all_sync()] == ["LAYOUT"]
    assert [d.id for d in Rower.objects.filter(n__gte=0)[:1]] == ["LAYOUT"]
    first = Rower.objects.filter(n__gte=0).first_sync()
    assert first is not None and first.id == "LAYOUT"


def test_a_whole_walk_leaves_out_a_document_gone_and_a_window_still_fills(
        conn: Any, redis_client: redis.Redis) -> None:
    """The exact walk of a whole range (offset 0, no limit) checks no candidate even while
    the TTL schedule is not empty: its MGET leaves out a document gone (its index entries
    not swept yet). A window (a limit) is still filled from the documents there are (the
    schedule makes every candidate checked), and the lock flag is read either way."""
    _load()
    keys = KeySpace(Rower._meta)
    p = keys.partition_of("12")
    redis_client.delete(keys.doc(p, "12"))  # (as if expired: entries left behind)
    state = conn.backend._state(Rower._meta)
    (sent, _, _), = state.query_layout()
    redis_client.zadd(sent[-1], {"\x01\x2212": 1})  # (the schedule, not empty)
    reply = _ask(conn, redis_client, PROGRAMS["exact walk"])
    assert set(reply[0::2]) == {escape_id(id).encode() for id in IDS if id != "12"}
    assert sorted(d.id for d in Rower.objects.filter(tag="q").all_sync()) == sorted(
        id for id in IDS if id != "12")
    ordered = [d.id for d in Rower.objects.filter(tag="q").order_by("id").all_sync()]
    window = Rower.objects.filter(tag="q").order_by("id")[:3].all_sync()
    assert "12" not in ordered and [d.id for d in window] == ordered[:3]
    redis_client.set(sent[-2][:-len("state")] + "locked", "1")
    redis_client.hset(sent[-2][:-len("state")] + "locks", "\x01\x227", "tx9")
    wrapped = _ask(conn, redis_client, PROGRAMS["exact walk"])
    assert wrapped[0] == b"LOCKED" and wrapped[1] == reply and wrapped[2] == [b"tx9"]
