"""The end-to-end checks both SQL backends (SQLite and PostgreSQL) pass: CRUD, typed write
errors, special ids and values, arrays, datetimes, keyset pagination. Each check takes the
model :func:`make_person` declared on the backend under test; the tests that run them are in
tests/sqlite/test_sqlite_documents.py and tests/postgres/test_postgres_documents.py."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from modes import call, ids_of
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
from quantumorm.errors import (
    BulkWriteError,
    DuplicateIdError,
    UniqueViolation,
    VersionConflict,
)


def make_person(backend: str) -> Any:
    """The checks' model, on ``backend``."""
    store = backend

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
            backend = store
            collection = "people"
            indexes = [{"fields": ("name", "age"), "unique": True, "name": "name_age"}]

    return Person


async def check_crud(Person: Any, mode: str) -> None:
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


async def check_version_conflicts(Person: Any, mode: str) -> None:
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


async def check_unique_violations_and_nulls(Person: Any, mode: str) -> None:
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


async def check_duplicate_id_and_bulk(Person: Any, mode: str) -> None:
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


async def check_update_and_delete_over_a_set(Person: Any, mode: str) -> None:
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


async def check_special_ids(Person: Any, mode: str) -> None:
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


async def check_big_numbers_are_exact(Person: Any, mode: str) -> None:
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


async def check_values_never_formatted_into_sql(Person: Any, mode: str) -> None:
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


async def check_arrays_empty_vs_null(Person: Any, mode: str) -> None:
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


async def check_datetimes_compare_as_instants(Person: Any, mode: str) -> None:
    tz = dt.timezone(dt.timedelta(hours=2))
    await call(Person(id="utc", born=dt.datetime(2024, 1, 1, 10, tzinfo=dt.timezone.utc)),
               "save", mode)
    await call(Person(id="plus2", born=dt.datetime(2024, 1, 1, 11, tzinfo=tz)), "save", mode)
    earlier = await call(Person.objects.filter(born__lt=dt.datetime(
        2024, 1, 1, 10, tzinfo=dt.timezone.utc)), "all", mode)
    assert ids_of(earlier) == ["plus2"]
    assert ids_of(await call(Person.objects.order_by("born"), "all", mode)) == ["plus2", "utc"]


def check_keyset_pagination(Person: Any) -> None:  # blocking calls only
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


