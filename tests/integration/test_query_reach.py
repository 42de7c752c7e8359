"""query.lua refuses a program that names an index key it was not sent, against real Redis.

A query call sends the id index and the model's indexes only up to the last one its program
names (``Plan.reach``, read by a second parser: ``planner.program_reach``), then the state
hash and the TTL schedule. Were that parser to drift from the script's, a position past the
cut would name the state hash (a WRONGTYPE error), the TTL schedule (an empty answer: a
silent wrong answer) or no key at all. The script checks every index position it resolves
(the exact walk's, a driver's, ``ZIN``'s and ``ZRNG``'s) against the KEYS it got and refuses
with an error that says so. Each program here is sent whole (the right answer) and with its
KEYS cut one, two and three short.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from quantumorm import Document, IntField, StringField
from quantumorm.backends.redis import wire
from quantumorm.backends.redis.commands import script
from quantumorm.backends.redis.planner import program_reach


class Tri(Document):
    a = StringField(indexed=True)
    b = IntField(indexed=True)
    c = StringField(indexed=True)

    class Meta:
        collection = "qr_tri"


def _load() -> None:
    Tri.objects.bulk_create_sync([
        Tri(id=str(i), a="x" if i % 2 else "y", b=i, c="q" if i % 3 == 0 else "p")
        for i in range(1, 31)])


#: (query.lua's mode, the program's tokens) whose index positions each resolving path reads:
#: the exact walk (rows), the parsed WALK (count), a driver's RANGE, ZIN and ZRNG (a walk of
#: index 2, the ``a`` index, tested against index 4, ``c``)
PROGRAMS: dict[str, tuple[str, list[bytes]]] = {
    "exact walk": ("rows", [b"WALK", b"4", b"0", b"0", b"[ q\x00", b"( q\x00\xff", b"1", b"0",
                            b"0", b"T", b"0", b"0"]),
    "parsed walk": ("count", [b"WALK", b"4", b"0", b"0", b"[ q\x00", b"( q\x00\xff", b"1",
                              b"0", b"0", b"T", b"0", b"0"]),
    "range": ("rows", [b"RANGE", b"4", b"1", b"[ q\x00", b"( q\x00\xff", b"1", b"0", b"0",
                       b"T", b"0", b"0"]),
    "zin": ("rows", [b"WALK", b"2", b"0", b"0", b"[ x\x00", b"( x\x00\xff", b"0", b"0", b"0",
                     b"ZIN", b"4", b"1", b" q\x00", b"0", b"0"]),
    "zrng": ("rows", [b"WALK", b"2", b"0", b"0", b"[ x\x00", b"( x\x00\xff", b"0", b"0", b"1",
                      b"f:c", b"ZRNG", b"4", b"1", b"[ q\x00", b"( q\x00\xff",
                      b"EQ", b"f:c", b" q\x00", b"0", b"0"]),
}

WANT = {"exact walk": {str(i) for i in range(3, 31, 3)},
        "parsed walk": 10,
        "range": {str(i) for i in range(3, 31, 3)},
        "zin": {str(i) for i in range(3, 31, 6)},
        "zrng": {str(i) for i in range(3, 31, 6)}}


def _answer(reply: Any) -> Any:
    if isinstance(reply, int):
        return reply
    ids, i = set(), 0
    while i < len(reply):  # (a row: its escaped id, its version only if the value has none)
        ids.add(bytes(reply[i]).decode())
        i += 2 if bytes(reply[i + 1])[:1] in (b"\x00", b"\x01") else 3
    return ids


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_a_program_naming_an_index_key_past_the_keys_sent_is_refused(
        conn: Any, redis_client: redis.Redis, name: str) -> None:
    _load()
    state = conn.backend._state(Tri._meta)
    (keys, doc_prefix, meta_prefix), = state.query_layout()
    mode, tokens = PROGRAMS[name]
    reach = program_reach(tokens)
    assert reach == 4 and len(keys) == 6  # (the id index, a, b, c, state hash, TTL schedule)
    source = script("query").source

    def ask(sent: tuple[str, ...]) -> Any:
        return redis_client.eval(source, len(sent), *sent, doc_prefix, meta_prefix, mode, "0",
                                 "-1", "0", wire.program(tokens), state.writes.layout)

    assert _answer(ask((*keys[:reach], *keys[-2:]))) == WANT[name]
    for short in (2, 1, 3):
        # (two short: KEYS[4] is the TTL schedule, an empty answer before the check; one:
            # the state hash; three: nothing)
        # (three short, the walk of ``zin`` and ``zrng`` names a key not sent: index 2)
        first = 2 if short == 3 and name in ("zin", "zrng") else 4
        with pytest.raises(redis.ResponseError, match=f"query program names index key {first} "
                           f"of {reach - short} sent"):
            ask((*keys[:reach - short], *keys[-2:]))


def test_a_program_naming_no_index_position_is_refused(
        conn: Any, redis_client: redis.Redis) -> None:
    """A position that is no number, or 0, is refused as well (not read as a missing key)."""
    _load()
    state = conn.backend._state(Tri._meta)
    (keys, doc_prefix, meta_prefix), = state.query_layout()
    source = script("query").source
    for mode in ("rows", "count"):
        for pos in (b"x", b"0", b"-1", b"1.5"):
            tokens = [b"WALK", pos, b"0", b"0", b"[ q\x00", b"( q\x00\xff", b"1", b"0", b"0",
                      b"T", b"0", b"0"]
            with pytest.raises(redis.ResponseError, match="query program names index key"):
                redis_client.eval(source, len(keys), *keys, doc_prefix, meta_prefix, mode,
                                  "0", "-1", "0", wire.program(tokens), state.writes.layout)


@pytest.mark.parametrize("name", ["exact walk", "range"])
def test_a_flagged_partition_answers_locked_with_the_same_rows(
        conn: Any, redis_client: redis.Redis, name: str) -> None:
    """While the partition's lock flag is set (a two-phase commit holds locks there) the
    answer comes wrapped, {"LOCKED", answer, holders}, from the exact walk and from the rest
    of the script alike (the function that wraps it is made only then); without the flag,
    the bare answer."""
    _load()
    state = conn.backend._state(Tri._meta)
    (keys, doc_prefix, meta_prefix), = state.query_layout()
    mode, tokens = PROGRAMS[name]
    sent = (*keys[:program_reach(tokens)], *keys[-2:])
    source = script("query").source

    def ask() -> Any:
        return redis_client.eval(source, len(sent), *sent, doc_prefix, meta_prefix, mode, "0",
                                 "-1", "0", wire.program(tokens), state.writes.layout)

    bare = ask()
    assert _answer(bare) == WANT[name]
    tag = keys[-2][:-len("state")]
    redis_client.set(tag + "locked", "1")
    redis_client.hset(tag + "locks", mapping={"\1\0013": "tx1", "\1\0016": "tx2", "w": "tx1"})
    locked = ask()
    assert locked[0] == b"LOCKED" and locked[1] == bare
    assert sorted(locked[2]) == [b"tx1", b"tx2"]
    redis_client.delete(tag + "locked")
    assert ask() == bare
