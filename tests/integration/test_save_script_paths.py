"""``save.lua``'s shortcuts give what its general paths give: an insert that sends its index
entries as one MessagePack array (``SaveCall.members``) writes exactly the entries, meta hash
and refusals of one whose script parses them from the meta field pairs; and an insert, an
update or a delete whose index writes prove their keys' types (no TYPE command before)
refuses a foreign key with nothing written, as a check before would."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call, snapshot

from quantumorm import (
    ArrayField,
    BooleanField,
    Document,
    IntField,
    StringField,
    UniqueViolation,
    WrongTypeError,
)
from quantumorm.backends.redis import writes
from quantumorm.backends.redis.keys import KeySpace


class Gadget(Document):
    name = StringField(indexed=True)
    n = IntField(indexed=True)
    on = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    code = StringField(unique=True)

    class Meta:
        collection = "ssp_gadgets"
        indexes = [("name", "n")]


ROWS: list[dict[str, Any]] = [
    {"name": "a", "n": 1, "on": True, "tags": ["x", "y", "x"], "code": "c1"},
    {"name": None, "n": None, "on": None, "tags": [], "code": None},
    {"name": "é\x00", "n": -(10**20), "on": False, "tags": ["", "long " * 50]},
]


def made_foreign(redis_client: Any, key: str) -> dict[bytes, Any]:
    """``key`` replaced by a string (a key of another type, as another program could write
    it); returns the snapshot a refused write must leave as it is."""
    redis_client.delete(key)
    redis_client.set(key, "written by someone else")
    return snapshot(redis_client)


def _entries(redis_client: Any, id: str) -> dict[bytes, list[bytes]]:
    """Every index's entries of document ``id`` (its id key cut off), and its meta hash
    without the version and recent writes."""
    ks = KeySpace(Gadget._meta)
    id_key = writes.sortable.id_key(id)
    out: dict[bytes, list[bytes]] = {}
    for index in Gadget._meta.indexes:
        key = ks.index(0, index.name)
        out[key.encode()] = sorted(m[:-len(id_key)] for m in redis_client.zrange(key, 0, -1)
                                   if m.endswith(id_key))
    meta = redis_client.hgetall(ks.meta(0, id))
    out[b"meta"] = sorted(f + b"=" + v for f, v in meta.items() if f not in (b"v", b"r"))
    return out


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch, format2_writes: None) -> Any:
    """Make every save call leave its entries to the script's parse of the pairs (and drop
    the call's packed bytes, which the executor would send as they are). Format 2 only: a
    format-3 insert always sends its entries (insert.lua's ARGV[12]; its meta pairs are
    only what its meta hash keeps)."""
    save = writes.WriteLayout.save

    def without_members(self: writes.WriteLayout, request: Any) -> Any:
        return dataclasses.replace(save(self, request), members=b"", wire=None)

    def use(on: bool) -> None:
        if on:
            monkeypatch.setattr(writes.WriteLayout, "save", without_members)
        else:
            monkeypatch.setattr(writes.WriteLayout, "save", save)
    return use


@pytest.mark.parametrize("mode", MODES)
async def test_an_insert_writes_the_same_entries_either_way(conn: Any, redis_client: Any,
                                                           parsed: Any, mode: str) -> None:
    for i, row in enumerate(ROWS):
        shortcut = await call(Gadget(**{**row, "code": None}), "save", mode)  # (auto id)
        known = await call(Gadget(id=f"k{i}", **{**row, "code": None}), "save", mode)
        parsed(True)
        general = await call(Gadget(**{**row, "code": None}), "save", mode)
        known_general = await call(Gadget(id=f"g{i}", **{**row, "code": None}), "save", mode)
        parsed(False)
        assert _entries(redis_client, shortcut.id) == _entries(redis_client, general.id)
        assert _entries(redis_client, known.id) == _entries(redis_client, known_general.id)
        assert _entries(redis_client, shortcut.id)[b"meta"]  # (it has entries to compare)
    assert_indexes_consistent(redis_client, Gadget)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("general", [False, True])
async def test_a_unique_value_is_refused_either_way(conn: Any, redis_client: Any, parsed: Any,
                                                     mode: str, general: bool) -> None:
    holder = await call(Gadget(name="h", code="same"), "save", mode)
    parsed(general)
    for doc in (Gadget(name="x", code="same"), Gadget(id="mine", name="y", code="same")):
        with pytest.raises(UniqueViolation) as refused:
            await call(doc, "save", mode)
        assert refused.value.other_id == holder.id
    other = await call(Gadget(name="z", code="other"), "save", mode)
    assert (await call(Gadget.objects.filter(code="other"), "all", mode))[0].id == other.id
    assert_indexes_consistent(redis_client, Gadget)


# -- an insert's index writes prove their keys' types -------------------------------------
# An insert checks the type of an index key only where it makes a unique claim or has no
# entry to write; elsewhere its first ZADD there proves it, and a refusal then takes back
# every write before it (the id's ZADD, the entries of the indexes before, an allocated id).

FOREIGN = [index.name for index in Gadget._meta.indexes] + ["stream"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", FOREIGN)
async def test_a_foreign_key_refuses_an_insert_with_nothing_written(
        conn: Any, redis_client: Any, mode: str, target: str) -> None:
    ks = KeySpace(Gadget._meta)
    first = await call(Gadget(name="f", n=1, on=True, tags=["a", "b"], code="c0"), "save", mode)
    key = ks.changes(0) if target == "stream" else ks.index(0, target)
    before = made_foreign(redis_client, key)
    row = {"name": "x", "n": 2, "on": False, "tags": ["b", "c"], "code": "c1"}
    for doc in (Gadget(**row), Gadget(id="known", **row)):
        with pytest.raises(WrongTypeError) as refused:
            await call(doc, "save", mode)
        assert refused.value.key == key
        assert snapshot(redis_client) == before
    redis_client.delete(key)  # (and with it the first document's entries there)
    again = await call(Gadget(**row), "save", mode)
    assert int(again.id) == int(first.id) + 1  # (the refused inserts took no id)
    assert [d.id for d in await call(Gadget.objects.filter(code="c1"), "all", mode)] == [
        again.id]


@pytest.mark.parametrize("mode", MODES)
async def test_a_foreign_index_refuses_an_insert_with_no_entry_in_it(
        conn: Any, redis_client: Any, mode: str) -> None:
    await call(Gadget(name="w", tags=["a"]), "save", mode)  # (the stored schema first)
    key = KeySpace(Gadget._meta).index(0, "tags")
    before = made_foreign(redis_client, key)
    with pytest.raises(WrongTypeError) as refused:
        await call(Gadget(name="x", tags=[]), "save", mode)  # (no tag: nothing to add)
    assert refused.value.key == key
    assert snapshot(redis_client) == before
    redis_client.delete(key)


@pytest.mark.parametrize("mode", MODES)
async def test_an_insert_with_many_entries_takes_them_all_back(
        conn: Any, redis_client: Any, mode: str) -> None:
    """Entries are added 1,000 per ZADD: a refusal after them removes every chunk."""
    ks = KeySpace(Gadget._meta)
    await call(Gadget(name="w"), "save", mode)  # (the stored schema first)
    key = ks.index(0, "code")  # (after the tags index: its 2,500 entries come first)
    before = made_foreign(redis_client, key)
    tags = [f"t{i}" for i in range(2500)]
    with pytest.raises(WrongTypeError):
        await call(Gadget(name="many", tags=tags, code=None), "save", mode)
    assert snapshot(redis_client) == before
    redis_client.delete(key)
    held = redis_client.zcard(ks.index(0, "tags"))  # (the first document's null entry)
    doc = await call(Gadget(name="many", tags=tags), "save", mode)
    assert redis_client.zcard(ks.index(0, "tags")) == held + 2500
    assert await call(Gadget.objects.filter(tags__contains="t2499"), "count", mode) == 1
    assert await call(doc, "delete", mode)
    assert redis_client.zcard(ks.index(0, "tags")) == held


# -- a delete's index writes prove their keys' types (delete.lua) -------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", FOREIGN)
async def test_a_foreign_key_refuses_a_delete_with_nothing_removed(
        conn: Any, redis_client: Any, mode: str, target: str) -> None:
    ks = KeySpace(Gadget._meta)
    doc = await call(Gadget(name="d", n=1, on=True, tags=["a", "b"], code="c0"), "save", mode)
    other = await call(Gadget(name="e", n=2, on=False, tags=["b"], code="c1"), "save", mode)
    key = ks.changes(0) if target == "stream" else ks.index(0, target)
    held = redis_client.zrange(key, 0, -1) if target != "stream" else []
    before = made_foreign(redis_client, key)
    with pytest.raises(WrongTypeError) as refused:
        await call(doc, "delete", mode)
    assert refused.value.key == key
    assert snapshot(redis_client) == before
    redis_client.delete(key)
    if held:
        redis_client.zadd(key, dict.fromkeys(held, 0))
    assert await call(doc, "delete", mode)
    assert [d.id for d in await call(Gadget.objects, "all", mode)] == [other.id]
    if target != "stream":
        assert_indexes_consistent(redis_client, Gadget)


@pytest.mark.parametrize("mode", MODES)
async def test_a_delete_with_many_entries_puts_them_all_back(
        conn: Any, redis_client: Any, mode: str) -> None:
    """Entries are removed 1,000 per ZREM: a refusal after them puts every chunk back."""
    ks = KeySpace(Gadget._meta)
    doc = await call(Gadget(name="many", tags=[f"t{i}" for i in range(2500)], code="c"),
                     "save", mode)
    key = ks.index(0, "code")  # (after the tags index)
    held = redis_client.zrange(key, 0, -1)
    before = made_foreign(redis_client, key)
    with pytest.raises(WrongTypeError):
        await call(doc, "delete", mode)
    assert snapshot(redis_client) == before
    redis_client.delete(key)
    redis_client.zadd(key, dict.fromkeys(held, 0))
    assert_indexes_consistent(redis_client, Gadget)
    assert await call(doc, "delete", mode)
    assert redis_client.zcard(ks.index(0, "tags")) == 0
    assert_indexes_consistent(redis_client, Gadget)


# -- an update's index writes prove their keys' types (save.lua) --------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", FOREIGN)
async def test_a_foreign_key_refuses_an_update_with_nothing_written(
        conn: Any, redis_client: Any, mode: str, target: str) -> None:
    ks = KeySpace(Gadget._meta)
    doc = await call(Gadget(name="u", n=1, on=True, tags=["a", "b"], code="c0"), "save", mode)
    version = doc.version
    key = ks.changes(0) if target == "stream" else ks.index(0, target)
    held = redis_client.zrange(key, 0, -1) if target != "stream" else []
    before = made_foreign(redis_client, key)
    # (every index changes: entries removed and added in each; the unique one is checked)
    doc.name, doc.n, doc.on, doc.tags, doc.code = "v", 2, False, ["b", "c"], "c1"
    with pytest.raises(WrongTypeError) as refused:
        await call(doc, "save", mode)
    assert refused.value.key == key
    assert snapshot(redis_client) == before
    assert doc.version == version
    redis_client.delete(key)
    if held:
        redis_client.zadd(key, dict.fromkeys(held, 0))
    await call(doc, "save", mode)
    assert [d.id for d in await call(Gadget.objects.filter(name="v", tags__contains="c"),
                                     "all", mode)] == [doc.id]
    if target != "stream":
        assert_indexes_consistent(redis_client, Gadget)


@pytest.mark.parametrize("mode", MODES)
async def test_a_foreign_index_refuses_an_update_that_changes_no_entry_in_it(
        conn: Any, redis_client: Any, mode: str) -> None:
    doc = await call(Gadget(name="r", tags=["a", "b"]), "save", mode)
    key = KeySpace(Gadget._meta).index(0, "tags")
    before = made_foreign(redis_client, key)
    doc.tags = ["b", "a"]  # (the same entries: nothing to write in the index)
    with pytest.raises(WrongTypeError) as refused:
        await call(doc, "save", mode)
    assert refused.value.key == key
    assert snapshot(redis_client) == before
    redis_client.delete(key)


@pytest.mark.parametrize("mode", MODES)
async def test_an_update_with_many_entries_takes_them_all_back(
        conn: Any, redis_client: Any, mode: str) -> None:
    """2,500 entries removed and 2,500 added, 1,000 per command, then a refusal (the
    stream): every one is put back as it was."""
    ks = KeySpace(Gadget._meta)
    doc = await call(Gadget(name="m", tags=[f"a{i}" for i in range(2500)]), "save", mode)
    stream = ks.changes(0)
    before = made_foreign(redis_client, stream)
    doc.tags = [f"b{i}" for i in range(2500)]
    with pytest.raises(WrongTypeError):
        await call(doc, "save", mode)
    assert snapshot(redis_client) == before
    redis_client.delete(stream)
    await call(doc, "save", mode)
    assert await call(Gadget.objects.filter(tags__contains="b2499"), "count", mode) == 1
    assert await call(Gadget.objects.filter(tags__contains="a0"), "count", mode) == 0
    assert_indexes_consistent(redis_client, Gadget)


# -- what a refusal leaves when the indexes had drifted from the meta hash -----------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_refused_write_leaves_its_entries_as_the_meta_hash_lists_them(
        conn: Any, redis_client: Any, mode: str) -> None:
    """The documented limit of proving types by the first write: where a document's index
    entries had drifted from its meta hash, a refused write leaves the entries it touched
    as the (unchanged) meta hash lists them — a leftover entry it added is gone, a missing
    entry it removed is back — and changes nothing else: no document, meta hash, id, event
    or other entry (docs/redis.md, "A refused write")."""
    ks = KeySpace(Gadget._meta)
    doc = await call(Gadget(name="a", tags=["t"], code="c9"), "save", mode)
    stream = ks.changes(0)
    names, tags = ks.index(0, "name"), ks.index(0, "tags")
    names_key, tags_key = names.encode(), tags.encode()  # (as snapshot() names keys)
    leftover = [m for m in redis_client.zrange(names, 0, -1) if m.startswith(b" a\x00")][0]
    leftover = b" b" + leftover[2:]  # (the entry the update to "b" adds, there already)
    redis_client.zadd(names, {leftover: 0})
    before = made_foreign(redis_client, stream)
    doc.name = "b"
    with pytest.raises(WrongTypeError):
        await call(doc, "save", mode)
    after = snapshot(redis_client)
    assert {k: v for k, v in after.items() if k != names_key} == {
        k: v for k, v in before.items() if k != names_key}
    assert leftover not in redis_client.zrange(names, 0, -1)  # (as the meta hash says)
    # a delete: an entry the meta hash lists but the index lost comes back
    fresh = await call(Gadget.objects, "get", mode, id=doc.id)
    (entry,) = [m for m in redis_client.zrange(tags, 0, -1) if m.startswith(b" t\x00")]
    redis_client.zrem(tags, entry)
    before = snapshot(redis_client)
    with pytest.raises(WrongTypeError):
        await call(fresh, "delete", mode)
    after = snapshot(redis_client)
    assert {k: v for k, v in after.items() if k != tags_key} == {
        k: v for k, v in before.items() if k != tags_key}
    assert entry in redis_client.zrange(tags, 0, -1)
    redis_client.delete(stream)
    assert_indexes_consistent(redis_client, Gadget)
