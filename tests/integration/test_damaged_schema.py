"""A collection's stored schema (the hash ``{ns:coll}:schema``) that does not read: a field
missing, a number not plain digits, a JSON field not JSON or not of its shape, an index
state not known, or the key of another type. Every entry point refuses it with
:class:`DamagedSchemaError` (a :class:`DamagedMetaError`) naming the key and the field,
never a KeyError, ValueError or JSONDecodeError, and writes nothing (the key of another
type: an error that is also a :class:`WrongTypeError` naming the key, as another type at
any key the ORM owns is): a model's first use on
a connection, reindex(), verify(), repair(), and the tools' schema reads. Deleting the
schema hash lets the next first use store it again (its indexes building: reindex()).

Damage is made by hand, as test_damaged_meta.py makes it.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, call, snapshot

import quantumorm
from quantumorm import (
    DamagedMetaError,
    DamagedSchemaError,
    Document,
    IntField,
    StringField,
    WrongTypeError,
)
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.schema import Schema
from quantumorm.tools.targets import schema_of, stored_schema

#: the field damaged, and what it is set to (None: deleted)
SCHEMA_DAMAGE = {
    "layout text": ("layout", "soon"), "layout sign": ("layout", "+3"),
    "layout blank": ("layout", " 3"), "format float": ("format", "2.0"),
    "partitions missing": ("partitions", None), "layout missing": ("layout", None),
    "partition_by missing": ("partition_by", None),
    "fields not JSON": ("fields", "{nope"), "fields missing": ("fields", None),
    "fields a list": ("fields", "[1]"),
    "indexes not JSON": ("indexes", "{"), "indexes missing": ("indexes", None),
    "index without kinds": ("indexes", '{"by_title": {"fields": ["title"], '
                                       '"unique": false, "state": "ready"}}'),
    "index state unknown": ("indexes", '{"by_title": {"fields": ["title"], '
                                       '"kinds": ["StringField"], "unique": false, '
                                       '"state": "done"}}'),
    "history not JSON": ("history", "["), "history of numbers": ("history", "[1]"),
    "checkpoint of no partition": ("build:x", "1:00"),
}


class Plate(Document):
    title = StringField(indexed=True)
    n = IntField()

    class Meta:
        collection = "dsc_plates"


class FreshPlate(Document):  # (the same collection, on a connection that has not used it)
    title = StringField(indexed=True)
    n = IntField()

    class Meta:
        collection = "dsc_plates"
        connection = "dsc_fresh"


def test_load_names_the_field() -> None:
    good = Schema.load(Schema(fields={"a": "StringField"}, indexes={}, partitions=1,
                              partition_by="id").dump(), "k", "c")
    assert good.partitions == 1
    for how, (field, value) in SCHEMA_DAMAGE.items():
        stored = good.dump()
        if value is None:
            del stored[field]
        else:
            stored[field] = value
        with pytest.raises(DamagedSchemaError) as raised:
            Schema.load(stored, "k", "c")
        assert (raised.value.key, raised.value.field, raised.value.model) == ("k", field, "c"), how


async def _entry_points(conn: Any, redis_url: str, redis_client: Any, mode: str, key: str,
                        field: str | None) -> None:
    """Every entry point refuses, naming ``key`` and ``field``, and writes nothing."""
    before = snapshot(redis_client)
    # a connection's first use of the model (this one has not used it yet)
    fresh = quantumorm.create_connection(url=redis_url, name="dsc_fresh")
    attempts: list[tuple[Any, str, dict[str, Any]]] = [
        (FreshPlate(id="b", title="u", n=2), "save", {}),
        (FreshPlate.objects.filter(title="t"), "all", {}),
        (Plate.objects, "reindex", {}),  # (reads the schema again: on any connection)
        (FreshPlate.objects, "verify", {}),
        (FreshPlate.objects, "repair", {}),
    ]
    try:
        for target, method, kwargs in attempts:
            with pytest.raises(DamagedSchemaError) as raised:
                await call(target, method, mode, **kwargs)
            assert isinstance(raised.value, DamagedMetaError)
            assert (raised.value.key, raised.value.field) == (key, field), method
            assert "dsc_plates" in str(raised.value)
            _wrong_type_iff_no_field(raised.value, key, field)
        for read in (lambda: stored_schema(redis_client, Plate._meta.namespace, "dsc_plates"),
                     lambda: schema_of(conn, Plate)):
            with pytest.raises(DamagedSchemaError) as raised:
                read()
            assert (raised.value.key, raised.value.field) == (key, field)
            _wrong_type_iff_no_field(raised.value, key, field)
    finally:
        fresh.close()
    assert snapshot(redis_client) == before


def _wrong_type_iff_no_field(error: BaseException, key: str, field: str | None) -> None:
    """The schema key of another type (no field) is a WrongTypeError naming the key too
    (``except WrongTypeError`` catches it, as for a meta hash of another type); a damaged
    field is not."""
    assert isinstance(error, WrongTypeError) == (field is None), repr(error)
    if field is None:
        assert isinstance(error, WrongTypeError) and error.key == key


@pytest.mark.parametrize("how", SCHEMA_DAMAGE)
@pytest.mark.parametrize("mode", MODES)
async def test_a_damaged_schema_field_is_refused_typed_everywhere(
        conn: Any, redis_client: Any, redis_url: str, mode: str, how: str) -> None:
    await call(Plate(id="a", title="t", n=1), "save", mode)
    key = KeySpace(Plate._meta).schema
    field, value = SCHEMA_DAMAGE[how]
    if value is None:
        redis_client.hdel(key, field)
    else:
        redis_client.hset(key, field, value)
    await _entry_points(conn, redis_url, redis_client, mode, key, field)
    # deleted, the schema is stored again at the next first use, its index to be built
    redis_client.delete(key)
    await call(Plate.objects, "reindex", mode)
    assert [p.id for p in await call(Plate.objects.filter(title="t"), "all", mode)] == ["a"]
    assert (await call(Plate.objects, "verify", mode)).ok


@pytest.mark.parametrize("mode", MODES)
async def test_a_schema_key_of_another_type_is_refused_typed_everywhere(
        conn: Any, redis_client: Any, redis_url: str, mode: str) -> None:
    await call(Plate(id="a", title="t", n=1), "save", mode)
    key = KeySpace(Plate._meta).schema
    redis_client.delete(key)
    redis_client.set(key, b"not a hash")
    await _entry_points(conn, redis_url, redis_client, mode, key, None)


@pytest.mark.parametrize("how", ["layout sign", "fields not JSON", "indexes missing",
                                 "another type"])
@pytest.mark.parametrize("mode", MODES)
async def test_verify_and_repair_read_the_schema_afresh(
        conn: Any, redis_client: Any, mode: str, how: str) -> None:
    """A connection that loaded a good schema keeps its copy for its operations; verify()
    and repair() read the stored one again and refuse its damage (DamagedSchemaError, the
    key and field named, nothing written) rather than report on, or repair against, the
    copy."""
    await call(Plate(id="a", title="t", n=1), "save", mode)
    assert (await call(Plate.objects, "verify", mode)).ok  # (the schema loaded, good)
    key = KeySpace(Plate._meta).schema
    if how == "another type":
        redis_client.delete(key)
        redis_client.set(key, b"not a hash")
        field = None
    else:
        field, value = SCHEMA_DAMAGE[how]
        if value is None:
            redis_client.hdel(key, field)
        else:
            redis_client.hset(key, field, value)
    before = snapshot(redis_client)
    for method in ("verify", "repair"):
        with pytest.raises(DamagedSchemaError) as raised:
            await call(Plate.objects, method, mode)
        assert (raised.value.key, raised.value.field) == (key, field), method
        _wrong_type_iff_no_field(raised.value, key, field)
    assert snapshot(redis_client) == before


@pytest.mark.parametrize("mode", MODES)
async def test_verify_keeps_its_copy_when_the_schema_hash_is_gone(
        conn: Any, redis_client: Any, mode: str) -> None:
    """A schema hash gone (evicted under allkeys-lru, deleted) is not damage: verify() and
    repair() work with the connection's copy, as before (read again, it would be stored
    anew with its indexes building, and repair() would leave their entries as it found
    them), and verify() writes nothing."""
    await call(Plate(id="a", title="t", n=1), "save", mode)
    assert (await call(Plate.objects, "verify", mode)).ok
    redis_client.delete(KeySpace(Plate._meta).schema)
    before = snapshot(redis_client)
    assert (await call(Plate.objects, "verify", mode)).ok
    assert snapshot(redis_client) == before
