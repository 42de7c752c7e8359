"""DateField, EnumField, EmailField, URLField and the untyped ListField on every backend, in
both modes: values read back as written, every lookup the field takes gives the same ids as
the documented rule evaluated here in Python, and ordering follows the values."""

from __future__ import annotations

import datetime as dt
import enum
from types import SimpleNamespace
from typing import Any

import pytest
from contract_models import STORES, run

from quantumorm import (
    DateField,
    Document,
    EmailField,
    EnumField,
    ListField,
    QueryError,
    URLField,
    ValidationError,
)


class Level(enum.Enum):
    LOW = 1
    HIGH = 10
    MID = 5


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Flag(enum.Enum):  # mixed values: equality only
    ON = True
    NAMED = "named"


def _declare(backend: str) -> SimpleNamespace:
    class Event(Document):
        day = DateField(indexed=True)
        level = EnumField(Level, indexed=True)
        color = EnumField(Color)
        flag = EnumField(Flag, indexed=True)
        email = EmailField(indexed=True)
        site = URLField()
        bag = ListField()
        Meta = type("Meta", (), {"backend": backend, "namespace": "contract",
                                 "collection": "events"})

    return SimpleNamespace(Event=Event)


MODELS = {backend: _declare(backend) for backend in STORES}

DAYS = [dt.date(2024, 1, 31), dt.date(1999, 12, 31), None, dt.date(2024, 2, 1),
        dt.date(2024, 1, 31)]
ROWS: list[dict[str, Any]] = [
    {"day": DAYS[i], "level": [Level.LOW, Level.HIGH, None, Level.MID, 10][i],
     "color": [Color.RED, "blue", None, Color.BLUE, "red"][i],
     "flag": [Flag.ON, "named", None, True, Flag.NAMED][i],
     "email": ["a@example.com", "\"x@y\"@example.org", None, "B@host", "ü@bücher.de"][i],
     "site": ["https://example.com/a", "HTTP://h:80/?q=1", None, "https://[::1]/", None][i],
     "bag": [[1, "a", True], ["x", {"k": 1}, [1]], None, [], [1.5, "1"]][i]}
    for i in range(5)
]


@pytest.fixture
def event(store: str) -> Any:
    return MODELS[store].Event


async def load(Event: Any, mode: str) -> dict[str, Any]:
    docs = {}
    for i, row in enumerate(ROWS):
        doc = Event(id=f"e{i}", **row)
        await run(doc, "save", mode)
        docs[doc.id] = doc
    return docs


async def ids(qs: Any, mode: str) -> list[str]:
    return [d.id for d in await run(qs, "all", mode)]


async def test_values_read_back_as_python_values(event: Any, mode: str) -> None:
    await load(event, mode)
    got = {d.id: d for d in await run(event.objects, "all", mode)}
    assert got["e0"].day == dt.date(2024, 1, 31) and type(got["e0"].day) is dt.date
    assert got["e4"].level is Level.HIGH and got["e1"].color is Color.BLUE
    assert got["e3"].flag is Flag.ON and got["e4"].flag is Flag.NAMED
    assert got["e1"].email == "\"x@y\"@example.org"
    assert got["e1"].site == "HTTP://h:80/?q=1"
    assert got["e1"].bag == ["x", {"k": 1}, [1]] and got["e4"].bag == [1.5, "1"]
    assert got["e2"].day is None and got["e2"].bag is None and got["e3"].bag == []
    stored = got["e0"].to_dict(storage=True)
    assert stored["day"] == "2024-01-31" and stored["level"] == 1 and stored["flag"] is True


@pytest.mark.parametrize(("lookup", "want"), [
    ({"day": "2024-01-31"}, ["e0", "e4"]),
    ({"day__gt": dt.date(2024, 1, 31)}, ["e3"]),
    ({"day__lte": "2024-01-31"}, ["e0", "e1", "e4"]),
    ({"day__isnull": True}, ["e2"]),
    ({"day__in": [dt.date(1999, 12, 31), dt.date(2024, 2, 1)]}, ["e1", "e3"]),
    ({"level": Level.HIGH}, ["e1", "e4"]),
    ({"level": 10}, ["e1", "e4"]),
    ({"level__gte": Level.MID}, ["e1", "e3", "e4"]),
    ({"level__lt": 5}, ["e0"]),
    ({"level__ne": Level.LOW}, ["e1", "e2", "e3", "e4"]),
    ({"color": "red"}, ["e0", "e4"]),
    ({"color__gt": Color.BLUE}, ["e0", "e4"]),
    ({"flag": True}, ["e0", "e3"]),
    ({"flag__in": [Flag.NAMED]}, ["e1", "e4"]),
    ({"email": "B@host"}, ["e3"]),
    ({"email__endswith": ".de"}, ["e4"]),
    ({"site__startswith": "https://"}, ["e0", "e3"]),
    ({"bag__contains": 1}, ["e0"]),
    ({"bag__contains": "1"}, ["e4"]),
    ({"bag__contains": True}, ["e0"]),
    ({"bag__contains": 1.5}, ["e4"]),
    ({"bag__exact": []}, ["e3"]),
    ({"bag__isnull": True}, ["e2"]),
])
async def test_every_lookup(event: Any, mode: str, lookup: dict[str, Any],
                            want: list[str]) -> None:
    await load(event, mode)
    assert sorted(await ids(event.objects.filter(**lookup), mode)) == want
    assert await run(event.objects.filter(**lookup), "count", mode) == len(want)
    assert sorted(await ids(event.objects.exclude(**lookup), mode)) == sorted(
        {f"e{i}" for i in range(5)} - set(want))


async def test_ordering_by_date_and_enum_value(event: Any, mode: str) -> None:
    await load(event, mode)
    assert await ids(event.objects.order_by("day"), mode) == ["e2", "e1", "e0", "e4", "e3"]
    assert await ids(event.objects.order_by("-level"), mode) == ["e4", "e1", "e3", "e0", "e2"]
    assert await ids(event.objects.order_by("color"), mode) == ["e2", "e1", "e3", "e0", "e4"]


async def test_validation(event: Any, mode: str) -> None:
    bad: list[dict[str, Any]] = [
        {"day": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)}, {"day": "2024-1-31"},
        {"day": "2024-02-30"}, {"level": 2}, {"level": True}, {"color": "RED"},
        {"email": "no-at-sign"}, {"email": "a@"}, {"email": "@b"}, {"email": " a@b"},
        {"email": "a@b c"}, {"site": "example.com"}, {"site": "ftp://h/"},
        {"site": "https://"}, {"site": "https://a b/"}, {"bag": [float("nan")]},
        {"bag": "abc"}, {"bag": [1, None]},
    ]
    for values in bad:
        with pytest.raises(ValidationError):
            await run(event(**values), "save", mode)
    assert await run(event.objects, "count", mode) == 0


def test_mixed_enum_is_equality_only() -> None:
    Event = MODELS["sqlite"].Event
    with pytest.raises(QueryError):
        Event.objects.filter(flag__gt=True)
    with pytest.raises(QueryError):
        Event.objects.order_by("flag")
    with pytest.raises(QueryError):
        Event.objects.order_by("bag")


async def test_push_and_pull_on_an_untyped_list(event: Any, mode: str) -> None:
    doc = await run(event(id="p", bag=[1]), "save", mode)
    assert await run(doc, "push", mode, "bag", "a", {"k": [1]}) == [1, "a", {"k": [1]}]
    assert await run(doc, "pull", mode, "bag", 1) == ["a", {"k": [1]}]
    again = await run(event.objects, "get", mode, id="p")
    assert again.bag == ["a", {"k": [1]}]
    assert await ids(event.objects.filter(bag__contains="a"), mode) == ["p"]


async def test_json_values_are_compared_as_json(event: Any, mode: str) -> None:
    """1, 1.0 and True are equal to Python, not as JSON: pull, add_to_set and "did it
    change" tell them apart (and {"k": 1} from {"k": True}, 0.0 from -0.0)."""
    mixed = [1, True, 1.0, 0, False, {"k": 1}, {"k": True}, 0.0]
    doc = await run(event(id="j", bag=mixed), "save", mode)
    qs = event.objects.filter(id="j")
    assert await run(qs, "update", mode, pull__bag=True) == 1
    assert (await run(qs, "get", mode)).bag == [1, 1.0, 0, False, {"k": 1}, {"k": True}, 0.0]
    await run(qs, "update", mode, add_to_set__bag=-0.0)
    await run(qs, "update", mode, pull_all__bag=[{"k": True}, 0])
    assert (await run(qs, "get", mode)).bag == [1, 1.0, False, {"k": 1}, 0.0, -0.0]
    assert await run(doc, "pull", mode, "bag", 1.0) == [1, False, {"k": 1}, 0.0, -0.0]
    doc = await run(event.objects, "get", mode, id="j")
    doc.bag = [True, False, {"k": True}, 0.0, -0.0]  # == the stored list to Python
    await run(doc, "save", mode)
    assert (await run(qs, "get", mode)).bag == [True, False, {"k": True}, 0.0, -0.0]
