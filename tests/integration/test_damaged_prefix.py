"""A document key whose version (between its two NUL bytes) is not plain digits: the
scripts write ``^[1-9][0-9]*$`` only, so "+13", " 13", "-1", "013" or "1_3" is damage,
never a version (Python's int() reads each of them as a number).

* a get, a get_many and a query raise :class:`CorruptDocumentError` naming the document,
  never a row at a version read from the damage;
* verify() reports it as ``version_mismatch`` (the document itself reads), repair() stores
  it again with its meta hash's version, and it reads again at that version;
* reindex() (which takes the version from the meta hash) is not stopped by it; a document
  whose body does not read stops reindex() and repartition with CorruptDocumentError;
* a change event's version ("v") read by a feed: the same rule, CorruptDocumentError.

Damage is made by hand, as test_damaged_meta.py makes it.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, call

from quantumorm import CorruptDocumentError, Document, IntField, StringField
from quantumorm.backends.redis import stored
from quantumorm.backends.redis.keys import KeySpace

# (format-2 documents: what these tests damage is their meta hash, which format 3 keeps
# only as a sweep record)
pytestmark = pytest.mark.usefixtures("format2_writes")

#: the damaged version's text, made from the good one
PREFIX_DAMAGE = {"sign": lambda v: b"+" + v, "blank": lambda v: b" " + v,
                 "trailing blank": lambda v: v + b" ", "negative": lambda v: b"-1",
                 "leading zero": lambda v: b"0" + v, "underscore": lambda v: v[:1] + b"_" + v[1:],
                 "zero": lambda v: b"0", "inner blank": lambda v: v[:1] + b" " + v[1:],
                 "trailing newline": lambda v: v + b"\n", "inner sign": lambda v: v[:1] + b"+" + v[1:],
                 "empty": lambda v: b""}


class Tile(Document):
    title = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "dp_tiles"


def test_split_refuses_anything_but_plain_digits() -> None:
    for how, damage in PREFIX_DAMAGE.items():
        raw = b"\x00" + damage(b"17") + b"\x00{}"
        with pytest.raises(stored.DamagedVersion):
            stored.split(raw)
        assert stored.payload(raw) == b"{}", how
    assert stored.split(b"\x0017\x00{}") == (17, b"{}")
    assert stored.split(b"{}", b"5") == (5, b"{}")


@pytest.mark.parametrize("how", PREFIX_DAMAGE)
@pytest.mark.parametrize("mode", MODES)
async def test_a_damaged_version_prefix_is_refused_typed_and_repaired(
        conn: Any, redis_client: Any, mode: str, how: str) -> None:
    saved = await call(Tile(id="a", title="t", n=1), "save", mode)
    await call(Tile(id="b", title="t", n=2), "save", mode)
    key = KeySpace(Tile._meta).doc(0, "a")
    good = redis_client.get(key)
    version, payload = stored.split(good)
    assert version == saved._version
    redis_client.set(key, b"\x00" + PREFIX_DAMAGE[how](str(version).encode()) + b"\x00"
                     + payload)
    for target, method, args in [(Tile.objects, "get", {"id": "a"}),
                                 (Tile.objects, "get_many", {"ids": ["a", "b"]}),
                                 (Tile.objects.filter(title="t").order_by("n"), "all", {}),
                                 (Tile.objects.filter(n__gte=0).order_by("-n"), "all", {})]:
        with pytest.raises(CorruptDocumentError) as raised:
            await call(target, method, mode, **args)
        assert raised.value.id == "a", (method, args)
    report = await call(Tile.objects, "verify", mode)
    assert report.problems == {"version_mismatch": 1}
    repaired = await call(Tile.objects, "repair", mode)
    assert repaired.ok and repaired.fixed == {"version_mismatch": 1}
    assert redis_client.get(key) == good
    got = await call(Tile.objects, "get", mode, id="a")
    assert got._version == version and got.n == 1
    assert [d.id for d in await call(Tile.objects.filter(title="t").order_by("n"), "all",
                                     mode)] == ["a", "b"]


@pytest.mark.parametrize("mode", MODES)
async def test_an_empty_stored_value_is_refused_naming_its_document(
        conn: Any, redis_client: Any, mode: str) -> None:
    # (no format stores an empty value: a query reads it as a damaged document, by id, not
    # as a script error naming none)
    await call(Tile(id="a", title="t", n=1), "save", mode)
    await call(Tile(id="b", title="t", n=2), "save", mode)
    redis_client.set(KeySpace(Tile._meta).doc(0, "a"), b"")
    for target in (Tile.objects.filter(title="t"), Tile.objects.filter(title="t").order_by("n"),
                   Tile.objects.filter(n__gte=0).order_by("-n"), Tile.objects.order_by("n")):
        with pytest.raises(CorruptDocumentError) as raised:
            await call(target, "all", mode)
        assert raised.value.id == "a"
    with pytest.raises(CorruptDocumentError):
        await call(Tile.objects, "get", mode, id="a")


@pytest.mark.parametrize("mode", MODES)
async def test_reindex_reads_past_a_damaged_version_prefix(
        conn: Any, redis_client: Any, mode: str) -> None:
    await call(Tile(id="a", title="t", n=1), "save", mode)
    key = KeySpace(Tile._meta).doc(0, "a")
    version, payload = stored.split(redis_client.get(key))
    redis_client.set(key, b"\x00+" + str(version).encode() + b"\x00" + payload)
    await call(Tile.objects, "reindex", mode)


#: a document key's body that does not read, behind a good version
BODY_DAMAGE = {"json": b"{nope", "array": b"[1]", "compressed": b"\xff\x01garbage",
               "unended": None}


@pytest.mark.parametrize("how", BODY_DAMAGE)
def test_reindex_and_repartition_refuse_a_document_that_does_not_read_typed(
        conn: Any, redis_client: Any, how: str) -> None:
    """Both decode each document for its index values (its version from the meta hash):
    one that does not read is CorruptDocumentError naming it, not a JSONDecodeError."""
    from test_damaged_versions import _moving_id, model

    from quantumorm.tools.repartition import repartition

    one, two = model(1), model(2)
    one.objects.bulk_create_sync([one(title=f"t{i}") for i in range(8)])
    id = _moving_id(two, 8)
    key = KeySpace(one._meta).doc(0, id)
    version, _ = stored.split(redis_client.get(key))
    damage = BODY_DAMAGE[how]
    redis_client.set(key, b"\x00" + str(version).encode()
                     + (b"" if damage is None else b"\x00" + damage))
    with pytest.raises(CorruptDocumentError) as raised:
        one.objects.reindex_sync()
    assert raised.value.id == id
    with pytest.raises(CorruptDocumentError) as raised:
        repartition(two, from_partitions=1)
    assert raised.value.id == id


class Logged(Document):
    title = StringField()

    class Meta:
        collection = "dp_logged"
        changes = True


@pytest.mark.parametrize("how", ["sign", "blank", "leading zero", "negative"])
@pytest.mark.parametrize("mode", MODES)
async def test_a_change_event_whose_version_is_not_plain_digits_is_corrupt(
        conn: Any, redis_client: Any, mode: str, how: str) -> None:
    feed = Logged.objects.changes(wait=0)
    assert await call(feed, "read", mode) == []
    saved = await call(Logged(id="a", title="t"), "save", mode)
    stream = KeySpace(Logged._meta).changes(0)
    ((_, fields),) = redis_client.xrange(stream)
    assert fields[b"v"] == str(saved._version).encode()
    redis_client.xadd(stream, {**fields, b"v": PREFIX_DAMAGE[how](fields[b"v"])})
    with pytest.raises(CorruptDocumentError) as raised:
        await call(feed, "read", mode)
    assert "not plain digits" in str(raised.value)
