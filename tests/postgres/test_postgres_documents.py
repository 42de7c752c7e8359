"""The PostgreSQL backend end to end: CRUD, typed write errors, special values, connections."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from postgres_helpers import MODES, call, ids_of

import quantumorm
import sql_documents
from quantumorm import (
    ArrayField,
    Document,
    IntField,
    StringField,
)
from quantumorm.engine import drive
from quantumorm.errors import (
    BackendError,
    ConfigurationError,
    DocumentTooLargeError,
    UniqueViolation,
    UnsupportedOperation,
    VersionConflict,
)

Person = sql_documents.make_person("postgres")


class RedisModel(Document):
    name = StringField()


@pytest.mark.parametrize("mode", MODES)
async def test_crud(pg: Any, mode: str) -> None:
    await sql_documents.check_crud(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_version_conflicts(pg: Any, mode: str) -> None:
    await sql_documents.check_version_conflicts(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_unique_violations_and_nulls(pg: Any, mode: str) -> None:
    await sql_documents.check_unique_violations_and_nulls(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_duplicate_id_and_bulk(pg: Any, mode: str) -> None:
    await sql_documents.check_duplicate_id_and_bulk(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_update_and_delete_over_a_set(pg: Any, mode: str) -> None:
    await sql_documents.check_update_and_delete_over_a_set(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_special_ids(pg: Any, mode: str) -> None:
    await sql_documents.check_special_ids(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_big_numbers_are_exact(pg: Any, mode: str) -> None:
    await sql_documents.check_big_numbers_are_exact(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_values_never_formatted_into_sql(pg: Any, mode: str) -> None:
    await sql_documents.check_values_never_formatted_into_sql(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_arrays_empty_vs_null(pg: Any, mode: str) -> None:
    await sql_documents.check_arrays_empty_vs_null(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_datetimes_compare_as_instants(pg: Any, mode: str) -> None:
    await sql_documents.check_datetimes_compare_as_instants(Person, mode)


def test_keyset_pagination(pg: Any) -> None:
    sql_documents.check_keyset_pagination(Person)


def test_model_on_the_wrong_connection(pg: Any, postgres_url: str) -> None:
    with pytest.raises(ConfigurationError):
        RedisModel.objects.using("postgres").count_sync()
    quantumorm.create_connection(backend="postgres", url=postgres_url, name="other")
    Person(id="x").save_sync()
    assert Person.objects.using("other").count_sync() == 1


def test_ttl_is_unsupported(pg: Any) -> None:
    class Temp(Document):
        class Meta:
            backend = "postgres"
            ttl = 10

    with pytest.raises(UnsupportedOperation):
        Temp.objects.count_sync()


async def test_async_runs_concurrently_on_the_pool(pg: Any) -> None:
    await asyncio.gather(*(Person(id=str(i), age=i).save() for i in range(30)))
    assert await Person.objects.filter(age__gte=10).count() == 20


def test_drop_collection(pg: Any) -> None:
    Person.objects.bulk_create_sync([Person(name=str(i)) for i in range(4)])
    backend = pg.backend
    assert drive.run(backend.drop_collection(Person._meta), pg.store.sync_executor()) == 4
    assert Person.objects.count_sync() == 0


class Badge(Document):
    codes = ArrayField(StringField(), unique=True)

    class Meta:
        backend = "postgres"


def test_unique_array_elements(pg: Any) -> None:
    Badge(id="1", codes=["a", "b", "b"]).save_sync()
    Badge(id="2", codes=[]).save_sync()
    Badge(id="3", codes=None).save_sync()
    with pytest.raises(UniqueViolation) as info:
        Badge(id="4", codes=["c", "b"]).save_sync()
    assert info.value.other_id == "1"  # type: ignore[attr-defined]
    one = Badge.objects.get_sync(id="1")
    one.codes = ["b", "z"]
    one.save_sync()  # its own elements never conflict
    Badge(id="5", codes=["a"]).save_sync()  # freed by the update


def test_document_size_limit_and_closed_connection(pg: Any, postgres_url: str) -> None:
    c = quantumorm.create_connection(backend="postgres", url=postgres_url, name="small",
                                     max_document_bytes=200, make_default=True)
    try:
        Person(id="ok", name="x").save_sync()
        with pytest.raises(DocumentTooLargeError):
            Person(id="big", name="x" * 300).save_sync()
        assert Person.objects.get_many_sync(["big"]) == [None]
    finally:
        quantumorm.close_all()
    with pytest.raises(BackendError):
        c.run(lambda backend: backend.count(Person._meta, Person.objects.spec))
    with pytest.raises(ConfigurationError):
        quantumorm.create_connection(backend="postgres", url=postgres_url, name="bad",
                                     max_document_bytes=0)


@pytest.mark.parametrize("mode", MODES)
async def test_long_in_lists(pg: Any, mode: str) -> None:
    """Lists of any length travel as one bytea[] parameter."""
    await call(Person.objects, "bulk_create", mode,
               [Person(id=str(i), age=None if i % 10 == 0 else i) for i in range(100)])
    wanted = [*range(1, 300_000, 2), None]
    assert await call(Person.objects.filter(age__in=wanted), "count", mode) == 60
    assert ids_of(await call(Person.objects.filter(age__nin=wanted).order_by("-age"),
                             "all", mode))[:3] == ["98", "96", "94"]
    ids = [str(i) for i in range(50, 300_000)]
    assert await call(Person.objects.filter(id__in=ids), "count", mode) == 50
    assert await call(Person.objects.exclude(id__in=ids), "count", mode) == 50
    assert len(await call(Person.objects, "get_many", mode, ids)) == len(ids)



def test_three_connections_compare_and_set(pg: Any, postgres_url: str) -> None:
    """Writers on separate pools (as separate processes would be): every increment is a
    read then a compare-and-set save; none is lost."""
    url = postgres_url
    names = ["w1", "w2", "w3"]
    models = {}
    for name in names:
        quantumorm.create_connection(backend="postgres", url=url, name=name)
        meta = type("Meta", (), {"backend": "postgres", "collection": "counters",
                                 "connection": name})
        models[name] = type(f"Counter_{name}", (Document,),
                            {"value": IntField(), "Meta": meta})
    conflicts: list[str] = []
    written: list[int] = []  # the version each successful save wrote
    together = threading.Barrier(len(names))

    def work(name: str) -> None:
        model = models[name]
        for _ in range(30):
            doc = model.objects.get_sync(id="c")
            together.wait()  # all three hold the same version: two of them must conflict
            while True:
                doc.value += 1
                try:
                    doc.save_sync()
                    written.append(doc.version)
                    break
                except VersionConflict:
                    conflicts.append(name)
                    doc = model.objects.get_sync(id="c")

    try:
        created = models["w1"](id="c", value=0).save_sync().version
        threads = [threading.Thread(target=work, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = models["w2"].objects.get_sync(id="c")
        # 90 saves, each a distinct version after the create's; the last one is stored
        assert final.value == 90 and len(set(written)) == len(written) == 90
        assert min(written) > created and final.version == max(written)
        assert len(conflicts) >= 60
    finally:
        quantumorm.close_all()


def test_names_differing_in_case_stay_apart(pg: Any) -> None:
    """Redis keys are case-sensitive, and so are quoted PostgreSQL identifiers."""
    def model(collection: str) -> Any:
        return type(f"M_{collection}", (Document,), {
            "name": StringField(indexed=True), "Name": StringField(indexed=True),
            "Meta": type("Meta", (), {"backend": "postgres",
                                                "collection": collection})})

    upper, lower = model("Users"), model("users")
    upper(id="1", name="a", Name="B").save_sync()
    lower(id="1", name="c", Name="D").save_sync()
    assert [d.Name for d in upper.objects.filter(name="a").all_sync()] == ["B"]
    assert [d.name for d in lower.objects.filter(Name="D").all_sync()] == ["c"]
    assert upper.objects.filter(Name="a").count_sync() == 0


def test_collections_named_like_internal_tables(pg: Any) -> None:
    """No collection's table can be another's index, sequence or the schema table."""
    def model(collection: str, **fields: Any) -> Any:
        return type(f"M_{collection}", (Document,), {
            **fields, "Meta": type("Meta", (), {"backend": "postgres",
                                                "collection": collection})})

    owner = model("box", tags=ArrayField(StringField(), indexed=True))
    side_like = model("box_tags", n=IntField(indexed=True))
    sequences = model("schemas", n=IntField())
    # PostgreSQL would name box's primary key index "<table>_pkey" on its own
    pkey_like = model("box_pkey", n=IntField(indexed=True))
    pkey_like(n=5).save_sync()
    assert [d.n for d in pkey_like.objects.all_sync()] == [5]
    owner(tags=["a"]).save_sync()
    side_like(n=1).save_sync()
    sequences(n=2).save_sync()
    sequences(n=3).save_sync()
    assert [d.id for d in owner.objects.filter(tags__contains="a").all_sync()] == ["1"]
    assert [d.n for d in side_like.objects.all_sync()] == [1]
    assert [(d.id, d.n) for d in sequences.objects.all_sync()] == [("1", 2), ("2", 3)]
