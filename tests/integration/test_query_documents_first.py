"""query.lua's document-first test: a range condition of the top-level AND tested on each
candidate's document, read in batches (one MGET each) and kept for the row returned, where
reading the range's index entries as a set would cost more (many entries against the
candidates left after the membership tests; the documents format 3). Every answer is
compared with one computed in Python over the same values, on documents of format 3 (with
and without a sweep record), format 2 and gone (expired), with ints negative, zero, large
and null, in rows, ordered, windowed, count and exists modes, on one partition and on
several. The server's commands (MONITOR) show which way the range was tested: the
document-first test reads no entry of the range's index and reads no row's document twice.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from quantumorm import ArrayField, BooleanField, Document, IntField, Q, StringField
from quantumorm.backends.redis import writes

N = 2000
TAGS = [f"t{i}" for i in range(8)]
#: ages out of the common run: negative, zero, past 10 digits, past a double's exactness
ODD_AGES = [-10**12, -123456789012, -7, -1, 0, 0, 1, 10, 1000000000, 10**12, 2**53 + 1]


class Person(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    active = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)

    class Meta:
        collection = "qdf_people"


class Spread(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)
    active = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)

    class Meta:
        collection = "qdf_spread"
        partitions = 3


Values = dict[str, Any]


def _values() -> dict[str, Values]:
    rng = random.Random(18)
    out = {}
    for i in range(1, N + 1):
        r = rng.random()
        age = None if r < 0.04 else rng.choice(ODD_AGES) if r < 0.12 else rng.randrange(100)
        out[str(i)] = {"name": f"n{rng.randrange(40)}", "age": age,
                       "active": rng.random() < 0.5, "tags": rng.sample(TAGS, 3)}
    return out


VALUES = _values()
#: ids stored in format 2; with an expiry (a sweep record); expired (gone) by the queries
FORMAT2 = {str(i) for i in range(1, N + 1) if i % 7 == 3}
EXPIRING = {str(i) for i in range(1, N + 1) if i % 11 == 5}
EXPIRED = {str(i) for i in range(1, N + 1) if i % 13 == 6}


def _load(model: type[Document], redis_client: Any, mixed: bool) -> dict[str, Values]:
    """The documents stored (``mixed``: some format 2, some expiring with a sweep record,
    some expired by the time the queries run); the values of those left, by id."""
    if mixed:
        new_format, writes.NEW_FORMAT = writes.NEW_FORMAT, 2
        try:
            model.objects.bulk_create_sync([model(id=id, **v) for id, v in VALUES.items()
                                            if id in FORMAT2])
        finally:
            writes.NEW_FORMAT = new_format
    model.objects.bulk_create_sync([model(id=id, **v) for id, v in VALUES.items()
                                    if not (mixed and id in FORMAT2)])
    if not mixed:
        return dict(VALUES)
    docs = {d.id: d for d in model.objects.all_sync()}
    for id in EXPIRING - EXPIRED:
        assert docs[id].touch_sync(3600)
    for id in EXPIRED:
        assert docs[id].touch_sync(0.05)
    time.sleep(0.2)
    return {id: v for id, v in VALUES.items() if id not in EXPIRED}


def _gt(v: Values, bound: int) -> bool:
    return v["age"] is not None and v["age"] > bound


# (query, its Python test): issue 12's compound query's shape with selective membership
# tests (few of the candidates reach the range: tested on their documents), then others
# whose range is large
CASES: list[tuple[Callable[[Any], Any], Callable[[Values], bool]]] = [
    (lambda m: m.objects.filter(Q(tags__contains="t2"), Q(tags__contains="t5"), active=True,
                                age__gt=30, tags__contains="t7"),
     lambda v: v["active"] and _gt(v, 30) and {"t2", "t5", "t7"} <= set(v["tags"])),
    (lambda m: m.objects.filter(active=True, age__gt=30, tags__contains="t7"),
     lambda v: v["active"] and _gt(v, 30) and "t7" in v["tags"]),
    (lambda m: m.objects.filter(active=False, age__gte=-1, tags__contains="t2"),
     lambda v: not v["active"] and v["age"] is not None and v["age"] >= -1
     and "t2" in v["tags"]),
    (lambda m: m.objects.filter(active=True, age__lt=2**53, tags__contains="t0"),
     lambda v: v["active"] and v["age"] is not None and v["age"] < 2**53
     and "t0" in v["tags"]),
    (lambda m: m.objects.filter(active=True, age__gt=-10**12, age__lte=90,
                                tags__contains="t5"),
     lambda v: v["active"] and _gt(v, -10**12) and v["age"] <= 90 and "t5" in v["tags"]),
]


def _key(id: str) -> int:
    return int(id)


def _expected(values: dict[str, Values], test: Callable[[Values], bool]) -> list[str]:
    return sorted((id for id, v in values.items() if test(v)), key=_key)


def _check(model: type[Document], values: dict[str, Values]) -> None:
    for make, test in CASES:
        want = _expected(values, test)
        assert want
        got = make(model).all_sync()
        assert [d.id for d in got] == want
        assert [(d.name, d.age, d.active, d.tags) for d in got] == [
            (values[id]["name"], values[id]["age"], values[id]["active"], values[id]["tags"])
            for id in want]
        assert make(model).count_sync() == len(want)
        assert make(model).exists_sync()
        # windows, in id order and by value
        assert [d.id for d in make(model).offset(5).limit(40).all_sync()] == want[5:45]
        assert [d.id for d in make(model).offset(len(want) - 3).all_sync()] == want[-3:]
        by_age = sorted(want, key=lambda id: (values[id]["age"], _key(id)), reverse=True)
        assert [d.id for d in make(model).order_by("-age").all_sync()] == by_age
        assert [d.id for d in make(model).order_by("-age").offset(3).limit(17)
                .all_sync()] == by_age[3:20]
        by_name = sorted(want, key=lambda id: (values[id]["name"], _key(id)))
        assert [d.id for d in make(model).order_by("name").all_sync()] == by_name
    # nothing matches: no row, a count of 0, not exists
    nothing = model.objects.filter(active=True, age__gt=2**60, tags__contains="t1")
    assert nothing.all_sync() == [] and nothing.count_sync() == 0
    assert not nothing.exists_sync()


@pytest.mark.parametrize("model", [Person, Spread], ids=["p1", "p3"])
@pytest.mark.parametrize("mixed", [False, True], ids=["format3", "mixed"])
def test_answers_are_the_reference_answers(conn: Any, redis_client: Any,
                                           model: type[Document], mixed: bool) -> None:
    _check(model, _load(model, redis_client, mixed))


@contextmanager
def _lua_commands(redis_client: Any) -> Iterator[list[str]]:
    """The commands scripts run while the block runs (MONITOR), each as its text."""
    seen: list[str] = []
    with redis_client.monitor() as m:
        yield seen
        redis_client.echo("qdf-end")
        while True:
            c = m.next_command()
            if c["client_type"] != "lua":
                if "qdf-end" in c["command"]:
                    break
                continue
            seen.append(c["command"])


def _age_index_reads(commands: list[str]) -> list[str]:
    return [c for c in commands if c.startswith("ZRANGEBYLEX") and ":age" in c.split()[1]]


def test_a_large_range_is_tested_on_the_documents(conn: Any, redis_client: Any) -> None:
    """The compound query's shape (a walk of a tags index, membership tests keeping few of
    its candidates, a range of most ages): the range's entries are never read (no
    ZRANGEBYLEX of the age index), the candidates' documents are read in batches (MGET,
    never one GET each), no meta hash is read, and each document once: as many MGET keys as
    candidates passing the membership tests, not more."""
    values = _load(Person, redis_client, False)
    make, test = CASES[0]
    want = _expected(values, test)
    make(Person).all_sync()  # (the script loaded, the schema read)
    with _lua_commands(redis_client) as commands:
        rows = make(Person).all_sync()
    assert [d.id for d in rows] == want
    assert _age_index_reads(commands) == []
    assert not [c for c in commands if c.startswith(("GET", "HMGET", "HGET "))
                and not c.endswith(":state layout")]
    candidates = [id for id, v in values.items()
                  if v["active"] and {"t2", "t5", "t7"} <= set(v["tags"])]
    mget_keys = sum(len(c.split()) - 1 for c in commands if c.startswith("MGET"))
    # (and the two documents at the id index's ends, their format looked at)
    assert mget_keys == len(candidates) + 2
    with _lua_commands(redis_client) as commands:
        assert make(Person).count_sync() == len(want)
    assert _age_index_reads(commands) == []


def test_a_small_range_is_still_read_as_a_set(conn: Any, redis_client: Any) -> None:
    # (a range of few entries against the candidates: its set costs less than their
    # documents)
    values = _load(Person, redis_client, False)
    query = Person.objects.filter(active=True, age__gt=97, tags__contains="t7")
    query.all_sync()
    with _lua_commands(redis_client) as commands:
        rows = query.all_sync()
    assert [d.id for d in rows] == _expected(
        values, lambda v: v["active"] and _gt(v, 97) and "t7" in v["tags"])
    assert _age_index_reads(commands)


def test_the_compound_query_keeps_its_set(conn: Any, redis_client: Any) -> None:
    # (one membership test keeping half the candidates: about 3 range entries per candidate
    # reaching the range, whose set costs less than their documents)
    values = _load(Person, redis_client, False)
    make, test = CASES[1]
    make(Person).all_sync()
    with _lua_commands(redis_client) as commands:
        rows = make(Person).all_sync()
    assert [d.id for d in rows] == _expected(values, test)
    assert _age_index_reads(commands)


def test_format_2_documents_keep_the_set(conn: Any, redis_client: Any) -> None:
    """A collection of format-2 documents (at the id index's ends): the range is read as a
    set, as before (a document read first would be followed by its meta hash's read)."""
    new_format, writes.NEW_FORMAT = writes.NEW_FORMAT, 2
    try:
        values = _load(Person, redis_client, False)
    finally:
        writes.NEW_FORMAT = new_format
    make, test = CASES[0]
    make(Person).all_sync()
    with _lua_commands(redis_client) as commands:
        rows = make(Person).all_sync()
    assert [d.id for d in rows] == _expected(values, test)
    assert _age_index_reads(commands)


def test_explain_says_a_range_may_be_tested_on_the_documents(conn: Any,
                                                             redis_client: Any) -> None:
    _load(Person, redis_client, False)
    tests = Person.objects.filter(active=True, age__gt=30, tags__contains="t7").explain_sync()
    assert ("age__gt=30: the ranges of index 'age' read as a set, or each candidate's "
            "document (format 3: read in batches, kept for the row) or meta hash") in str(
                tests.details["condition tests"])


@pytest.mark.parametrize("how", ["rows", "ordered", "count"])
def test_a_range_tested_per_candidate_reads_the_documents_in_batches(
        conn: Any, redis_client: Any, how: str) -> None:
    """Few candidates (an equality), a range of most entries: the range is tested on each
    candidate (no set), whose document is read in batches (MGET, no GET each), once."""
    values = _load(Person, redis_client, False)
    query = Person.objects.filter(name="n4", age__gt=3)
    test: Callable[[Values], bool] = lambda v: v["name"] == "n4" and _gt(v, 3)  # noqa: E731
    candidates = [id for id, v in values.items() if v["name"] == "n4"]
    want = _expected(values, test)
    assert 0 < len(want) < len(candidates) < 100
    run = {"rows": lambda: [d.id for d in query.all_sync()],
           "ordered": lambda: [d.id for d in query.order_by("-age").all_sync()],
           "count": query.count_sync}[how]
    run()
    with _lua_commands(redis_client) as commands:
        got = run()
    assert got == (len(want) if how == "count" else want if how == "rows" else sorted(
        want, key=lambda id: (values[id]["age"], _key(id)), reverse=True))
    assert _age_index_reads(commands) == []
    assert not [c for c in commands if c.startswith(("GET", "HMGET", "HGET "))
                and not c.endswith(":state layout")]
    assert sum(len(c.split()) - 1 for c in commands if c.startswith("MGET")) == len(candidates)


def test_a_windowed_gather_does_not_hold_the_documents_read_first(
        conn: Any, redis_client: Any) -> None:
    """A sorted window (every match kept until the sort, then a page of them): the documents
    read first are not held for the matches, only the page's are read again (one MGET of
    its rows); a count holds none either (its answer is the same)."""
    values = _load(Person, redis_client, False)
    query = Person.objects.filter(name="n4", age__gt=3)
    want = _expected(values, lambda v: v["name"] == "n4" and _gt(v, 3))
    candidates = [id for id, v in values.items() if v["name"] == "n4"]
    page = query.order_by("-age").offset(2).limit(5)
    page.all_sync()
    with _lua_commands(redis_client) as commands:
        got = [d.id for d in page.all_sync()]
    assert got == sorted(want, key=lambda id: (values[id]["age"], _key(id)),
                         reverse=True)[2:7]
    mgets = [len(c.split()) - 1 for c in commands if c.startswith("MGET")]
    assert mgets == [len(candidates), 5]
    assert query.count_sync() == len(want)


@pytest.mark.parametrize("how", ["rows", "ordered", "count"])
def test_a_document_key_of_another_type_is_refused_as_before(
        conn: Any, redis_client: Any, how: str) -> None:
    """A candidate's document key holding a hash: MGET answers nil for it, as for a
    document gone; the query refuses it (WRONGTYPE), as the test's own read does without
    documents read first, and is not answered without that row."""
    from quantumorm.errors import WrongTypeError
    values = _load(Person, redis_client, False)
    victim = next(id for id, v in values.items() if v["name"] == "n4" and _gt(v, 3))
    key = next(k for k in redis_client.keys("*qdf_people*:d:*")
               if k.decode().endswith(":d:" + victim))
    redis_client.delete(key)
    redis_client.hset(key, "a", "b")
    query = Person.objects.filter(name="n4", age__gt=3)
    run = {"rows": query.all_sync, "ordered": query.order_by("-age").all_sync,
           "count": query.count_sync}[how]
    with pytest.raises(WrongTypeError):
        run()
