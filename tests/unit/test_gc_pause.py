"""Large replies are read with the cyclic garbage collector paused (:mod:`quantumorm.gcpause`):
no collection runs inside the loops that make their rows and documents, the collector is
left as the caller had it (also after an error), small replies are read as before, and the
rows and documents are those of the unpaused path."""

from __future__ import annotations

import gc
from collections.abc import Callable, Generator, Iterator
from typing import Any, TypeVar

import pytest

from quantumorm import ArrayField, DateTimeField, Document, IntField, StringField, gcpause
from quantumorm.backends.redis import results
from quantumorm.engine.contract import Row
from quantumorm.engine.drive import run
from quantumorm.errors import CorruptDocumentError
from quantumorm.query.queryset import QuerySet

T = TypeVar("T")


class Paused(Document):
    name = StringField()
    age = IntField()
    tags = ArrayField(StringField())
    at = DateTimeField()

    class Meta:
        collection = "paused"


def _doc(i: int) -> bytes:
    return (b'{"name":"n%d","age":%d,"tags":["t%d","u"],"at":"2024-01-02T03:04:05+00:00"}'
            % (i, i, i))


def _reply(count: int, bad: int | None = None) -> list[Any]:
    """A ``query.lua`` "rows" reply of ``count`` documents (ids 1.., version 5, carried by
    each value: no version item); the row ``bad`` (if any) holds text that is not JSON."""
    reply: list[Any] = []
    for i in range(1, count + 1):
        doc = b"{not json" if i == bad else _doc(i)
        reply += [str(i).encode(), b"\x005\x00" + doc]
    return reply


@pytest.fixture(autouse=True)
def collector() -> Iterator[None]:
    """The collector on (as the tests expect to find it), and on again after each test."""
    was = gc.isenabled()
    gc.enable()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


#: the collections that may start once a pause ends, before ``_collections`` stops counting:
#: the allocations counted during the pause are then past the threshold, so a few young
#: collections start, each of which may take older generations with it (1 to 5 have been
#: seen, varying with the state of the process: pytest's plugins alone move it); a loop
#: that is not paused starts about one per row, at least ``PAUSE_FROM - 1`` here
AFTER_PAUSE = 16


def _collections(work: Callable[[], T]) -> tuple[T, int]:
    """``work()``'s result and how many collections started while it ran, with the
    collector set to collect at nearly every allocation."""
    started: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])

    threshold = gc.get_threshold()
    gc.callbacks.append(count)
    gc.set_threshold(1)
    try:
        result = work()
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(count)
    return result, len(started)


def _plain(rows: list[Row]) -> list[tuple[str, int, dict[str, Any]]]:
    return [(row.id, row.version, row.data) for row in rows]


def test_a_pause_leaves_the_collector_as_it_found_it() -> None:
    with gcpause.paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    with gcpause.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # (the caller turned it off: it stays off)
    gc.enable()
    with pytest.raises(KeyError), gcpause.paused():
        raise KeyError("x")
    assert gc.isenabled()


def test_a_large_reply_is_read_without_collections() -> None:
    count = gcpause.PAUSE_FROM + 36
    reply = _reply(count)
    rows, collections = _collections(lambda: results.rows(Paused._meta, reply))
    assert collections <= AFTER_PAUSE and gc.isenabled()
    # the same rows as the reply read in small parts (not paused), row by row
    parts = [row for start in range(0, len(reply), 30)
             for row in results.rows(Paused._meta, reply[start:start + 30])]
    assert _plain(rows) == _plain(parts)
    assert [row.id for row in rows] == [str(i) for i in range(1, count + 1)]
    assert rows[4].data == {"name": "n5", "age": 5, "tags": ["t5", "u"],
                            "at": "2024-01-02T03:04:05+00:00"}


def test_a_small_reply_is_read_as_before() -> None:
    reply = _reply(gcpause.PAUSE_FROM - 1)
    rows, collections = _collections(lambda: results.rows(Paused._meta, reply))
    assert collections > AFTER_PAUSE  # (not paused: the collector ran as it always did)
    assert len(rows) == gcpause.PAUSE_FROM - 1


def test_a_corrupt_row_of_a_large_reply_is_an_error_and_the_collector_runs_again() -> None:
    with pytest.raises(CorruptDocumentError, match="invalid JSON"):
        results.rows(Paused._meta, _reply(gcpause.PAUSE_FROM + 10, bad=70))
    assert gc.isenabled()


def test_many_documents_are_made_without_collections() -> None:
    rows = results.rows(Paused._meta, _reply(gcpause.PAUSE_FROM * 2))
    queryset = QuerySet(Paused)
    docs, collections = _collections(lambda: queryset._convert(rows))
    assert collections <= AFTER_PAUSE and gc.isenabled()
    few = [doc for start in range(0, len(rows), 10)
           for doc in queryset._convert(rows[start:start + 10])]
    assert [doc.__dict__ for doc in docs] == [doc.__dict__ for doc in few]
    assert docs[0].tags == ["t1", "u"] and docs[0].at.year == 2024


def test_many_documents_by_id_are_read_without_collections() -> None:
    count = gcpause.PAUSE_FROM + 5
    ids = [str(i) for i in range(1, count + 1)]
    reply = [b"\x005\x00" + _doc(i) for i in range(1, count + 1)]
    found: dict[str, Row | None] = {}
    older: list[str] = []
    _, collections = _collections(
        lambda: results.documents(Paused._meta, ids, reply, found, older))
    assert collections <= AFTER_PAUSE and gc.isenabled() and not older
    few: dict[str, Row | None] = {}
    results.documents(Paused._meta, ids[:10], reply[:10], few, older)
    assert [found[id] for id in ids[:10]] == [few[id] for id in ids[:10]]
    assert found["7"] == Row("7", 5, {"name": "n7", "age": 7, "tags": ["t7", "u"],
                                      "at": "2024-01-02T03:04:05+00:00"})


def test_overlapping_pauses_turn_the_collector_on_when_the_last_ends() -> None:
    """Two threads' pauses (or a pause within one): the first to end leaves the collector
    off while the other still reads; the last turns it on, as it was before the first."""
    first, second = gcpause.paused(), gcpause.paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()
    gc.disable()  # (off before the first pause: off after the last)
    with gcpause.paused(), gcpause.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


class _Executor:
    """A blocking executor that answers each plan with its double, recording whether the
    collector was on while it ran, and raising KeyError for the plan -1."""

    def __init__(self) -> None:
        self.on: list[bool] = []

    def execute(self, plan: int) -> int:
        self.on.append(gc.isenabled())
        if plan == -1:
            raise KeyError("refused")
        return plan * 2


def test_the_steps_of_an_operation_are_paused_and_its_round_trips_not() -> None:
    steps: list[bool] = []

    def op() -> Generator[int, int, int]:
        steps.append(gc.isenabled())
        got = yield 1
        steps.append(gc.isenabled())
        try:
            yield -1
        except KeyError:  # (the executor's error, thrown in where the plan was yielded)
            steps.append(gc.isenabled())
        got += yield 5
        steps.append(gc.isenabled())
        return got

    executor = _Executor()
    assert run(gcpause.paused_steps(op()), executor) == 2 + 10
    assert steps == [False, False, False, False] and executor.on == [True, True, True]
    assert gc.isenabled()
    gc.disable()  # (off before: off in the round trips and after)
    executor = _Executor()
    assert run(gcpause.paused_steps(op()), executor) == 12
    assert executor.on == [False, False, False] and not gc.isenabled()


def test_an_operation_that_fails_or_is_closed_leaves_the_collector_on() -> None:
    def failing() -> Generator[int, int, None]:
        yield 1
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        run(gcpause.paused_steps(failing()), _Executor())
    assert gc.isenabled()
    closed: list[bool] = []

    def waiting() -> Generator[int, int, None]:
        try:
            yield 1
        finally:
            closed.append(gc.isenabled())

    op = gcpause.paused_steps(waiting())
    assert next(op) == 1
    op.close()
    assert closed == [False] and gc.isenabled()
