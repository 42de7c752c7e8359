"""Document lifecycle against real Redis: insert, compare-and-set update, reload, delete,
duplicate ids, unique indexes, version conflicts, awkward ids, byte-exact storage, and data
written by other programs (corrupt JSON, keys of the wrong type)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call, ids_of, snapshot, stored_payload

from quantumorm import (
    ArrayField,
    BooleanField,
    BulkWriteError,
    CorruptDocumentError,
    DateTimeField,
    DecimalField,
    Document,
    DoesNotExist,
    DuplicateIdError,
    FloatField,
    IntField,
    InvalidOperation,
    JSONField,
    StringField,
    UniqueViolation,
    UUIDField,
    VersionConflict,
    WrongTypeError,
)
from quantumorm.backends.redis import stored
from quantumorm.backends.redis.keys import KeySpace


class Account(Document):
    email = StringField(unique=True)
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    note = StringField()

    class Meta:
        collection = "d_accounts"


class Blob(Document):
    text = StringField(indexed=True)
    big = IntField(indexed=True)
    ratio = FloatField(indexed=True)
    amount = DecimalField(indexed=True)
    when = DateTimeField(indexed=True)
    uid = UUIDField()
    items = ArrayField(StringField(), indexed=True)
    data = JSONField()
    flag = BooleanField()
    alias = StringField(db_field="al", indexed=True)

    class Meta:
        collection = "d_blobs"


class Named(Document):
    name = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "d_named"


def keys(model: Any) -> KeySpace:
    return KeySpace(model._meta)


def stored_version(redis_client: Any, model: Any, id: str, format: int) -> int:
    """The version a document is stored at: its header's (format 3, without a meta hash:
    no expiry, no listed index), or its meta hash's (format 2)."""
    ks = keys(model)
    raw = redis_client.get(ks.doc(0, id))
    head = stored.header(raw)
    if format == 3:
        assert head is not None and not redis_client.exists(ks.meta(0, id))
        return head[0]
    assert head is None
    return int(redis_client.hget(ks.meta(0, id), "v"))


def writes_format(request: Any, format: int) -> None:
    """Inserts store ``format`` (2: the ``format2_writes`` fixture)."""
    if format == 2:
        request.getfixturevalue("format2_writes")


# -- insert / update / versions -----------------------------------------------------------------


@pytest.mark.parametrize("format", [3, 2])
@pytest.mark.parametrize("mode", MODES)
async def test_insert_update_and_versions(conn: Any, redis_client: Any, mode: str,
                                          format: int, request: Any) -> None:
    writes_format(request, format)
    a = Account(email="a@x", name="Ann", age=30)
    assert a.version == 0 and not a.is_saved and a.id is None
    assert await call(a, "save", mode) is a
    created_a = a.version
    assert a.id == "1" and created_a > 0 and a.is_saved
    b = await call(Account(email="b@x", name="Bob"), "save", mode)
    assert b.id == "2" and b.version > created_a
    assert stored_version(redis_client, Account, "1", format) == created_a

    a.age = 31
    assert a.changed_fields() == ["age"]
    await call(a, "save", mode)
    updated_a = a.version
    assert updated_a > b.version and a.changed_fields() == []
    await call(a, "save", mode)  # nothing changed: nothing written, version unchanged
    assert a.version == updated_a
    assert stored_version(redis_client, Account, "1", format) == updated_a

    fresh = await call(Account.objects, "get", mode, id="1")
    assert (fresh.email, fresh.name, fresh.age, fresh.version) == ("a@x", "Ann", 31, updated_a)
    assert ids_of(await call(Account.objects.filter(age=31), "all", mode)) == ["1"]
    assert ids_of(await call(Account.objects.filter(age=30), "all", mode)) == []

    c = await call(Account(id=42, email="c@x"), "save", mode)  # int ids become strings
    assert c.id == "42"
    created = await call(Account.objects, "create", mode, email="d@x", name="Dee")
    assert created.version > c.version > updated_a and created.id not in ("1", "2", "42")
    assert_indexes_consistent(redis_client, Account)


@pytest.mark.parametrize("mode", MODES)
async def test_auto_ids_skip_user_supplied_numeric_ids(conn: Any, redis_client: Any,
                                                       mode: str) -> None:
    """Auto ids and user ids share one id space (the README allows both): a new document
    without an id must never fail because a user already took the next counter value."""
    first = await call(Account(email="auto1"), "save", mode)
    assert first.id == "1"
    taken = await call(Account(id="2", email="user2", name="kept"), "save", mode)
    second = await call(Account(email="auto2"), "save", mode)  # the counter's next value is 2
    assert second.id not in ("1", "2")
    stored = await call(Account.objects, "get", mode, id="2")
    assert (stored.email, stored.name, stored.version) == ("user2", "kept", taken.version)
    batch = await call(Account.objects, "bulk_create", mode,
                       [Account(id=str(n), email=f"user{n}") for n in range(4, 8)])
    assert len(batch) == 4
    more = await call(Account.objects, "bulk_create", mode,
                      [Account(email=f"auto{n}") for n in range(3, 9)])
    assert len({d.id for d in more}) == 6
    assert not {d.id for d in more} & {"1", "2", "4", "5", "6", "7", second.id}
    assert_indexes_consistent(redis_client, Account)


@pytest.mark.parametrize("format", [3, 2])
@pytest.mark.parametrize("mode", MODES)
async def test_changed_fields_only_touch_their_indexes(conn: Any, redis_client: Any,
                                                      mode: str, format: int,
                                                      request: Any) -> None:
    """An update rewrites the document but touches only the indexes of changed fields;
    a save without changes touches no key at all (observed with keyspace notifications).
    A format-3 document without an expiry or a listed index has no meta hash, and its
    update writes none; a format-2 one's meta hash is rewritten."""
    writes_format(request, format)
    doc = await call(Account(id="u", email="u@x", name="Una", age=5), "save", mode)
    versions = [doc.version]
    ks = keys(Account)
    previous = redis_client.config_get("notify-keyspace-events")["notify-keyspace-events"]
    redis_client.config_set("notify-keyspace-events", "KA")
    pubsub = redis_client.pubsub()
    try:
        pubsub.psubscribe(f"__keyspace@*__:{ks.tag(0)}*")
        assert pubsub.get_message(timeout=2)["type"] == "psubscribe"

        def touched() -> set[str]:
            out = set()
            deadline = time.monotonic() + 0.3
            while time.monotonic() < deadline:
                message = pubsub.get_message(timeout=0.1)
                if message and message["type"] == "pmessage":
                    out.add(message["channel"].decode().split("__:", 1)[1])
                    deadline = time.monotonic() + 0.3
            return out

        doc.name = "Uma"
        await call(doc, "save", mode)
        versions.append(doc.version)
        changed = touched()
        assert ks.index(0, "name") in changed
        assert ks.doc(0, "u") in changed
        assert (ks.meta(0, "u") in changed) == (format == 2)
        assert ks.index(0, "age") not in changed
        assert ks.index(0, "email") not in changed

        doc.note = "unindexed"
        await call(doc, "save", mode)
        changed = touched()
        assert not {ks.index(0, n) for n in ("name", "age", "email")} & changed
        versions.append(doc.version)
        assert 0 < versions[0] < versions[1] < versions[2]  # two updates

        await call(doc, "save", mode)
        assert touched() == set()
        assert doc.version == versions[2]
    finally:
        pubsub.close()
        redis_client.config_set("notify-keyspace-events", previous)
    assert_indexes_consistent(redis_client, Account)


@pytest.mark.parametrize("mode", MODES)
async def test_reload(conn: Any, mode: str) -> None:
    mine = await call(Account(id="r", email="r@x", name="Rae", age=1), "save", mode)
    theirs = await call(Account.objects, "get", mode, id="r")
    theirs.age = 2
    theirs.note = "theirs"
    await call(theirs, "save", mode)
    mine.name = "unsaved change"
    assert await call(mine, "reload", mode) is mine
    assert theirs.version > 0
    assert (mine.name, mine.age, mine.note, mine.version) == ("Rae", 2, "theirs", theirs.version)
    assert mine.changed_fields() == []
    mine.age = 3
    await call(mine, "save", mode)  # based on the reloaded version: no conflict
    assert mine.version > theirs.version
    await call(Account.objects.filter(id="r"), "delete", mode)
    with pytest.raises(Account.DoesNotExist):
        await call(mine, "reload", mode)
    with pytest.raises(InvalidOperation):
        await call(Account(email="never"), "reload", mode)


@pytest.mark.parametrize("mode", MODES)
async def test_delete_return_values(conn: Any, redis_client: Any, mode: str) -> None:
    a = await call(Account(id="d", email="d@x", name="Dan", age=4), "save", mode)
    first_life = a.version
    b = await call(Account.objects, "get", mode, id="d")
    assert await call(a, "delete", mode) is True
    assert await call(b, "delete", mode) is False  # already gone
    with pytest.raises(InvalidOperation):
        await call(a, "delete", mode)  # this instance no longer holds a stored version
    with pytest.raises(InvalidOperation):
        await call(Account(email="new@x"), "delete", mode)  # never saved
    assert assert_indexes_consistent(redis_client, Account) == {}
    # the deleted instance can be saved again: a fresh insert under the same id
    await call(a, "save", mode)
    assert a.version > first_life > 0  # a new life, under a version never used before
    assert (await call(Account.objects, "get", mode, email="d@x")).id == "d"
    assert await call(a, "delete", mode) is True

    c = await call(Account(id="e", email="e@x", age=1), "save", mode)
    stale = await call(Account.objects, "get", mode, id="e")
    c.age = 2
    await call(c, "save", mode)
    assert c.version > stale.version
    with pytest.raises(VersionConflict) as conflict:
        await call(stale, "delete", mode)
    assert (conflict.value.model, conflict.value.id, conflict.value.expected,
            conflict.value.actual) == ("Account", "e", stale.version, c.version)
    assert (await call(Account.objects, "get", mode, id="e")).age == 2
    # the email is free again once its holder is gone
    assert await call(c, "delete", mode) is True
    await call(Account(id="f", email="e@x"), "save", mode)
    assert_indexes_consistent(redis_client, Account)


# -- refused writes write nothing ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_duplicate_id(conn: Any, redis_client: Any, mode: str) -> None:
    await call(Account(id="dup", email="one@x", name="One", age=1), "save", mode)
    before = snapshot(redis_client)
    clash = Account(id="dup", email="two@x", name="Two", age=2)
    with pytest.raises(DuplicateIdError) as error:
        await call(clash, "save", mode)
    assert (error.value.model, error.value.id) == ("Account", "dup")
    assert clash.version == 0
    assert snapshot(redis_client) == before
    with pytest.raises(BulkWriteError) as bulk:
        await call(Account.objects, "bulk_create", mode,
                   [Account(id="ok", email="ok@x"), Account(id="dup", email="three@x")])
    assert [(pos, type(exc)) for pos, exc in bulk.value.errors] == [(1, DuplicateIdError)]
    assert ids_of(bulk.value.written) == ["ok"]
    assert (await call(Account.objects, "get", mode, id="dup")).name == "One"
    assert_indexes_consistent(redis_client, Account)


@pytest.mark.parametrize("mode", MODES)
async def test_unique_violation_writes_nothing(conn: Any, redis_client: Any, mode: str) -> None:
    holder = await call(Account(id="h", email="same@x", name="Holder", age=1), "save", mode)
    other = await call(Account(id="o", email="other@x", name="Other", age=2), "save", mode)
    other_created = other.version
    await call(Account(id="n1", email=None, name="null one"), "save", mode)
    await call(Account(id="n2", email=None, name="null two"), "save", mode)  # nulls never clash
    before = snapshot(redis_client)

    intruder = Account(id="i", email="same@x", name="Intruder", age=3)
    with pytest.raises(UniqueViolation) as error:
        await call(intruder, "save", mode)
    assert (error.value.model, error.value.index, error.value.id, error.value.other_id) == (
        "Account", "email", "i", "h")
    assert snapshot(redis_client) == before

    # an auto-id insert: only the id counter may move
    with pytest.raises(UniqueViolation):
        await call(Account(email="same@x", name="Auto"), "save", mode)
    assert snapshot(redis_client, exclude_suffixes=(":seq",)) == before

    # an update that would take the value: the stored document and every index unchanged
    other.email = "same@x"
    other.name = "Renamed"
    with pytest.raises(UniqueViolation) as error:
        await call(other, "save", mode)
    assert (error.value.id, error.value.other_id) == ("o", "h")
    assert snapshot(redis_client, exclude_suffixes=(":seq",)) == before
    assert other.version == other_created
    other.email = "free@x"  # the instance is still usable
    await call(other, "save", mode)
    assert other.version > other_created and other.name == "Renamed"

    # re-saving the holder with its own value is fine; freeing it lets another take it
    holder.name = "Holder 2"
    await call(holder, "save", mode)
    holder.email = "moved@x"
    await call(holder, "save", mode)
    await call(intruder, "save", mode)
    assert (await call(Account.objects, "get", mode, email="same@x")).id == "i"

    # two claims in one bulk: the first wins
    with pytest.raises(BulkWriteError) as bulk:
        await call(Account.objects, "bulk_create", mode,
                   [Account(id="b1", email="bulk@x"), Account(id="b2", email="bulk@x")])
    assert [(p, type(e)) for p, e in bulk.value.errors] == [(1, UniqueViolation)]
    assert ids_of(bulk.value.written) == ["b1"]
    assert_indexes_consistent(redis_client, Account)


@pytest.mark.parametrize("mode", MODES)
async def test_version_conflict(conn: Any, redis_client: Any, mode: str) -> None:
    await call(Account(id="v", email="v@x", name="V", age=1), "save", mode)
    first = await call(Account.objects, "get", mode, id="v")
    second = await call(Account.objects, "get", mode, id="v")
    first.name = "first"
    await call(first, "save", mode)
    assert first.version > second.version
    before = snapshot(redis_client)
    second.age = 99
    with pytest.raises(VersionConflict) as error:
        await call(second, "save", mode)
    conflict = error.value
    assert (conflict.model, conflict.id, conflict.expected, conflict.actual) == (
        "Account", "v", second.version, first.version)
    assert snapshot(redis_client) == before
    stored = await call(Account.objects, "get", mode, id="v")
    assert (stored.name, stored.age, stored.version) == ("first", 1, first.version)
    # deleted under us: actual is None
    last = first.version
    await call(first, "delete", mode)
    third = Account.from_storage("v", last, {"email": "v@x", "name": "x", "age": 1, "note": None})
    third.age = 5
    with pytest.raises(VersionConflict) as error:
        await call(third, "save", mode)
    assert error.value.actual is None and error.value.expected == last
    assert assert_indexes_consistent(redis_client, Account) == {}


# -- awkward ids ----------------------------------------------------------------------------------

AWKWARD_IDS = [
    "a:b", "a%3Ab", "a%3ab", "a%253Ab", "{x}", "{qorm:d_named:p0}", "}{", "a*", "*", "?", "[a]",
    "with space", " lead", "trail ", "ünï", "日本", "😀", "%", "%%", "%25", "%2", "a\\b",
    "\n", "a\x00b", "a\x00", "d:x", "m:x", ":ids", "ids", "seq", ":seq", "i:name", "x" * 5000,
    "0", "00", "1", "01", "-1", "1.0", "1e3", "9" * 39, "1" * 40, "~", "A", "a", "aa",
    "a.b", "a-b", "a_b", "\u2028", "é", "e\u0301",
]


@pytest.mark.parametrize("mode", MODES)
async def test_awkward_ids_round_trip_and_never_collide(conn: Any, redis_client: Any,
                                                       mode: str) -> None:
    assert len(set(AWKWARD_IDS)) == len(AWKWARD_IDS)
    names = {id: f"name-{n}" for n, id in enumerate(AWKWARD_IDS)}
    half = len(AWKWARD_IDS) // 2
    for id in AWKWARD_IDS[:half]:
        await call(Named(id=id, name=names[id], n=len(id)), "save", mode)
    await call(Named.objects, "bulk_create", mode,
               [Named(id=id, name=names[id], n=len(id)) for id in AWKWARD_IDS[half:]])

    # every key stays inside the collection's hash tag (but its schema, one for all the
    # partitions); one document key per id
    all_keys = list(redis_client.scan_iter(count=1000))
    tag = keys(Named).tag(0).encode()
    schema = keys(Named).schema.encode()
    assert all(k.startswith(tag + b":") or k == schema for k in all_keys), all_keys
    assert sum(1 for k in all_keys if k.startswith(tag + b":d:")) == len(AWKWARD_IDS)

    assert await call(Named.objects, "count", mode) == len(AWKWARD_IDS)
    for id in AWKWARD_IDS:
        doc = await call(Named.objects, "get", mode, id=id)
        assert (doc.id, doc.name) == (id, names[id])
        found = await call(Named.objects.filter(id=id), "all", mode)
        assert [(d.id, d.name) for d in found] == [(id, names[id])]
        assert [d.id for d in await call(Named.objects.filter(name=names[id]), "all", mode)] == [id]
    docs = await call(Named.objects, "get_many", mode, AWKWARD_IDS + ["absent"])
    assert [d and (d.id, d.name) for d in docs] == [(id, names[id]) for id in AWKWARD_IDS] + [None]
    some = AWKWARD_IDS[::3]
    found = ids_of(await call(Named.objects.filter(id__in=some), "all", mode))
    assert sorted(found) == sorted(some)
    assert sorted(ids_of(await call(Named.objects.exclude(id__in=some), "all", mode))) == sorted(
        set(AWKWARD_IDS) - set(some))
    # natural order: the canonical numeric ids first, numerically
    everything = ids_of(await call(Named.objects, "all", mode))
    assert sorted(everything) == sorted(AWKWARD_IDS)
    numeric = ["0", "1", "9" * 39]
    assert everything[:3] == numeric
    assert ids_of(await call(Named.objects.order_by("-id"), "all", mode))[-3:] == numeric[::-1]
    assert_indexes_consistent(redis_client, Named)

    # delete one by one: only that one goes
    remaining = set(AWKWARD_IDS)
    for id in AWKWARD_IDS:
        doc = await call(Named.objects, "get", mode, id=id)
        assert await call(doc, "delete", mode) is True
        remaining.discard(id)
        if len(remaining) % 10 == 0:
            assert set(ids_of(await call(Named.objects, "all", mode))) == remaining
            assert_indexes_consistent(redis_client, Named)
    assert await call(Named.objects, "count", mode) == 0
    assert [k for k in redis_client.scan_iter()
            if not k.endswith((b":seq", b":x", b":state", b":schema"))] == []


# -- byte-exact storage ------------------------------------------------------------------------

NASTY = ("\x00\x01\"\\/\b\f\n\r\t\u2028\u2029</script>\U0001F600\ud7ff\ue000\uffff"
         " é e\u0301 %00 {}:*")
BIG = 123456789012345678901234567890


def storage_form(values: dict[str, Any]) -> dict[str, Any]:
    """The stored form, written out by hand: declaration order, db_field names, Decimals
    and UUIDs as strings, datetimes as ISO 8601 with their offset."""
    return {
        "text": values["text"],
        "big": values["big"],
        "ratio": values["ratio"],
        "amount": None if values["amount"] is None else str(values["amount"]),
        "when": None if values["when"] is None else values["when"].isoformat(),
        "uid": None if values["uid"] is None else str(values["uid"]),
        "items": values["items"],
        "data": values["data"],
        "flag": values["flag"],
        "al": values["alias"],
    }


BLOBS = {
    "nasty": {
        "text": NASTY, "big": BIG, "ratio": 0.1 + 0.2,
        "amount": Decimal("-123456789012345678901234567890.123456789012345678901234567890"),
        "when": datetime(2024, 2, 29, 23, 59, 59, 999999,
                         tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
        "uid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "items": [], "data": {"n": BIG, "f": 0.1 + 0.2, "e": [], "o": {}, "s": NASTY,
                              "neg": -(2**70), "tiny": 5e-324, "big_f": 1e308, "l": [[], [{}]]},
        "flag": False, "alias": NASTY[::-1],
    },
    "edges": {
        "text": "", "big": -(2**64), "ratio": -0.0, "amount": Decimal("1E+30"),
        "when": datetime(1, 1, 1, tzinfo=timezone.utc), "uid": None, "items": ["", "\x00", NASTY],
        "data": [], "flag": True, "alias": "",
    },
    "nulls": {
        "text": None, "big": None, "ratio": None, "amount": None, "when": None, "uid": None,
        "items": None, "data": None, "flag": None, "alias": None,
    },
    "scalars": {
        "text": "x", "big": 0, "ratio": 1e-300, "amount": Decimal("0.000"), "when": None,
        "uid": None, "items": ["a", "a"], "data": "just a string", "flag": None, "alias": "y",
    },
}


@pytest.mark.parametrize("mode", MODES)
async def test_values_are_stored_byte_exact(conn: Any, redis_client: Any, mode: str) -> None:
    for id, values in BLOBS.items():
        doc = await call(Blob(id=id, **values), "save", mode)
        raw = stored_payload(redis_client, keys(Blob).doc(0, id))
        expected = json.dumps(storage_form(values), ensure_ascii=False, separators=(",", ":"))
        assert raw == expected.encode("utf-8"), id
        assert doc.to_dict(storage=True) == {"id": id, **storage_form(values)}
    raw = stored_payload(redis_client, keys(Blob).doc(0, "nasty"))
    assert b'"big":123456789012345678901234567890,' in raw
    assert b'"ratio":0.30000000000000004,' in raw
    assert b'"items":[],' in raw and b'"e":[],"o":{}' in raw

    loaded = {d.id: d for d in await call(Blob.objects, "all", mode)}  # through the query script
    fetched = await call(Blob.objects, "get_many", mode, list(BLOBS))  # through GET
    for doc in [*loaded.values(), *fetched]:
        values = BLOBS[doc.id]
        for name, value in values.items():
            got = getattr(doc, name)
            assert got == value and type(got) is type(value), (doc.id, name, got, value)
        if values["amount"] is not None:
            assert str(doc.amount) == str(values["amount"])
        if values["when"] is not None:
            assert doc.when.utcoffset() == values["when"].utcoffset()
        assert doc.data == values["data"]
        assert json.dumps(doc.data) == json.dumps(values["data"])  # 0.30000000000000004, not 0.3
    # saving an unchanged loaded document writes nothing
    before = snapshot(redis_client)
    await call(loaded["nasty"], "save", mode)
    assert snapshot(redis_client) == before
    # every indexed value finds its document again
    nasty = BLOBS["nasty"]
    assert ids_of(await call(Blob.objects.filter(text=NASTY), "all", mode)) == ["nasty"]
    assert ids_of(await call(Blob.objects.filter(alias=nasty["alias"]), "all", mode)) == ["nasty"]
    assert ids_of(await call(Blob.objects.filter(big=BIG), "all", mode)) == ["nasty"]
    assert ids_of(await call(Blob.objects.filter(ratio=0.1 + 0.2), "all", mode)) == ["nasty"]
    assert ids_of(await call(Blob.objects.filter(ratio=0.3), "all", mode)) == []
    assert ids_of(await call(Blob.objects.filter(amount=nasty["amount"]), "all", mode)) == ["nasty"]
    assert ids_of(await call(Blob.objects.filter(when=nasty["when"]), "all", mode)) == ["nasty"]
    assert ids_of(await call(Blob.objects.filter(items__contains=NASTY), "all", mode)) == ["edges"]
    assert ids_of(await call(Blob.objects.filter(items__contains="\x00"), "all", mode)) == ["edges"]
    assert ids_of(await call(Blob.objects.filter(amount=Decimal("0")), "all", mode)) == ["scalars"]
    assert_indexes_consistent(redis_client, Blob)


# -- data written by other programs ------------------------------------------------------------

CORRUPT = [b"{not json", b"[1, 2]", b"\xff\xfe{}", b"", b'"a string"', b"null", b"{\"a\":1"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("payload", CORRUPT, ids=[repr(c) for c in CORRUPT])
async def test_corrupt_document_raises(conn: Any, redis_client: Any, mode: str,
                                       payload: bytes) -> None:
    await call(Account(id="ok", email="ok@x", name="same"), "save", mode)
    victim = await call(Account(id="bad:1", email="bad@x", name="same"), "save", mode)
    redis_client.set(keys(Account).doc(0, "bad:1"), payload)
    reads = [
        lambda: call(Account.objects, "get", mode, id="bad:1"),
        lambda: call(Account.objects, "get_many", mode, ["ok", "bad:1"]),
        lambda: call(Account.objects.filter(name="same"), "all", mode),
        lambda: call(Account.objects, "all", mode),
        lambda: call(Account.objects.filter(note=None), "all", mode),  # scan + Python filter
        lambda: call(victim, "reload", mode),
    ]
    for read in reads:
        with pytest.raises(CorruptDocumentError) as error:
            await read()
        assert (error.value.model, error.value.id) == ("Account", "bad:1")
    assert (await call(Account.objects, "get", mode, id="ok")).email == "ok@x"


WRONG_TYPE_TARGETS = ["index", "unique index", "ids", "meta", "document"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", WRONG_TYPE_TARGETS)
async def test_wrong_type_key_refuses_the_write(conn: Any, redis_client: Any, mode: str,
                                                target: str) -> None:
    existing = await call(Account(id="e", email="e@x", name="Eve", age=1), "save", mode)
    created = existing.version
    ks = keys(Account)
    key = {"index": ks.index(0, "name"), "unique index": ks.index(0, "email"), "ids": ks.ids(0),
           "meta": ks.meta(0, "new"), "document": ks.doc(0, "new")}[target]
    redis_client.delete(key)
    if target == "document":
        redis_client.hset(key, "some", "hash")
    else:
        redis_client.set(key, "written by someone else")
    before = snapshot(redis_client)

    with pytest.raises(WrongTypeError) as error:
        await call(Account(id="new", email="n@x", name="Neo", age=2), "save", mode)
    assert error.value.key == key
    assert snapshot(redis_client) == before
    if target in ("index", "unique index", "ids"):  # nor does an insert that takes an id
        with pytest.raises(WrongTypeError):
            await call(Account(email="a@x", name="Al", age=3), "save", mode)
        assert snapshot(redis_client) == before

    if target in ("index", "unique index", "ids"):
        existing.name = "changed"
        existing.email = "changed@x"
        with pytest.raises(WrongTypeError):
            await call(existing, "save", mode)
        assert snapshot(redis_client) == before
        assert existing.version == created
        with pytest.raises(WrongTypeError):
            await call(existing, "delete", mode)
        assert snapshot(redis_client) == before


@pytest.mark.parametrize("mode", MODES)
async def test_does_not_exist_is_the_models_own(conn: Any, mode: str) -> None:
    with pytest.raises(Account.DoesNotExist) as error:
        await call(Account.objects, "get", mode, id="nope")
    assert isinstance(error.value, DoesNotExist)
    assert not isinstance(error.value, Named.DoesNotExist)


class Strict(Document):
    code = StringField(required=True, max_length=5, indexed=True)
    level = IntField(min_value=0, indexed=True)
    email = StringField(unique=True)

    class Meta:
        collection = "d_strict"


@pytest.mark.parametrize("mode", MODES)
async def test_invalid_values_write_nothing(conn: Any, redis_client: Any, mode: str) -> None:
    from quantumorm import ValidationError

    existing = await call(Strict(id="s", code="ok", level=1, email="s@x"), "save", mode)
    created = existing.version
    before = snapshot(redis_client)
    with pytest.raises(ValidationError) as error:
        await call(Strict(code="much too long", level=-1), "save", mode)
    assert set(error.value.errors) == {"code", "level"}
    with pytest.raises(ValidationError) as error:
        await call(Strict.objects, "bulk_create", mode,
                   [Strict(id="a", code="fine"), Strict(id="b", code=None),
                    Strict(id="c", code="ok", level=-5)])
    assert set(error.value.errors) == {"[1].code", "[2].level"}
    existing.level = -3
    with pytest.raises(ValidationError):
        await call(existing, "save", mode)
    with pytest.raises(ValidationError):
        await call(Strict.objects.filter(code="ok"), "update", mode, level=-2)
    assert snapshot(redis_client) == before
    assert existing.version == created


@pytest.mark.parametrize("mode", MODES)
async def test_update_where_reports_unique_refusals(conn: Any, redis_client: Any,
                                                    mode: str) -> None:
    created = {d.id: d.version for d in await call(
        Strict.objects, "bulk_create", mode,
        [Strict(id=str(n), code=f"c{n}", level=n, email=f"{n}@x") for n in range(4)])}
    with pytest.raises(BulkWriteError) as error:
        await call(Strict.objects.filter(level__lt=3), "update", mode, email="same@x")
    assert len(error.value.errors) == 2
    assert all(isinstance(exc, UniqueViolation) for _, exc in error.value.errors)
    assert len(error.value.written) == 1
    winner = error.value.written[0]
    assert winner.email == "same@x" and winner.version > created[winner.id]
    holders = await call(Strict.objects.filter(email="same@x"), "all", mode)
    assert ids_of(holders) == [winner.id]
    stored = assert_indexes_consistent(redis_client, Strict)
    for id, (version, data) in stored.items():
        if id != winner.id:
            assert (version, data["email"]) == (created[id], f"{id}@x")
