"""A write's version as save.lua (and insert.lua) writes it: the number in its reply, the
text in the document key's prefix (format 2) or header (format 3), in the meta hash ("v",
format 2's) and in its change event are one value. The script
makes that text from the TIME reply's own digits when the version is the time (its
microseconds padded to six digits), and with string.format when the partition's clock is
ahead of the time (after a clock moved on by other writes in the same microsecond, or a
clock restored from a faster server)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from helpers import MODES, call

from quantumorm import Document, IntField, StringField
from quantumorm.backends.redis.keys import KeySpace


class Stamp(Document):
    name = StringField(indexed=True)
    n = IntField(default=0)

    class Meta:
        collection = "vt_stamps"


def texts(redis_client: redis.Redis, id: str) -> tuple[bytes, bytes, bytes]:
    """The version texts of document ``id``: the meta hash's "v" (format 2; a format-3
    document without an expiry has no meta hash: its header's text again), the document
    key's prefix or header, and that of the last change event of the partition."""
    ks = KeySpace(Stamp._meta)
    meta = redis_client.hget(ks.meta(0, id), "v")
    stored = redis_client.get(ks.doc(0, id))
    assert stored is not None and stored[:1] in (b"\0", b"\x01")
    prefix = stored[1:stored.index(b"\0", 1)]
    if stored[:1] == b"\x01":
        assert not redis_client.exists(ks.meta(0, id))
        meta = prefix
    assert meta is not None
    (_, fields), = redis_client.xrevrange(ks.changes(0), count=1)
    assert fields[b"id"].endswith(id.encode())
    return meta, prefix, fields[b"v"]


def stored_format(request: Any, form: str) -> None:
    """Inserts store ``form`` ("2": format2_writes, as before format 3; "3": the default)."""
    if form == "2":
        request.getfixturevalue("format2_writes")
    else:
        assert form == "3"


def assert_one_value(redis_client: redis.Redis, doc: Stamp) -> None:
    shown = str(doc._version).encode()
    assert texts(redis_client, str(doc.id)) == (shown, shown, shown)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", ["2", "3"])
async def test_the_version_text_is_the_number_written_with_the_time(
        conn: Any, redis_client: redis.Redis, request: Any, mode: str, form: str) -> None:
    stored_format(request, form)
    # (a version whose microseconds have fewer than six digits is padded: each write is
    # made just after the server's clock starts a second, until one such version is seen)
    padded = 0
    for i in range(50):
        while redis_client.time()[1] > 20_000:
            time.sleep(0.002)
        doc = await call(Stamp(name=f"s{i}"), "save", mode)
        assert_one_value(redis_client, doc)
        doc.n = 1
        await call(doc, "save", mode)
        assert_one_value(redis_client, doc)
        padded += doc._version % 1_000_000 < 100_000
        if padded:
            break
    assert padded, doc._version


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", ["2", "3"])
async def test_the_version_text_is_the_clock_when_the_clock_is_ahead(
        conn: Any, redis_client: redis.Redis, request: Any, mode: str, form: str) -> None:
    stored_format(request, form)
    first = await call(Stamp(name="a"), "save", mode)
    state = KeySpace(Stamp._meta).state(0)
    ahead = first._version + 10**15  # (years ahead of the server's time)
    redis_client.hset(state, "clock", str(ahead))
    doc = await call(Stamp(name="b"), "save", mode)
    assert doc._version == ahead + 1
    assert_one_value(redis_client, doc)
    doc.n = 2
    await call(doc, "save", mode)
    assert doc._version == ahead + 2
    assert_one_value(redis_client, doc)
    assert redis_client.hget(state, "clock") == str(ahead + 2).encode()
