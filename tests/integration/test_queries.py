"""Query composition, ordering, slicing, pagination and bulk operations against real Redis.

The expected answers are computed here in plain Python from the inserted values, with the
documented rules: None equals only None; ne/nin/exclude match nulls; ranges never match null;
nulls sort first ascending (last descending); ties are broken by id in the direction of the last
ordering field; numeric ids sort numerically, before the other ids.
"""

from __future__ import annotations

import asyncio
import functools
import random
import re
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call, ids_of, stored_documents
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantumorm import (
    ArrayField,
    BooleanField,
    Document,
    DoesNotExist,
    FloatField,
    IntField,
    InvalidOperation,
    MultipleObjectsReturned,
    Q,
    QueryError,
    StringField,
    UnsupportedOperation,
)
from quantumorm.backends.redis.keys import KeySpace


class Person(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    city = StringField()  # not indexed: scans and Python post-filters
    score = FloatField()  # not indexed
    rank = IntField(indexed=True)
    active = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)

    class Meta:
        collection = "q_people"


class Other(Document):
    name = StringField(indexed=True)

    class Meta:
        collection = "q_other"


FIELDS = ("name", "age", "city", "score", "rank", "active", "tags")
NAMES = [None, "ann", "bob", "Bob", "cy", "ann", "éva", "dan\x00", "dan", ""]
CITIES = [None, "Oslo", "Rome", "oslo", "Zürich", "Rome", "Lima"]
TAGS = [None, [], ["x"], ["y"], ["x", "y"], ["z", "x"]]
NUMERIC_IDS = ["1", "2", "3", "9", "10", "11", "20", "99", "100", "1000", "12345678901234567890"]
ALPHA_IDS = ["a", "b", "B", "aa", "ab", "z-1", "x.y", "Z", "0a", "01", "007", "_u", "~t", "m"]


def _people() -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(7)
    ids = NUMERIC_IDS + ALPHA_IDS + [str(n) for n in range(200, 225)]
    rows = []
    for k, id in enumerate(ids):
        rows.append((id, {
            "name": rng.choice(NAMES),
            "age": rng.choice([None, 18, 25, 25, 30, 41, 41, 41, 60, -3, 2**53 + 1]),
            "city": rng.choice(CITIES),
            "score": rng.choice([None, 0.5, 1.5, 1.5, -2.25, 1e-9, 100.0]),
            "rank": rng.choice([None, 1, 2, 3]),
            "active": [None, True, False][k % 3],
            "tags": rng.choice(TAGS),
        }))
    return rows


PEOPLE = _people()
PEOPLE_BY_ID = dict(PEOPLE)

# -- the documented ordering rules, in Python ---------------------------------------------------

_NUMERIC = re.compile(r"(?:0|[1-9][0-9]{0,38})\Z")


def natural_id(id: str) -> tuple[int, int, str]:
    """Numeric ids numerically first, then the others (these tests use only ASCII
    [A-Za-z0-9-_.~] ids, whose order is plain code point order)."""
    return (0, int(id), "") if _NUMERIC.match(id) else (1, 0, id)


def _cmp(x: Any, y: Any) -> int:
    if x == y:
        return 0
    if x is None:
        return -1
    if y is None:
        return 1
    return -1 if x < y else 1


def expected_order(rows: list[tuple[str, dict[str, Any]]], order: list[str]) -> list[str]:
    spec = [(o.lstrip("-"), o.startswith("-")) for o in order]

    def compare(a: tuple[str, dict[str, Any]], b: tuple[str, dict[str, Any]]) -> int:
        for field, desc in spec:
            if field == "id":
                c = _cmp(natural_id(a[0]), natural_id(b[0]))
            else:
                c = _cmp(a[1][field], b[1][field])
            if c:
                return -c if desc else c
        c = _cmp(natural_id(a[0]), natural_id(b[0]))
        return -c if spec and spec[-1][1] else c

    return [id for id, _ in sorted(rows, key=functools.cmp_to_key(compare))]


async def insert_people(mode: str, rows: list[tuple[str, dict[str, Any]]] = PEOPLE) -> None:
    docs = [Person(id=id, **values) for id, values in rows]
    await call(Person.objects, "bulk_create", mode, docs)


@pytest.fixture
async def people(conn: Any) -> list[tuple[str, dict[str, Any]]]:
    await insert_people("async")
    return PEOPLE


# -- Q composition ------------------------------------------------------------------------------

Leaf = tuple[str, Callable[[], Q], Callable[[str, dict[str, Any]], bool]]


def _leaf(text: str, make: Callable[[], Q], test: Callable[[str, dict[str, Any]], bool]) -> Leaf:
    return (text, make, test)


def _gt(a: Any, b: Any) -> bool:
    return a is not None and a > b


LEAVES: list[Leaf] = [
    _leaf("name='ann'", lambda: Q(name="ann"), lambda i, v: v["name"] == "ann"),
    _leaf("name=None", lambda: Q(name=None), lambda i, v: v["name"] is None),
    _leaf("name__ne='bob'", lambda: Q(name__ne="bob"), lambda i, v: v["name"] != "bob"),
    _leaf("name__startswith='dan'", lambda: Q(name__startswith="dan"),
          lambda i, v: v["name"] is not None and v["name"].startswith("dan")),
    _leaf("name__gt='b'", lambda: Person.name > "b", lambda i, v: _gt(v["name"], "b")),
    _leaf("name__in", lambda: Q(name__in=["cy", None, "éva"]),
          lambda i, v: v["name"] in ("cy", None, "éva")),
    _leaf("age__gte=30", lambda: Person.age >= 30,
          lambda i, v: v["age"] is not None and v["age"] >= 30),
    _leaf("age__lt=25", lambda: Q(age__lt=25), lambda i, v: v["age"] is not None and v["age"] < 25),
    _leaf("age=41", lambda: Q(age=41), lambda i, v: v["age"] == 41),
    _leaf("age__nin", lambda: Q(age__nin=[41, None]), lambda i, v: v["age"] not in (41, None)),
    _leaf("age__isnull", lambda: Q(age__isnull=True), lambda i, v: v["age"] is None),
    _leaf("city='Rome'", lambda: Q(city="Rome"), lambda i, v: v["city"] == "Rome"),
    _leaf("city__ne='Oslo'", lambda: Q(city__ne="Oslo"), lambda i, v: v["city"] != "Oslo"),
    _leaf("city__contains='o'", lambda: Person.city.contains("o"),
          lambda i, v: v["city"] is not None and "o" in v["city"]),
    _leaf("city__lte='Oslo'", lambda: Q(city__lte="Oslo"),
          lambda i, v: v["city"] is not None and v["city"] <= "Oslo"),
    _leaf("score__gt=1", lambda: Q(score__gt=1), lambda i, v: _gt(v["score"], 1)),
    _leaf("score=None", lambda: Q(score=None), lambda i, v: v["score"] is None),
    _leaf("rank__in", lambda: Q(rank__in=[1, 3]), lambda i, v: v["rank"] in (1, 3)),
    _leaf("rank__gt=1", lambda: Q(rank__gt=1), lambda i, v: _gt(v["rank"], 1)),
    _leaf("active=True", lambda: Q(active=True), lambda i, v: v["active"] is True),
    _leaf("active__ne=True", lambda: Q(active__ne=True), lambda i, v: v["active"] is not True),
    _leaf("tags__contains='x'", lambda: Person.tags.contains("x"),
          lambda i, v: v["tags"] is not None and "x" in v["tags"]),
    _leaf("tags__isnull", lambda: Q(tags__isnull=True), lambda i, v: v["tags"] is None),
    _leaf("tags=[]", lambda: Q(tags=[]), lambda i, v: v["tags"] == []),
    _leaf("id__in", lambda: Q(id__in=["1", "aa", "220", "nope"]),
          lambda i, v: i in ("1", "aa", "220")),
    _leaf("id='b'", lambda: Q(id="b"), lambda i, v: i == "b"),
    _leaf("id__ne='3'", lambda: Q(id__ne="3"), lambda i, v: i != "3"),
]


@functools.cache
def _leaf_by_text() -> dict[str, Leaf]:
    return {leaf[0]: leaf for leaf in LEAVES}


# A tree is ("leaf", text) | ("and"|"or", left, right) | ("not", child); built into a Q and a
# Python predicate.


def build(tree: tuple[Any, ...]) -> tuple[Q, Callable[[str, dict[str, Any]], bool], str]:
    kind = tree[0]
    if kind == "leaf":
        text, make, test = _leaf_by_text()[tree[1]]
        return make(), test, text
    if kind == "not":
        q, test, text = build(tree[1])
        return ~q, (lambda i, v: not test(i, v)), f"~({text})"
    (lq, ltest, ltext), (rq, rtest, rtext) = build(tree[1]), build(tree[2])
    if kind == "and":
        return lq & rq, (lambda i, v: ltest(i, v) and rtest(i, v)), f"({ltext} & {rtext})"
    return lq | rq, (lambda i, v: ltest(i, v) or rtest(i, v)), f"({ltext} | {rtext})"


def depth(tree: tuple[Any, ...]) -> int:
    if tree[0] == "leaf":
        return 0
    return 1 + max(depth(child) for child in tree[1:])


def random_tree(rng: random.Random, levels: int) -> tuple[Any, ...]:
    if levels == 0 or (levels < 3 and rng.random() < 0.25):
        return ("leaf", rng.choice(LEAVES)[0])
    kind = rng.choice(["and", "or", "and", "or", "not"])
    if kind == "not":
        return ("not", random_tree(rng, levels - 1))
    return (kind, random_tree(rng, levels - 1), random_tree(rng, levels - 1))


HANDWRITTEN = [
    # ((A | ~B) & (C | (D & ~E))) | ~(F & G)
    ("or",
     ("and",
      ("or", ("leaf", "age__gte=30"), ("not", ("leaf", "city='Rome'"))),
      ("or", ("leaf", "tags__contains='x'"),
       ("and", ("leaf", "name__startswith='dan'"), ("not", ("leaf", "score__gt=1"))))),
     ("not", ("and", ("leaf", "active=True"), ("leaf", "rank__in")))),
    ("not", ("or", ("and", ("leaf", "name='ann'"), ("not", ("leaf", "age__isnull"))),
             ("not", ("or", ("leaf", "city__contains='o'"), ("leaf", "id__in"))))),
    ("and", ("not", ("not", ("leaf", "name__gt='b'"))),
     ("or", ("leaf", "score=None"), ("and", ("leaf", "age__nin"), ("leaf", "tags__isnull")))),
    ("and", ("or", ("leaf", "id='b'"), ("or", ("leaf", "id__in"), ("leaf", "age=41"))),
     ("not", ("and", ("leaf", "name=None"), ("or", ("leaf", "city__ne='Oslo'"),
                                                ("leaf", "tags=[]"))))),
]


async def _check_tree(tree: tuple[Any, ...], mode: str) -> list[str]:
    q, test, text = build(tree)
    want = [id for id in expected_order(PEOPLE, []) if test(id, PEOPLE_BY_ID[id])]
    problems = []
    got = ids_of(await call(Person.objects.filter(q), "all", mode))
    if sorted(got) != sorted(want):
        problems.append(f"{text}: missing {sorted(set(want) - set(got))}, "
                        f"unexpected {sorted(set(got) - set(want))}")
    count = await call(Person.objects.filter(q), "count", mode)
    if count != len(want):
        problems.append(f"{text}: count {count} != {len(want)}")
    rest = ids_of(await call(Person.objects.exclude(q), "all", mode))
    if sorted(rest) != sorted(set(PEOPLE_BY_ID) - set(want)):
        problems.append(f"exclude{text}: wrong")
    ordered = ids_of(await call(Person.objects.filter(q).order_by("-age", "city"), "all", mode))
    wanted_rows = [(id, PEOPLE_BY_ID[id]) for id in want]
    if ordered != expected_order(wanted_rows, ["-age", "city"]):
        problems.append(f"{text}: order_by('-age', 'city') gave {ordered}")
    return problems


@pytest.mark.parametrize("mode", MODES)
async def test_nested_q_handwritten(people: Any, mode: str) -> None:
    problems = []
    for tree in HANDWRITTEN:
        assert depth(tree) >= 3
        problems += await _check_tree(tree, mode)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("mode", MODES)
async def test_nested_q_random(people: Any, mode: str) -> None:
    rng = random.Random(1234 if mode == "sync" else 4321)
    problems = []
    for _ in range(60):
        tree = random_tree(rng, rng.choice([3, 4]))
        problems += await _check_tree(tree, mode)
    assert not problems, "\n".join(problems[:20])


_trees = st.recursive(
    st.sampled_from([leaf[0] for leaf in LEAVES]).map(lambda text: ("leaf", text)),
    lambda children: st.one_of(
        st.tuples(st.just("and"), children, children),
        st.tuples(st.just("or"), children, children),
        st.tuples(st.just("not"), children),
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tree=_trees)
def test_nested_q_property(people: Any, tree: tuple[Any, ...]) -> None:
    q, test, text = build(tree)
    want = {id for id, values in PEOPLE if test(id, values)}
    got = ids_of(Person.objects.filter(q).all_sync())
    assert len(got) == len(set(got))
    assert set(got) == want, text
    assert Person.objects.filter(q).count_sync() == len(want), text
    assert Person.objects.filter(q).exists_sync() is bool(want), text


def test_q_from_another_model_is_refused(people: Any) -> None:
    with pytest.raises(QueryError):
        Person.objects.filter(Other.name == "x")


# -- ordering, slicing -----------------------------------------------------------------------

ORDERINGS = [
    ["age"], ["-age"], ["name", "-age"], ["-name", "age"], ["city"], ["-city"],
    ["-score", "name"], ["active", "-rank", "city"], ["rank", "-active"], ["rank"],
    ["id"], ["-id"], ["-rank", "id"], ["rank", "-id"], ["score", "-city", "-age"], [],
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("order", ORDERINGS, ids=[",".join(o) or "none" for o in ORDERINGS])
async def test_order_by(people: Any, mode: str, order: list[str]) -> None:
    qs = Person.objects.order_by(*order)
    want = expected_order(PEOPLE, order)
    assert ids_of(await call(qs, "all", mode)) == want
    # filtered, both on an indexed and an unindexed field
    adults = [(i, v) for i, v in PEOPLE if v["age"] is not None and v["age"] >= 25]
    got = ids_of(await call(qs.filter(age__gte=25), "all", mode))
    assert got == expected_order(adults, order)
    romans = [(i, v) for i, v in PEOPLE if v["city"] != "Rome"]
    assert ids_of(await call(qs.exclude(city="Rome"), "all", mode)) == expected_order(romans, order)
    # slices and windows of the same ordering
    for start, stop in [(0, 5), (5, 12), (3, 4), (40, None), (0, 0), (47, 60), (100, 200)]:
        window = qs[start:stop]
        assert ids_of(await call(window, "all", mode)) == want[start:stop], (start, stop)
        assert await call(window, "count", mode) == len(want[start:stop]), (start, stop)
        assert await call(window, "exists", mode) is bool(want[start:stop]), (start, stop)
    assert ids_of(await call(qs.offset(3).limit(4), "all", mode)) == want[3:7]
    assert ids_of(await call(qs[2:20][3:5], "all", mode)) == want[5:7]
    assert ids_of(await call(qs[2:6][1:], "all", mode)) == want[3:6]
    assert ids_of(await call(qs.limit(3), "all", mode)) == want[:3]
    first = await call(qs, "first", mode)
    assert first is not None and first.id == want[0]
    assert (await call(qs.offset(7), "first", mode)).id == want[7]


@pytest.mark.parametrize("mode", MODES)
async def test_order_by_expressions(people: Any, mode: str) -> None:
    want = expected_order(PEOPLE, ["-age", "name"])
    got = ids_of(await call(Person.objects.order_by(-Person.age, Person.name), "all", mode))
    assert got == want
    assert ids_of(await call(Person.objects.order_by(Person.age.desc(), Person.name.asc()),
                             "all", mode)) == want
    # order_by replaces the previous ordering
    assert ids_of(await call(Person.objects.order_by("city").order_by("-age", "name"),
                             "all", mode)) == want


def test_order_by_refuses_unsortable_and_unknown(people: Any) -> None:
    with pytest.raises(QueryError):
        Person.objects.order_by("tags")
    with pytest.raises(QueryError):
        Person.objects.order_by("nope")
    with pytest.raises(QueryError):
        Person.objects.limit(-1)
    with pytest.raises(QueryError):
        Person.objects[::2]


@pytest.mark.parametrize("mode", MODES)
async def test_iteration(people: Any, mode: str) -> None:
    qs = Person.objects.filter(age__gte=30).order_by("-score")
    want = expected_order([(i, v) for i, v in PEOPLE if v["age"] is not None and v["age"] >= 30],
                          ["-score"])
    if mode == "sync":  # blocking iteration, off the loop's thread
        assert await asyncio.to_thread(lambda: [doc.id for doc in qs]) == want
    else:
        assert [doc.id async for doc in qs] == want
        assert ids_of(await qs) == want


# -- first / get ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_first_and_get(people: Any, mode: str) -> None:
    assert await call(Person.objects.filter(name="nobody"), "first", mode) is None
    first = await call(Person.objects.filter(age=41), "first", mode)
    assert first.id == expected_order([(i, v) for i, v in PEOPLE if v["age"] == 41], [])[0]
    doc = await call(Person.objects, "get", mode, id="aa")
    assert doc.id == "aa" and doc.name == PEOPLE_BY_ID["aa"]["name"]
    doc = await call(Person.objects.filter(id="10"), "get", mode)
    assert doc.id == "10"
    doc = await call(Person.objects, "get", mode, id=9)  # int ids are their decimal form
    assert doc.id == "9"

    with pytest.raises(Person.DoesNotExist) as missing:
        await call(Person.objects, "get", mode, id="nope")
    assert isinstance(missing.value, DoesNotExist)
    assert not isinstance(missing.value, Other.DoesNotExist)
    with pytest.raises(Person.MultipleObjectsReturned) as many:
        await call(Person.objects, "get", mode, age=41)
    assert isinstance(many.value, MultipleObjectsReturned)
    assert not isinstance(many.value, Other.MultipleObjectsReturned)
    assert Person.DoesNotExist is not Other.DoesNotExist


# -- only / values -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_only_and_values(people: Any, mode: str) -> None:
    qs = Person.objects.filter(age__gte=30).order_by("id")
    want = expected_order([(i, v) for i, v in PEOPLE if v["age"] is not None and v["age"] >= 30],
                          ["id"])
    partial = await call(qs.only("name"), "all", mode)
    assert ids_of(partial) == want
    for doc in partial:
        assert doc.name == PEOPLE_BY_ID[doc.id]["name"]
        assert doc.age is None and doc.city is None and doc.tags is None
    with pytest.raises(InvalidOperation):
        await call(partial[0], "save", mode)
    await call(partial[0], "reload", mode)
    assert partial[0].age == PEOPLE_BY_ID[partial[0].id]["age"]

    rows = await call(qs.values("name", "city"), "all", mode)
    assert rows == [{"id": i, "name": PEOPLE_BY_ID[i]["name"], "city": PEOPLE_BY_ID[i]["city"]}
                    for i in want]
    rows = await call(qs.values(), "all", mode)
    assert rows == [{"id": i, **PEOPLE_BY_ID[i]} for i in want]


# -- numbered pages ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("per_page", [1, 7, 50, 1000])
async def test_numbered_pages(people: Any, mode: str, per_page: int) -> None:
    qs = Person.objects.filter(Q(age__gte=25) | Q(city="Rome")).order_by("-age", "city")
    rows = [(i, v) for i, v in PEOPLE
            if (v["age"] is not None and v["age"] >= 25) or v["city"] == "Rome"]
    want = expected_order(rows, ["-age", "city"])
    pages = -(-len(want) // per_page)
    collected = []
    for number in range(1, pages + 2):
        page = await call(qs, "paginate", mode, page=number, per_page=per_page)
        assert page.total == len(want)
        assert page.pages == pages
        assert page.number == number
        assert ids_of(page.items) == want[(number - 1) * per_page:number * per_page]
        assert page.has_next is (number < pages)
        collected += ids_of(page.items)
    assert collected == want
    with pytest.raises(QueryError):
        await call(qs, "paginate", mode, page=0, per_page=per_page)


# -- keyset pages under concurrent inserts -------------------------------------------------------

KEYSET_FILTERS: dict[str, tuple[Callable[[], Q], Callable[[dict[str, Any]], bool]]] = {
    "active": (lambda: Q(active=True), lambda v: v["active"] is True),  # indexed
    "city": (lambda: Q(city__ne="Rome"), lambda v: v["city"] != "Rome"),  # unindexed
    "age>=25": (lambda: Q(age__gte=25), lambda v: v["age"] is not None and v["age"] >= 25),
    "age<41": (lambda: Q(age__lt=41), lambda v: v["age"] is not None and v["age"] < 41),
}
KEYSET_CASES = [
    ([], None), (["age"], None), (["-age"], None), (["city"], None), (["-city", "age"], None),
    (["name", "-age"], None), (["-rank"], "active"), (["score"], "active"), (["id"], None),
    (["-id"], None), (["rank", "-id"], None), (["age"], "age>=25"), (["-age"], "age>=25"),
    (["age"], "age<41"), (["-age"], "age<41"), (["age"], "city"), ([], "city"),
    (["-name"], "age<41"), (["name"], "active"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("order", "filtered"), KEYSET_CASES,
                         ids=[",".join(o) + (f"|{f}" if f else "") for o, f in KEYSET_CASES])
async def test_keyset_pagination_with_inserts(people: Any, mode: str, order: list[str],
                                              filtered: str | None) -> None:
    qs = Person.objects.order_by(*order)
    keep: Callable[[dict[str, Any]], bool] = lambda v: True  # noqa: E731
    if filtered:
        make, keep = KEYSET_FILTERS[filtered]
        qs = qs.filter(make())
    original = expected_order([(i, v) for i, v in PEOPLE if keep(v)], order)
    rng = random.Random(zlib.crc32(repr((order, filtered, mode)).encode()))
    inserted: dict[str, dict[str, Any]] = {}
    seen: list[str] = []
    page = await call(qs, "paginate", mode, per_page=6, after=None)
    for round in range(100):
        seen += ids_of(page.items)
        # insert documents between requests: some sort before the cursor, some after
        batch = []
        for n in range(3):
            new_id = rng.choice([f"{5000 + round * 3 + n}", f"new{round}-{n}", f"0{round}{n}"])
            values = {"name": rng.choice(NAMES), "age": rng.choice([None, -100, 25, 41, 999]),
                      "city": rng.choice(CITIES), "score": rng.choice([None, -5.0, 1.5, 1e9]),
                      "rank": rng.choice([None, 0, 2, 9]), "active": rng.choice([None, True]),
                      "tags": None}
            inserted[new_id] = values
            batch.append(Person(id=new_id, **values))
        await call(Person.objects, "bulk_create", mode, batch)
        if page.next_cursor is None:
            assert not page.has_next
            break
        assert page.has_next and len(page.items) == 6
        page = await call(qs, "paginate", mode, per_page=6, after=page.next_cursor)
    else:
        pytest.fail("pagination did not end")
    assert len(seen) == len(set(seen)), f"rows repeated: {seen}"
    assert [i for i in seen if i in PEOPLE_BY_ID] == original, "rows skipped or out of order"
    everything = {**PEOPLE_BY_ID, **inserted}
    assert all(i in everything and keep(everything[i]) for i in seen)
    # each page continued after the previous one: the whole walk is in order
    assert seen == expected_order([(i, everything[i]) for i in seen], order)


@pytest.mark.parametrize("mode", MODES)
async def test_keyset_pagination_of_values_and_only(people: Any, mode: str) -> None:
    """values() and only() querysets page like the others: a page that says it is the last
    one is the last one (or the combination is refused outright)."""
    want = expected_order(PEOPLE, ["age"])
    for label, qs in (("only", Person.objects.order_by("age").only("name")),
                      ("values", Person.objects.order_by("age").values("name"))):
        seen: list[str] = []
        try:
            page = await call(qs, "paginate", mode, per_page=8, after=None)
        except (QueryError, InvalidOperation, UnsupportedOperation):
            continue
        while True:
            seen += [row["id"] if isinstance(row, dict) else row.id for row in page.items]
            if page.next_cursor is None:
                break
            page = await call(qs, "paginate", mode, per_page=8, after=page.next_cursor)
        assert seen == want, f"{label}(): saw {len(seen)} of {len(want)} rows"


def test_cursor_of_another_ordering_is_refused(people: Any) -> None:
    page = Person.objects.order_by("age").paginate_sync(per_page=3, after=None)
    assert page.next_cursor is not None
    with pytest.raises(QueryError):
        Person.objects.order_by("-age").paginate_sync(per_page=3, after=page.next_cursor)
    with pytest.raises(QueryError):
        Person.objects.order_by("age").paginate_sync(per_page=3, after="!!not a cursor!!")


# -- get_many ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_get_many(people: Any, redis_client: Any, mode: str) -> None:
    versions = {id: v for id, (v, _) in stored_documents(redis_client, Person).items()}
    asked = ["aa", "missing", "1", 10, "aa", "1000", "B", "nope"]
    docs = await call(Person.objects, "get_many", mode, asked)
    assert [None if d is None else d.id for d in docs] == [
        "aa", None, "1", "10", "aa", "1000", "B", None]
    for doc in docs:
        if doc is not None:
            assert doc.name == PEOPLE_BY_ID[doc.id]["name"]
            assert doc.version == versions[doc.id] > 0
    assert await call(Person.objects, "get_many", mode, []) == []
    with pytest.raises(QueryError):
        await call(Person.objects, "get_many", mode, ["aa", ""])


# -- update / delete over a matched set ------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_update_where(people: Any, redis_client: Any, mode: str) -> None:
    matched = [i for i, v in PEOPLE if v["age"] is not None and v["age"] < 30]
    assert matched
    before = {id: v for id, (v, _) in stored_documents(redis_client, Person).items()}
    n = await call(Person.objects.filter(age__lt=30), "update", mode, age=77, city="Nowhere")
    assert n == len(matched)
    stored = assert_indexes_consistent(redis_client, Person)
    for id, (version, data) in stored.items():
        if id in matched:
            assert (data["age"], data["city"]) == (77, "Nowhere") and version > before[id]
        else:
            assert version == before[id] and data == PEOPLE_BY_ID[id]
    # the index answers the new values
    now_77 = {i for i, v in PEOPLE if v["age"] == 77} | set(matched)
    assert set(ids_of(await call(Person.objects.filter(age=77), "all", mode))) == now_77
    assert await call(Person.objects.filter(age__lt=30), "count", mode) == 0

    # an update that changes nothing still counts the matches, and writes nothing
    again = await call(Person.objects.filter(age=77), "update", mode, city="Nowhere")
    assert again == len(now_77)
    assert {i: v for i, (v, _) in stored_documents(redis_client, Person).items()} == {
        i: v for i, (v, _) in stored.items()}

    # an update on an unindexed filter, setting an indexed array and a null
    rome = [i for i, v in PEOPLE if v["city"] == "Rome" and i not in matched]
    n = await call(Person.objects.filter(city="Rome"), "update", mode, tags=["r", "r", "s"],
                   name=None)
    assert n == len(rome)
    tagged = ids_of(await call(Person.objects.filter(tags__contains="r"), "all", mode))
    assert set(tagged) == set(rome)
    assert_indexes_consistent(redis_client, Person)
    assert await call(Person.objects.filter(name="zzz"), "update", mode, age=1) == 0


@pytest.mark.parametrize("mode", MODES)
async def test_delete_where(people: Any, redis_client: Any, mode: str) -> None:
    doomed = {i for i, v in PEOPLE if (v["tags"] is not None and "x" in v["tags"])
              or v["city"] == "Lima"}
    n = await call(Person.objects.filter(Q(tags__contains="x") | Q(city="Lima")), "delete", mode)
    assert n == len(doomed)
    stored = assert_indexes_consistent(redis_client, Person)
    assert set(stored) == set(PEOPLE_BY_ID) - doomed
    assert await call(Person.objects.filter(tags__contains="x"), "count", mode) == 0
    assert await call(Person.objects, "count", mode) == len(PEOPLE) - len(doomed)
    assert await call(Person.objects.filter(Q(tags__contains="x") | Q(city="Lima")), "delete",
                      mode) == 0
    assert await call(Person.objects, "delete", mode) == len(PEOPLE) - len(doomed)
    assert assert_indexes_consistent(redis_client, Person) == {}
    # what remains is the id counter, the change history (stream), the version clock (so
    # that re-created ids never reuse a version) and the schema, nothing else
    leftover = [k for k in redis_client.scan_iter()
                if not k.endswith((b":seq", b":x", b":state", b":schema"))]
    assert leftover == []


# -- compound index ---------------------------------------------------------------------------


class Pair(Document):
    a = StringField()
    b = IntField()
    c = StringField()

    class Meta:
        collection = "q_pairs"
        indexes = [("a", "b")]


A_VALUES = [None, "", "x", "x\x00", "x\x00y", "y", "xy", "é", "k1", "k2", "k3", "k4", "k5"]
B_VALUES = [None, -(2**60), -5, 0, 3, 3, 7, 2**60]


def _pairs() -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for k, (a, b) in enumerate((a, b) for a in A_VALUES for b in B_VALUES):
        rows.append((str(k), {"a": a, "b": b, "c": f"c{k % 3}"}))
    return rows


PAIRS = _pairs()


@pytest.mark.parametrize("mode", MODES)
async def test_compound_index(conn: Any, redis_client: Any, mode: str) -> None:
    await call(Pair.objects, "bulk_create", mode, [Pair(id=i, **v) for i, v in PAIRS])
    assert_indexes_consistent(redis_client, Pair)
    problems = []
    for a in [None, "", "x", "x\x00", "y", "nope"]:
        for lookup, op in [("gt", lambda x, y: x > y), ("gte", lambda x, y: x >= y),
                           ("lt", lambda x, y: x < y), ("lte", lambda x, y: x <= y),
                           ("exact", lambda x, y: x == y)]:
            for b in [-(2**60), -5, 0, 3, 4, 2**60]:
                want = {i for i, v in PAIRS if v["a"] == a and v["b"] is not None
                        and op(v["b"], b)}
                qs = Pair.objects.filter(**{"a": a, f"b__{lookup}": b})
                got = ids_of(await call(qs, "all", mode))
                if sorted(got) != sorted(want) or len(got) != len(set(got)):
                    problems.append(f"a={a!r} b__{lookup}={b}: got {sorted(got)}, "
                                    f"want {sorted(want)}")
                if await call(qs, "count", mode) != len(want):
                    problems.append(f"a={a!r} b__{lookup}={b}: count")
        # the prefix alone, and with b null
        want = {i for i, v in PAIRS if v["a"] == a}
        got = ids_of(await call(Pair.objects.filter(a=a), "all", mode))
        if sorted(got) != sorted(want):
            problems.append(f"a={a!r}: got {sorted(got)}, want {sorted(want)}")
        want = {i for i, v in PAIRS if v["a"] == a and v["b"] is None}
        got = ids_of(await call(Pair.objects.filter(a=a, b=None), "all", mode))
        if sorted(got) != sorted(want):
            problems.append(f"a={a!r} b=None: got {sorted(got)}, want {sorted(want)}")
        want = {i for i, v in PAIRS if v["a"] == a and v["b"] is not None and v["b"] > 0
                and v["c"] == "c1"}
        got = ids_of(await call(Pair.objects.filter(a=a, b__gt=0, c="c1"), "all", mode))
        if sorted(got) != sorted(want):
            problems.append(f"a={a!r} b>0 c=c1: got {sorted(got)}, want {sorted(want)}")
    # the second field alone cannot use the compound index, but still answers right
    want = {i for i, v in PAIRS if v["b"] == 3}
    assert set(ids_of(await call(Pair.objects.filter(b=3), "all", mode))) == want
    assert not problems, "\n".join(problems)

    explanation = await call(Pair.objects.filter(a="k3", b__gt=2), "explain", mode)
    assert "a__b" in explanation.indexes, str(explanation)
    assert explanation.scanned is False, str(explanation)
    assert "a__b" in str(explanation)
    assert ids_of(await call(Pair.objects.filter(a="k3", b__gt=2), "all", mode)) == sorted(
        (i for i, v in PAIRS if v["a"] == "k3" and v["b"] is not None and v["b"] > 2), key=int)

    # updates keep the compound index right
    n = await call(Pair.objects.filter(a="x", b__gte=0), "update", mode, a="moved", b=None)
    assert n == sum(1 for _, v in PAIRS if v["a"] == "x" and v["b"] is not None and v["b"] >= 0)
    assert_indexes_consistent(redis_client, Pair)
    assert await call(Pair.objects.filter(a="moved", b=None), "count", mode) == n
    assert await call(Pair.objects.filter(a="x", b__gte=0), "count", mode) == 0


# -- iteration over more than one chunk ----------------------------------------------------------


class Many(Document):
    bucket = IntField(indexed=True)
    label = StringField()  # unindexed

    class Meta:
        collection = "q_many"


MANY = [(str(n) if n % 3 else f"m{n:05d}",
         {"bucket": None if n % 11 == 0 else n % 4, "label": f"l{(n * 7) % 13}"})
        for n in range(2600)]


@pytest.mark.parametrize("mode", MODES)
async def test_iteration_over_several_chunks(conn: Any, mode: str) -> None:
    """Iterating reads keyset chunks (1000 documents each): across chunk boundaries nothing
    is repeated or skipped, whatever the ordering, with ties and nulls."""
    await call(Many.objects, "bulk_create", mode, [Many(id=i, **v) for i, v in MANY],
               batch_size=700)
    cases: list[tuple[Any, list[str], Callable[[dict[str, Any]], bool]]] = [
        (Many.objects, [], lambda v: True),
        (Many.objects.order_by("bucket"), ["bucket"], lambda v: True),
        (Many.objects.order_by("-bucket"), ["-bucket"], lambda v: True),
        (Many.objects.order_by("label", "-bucket"), ["label", "-bucket"], lambda v: True),
        (Many.objects.order_by("-label"), ["-label"], lambda v: True),
        (Many.objects.filter(bucket__gte=1).order_by("-bucket"), ["-bucket"],
         lambda v: v["bucket"] is not None and v["bucket"] >= 1),
        (Many.objects.filter(label__ne="l3").order_by("bucket"), ["bucket"],
         lambda v: v["label"] != "l3"),
        (Many.objects.only("label").order_by("-bucket"), ["-bucket"], lambda v: True),
        (Many.objects.order_by("-id"), ["-id"], lambda v: True),
    ]
    for qs, order, keep in cases:
        want = expected_order([(i, v) for i, v in MANY if keep(v)], order)
        if mode == "sync":  # blocking iteration, off the loop's thread
            got = await asyncio.to_thread(lambda qs=qs: [doc.id for doc in qs])
        else:
            got = [doc.id async for doc in qs]
        assert len(got) == len(set(got)), f"{order}: repeated rows"
        assert got == want, f"{order}: {len(got)} rows, expected {len(want)}"
    # sliced querysets iterate their window
    window = Many.objects.order_by("bucket")[990:1010]
    got = (await asyncio.to_thread(lambda: [d.id for d in window]) if mode == "sync"
           else [d.id async for d in window])
    assert got == expected_order(MANY, ["bucket"])[990:1010]


# -- edge cases of query building ----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_trivial_and_empty_conditions(people: Any, mode: str) -> None:
    every = sorted(PEOPLE_BY_ID)
    cases = [
        (Q(), every),
        (~Q(), every),  # Q() is no condition, and so is its negation
        (Q(age__in=[]), []),
        (~Q(age__in=[]), every),
        (Q(age__nin=[]), every),
        (Q(age__in=[]) | Q(name="ann"), [i for i, v in PEOPLE if v["name"] == "ann"]),
        (Q(age__nin=[]) & Q(name="ann"), [i for i, v in PEOPLE if v["name"] == "ann"]),
        (Q(name="ann") | Q(), [i for i, v in PEOPLE if v["name"] == "ann"]),  # Q() is neutral
        (Q(age__in=[41, 41, 41]), [i for i, v in PEOPLE if v["age"] == 41]),
        (Q(id__in=[]), []),
    ]
    for q, want in cases:
        qs = Person.objects.filter(q)
        assert sorted(ids_of(await call(qs, "all", mode))) == sorted(want), q
        assert await call(qs, "count", mode) == len(want), q
        assert await call(qs, "exists", mode) is bool(want), q


@pytest.mark.parametrize("mode", MODES)
async def test_chained_filter_and_exclude(people: Any, mode: str) -> None:
    # exclude(a, b) drops documents matching both together
    want = [i for i, v in PEOPLE if not (v["name"] == "ann" and v["age"] == 41)]
    got = ids_of(await call(Person.objects.exclude(name="ann", age=41), "all", mode))
    assert sorted(got) == sorted(want)
    # chained: AND of every filter, minus each exclude
    want = [i for i, v in PEOPLE if v["age"] is not None and v["age"] >= 25
            and v["city"] != "Rome" and not (v["tags"] is not None and "x" in v["tags"])
            and v["active"] is not False]
    qs = (Person.objects.filter(age__gte=25).exclude(city="Rome")
          .exclude(Person.tags.contains("x")).filter(Q(active=True) | Q(active=None)))
    assert sorted(ids_of(await call(qs, "all", mode))) == sorted(want)
    assert await call(qs, "count", mode) == len(want)


@pytest.mark.parametrize("mode", MODES)
async def test_using_another_connection(people: Any, redis_client: Any, redis_url: str,
                                        mode: str) -> None:
    from quantumorm import create_connection

    other_url = redis_url.rsplit("/", 1)[0] + "/1"
    create_connection(backend="redis", url=other_url, name="other")
    import redis as redis_py

    other_client = redis_py.Redis.from_url(other_url)
    other_client.flushdb()
    try:
        elsewhere = Person.objects.using("other")
        written = await call(elsewhere, "bulk_create", mode,
                             [Person(id="1", name="elsewhere"), Person(id="new", age=5)])
        assert len(written) == 2
        assert await call(elsewhere, "count", mode) == 2
        assert (await call(elsewhere, "get", mode, id="1")).name == "elsewhere"
        assert (await call(Person.objects, "get", mode, id="1")).name == PEOPLE_BY_ID["1"]["name"]
        assert await call(Person.objects.filter(id="new"), "count", mode) == 0
        assert await call(elsewhere.filter(age=5), "update", mode, age=6) == 1
        assert await call(elsewhere, "delete", mode) == 2
        assert await call(Person.objects, "count", mode) == len(PEOPLE)
    finally:
        other_client.flushdb()
        other_client.close()


# -- the same over several partitions ------------------------------------------------------------


class PartitionedPerson(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    city = StringField()
    score = FloatField()
    rank = IntField(indexed=True)
    active = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)

    class Meta:
        collection = "q_people_p"
        partitions = 4


@pytest.mark.parametrize("mode", MODES)
async def test_partitioned_ordering_slicing_and_keyset(conn: Any, redis_client: Any,
                                                      mode: str) -> None:
    model = PartitionedPerson
    await call(model.objects, "bulk_create", mode, [model(id=i, **v) for i, v in PEOPLE])
    stored = assert_indexes_consistent(redis_client, model)
    assert set(stored) == set(PEOPLE_BY_ID)
    parts = {KeySpace(model._meta).partition_of(i) for i in PEOPLE_BY_ID}
    assert len(parts) == 4  # the documents really are spread out
    for order in (["age"], ["-age"], ["name", "-age"], ["city"], ["-rank", "id"], []):
        qs = model.objects.order_by(*order)
        want = expected_order(PEOPLE, order)
        assert ids_of(await call(qs, "all", mode)) == want, order
        for start, stop in [(0, 5), (5, 17), (30, None), (49, 51)]:
            assert ids_of(await call(qs[start:stop], "all", mode)) == want[start:stop], order
            assert await call(qs[start:stop], "count", mode) == len(want[start:stop])
        adults = [(i, v) for i, v in PEOPLE if v["age"] is not None and v["age"] >= 25]
        assert ids_of(await call(qs.filter(age__gte=25)[2:9], "all", mode)) == \
            expected_order(adults, order)[2:9]
        seen: list[str] = []
        page = await call(qs, "paginate", mode, per_page=7, after=None)
        while True:
            seen += ids_of(page.items)
            if page.next_cursor is None:
                break
            page = await call(qs, "paginate", mode, per_page=7, after=page.next_cursor)
        assert seen == want, order
    n = await call(model.objects.filter(age__lt=30), "update", mode, age=0)
    assert n == sum(1 for _, v in PEOPLE if v["age"] is not None and v["age"] < 30)
    assert await call(model.objects.filter(tags__contains="x"), "delete", mode) == sum(
        1 for _, v in PEOPLE if v["tags"] and "x" in v["tags"])
    assert_indexes_consistent(redis_client, model)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("order", [["age"], ["-age"], ["city"], ["name", "-score"], [], ["-id"]],
                         ids=lambda o: ",".join(o) or "none")
async def test_after_cursor_with_count_exists_and_filters(people: Any, mode: str,
                                                         order: list[str]) -> None:
    qs = Person.objects.order_by(*order)
    want = expected_order(PEOPLE, order)
    docs = await call(qs, "all", mode)
    for k in (0, 7, 25, len(want) - 2, len(want) - 1):
        rest_qs = qs.after(qs.cursor_for(docs[k]))
        rest = want[k + 1:]
        assert ids_of(await call(rest_qs, "all", mode)) == rest, k
        assert await call(rest_qs, "count", mode) == len(rest), k
        assert await call(rest_qs, "exists", mode) is bool(rest), k
        assert ids_of(await call(rest_qs[1:4], "all", mode)) == rest[1:4], k
        adults = [i for i in rest if PEOPLE_BY_ID[i]["age"] is not None
                  and PEOPLE_BY_ID[i]["age"] >= 25]
        assert ids_of(await call(rest_qs.filter(age__gte=25), "all", mode)) == adults, k
        assert await call(rest_qs.filter(age__gte=25), "count", mode) == len(adults), k
        not_rome = [i for i in rest if PEOPLE_BY_ID[i]["city"] != "Rome"]
        assert ids_of(await call(rest_qs.exclude(city="Rome"), "all", mode)) == not_rome, k


@pytest.mark.parametrize("mode", MODES)
async def test_numbered_pages_of_a_sliced_queryset(people: Any, mode: str) -> None:
    """Paging a window (offset/limit already set) pages through that window only, and
    its total is the window's size (or paging a sliced queryset is refused outright)."""
    base = Person.objects.order_by("-age", "name")
    want = expected_order(PEOPLE, ["-age", "name"])
    for window, expected in ((base[:10], want[:10]), (base[5:18], want[5:18]),
                             (base.offset(45), want[45:])):
        try:
            first = await call(window, "paginate", mode, page=1, per_page=4)
        except QueryError:
            continue
        assert first.total == len(expected)
        seen = ids_of(first.items)
        for number in range(2, first.pages + 2):
            page = await call(window, "paginate", mode, page=number, per_page=4)
            assert page.total == len(expected)
            assert ids_of(page.items) == expected[(number - 1) * 4:number * 4], number
            seen += ids_of(page.items)
        assert seen == expected


@pytest.mark.parametrize("mode", MODES)
async def test_update_and_delete_of_a_window(people: Any, redis_client: Any, mode: str) -> None:
    """update()/delete() on a sliced queryset act on that window only."""
    order = ["-age", "city"]
    want = expected_order(PEOPLE, order)
    qs = Person.objects.order_by(*order)
    assert await call(qs[3:9], "update", mode, city="Window") == 6
    changed = {i for i, (_, d) in assert_indexes_consistent(redis_client, Person).items()
               if d["city"] == "Window"}
    assert changed == set(want[3:9])
    by_score = Person.objects.order_by("score", "name")  # an unindexed ordering: client sort
    doomed = ids_of(await call(by_score[:7], "all", mode))
    assert await call(by_score[:7], "delete", mode) == 7
    stored = assert_indexes_consistent(redis_client, Person)
    assert set(stored) == set(PEOPLE_BY_ID) - set(doomed)
