"""Queries read the id key of each index member where it starts: after the first ``\\x00``
when an id key follows it (``\\x01`` + a length byte, or ``\\x02`` + the escaped id), else after
the last one. Members whose value encodings look like an id key's start (null ``\\x01\\x00``
and false ``\\x02\\x00`` in a compound index), strings holding ``\\x00`` (escaped as
``\\x00\\xff``), and numeric and other ids are all read back as their ids: by walks (the exact
walk of an equality or a range), by range conditions read as sets, and by lex-range drivers.
The expected ids are computed here in Python from the stored values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import MODES, call, ids_of

from quantumorm import BooleanField, Document, IntField, Q, StringField


class Member(Document):
    name = StringField(indexed=True)
    flag = BooleanField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "q_members"
        indexes = [("name", "flag"), ("name", "n")]


class Paired(Document):
    """Only compound indexes: a range of names reads members whose second encoding may be
    null or false, with no lead (the members of the range have different first values)."""

    name = StringField()
    flag = BooleanField()
    n = IntField()

    class Meta:
        collection = "q_members_paired"
        indexes = [("name", "flag"), ("name", "n")]


NAMES = ["", "a", "a\x00b", "a\x00", "b"]
FLAGS = [None, False, True]
NUMBERS = [None, -1, 0, 5, 2**60]
IDS = ["1", "22", "0012", "a-1", "x:y", "333", "é", "9"]


def _members() -> list[tuple[str, dict[str, Any]]]:
    rows = []
    k = 0
    for name in NAMES:
        for flag in FLAGS:
            for n in NUMBERS:
                rows.append((f"{IDS[k % len(IDS)]}{k}", {"name": name, "flag": flag, "n": n}))
                k += 1
    return rows


MEMBERS = _members()

Test = Callable[[dict[str, Any]], bool]


def _over(n: Any, low: int) -> bool:
    return n is not None and n > low


CASES: list[tuple[dict[str, Any] | Q, Test]] = [
    *[({"name": name}, lambda v, name=name: v["name"] == name) for name in NAMES],
    *[({"name": name, "flag": False}, lambda v, name=name: v["name"] == name
       and v["flag"] is False) for name in NAMES],
    *[({"name": name, "flag": None}, lambda v, name=name: v["name"] == name
       and v["flag"] is None) for name in NAMES],
    *[({"name": name, "n__gt": -1}, lambda v, name=name: v["name"] == name
       and _over(v["n"], -1)) for name in NAMES],
    ({"n__gte": 0}, lambda v: v["n"] is not None and v["n"] >= 0),
    ({"n__lt": 5}, lambda v: v["n"] is not None and v["n"] < 5),
    ({"flag": False, "n__gt": -1}, lambda v: v["flag"] is False and _over(v["n"], -1)),
    ({"flag": True, "n__gt": 0, "name__gte": "a"},
     lambda v: v["flag"] is True and _over(v["n"], 0) and v["name"] >= "a"),
    ({"name__gt": "a", "name__lt": "b"}, lambda v: "a" < v["name"] < "b"),
    (Q(name="a\x00b") | Q(name="a\x00"), lambda v: v["name"] in ("a\x00b", "a\x00")),
]


PAIRED_CASES: list[tuple[dict[str, Any] | Q, Test]] = [
    ({"name__gte": "a"}, lambda v: v["name"] >= "a"),
    ({"name__lt": "b"}, lambda v: v["name"] < "b"),
    ({"name__gt": "", "name__lte": "a\x00b"}, lambda v: "" < v["name"] <= "a\x00b"),
    ({"name__startswith": "a"}, lambda v: v["name"].startswith("a")),
    ({"name__gte": "a", "flag": False}, lambda v: v["name"] >= "a" and v["flag"] is False),
    ({"name__gte": "", "n": None}, lambda v: v["n"] is None),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("model", [Member, Paired], ids=["single", "compound"])
async def test_every_member_is_read_as_its_id(conn: Any, mode: str,
                                              model: type[Document]) -> None:
    await call(model.objects, "bulk_create", mode, [model(id=i, **v) for i, v in MEMBERS])
    problems = []
    for where, test in CASES if model is Member else PAIRED_CASES:
        qs = model.objects.filter(where) if isinstance(where, Q) else \
            model.objects.filter(**where)
        want = sorted(i for i, v in MEMBERS if test(v))
        got = ids_of(await call(qs, "all", mode))
        if sorted(got) != want or len(got) != len(set(got)):
            problems.append(f"{where!r}: got {sorted(got)}, want {want}")
        if await call(qs, "count", mode) != len(want):
            problems.append(f"{where!r}: count")
        # in index order, a window of it (the exact walk reads just that window)
        ordered = ids_of(await call(qs.order_by("n")[1:4], "all", mode))
        by_n = ids_of(await call(qs.order_by("n"), "all", mode))
        if ordered != by_n[1:4] or sorted(by_n) != want:
            problems.append(f"{where!r} by n: got {ordered} of {by_n}, want {want}")
    assert not problems, "\n".join(problems)
    assert len(ids_of(await call(model.objects, "all", mode))) == len(MEMBERS)
