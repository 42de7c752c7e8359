"""The PostgreSQL backend end to end: CRUD, typed write errors, special values, connections."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from decimal import Decimal
from typing import Any

import pytest
from postgres_helpers import MODES, call, ids_of

import quantumorm
from quantumorm import (
    ArrayField,
    BooleanField,
    DateTimeField,
    DecimalField,
    Document,
    IntField,
    JSONField,
    StringField,
    sortable,
)
from quantumorm.engine import drive
from quantumorm.errors import (
    BackendError,
    BulkWriteError,
    ConfigurationError,
    DocumentTooLargeError,
    DuplicateIdError,
    UniqueViolation,
    UnsupportedOperation,
    VersionConflict,
)


class Person(Document):
    name = StringField(indexed=True)
    email = StringField(unique=True)
    age = IntField(indexed=True)
    balance = DecimalField()
    born = DateTimeField()
    active = BooleanField()
    tags = ArrayField(StringField(), indexed=True)
    extra = JSONField()

    class Meta:
        backend = "postgres"
        collection = "people"
        indexes = [{"fields": ("name", "age"), "unique": True, "name": "name_age"}]


class RedisModel(Document):
    name = StringField()


@pytest.mark.parametrize("mode", MODES)
async def test_crud(pg: Any, mode: str) -> None:
    p = Person(name="ann", email="a@x", age=30, tags=["x", "y"], extra={"k": [1, 2]})
    await call(p, "save", mode)
    assert p.id == "1" and p.version > 0
    got = await call(Person.objects, "get", mode, id=p.id)
    assert got.name == "ann" and got.tags == ["x", "y"] and got.extra == {"k": [1, 2]}
    got.age = 31
    await call(got, "save", mode)
    assert got.version > p.version
    again = await call(Person.objects, "get", mode, id="1")
    assert again.age == 31 and again.version == got.version
    assert await call(Person.objects.filter(age=31), "count", mode) == 1
    assert await call(again, "delete", mode) is True
    assert await call(Person.objects, "count", mode) == 0
    assert await call(Person.objects, "get_many", mode, ["1", "2"]) == [None, None]


@pytest.mark.parametrize("mode", MODES)
async def test_version_conflicts(pg: Any, mode: str) -> None:
    p = Person(name="a")
    await call(p, "save", mode)
    stale = await call(Person.objects, "get", mode, id=p.id)
    p.age = 1
    await call(p, "save", mode)
    stale.age = 2
    with pytest.raises(VersionConflict) as info:
        await call(stale, "save", mode)
    assert p.version > stale.version
    assert (info.value.expected, info.value.actual) == (  # type: ignore[attr-defined]
        stale.version, p.version)
    await call(p, "delete", mode)
    p2 = await call(Person.objects, "get_many", mode, [p.id])
    assert p2 == [None]
    stale.age = 3
    with pytest.raises(VersionConflict) as gone:
        await call(stale, "save", mode)
    assert gone.value.actual is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", MODES)
async def test_unique_violations_and_nulls(pg: Any, mode: str) -> None:
    await call(Person(id="a", email="e@x", name="n", age=1), "save", mode)
    with pytest.raises(UniqueViolation) as info:
        await call(Person(id="b", email="e@x"), "save", mode)
    assert info.value.index == "email"  # type: ignore[attr-defined]
    assert info.value.other_id == "a"  # type: ignore[attr-defined]
    with pytest.raises(UniqueViolation) as compound:
        await call(Person(id="c", name="n", age=1), "save", mode)
    assert compound.value.index == "name_age"  # type: ignore[attr-defined]
    # nulls never conflict, alone or as part of a compound index
    for i in range(3):
        await call(Person(id=f"null{i}", name="n", age=None), "save", mode)
    assert await call(Person.objects.filter(email__isnull=True), "count", mode) == 3
    # a refused write left nothing behind
    assert await call(Person.objects, "get_many", mode, ["b", "c"]) == [None, None]
    # a document may keep its own unique value on update
    a = await call(Person.objects, "get", mode, id="a")
    a.active = True
    await call(a, "save", mode)


@pytest.mark.parametrize("mode", MODES)
async def test_duplicate_id_and_bulk(pg: Any, mode: str) -> None:
    await call(Person(id="3", name="x"), "save", mode)
    with pytest.raises(DuplicateIdError):
        await call(Person(id="3", name="y"), "save", mode)
    docs = [Person(name=f"n{i}", age=i) for i in range(5)] + [Person(id="3", name="dup")]
    with pytest.raises(BulkWriteError) as info:
        await call(Person.objects, "bulk_create", mode, docs)
    assert [pos for pos, _ in info.value.errors] == [5]  # type: ignore[attr-defined]
    # the other requests were written (savepoints, not one all-or-nothing transaction);
    # the insert that drew "3" (a user's id) retried with the next free value
    stored = await call(Person.objects.order_by("id"), "all", mode)
    assert ids_of(stored) == ["1", "2", "3", "4", "5", "6"]
    assert [d.name for d in stored] == ["n0", "n1", "x", "n3", "n4", "n2"]


@pytest.mark.parametrize("mode", MODES)
async def test_update_and_delete_over_a_set(pg: Any, mode: str) -> None:
    docs = [Person(id=str(i), name="a" if i % 2 else "b", age=i) for i in range(10)]
    await call(Person.objects, "bulk_create", mode, docs)
    assert await call(Person.objects.filter(name="a"), "update", mode, active=True) == 5
    assert await call(Person.objects.filter(active=True), "count", mode) == 5
    assert await call(Person.objects.filter(age__lt=5), "delete", mode) == 5
    assert ids_of(await call(Person.objects.order_by("-active", "-age"), "all", mode)) == [
        "9", "7", "5", "8", "6"]
    # a set update that would break a unique index refuses those documents only
    with pytest.raises(BulkWriteError):
        await call(Person.objects.filter(name="a"), "update", mode, age=100)


SPECIAL_IDS = ["a:b", "{x}", "*", "k:{1}*", "é", "日本", "a\x00b", "\x00", "x'); DROP", "0",
               "007", "99999999999999999999999999999999999999", "-1", "a b", '"q"']


@pytest.mark.parametrize("mode", MODES)
async def test_special_ids(pg: Any, mode: str) -> None:
    for i, special in enumerate(SPECIAL_IDS):
        await call(Person(id=special, age=i), "save", mode)
    for special in SPECIAL_IDS:
        got = await call(Person.objects, "get", mode, id=special)
        assert got.id == special
    found = await call(Person.objects, "get_many", mode, SPECIAL_IDS)
    assert [d.id for d in found] == SPECIAL_IDS
    ordered = ids_of(await call(Person.objects, "all", mode))
    assert ordered == sorted(SPECIAL_IDS, key=sortable.id_key)
    assert ids_of(await call(Person.objects.filter(id__in=["a\x00b", "*"]).order_by("id"),
                             "all", mode)) == ["*", "a\x00b"]
    assert await call(Person.objects.filter(id__ne="\x00"), "count", mode) == len(
        SPECIAL_IDS) - 1


@pytest.mark.parametrize("mode", MODES)
async def test_big_numbers_are_exact(pg: Any, mode: str) -> None:
    big = [2**53, 2**53 + 1, 10**30, -(2**63) - 1, 10**30 + 1]
    for i, n in enumerate(big):
        await call(Person(id=f"n{i}", age=n, balance=Decimal(n) / 1000), "save", mode)
    got = await call(Person.objects.filter(age=2**53 + 1), "all", mode)
    assert ids_of(got) == ["n1"]
    assert ids_of(await call(Person.objects.filter(age__gt=2**53).order_by("age"),
                             "all", mode)) == ["n1", "n2", "n4"]
    d = await call(Person.objects, "get", mode, id="n4")
    assert d.age == 10**30 + 1 and d.balance == Decimal(10**30 + 1) / 1000
    assert ids_of(await call(Person.objects.order_by("-balance"), "all", mode)) == [
        "n4", "n2", "n1", "n0", "n3"]


@pytest.mark.parametrize("mode", MODES)
async def test_values_never_formatted_into_sql(pg: Any, mode: str) -> None:
    evil = "x'); DROP TABLE qorm_people; --"
    evil2 = 'a" OR 1=1 --'
    await call(Person(id=evil, name=evil, email=evil2, tags=[evil], extra=evil), "save", mode)
    await call(Person(id="ok", name="plain"), "save", mode)
    for qs in (Person.objects.filter(name=evil), Person.objects.filter(name__contains="');"),
               Person.objects.filter(name__startswith="x')"),
               Person.objects.filter(name__endswith="; --"),
               Person.objects.filter(tags__contains=evil),
               Person.objects.filter(email=evil2), Person.objects.filter(extra=evil),
               Person.objects.filter(id=evil)):
        assert ids_of(await call(qs, "all", mode)) == [evil]
    assert await call(Person.objects, "count", mode) == 2


@pytest.mark.parametrize("mode", MODES)
async def test_arrays_empty_vs_null(pg: Any, mode: str) -> None:
    await call(Person(id="none", tags=None), "save", mode)
    await call(Person(id="empty", tags=[]), "save", mode)
    await call(Person(id="some", tags=["a", "a", "b"]), "save", mode)
    assert ids_of(await call(Person.objects.filter(tags__isnull=True), "all", mode)) == ["none"]
    assert ids_of(await call(Person.objects.filter(tags__isnull=False), "all", mode)) == [
        "empty", "some"]
    assert ids_of(await call(Person.objects.filter(tags=[]), "all", mode)) == ["empty"]
    assert ids_of(await call(Person.objects.filter(tags__contains="a"), "all", mode)) == [
        "some"]
    assert ids_of(await call(Person.objects.exclude(tags__contains="a"), "all", mode)) == [
        "empty", "none"]
    some = await call(Person.objects, "get", mode, id="some")
    some.tags = ["c"]
    await call(some, "save", mode)
    assert ids_of(await call(Person.objects.filter(tags__contains="a"), "all", mode)) == []
    assert ids_of(await call(Person.objects.filter(tags__contains="c"), "all", mode)) == [
        "some"]


@pytest.mark.parametrize("mode", MODES)
async def test_datetimes_compare_as_instants(pg: Any, mode: str) -> None:
    tz = dt.timezone(dt.timedelta(hours=2))
    await call(Person(id="utc", born=dt.datetime(2024, 1, 1, 10, tzinfo=dt.timezone.utc)),
               "save", mode)
    await call(Person(id="plus2", born=dt.datetime(2024, 1, 1, 11, tzinfo=tz)), "save", mode)
    earlier = await call(Person.objects.filter(born__lt=dt.datetime(
        2024, 1, 1, 10, tzinfo=dt.timezone.utc)), "all", mode)
    assert ids_of(earlier) == ["plus2"]
    assert ids_of(await call(Person.objects.order_by("born"), "all", mode)) == ["plus2", "utc"]


def test_keyset_pagination(pg: Any) -> None:  # blocking calls only
    Person.objects.bulk_create_sync([Person(id=str(i), age=i % 3 if i % 4 else None)
                                     for i in range(20)])
    qs = Person.objects.order_by("-age")
    seen: list[str] = []
    cursor = None
    while True:
        page = qs.after(cursor).limit(3).all_sync() if cursor else qs.limit(3).all_sync()
        if not page:
            break
        seen += ids_of(page)
        cursor = qs.cursor_for(page[-1])
    assert seen == ids_of(qs.all_sync())
    assert len(seen) == 20


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
