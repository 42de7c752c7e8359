"""The SQLite backend end to end: CRUD, typed write errors, special values, connections."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlite_helpers import MODES, call, ids_of, raw_rows

import quantumorm
import sql_documents
from quantumorm import (
    ArrayField,
    Document,
    IntField,
    StringField,
)
from quantumorm.backends.sqlite import path_of
from quantumorm.errors import (
    ConfigurationError,
    UniqueViolation,
    UnsupportedOperation,
    VersionConflict,
)

Person = sql_documents.make_person("sqlite")


class RedisModel(Document):
    name = StringField()


@pytest.mark.parametrize("mode", MODES)
async def test_crud(sdb: Any, mode: str) -> None:
    await sql_documents.check_crud(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_version_conflicts(sdb: Any, mode: str) -> None:
    await sql_documents.check_version_conflicts(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_unique_violations_and_nulls(sdb: Any, mode: str) -> None:
    await sql_documents.check_unique_violations_and_nulls(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_duplicate_id_and_bulk(sdb: Any, mode: str) -> None:
    await sql_documents.check_duplicate_id_and_bulk(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_update_and_delete_over_a_set(sdb: Any, mode: str) -> None:
    await sql_documents.check_update_and_delete_over_a_set(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_special_ids(sdb: Any, mode: str) -> None:
    await sql_documents.check_special_ids(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_big_numbers_are_exact(sdb: Any, mode: str) -> None:
    await sql_documents.check_big_numbers_are_exact(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_values_never_formatted_into_sql(sdb: Any, mode: str) -> None:
    await sql_documents.check_values_never_formatted_into_sql(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_arrays_empty_vs_null(sdb: Any, mode: str) -> None:
    await sql_documents.check_arrays_empty_vs_null(Person, mode)


@pytest.mark.parametrize("mode", MODES)
async def test_datetimes_compare_as_instants(sdb: Any, mode: str) -> None:
    await sql_documents.check_datetimes_compare_as_instants(Person, mode)


def test_keyset_pagination(sdb: Any) -> None:
    sql_documents.check_keyset_pagination(Person)


def test_model_on_the_wrong_connection(sdb: Any) -> None:
    with pytest.raises(ConfigurationError):
        RedisModel.objects.using("sqlite").count_sync()
    quantumorm.create_connection(backend="sqlite", url="sqlite://", name="other")
    assert Person.objects.using("other").count_sync() == 0


def test_ttl_is_unsupported(sdb: Any) -> None:
    class Temp(Document):
        class Meta:
            backend = "sqlite"
            ttl = 10

    with pytest.raises(UnsupportedOperation):
        Temp.objects.count_sync()


def test_urls() -> None:
    assert path_of("sqlite://") == ":memory:"
    assert path_of("sqlite:///rel.db") == "rel.db"
    assert path_of("sqlite:////abs/x.db") == "/abs/x.db"
    for bad in ("redis://x", "sqlite:rel.db", "sqlite://host/x.db"):
        with pytest.raises(ConfigurationError):
            path_of(bad)
    with pytest.raises(ConfigurationError):
        quantumorm.create_connection(backend="sqlite", url="sqlite://", bogus=1)


def test_file_database_persists_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    c = quantumorm.create_connection(backend="sqlite", url=f"sqlite:///{path}", name="f1")
    try:
        version = Person(id="x", name="kept").save_sync().version
    finally:
        quantumorm.close_all()
    rows = raw_rows(str(path), "qorm:people")
    assert version > 0
    assert rows == {"x": (version, {"name": "kept", "email": None, "age": None, "balance": None,
                                    "born": None, "active": None, "tags": None, "extra": None})}
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    c = quantumorm.create_connection(backend="sqlite", url=f"sqlite:///{path}", name="f2")
    try:
        assert Person.objects.get_sync(id="x").name == "kept"
    finally:
        c.close()
        quantumorm.close_all()


async def test_async_runs_concurrently_on_one_worker(sdb: Any) -> None:
    await asyncio.gather(*(Person(id=str(i), age=i).save() for i in range(30)))
    assert await Person.objects.filter(age__gte=10).count() == 20


def test_explain(sdb: Any) -> None:
    by_index = Person.objects.filter(age=3).explain_sync()
    assert by_index.backend == "sqlite" and not by_index.scanned
    assert by_index.indexes == ("age",)
    scan = Person.objects.filter(active=True).explain_sync()
    assert scan.scanned and scan.strategy == "scan"
    assert Person.objects.filter(id="1").explain_sync().strategy == "ids"


def test_drop_collection(sdb: Any) -> None:
    Person.objects.bulk_create_sync([Person(name=str(i)) for i in range(4)])
    from quantumorm.engine import drive
    backend = sdb.backend
    assert drive.run(backend.drop_collection(Person._meta), sdb.store.sync_executor()) == 4
    assert Person.objects.count_sync() == 0


def test_added_field_gets_a_column_and_reads_as_null(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/evolve.db"

    def model(with_rank: bool) -> Any:
        attrs: dict[str, Any] = {
            "name": StringField(indexed=True),
            "Meta": type("Meta", (), {"backend": "sqlite", "collection": "evolving"}),
        }
        if with_rank:
            attrs["rank"] = IntField(indexed=True)
        return type("Evolving", (Document,), attrs)

    old, new = model(False), model(True)
    quantumorm.create_connection(backend="sqlite", url=url, name="e1")
    try:
        old(id="a", name="x").save_sync()
    finally:
        quantumorm.close_all()
    c = quantumorm.create_connection(backend="sqlite", url=url, name="e2")

    async def together() -> list[int]:
        # both look at the table before either alters it: one ALTER fails, and retries
        return list(await asyncio.gather(*(c.arun(lambda b: b.count(
            new._meta, new.objects.spec)) for _ in range(3))))

    try:
        assert asyncio.run(together()) == [1, 1, 1]
        new(id="b", name="y", rank=3).save_sync()
        assert [d.id for d in new.objects.filter(rank__isnull=True).all_sync()] == ["a"]
        assert [d.id for d in new.objects.filter(rank__ne=3).all_sync()] == ["a"]
        assert [d.id for d in new.objects.order_by("-rank").all_sync()] == ["b", "a"]
    finally:
        quantumorm.close_all()


class Badge(Document):
    codes = ArrayField(StringField(), unique=True)

    class Meta:
        backend = "sqlite"


def test_unique_array_elements(sdb: Any) -> None:
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


def test_document_size_limit_and_closed_connection(tmp_path: Path) -> None:
    from quantumorm.errors import BackendError, DocumentTooLargeError

    c = quantumorm.create_connection(backend="sqlite", url="sqlite://", name="small",
                                     max_document_bytes=200)
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
        quantumorm.create_connection(backend="sqlite", url="sqlite://", name="bad",
                                     max_document_bytes=0)


@pytest.mark.parametrize("mode", MODES)
async def test_long_in_lists(sdb: Any, mode: str) -> None:
    """Lists beyond any SQLite parameter limit travel as one packed parameter."""
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



def test_two_connections_on_one_file_compare_and_set(tmp_path: Path) -> None:
    """Writers on separate sqlite3 connections (as separate processes would be): every
    increment is a read then a compare-and-set save; none is lost."""
    import threading

    url = f"sqlite:///{tmp_path}/shared.db"
    names = ["w1", "w2", "w3"]
    models = {}
    for name in names:
        quantumorm.create_connection(backend="sqlite", url=url, name=name)
        meta = type("Meta", (), {"backend": "sqlite", "collection": "counters",
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


def test_names_differing_in_case_stay_apart(sdb: Any) -> None:
    """Redis keys are case-sensitive; SQLite identifiers are not: names are folded."""
    def model(collection: str) -> Any:
        return type(f"M_{collection}", (Document,), {
            "name": StringField(indexed=True), "Name": StringField(indexed=True),
            "Meta": type("Meta", (), {"backend": "sqlite", "collection": collection})})

    upper, lower = model("Users"), model("users")
    upper(id="1", name="a", Name="B").save_sync()
    lower(id="1", name="c", Name="D").save_sync()
    assert [d.Name for d in upper.objects.filter(name="a").all_sync()] == ["B"]
    assert [d.name for d in lower.objects.filter(Name="D").all_sync()] == ["c"]
    assert upper.objects.filter(Name="a").count_sync() == 0


def test_collections_named_like_internal_tables(sdb: Any) -> None:
    """No collection's table can be another's side table, index or the sequence table."""
    def model(collection: str, **fields: Any) -> Any:
        return type(f"M_{collection}", (Document,), {
            **fields, "Meta": type("Meta", (), {"backend": "sqlite", "collection": collection})})

    owner = model("box", tags=ArrayField(StringField(), indexed=True))
    side_like = model("box__tags", n=IntField(indexed=True))
    sequences = model("sequences", n=IntField())
    owner(tags=["a"]).save_sync()
    side_like(n=1).save_sync()
    sequences(n=2).save_sync()
    sequences(n=3).save_sync()
    assert [d.id for d in owner.objects.filter(tags__contains="a").all_sync()] == ["1"]
    assert [d.n for d in side_like.objects.all_sync()] == [1]
    assert [(d.id, d.n) for d in sequences.objects.all_sync()] == [("1", 2), ("2", 3)]
