"""Ordered, limited queries over many partitions in two phases (``reader.Reader.query``):
the partitions' ids, versions and sort keys first, then only the kept rows' documents.

Every answer is compared with one computed in Python from the inserted values; the commands
run (INFO commandstats) show which way a query went: one ``query.lua`` call per partition,
which reads documents with MGET in one phase, none in two phases, where an MGET per
partition holding a kept row follows. A
document written between the two phases is caught by its version, and the query runs again
(then, if the rows keep changing, as the one-phase merge).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from quantumorm import Document, IntField, StringField
from quantumorm.backends.redis import reader
from quantumorm.backends.redis.calls import QueryMode
from quantumorm.backends.redis.commands import Call
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.engine import drive

PARTITIONS = 16
N = 900


class Ranked(Document):
    score = IntField(indexed=True)
    name = StringField(indexed=True)
    note = StringField()

    class Meta:
        collection = "tp_ranked"
        partitions = PARTITIONS


def _values() -> dict[str, dict[str, Any]]:
    rng = random.Random(5)  # scores 0-199: many ties, broken by id
    return {f"r{i:04d}": {"score": rng.randrange(200), "name": f"n{rng.randrange(40):02d}",
                          "note": "x" * rng.randrange(50)} for i in range(N)}


VALUES = _values()


def _script_calls(client: Any) -> int:
    return _calls(client, "evalsha") + _calls(client, "fcall")


def _calls(client: Any, command: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


@pytest.fixture
def ranked(conn: Any) -> None:
    Ranked.objects.bulk_create_sync([Ranked(id=id, **v) for id, v in VALUES.items()])


def by(*fields: str) -> list[str]:
    def key(id: str) -> tuple[Any, ...]:
        out: list[Any] = []
        for f in fields:
            value = VALUES[id][f.lstrip("-")]
            out.append(-value if f.startswith("-") and isinstance(value, int) else value)
        return (*out, id)
    return sorted(VALUES, key=key)


def test_two_phases_give_the_reference_answers(ranked: None, redis_client: Any) -> None:
    assert reader.two_phase_pays(PARTITIONS, 100) and not reader.two_phase_pays(PARTITIONS, 10)
    Ranked.objects.order_by("score").limit(100).all_sync()  # scripts loaded, schema read
    cases = [
        (Ranked.objects.order_by("score").limit(100), by("score")[:100]),
        (Ranked.objects.order_by("-score").offset(30).limit(60),
         list(reversed(by("score")))[30:90]),
        (Ranked.objects.filter(score__gte=50).order_by("name", "score").limit(120),
         [id for id in by("name", "score") if VALUES[id]["score"] >= 50][:120]),
        (Ranked.objects.filter(name__in=["n01", "n02", "n03", "n05"]).order_by(
            "-score").limit(40),
         # (ties broken by id in the last ordering's direction)
         [id for id in reversed(by("score"))
          if VALUES[id]["name"] in ("n01", "n02", "n03", "n05")][:40]),
    ]
    for query, want in cases:
        before, mgets = _script_calls(redis_client), _calls(redis_client, "mget")
        got = query.all_sync()
        calls = _script_calls(redis_client) - before
        mgets = _calls(redis_client, "mget") - mgets
        assert query.spec.window is not None
        assert reader.two_phase_pays(PARTITIONS, query.spec.window)
        assert [d.id for d in got] == want
        assert [(d.score, d.name, d.note) for d in got] == [
            (VALUES[i]["score"], VALUES[i]["name"], VALUES[i]["note"]) for i in want]
        assert all(d.version > 0 for d in got)
        # one query.lua call per partition (no documents read), then one MGET on each
        # partition holding a kept row
        holding = {KeySpace(Ranked._meta).partition_of(id) for id in want}
        assert (calls, mgets) == (PARTITIONS, len(holding))


def test_a_small_window_stays_one_phase(ranked: None, redis_client: Any) -> None:
    query = Ranked.objects.order_by("score").limit(10)
    query.all_sync()
    before = _script_calls(redis_client)
    assert [d.id for d in query.all_sync()] == by("score")[:10]
    assert _script_calls(redis_client) - before == PARTITIONS


async def test_async_two_phases(ranked: None) -> None:
    got = await Ranked.objects.order_by("-score", "name").limit(80).all()
    want = sorted(VALUES, key=lambda i: (-VALUES[i]["score"], VALUES[i]["name"], i))[:80]
    assert [d.id for d in got] == want


def test_explain_names_the_merge(ranked: None) -> None:
    two = Ranked.objects.order_by("score").limit(100).explain_sync()
    assert two.details["merge"].startswith("two phases")
    one = Ranked.objects.order_by("score").limit(5).explain_sync()
    assert one.details["merge"].startswith("one phase")


class Interfering:
    """A blocking executor that, after each first phase it runs, lets ``between`` write."""

    def __init__(self, executor: Any, between: Any) -> None:
        self.executor, self.between, self.first_phases = executor, between, 0

    def execute(self, plan: Any) -> Any:
        replies = self.executor.execute(plan)
        if any(isinstance(step, Call) and step.script == "query"
               and QueryMode.SORTKEYS in step.args for step in plan.steps):
            self.first_phases += 1
            self.between(self.first_phases)
        return replies


def _query_with(conn: Any, between: Any, spec: Any) -> tuple[list[Any], int]:
    store = conn._store
    interfering = Interfering(store.sync_executor(), between)
    rows = drive.run(conn.backend.query(Ranked._meta, spec), interfering)
    return rows, interfering.first_phases


def test_a_row_written_between_the_phases_runs_the_query_again(ranked: None, conn: Any) -> None:
    spec = Ranked.objects.order_by("score").limit(100).spec
    top = by("score")[0]

    def between(phase: int) -> None:
        if phase == 1:  # the first row moves to the end of the order
            doc = Ranked.objects.get_sync(id=top)
            doc.score = 10_000
            doc.save_sync()

    rows, phases = _query_with(conn, between, spec)
    assert phases == 2  # the first round's rows were not all at their ranked versions
    want = [id for id in by("score") if id != top][:100]
    assert [r.id for r in rows] == want
    assert [r.data["score"] for r in rows] == [VALUES[id]["score"] for id in want]


def test_rows_that_keep_changing_fall_back_to_one_phase(ranked: None, conn: Any) -> None:
    spec = Ranked.objects.order_by("score").limit(100).spec
    first = by("score")[:100]

    def between(phase: int) -> None:  # a winner rewritten after every first phase
        doc = Ranked.objects.get_sync(id=first[phase % 100])
        doc.note = f"changed {phase}"
        doc.save_sync()

    rows, phases = _query_with(conn, between, spec)
    assert phases == reader.TWO_PHASE_ATTEMPTS
    assert [r.id for r in rows] == first  # the one-phase merge's answer
    changed = {first[p % 100] for p in range(1, phases + 1)}
    for r in rows:
        if r.id in changed:
            assert r.data["note"].startswith("changed")
