"""bulk_create stores what one save per document stores: the same meta hash (its index
value encodings, which insert_many.lua unpacks from one MessagePack string per document
straight into HSET), the same JSON, the same index entries and change events, for a model
with indexes of every kind, one without any indexed field, one with a unique index (the
entries are unpacked once for the checks and reused by the writes), one with an expiry and
one whose events carry the document (the events path that builds an entry table)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import assert_indexes_consistent

from modes import MODES, call
from quantumorm import ArrayField, BooleanField, Document, IntField, StringField, sortable
from quantumorm.backends.redis.keys import KeySpace


class Indexed(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    active = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)

    class Meta:
        collection = "bss_indexed"
        indexes = [("name", "age")]


class Bare(Document):
    name = StringField()
    n = IntField()

    class Meta:
        collection = "bss_bare"


class Unique(Document):
    email = StringField(unique=True)
    tags = ArrayField(StringField(), indexed=True)

    class Meta:
        collection = "bss_unique"


class Expiring(Document):
    name = StringField(indexed=True)

    class Meta:
        collection = "bss_expiring"
        ttl = 3600


class Full(Document):
    name = StringField(indexed=True)

    class Meta:
        collection = "bss_full"
        changes_document = True


def _rows(model: type[Document]) -> list[dict[str, Any]]:
    if model is Indexed:
        return [{"name": None if i % 4 == 0 else f"n{i % 3}", "age": i % 5,
                 "active": i % 2 == 0, "tags": [f"t{j}" for j in range(i % 7)] + ["t1"]}
                for i in range(30)]
    if model is Bare:
        return [{"name": f"n{i}", "n": i} for i in range(30)]
    if model is Unique:
        return [{"email": f"e{i}@x", "tags": ["a", "b"] if i % 2 else []} for i in range(30)]
    return [{"name": f"n{i % 4}"} for i in range(30)]


def _meta_hash(redis_client: Any, model: type[Document], id: str) -> dict[bytes, bytes]:
    keys = KeySpace(model._meta)
    stored = redis_client.hgetall(keys.meta(keys.partition_of(id), id))
    # (the write id and the version differ between two writes; what the indexes hold must not)
    return {k: v for k, v in stored.items() if k not in (b"r", b"v")}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("model", [Indexed, Bare, Unique, Expiring, Full])
async def test_bulk_stores_what_saves_store(conn: Any, redis_client: Any, mode: str,
                                            model: type[Document]) -> None:
    rows = _rows(model)
    if model is Unique:  # (unique values: each twin gets its own)
        bulk = [model(id=f"b{i}", **{**row, "email": "b" + row["email"]})
                for i, row in enumerate(rows)]
        saved = [model(id=f"s{i}", **{**row, "email": "s" + row["email"]})
                 for i, row in enumerate(rows)]
    else:
        bulk = [model(id=f"b{i}", **row) for i, row in enumerate(rows)]
        saved = [model(id=f"s{i}", **row) for i, row in enumerate(rows)]
    written = await call(model.objects, "bulk_create", mode, bulk, batch_size=12)
    assert [d.id for d in written] == [d.id for d in bulk]
    assert len({d.version for d in written}) == len(written)  # (one version each)
    for doc in saved:
        await call(doc, "save", mode)
    stored = assert_indexes_consistent(redis_client, model)
    assert len(stored) == 2 * len(rows)
    for i in range(len(rows)):
        assert stored[f"b{i}"][1] == {**stored[f"s{i}"][1], **(
            {"email": "b" + rows[i]["email"]} if model is Unique else {})}
        expected = _meta_hash(redis_client, model, f"s{i}")
        if model is Unique:  # (the unique index's entries hold the twin's own email)
            expected = {k: v.replace(b"s" + rows[i]["email"].encode(),
                                     b"b" + rows[i]["email"].encode())
                        for k, v in expected.items()}
        assert _meta_hash(redis_client, model, f"b{i}") == expected
    loaded = await call(model.objects, "get_many", mode, [d.id for d in bulk])
    assert [d.to_dict() for d in loaded] == [d.to_dict() for d in written]
    assert [d.version for d in loaded] == [d.version for d in written]
    if model is Expiring:  # (every bulk document expires as a saved one does)
        for doc in bulk:
            assert 3500 < (await call(doc, "ttl", mode)) <= 3600
    keys = KeySpace(model._meta)
    events = redis_client.xrange(keys.changes(0))
    bulk_keys = {sortable.id_key(d.id) for d in bulk}
    created = [e for _, e in events if e[b"op"] == b"create" and e[b"id"] in bulk_keys]
    assert len(created) == len(rows)
    assert {e[b"v"] for e in created} == {str(d.version).encode() for d in written}
    assert all(b"w" in e and (b"d" in e) == (model is Full) for e in created)


async def test_a_unique_value_taken_in_a_batch_is_refused_and_the_others_written(
        conn: Any, redis_client: Any) -> None:
    docs = [Unique(id=f"u{i}", email="same@x" if i in (3, 7) else f"u{i}@x", tags=["x"])
            for i in range(10)]
    with pytest.raises(Exception) as caught:
        await Unique.objects.bulk_create(docs)
    assert "u7" in str(caught.value) or "same@x" in str(caught.value)
    assert {d.id for d in await Unique.objects.filter(tags__contains="x").all()} == {
        f"u{i}" for i in range(10) if i != 7}
    assert_indexes_consistent(redis_client, Unique)
