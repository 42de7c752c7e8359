"""The behaviour every backend must have, run on each backend in sync and async mode.

Expected results come from plain Python over the documents the test wrote (and, for
ordering, from the documented rules), never from the backend under test.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from contract_models import run

from quantumorm import (
    DuplicateIdError,
    Q,
    QueryError,
    UniqueViolation,
    ValidationError,
    VersionConflict,
)

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
U1, U2 = uuid.UUID(int=1), uuid.UUID(int=2)


def rows() -> list[dict[str, Any]]:
    """24 documents with ties, nulls, big numbers, unicode and NULs."""
    out = []
    for i in range(24):
        out.append({
            "s": None if i % 7 == 0 else ["", "a", "ab", "b", "é", "a\x00b"][i % 6],
            "n": None if i % 5 == 0 else [-(2**60), -3, 0, 2, 2**53 + 1, 10**20][i % 6],
            "f": None if i % 6 == 1 else [-1.5, 0.0, 0.1, 2.5][i % 4],
            "b": None if i % 8 == 3 else i % 2 == 0,
            "t": None if i % 9 == 4 else T0 + dt.timedelta(hours=i % 5),
            "d": None if i % 4 == 2 else [Decimal("0.10"), Decimal("-2"), Decimal("1e30")][i % 3],
            "u": None if i % 3 == 0 else [U1, U2][i % 2],
            "tags": None if i % 10 == 9 else [["x"], ["x", "y"], [], ["z"]][i % 4],
            "j": None if i % 5 == 1 else {"k": i % 3},
            "note": f"note {i % 4}",
        })
    return out


async def load(models: Any, mode: str) -> dict[str, Any]:
    docs = [models.Item(id=f"i{i:02d}", **values) for i, values in enumerate(rows())]
    await run(models.Item.objects, "bulk_create", mode, docs)
    return {d.id: d for d in docs}


def expect(docs: dict[str, Any], predicate: Any) -> list[str]:
    return sorted(i for i, d in docs.items() if predicate(d))


CASES: list[tuple[dict[str, Any], Any]] = [
    ({"s": "a"}, lambda d: d.s == "a"),
    ({"s__ne": "a"}, lambda d: d.s != "a"),
    ({"s__in": ["a", "é", None]}, lambda d: d.s in ("a", "é", None)),
    ({"s__nin": ["a", ""]}, lambda d: d.s not in ("a", "")),
    ({"s__gt": "a"}, lambda d: d.s is not None and d.s > "a"),
    ({"s__lte": "ab"}, lambda d: d.s is not None and d.s <= "ab"),
    ({"s__startswith": "a"}, lambda d: d.s is not None and d.s.startswith("a")),
    ({"s__contains": "\x00"}, lambda d: d.s is not None and "\x00" in d.s),
    ({"s__endswith": "b"}, lambda d: d.s is not None and d.s.endswith("b")),
    ({"s__isnull": True}, lambda d: d.s is None),
    ({"n__gte": 2**53}, lambda d: d.n is not None and d.n >= 2**53),
    ({"n__lt": 0}, lambda d: d.n is not None and d.n < 0),
    ({"n": 2**53 + 1}, lambda d: d.n == 2**53 + 1),
    ({"f__gt": 0}, lambda d: d.f is not None and d.f > 0),
    ({"f": -0.0}, lambda d: d.f == 0.0),
    ({"b": False}, lambda d: d.b is False),
    ({"b__ne": True}, lambda d: d.b is not True),
    ({"t__gt": T0 + dt.timedelta(hours=2)},
     lambda d: d.t is not None and d.t > T0 + dt.timedelta(hours=2)),
    ({"t": dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))},
     lambda d: d.t == T0),
    ({"d__gte": Decimal("0.1")}, lambda d: d.d is not None and d.d >= Decimal("0.1")),
    ({"d": Decimal("0.1000")}, lambda d: d.d == Decimal("0.1")),
    ({"u": str(U1)}, lambda d: d.u == U1),
    ({"tags__contains": "x"}, lambda d: d.tags is not None and "x" in d.tags),
    ({"tags__isnull": False}, lambda d: d.tags is not None),
    ({"tags": []}, lambda d: d.tags == []),
    ({"j": {"k": 1}}, lambda d: d.j == {"k": 1}),
    ({"note": "note 2"}, lambda d: d.note == "note 2"),
    ({"id__in": ["i01", "i02", "nope"]}, lambda d: d.id in ("i01", "i02")),
]


@pytest.mark.parametrize("lookup, predicate", CASES, ids=[next(iter(c[0])) for c in CASES])
async def test_every_lookup(models: Any, mode: str, lookup: dict[str, Any],
                            predicate: Any) -> None:
    docs = await load(models, mode)
    want = expect(docs, predicate)
    qs = models.Item.objects.filter(**lookup)
    assert sorted(d.id for d in await run(qs, "all", mode)) == want
    assert await run(qs, "count", mode) == len(want)
    assert await run(qs, "exists", mode) == bool(want)
    excluded = models.Item.objects.exclude(**lookup)
    assert sorted(d.id for d in await run(excluded, "all", mode)) == sorted(
        set(docs) - set(want))


async def test_q_composition(models: Any, mode: str) -> None:
    docs = await load(models, mode)
    Item = models.Item
    where = (Q(s="a") | (Q(n__gt=0) & ~Q(b=True))) & ~(Q(tags__contains="z") | Q(note="note 3"))
    want = expect(docs, lambda d: (d.s == "a" or (d.n is not None and d.n > 0 and d.b is not True))
                  and not ((d.tags is not None and "z" in d.tags) or d.note == "note 3"))
    assert sorted(d.id for d in await run(Item.objects.filter(where), "all", mode)) == want
    same = Item.objects.filter((Item.s == "a") | ((Item.n > 0) & (Item.b != True)))  # noqa: E712
    assert await run(same, "count", mode) == len(expect(
        docs, lambda d: d.s == "a" or (d.n is not None and d.n > 0 and d.b is not True)))


async def test_q_built_in_a_loop_is_the_or_of_its_parts(models: Any, mode: str) -> None:
    # ``Q()`` is neutral in | and &: the idiom `q = Q(); for x in xs: q |= Q(...)` must not
    # start from "match everything" (an empty Q once made the OR match every document)
    docs = await load(models, mode)
    Item = models.Item
    for values in (["a", "b"], ["a"], ["é", "", "not stored"], ["not stored"]):
        q = Q()
        for value in values:
            q |= Q(s=value)
        want = expect(docs, lambda d, values=values: d.s in values)
        assert sorted(d.id for d in await run(Item.objects.filter(q), "all", mode)) == want
        assert await run(Item.objects.filter(q), "count", mode) == len(want)
        excluded = await run(Item.objects.exclude(q), "all", mode)
        assert sorted(d.id for d in excluded) == sorted(set(docs) - set(want))
    q = Q()
    for part in (Q(n__gt=0), Q(b=True), Item.f >= 0):
        q &= part
    want = expect(docs, lambda d: d.n is not None and d.n > 0 and d.b is True
                  and d.f is not None and d.f >= 0)
    assert sorted(d.id for d in await run(Item.objects.filter(q), "all", mode)) == want
    # an empty Q on either side, negated or not, leaves the other operand as it is
    only_a = expect(docs, lambda d: d.s == "a")
    for q in (Q() | Q(s="a"), Q(s="a") | Q(), Q() & Q(s="a"), Q(s="a") & ~Q(), ~Q() | Q(s="a")):
        assert sorted(d.id for d in await run(Item.objects.filter(q), "all", mode)) == only_a


async def test_an_empty_q_is_no_condition(models: Any, mode: str) -> None:
    # the loop ran zero times: filter() with the empty Q keeps everything (as filter() with
    # no argument does), exclude() drops nothing; ~Q() is Q() itself
    docs = await load(models, mode)
    Item, every = models.Item, sorted(docs)
    q = Q()
    for value in ():
        q |= Q(s=value)
    for qs in (Item.objects.filter(q), Item.objects.exclude(q), Item.objects.filter(~q),
               Item.objects.exclude(~q), Item.objects.filter(), Item.objects.exclude(),
               Item.objects.filter(Q() | Q(), Q() & ~Q()), Item.objects.exclude({})):
        assert sorted(d.id for d in await run(qs, "all", mode)) == every, qs
        assert await run(qs, "count", mode) == len(every)
    # matching nothing is said explicitly
    assert await run(Item.objects.filter(Q(id__in=[])), "count", mode) == 0
    assert await run(Item.objects.filter(q, s="a"), "count", mode) == len(
        expect(docs, lambda d: d.s == "a"))


async def test_ordering_nulls_ties_and_slices(models: Any, mode: str) -> None:
    docs = await load(models, mode)
    Item = models.Item
    got = [d.id for d in await run(Item.objects.order_by("-n", "s"), "all", mode)]
    # nulls last when descending; ties by s (nulls first), then by id in s's direction
    def key(d: Any) -> tuple[Any, ...]:
        return (d.n is not None, d.n if d.n is not None else 0)
    want = sorted(docs.values(), key=lambda d: (d.s is not None, d.s or "", d.id))
    want = sorted(want, key=key, reverse=True)
    assert got == [d.id for d in want]
    window = await run(Item.objects.order_by("-n", "s")[5:9], "all", mode)
    assert [d.id for d in window] == got[5:9]
    first = await run(Item.objects.order_by("t", "id"), "first", mode)
    assert first.t is None


async def test_pagination_numbered_and_keyset(models: Any, mode: str) -> None:
    docs = await load(models, mode)
    Item = models.Item
    qs = Item.objects.order_by("d")
    everything = [d.id for d in await run(qs, "all", mode)]
    page = await run(qs, "paginate", mode, page=2, per_page=5)
    assert [d.id for d in page] == everything[5:10] and page.total == len(docs)
    seen: list[str] = []
    cursor = None
    while True:
        page = await run(qs, "paginate", mode, per_page=7, after=cursor)
        seen += [d.id for d in page]
        if cursor is None:  # an insert that sorts first must not shift later pages
            await run(models.Item(id="early", d=Decimal("-999")), "save", mode)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == everything


async def test_update_and_delete_where(models: Any, mode: str) -> None:
    docs = await load(models, mode)
    Item = models.Item
    changed = await run(Item.objects.filter(b=True), "update", mode, note="flagged")
    assert changed == len(expect(docs, lambda d: d.b is True))
    assert await run(Item.objects.filter(note="flagged"), "count", mode) == changed
    gone = await run(Item.objects.filter(n__lt=0), "delete", mode)
    assert gone == len(expect(docs, lambda d: d.n is not None and d.n < 0))
    assert await run(Item.objects, "count", mode) == len(docs) - gone


async def test_crud_versions_and_conflicts(models: Any, mode: str) -> None:
    Account = models.Account
    a = await run(Account(email="a@x", age=3), "save", mode)
    created = a.version
    assert created > 0 and a.id is not None
    other = (await run(Account.objects, "get_many", mode, [a.id, "missing"]))
    assert other[1] is None
    b = other[0]
    assert b.version == created
    a.age = 4
    await run(a, "save", mode)
    assert a.version > created
    b.age = 5
    with pytest.raises(VersionConflict) as caught:
        await run(b, "save", mode)
    assert (caught.value.expected, caught.value.actual) == (created, a.version)
    await run(b, "reload", mode)
    assert b.age == 4 and b.version == a.version
    with pytest.raises(DuplicateIdError):
        await run(Account(id=a.id, email="c@x"), "save", mode)
    with pytest.raises(UniqueViolation):
        await run(Account(email="a@x"), "save", mode)
    assert await run(a, "delete", mode) is True
    assert await run(Account.objects, "count", mode) == 0


async def test_validation_and_query_errors(models: Any, mode: str) -> None:
    Account = models.Account
    with pytest.raises(ValidationError) as caught:
        await run(Account(email="x" * 50, age=-1), "save", mode)
    assert set(caught.value.errors) == {"email", "age"}
    assert await run(Account.objects, "count", mode) == 0
    with pytest.raises(QueryError):
        Account.objects.filter(agee=3)
    with pytest.raises(QueryError):
        Account.objects.filter(age__startswith="1")
