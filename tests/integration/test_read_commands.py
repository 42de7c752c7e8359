"""The server commands of a query and of a count on a real server (INFO commandstats deltas,
which are deterministic): what each read pays for its guarantees, and that the cheap common
case (no TTL schedule, no two-phase lock flag: one EXISTS of the two) still turns into the
checked reads as soon as one of those keys is there."""

from __future__ import annotations

from typing import Any

from quantumorm import ArrayField, BooleanField, Document, IntField, StringField


class Reader(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)

    class Meta:
        collection = "rc_readers"


class Walker(Document):
    age = IntField(indexed=True)
    active = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)

    class Meta:
        collection = "rc_walkers"


PREFIX = "{qorm:rc_readers:p0}:"


def _calls(client: Any) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(stat["calls"])
            for name, stat in client.info("commandstats").items()}


def _delta(client: Any, run: Any) -> tuple[Any, dict[str, int]]:
    before = _calls(client)
    result = run()
    after = _calls(client)
    # (a script call is "evalsha" here, called with FCALL or EVALSHA)
    return result, {("evalsha" if name == "fcall" else name): after[name] - before.get(name, 0)
                    for name in after if after[name] != before.get(name, 0) and name != "info"}


def _load() -> list[Reader]:
    return [Reader(id=str(i), name=f"n{i % 3}", age=i).save_sync() for i in range(1, 10)]


def test_a_query_and_a_count_check_the_schedule_and_the_lock_flag_with_one_exists(
        conn: Any, redis_client: Any) -> None:
    _load()
    query = Reader.objects.filter(name="n1")
    counted = Reader.objects.filter(age__gte=3, age__lt=7)
    windowed = Reader.objects.filter(name="n1").limit(2)
    query.all_sync(), counted.count_sync(), windowed.all_sync()  # scripts loaded, schema read
    rows, delta = _delta(redis_client, query.all_sync)
    assert [r.id for r in rows] == ["1", "4", "7"]
    # an equality's whole range: the script, the schema layout check, the index range and
    # the documents, whose MGET reads the lock flag too (a document gone is left out by
    # it, and no window counts entries): no EXISTS, no ZCARD of an absent schedule
    assert delta == {"evalsha": 1, "hget": 1, "zrangebylex": 1, "mget": 1}
    # a window counts its entries: one EXISTS of the TTL schedule and the lock flag
    rows, delta = _delta(redis_client, windowed.all_sync)
    assert [r.id for r in rows] == ["1", "4"]
    assert delta == {"evalsha": 1, "hget": 1, "exists": 1, "zrangebylex": 1, "mget": 1}
    count, delta = _delta(redis_client, counted.count_sync)
    assert count == 4
    assert delta == {"evalsha": 1, "hget": 1, "exists": 1, "zlexcount": 1}


def test_with_a_ttl_schedule_every_candidate_is_checked_and_counted_alive(
        conn: Any, redis_client: Any) -> None:
    _load()
    Reader(id="10", name="n1", age=5).save_sync(ttl=600)  # the schedule is not empty now
    # a document key gone while its index entries stay (as when a key expires before a
    # sweep): no read may return or count it
    redis_client.delete(PREFIX + "d:4")
    query = Reader.objects.filter(name="n1")
    counted = Reader.objects.filter(age__gte=3, age__lt=7)
    rows, delta = _delta(redis_client, query.all_sync)
    assert [r.id for r in rows] == ["1", "7", "10"]
    # (an equality's whole range: the MGET of the documents leaves the gone one out, and
    # no window counts entries: no read of the schedule needed)
    assert "zcard" not in delta and "exists" not in delta
    # a window counts its entries: the schedule read, each candidate checked alive, the
    # window filled past the gone document
    rows, delta = _delta(redis_client, query.limit(2).all_sync)
    assert [r.id for r in rows] == ["1", "7"]
    assert delta.get("zcard") == 1 and delta.get("exists", 0) >= 2  # the schedule read
    count, delta = _delta(redis_client, counted.count_sync)
    assert count == 4  # 3, 5, 6 and 10 (4 is gone)
    assert delta.get("zcard", 0) >= 1


def test_a_walk_tests_its_candidates_on_the_range_sets_before_probing_them(
        conn: Any, redis_client: Any) -> None:
    # ids 1-600 carry "t1" (the cheapest walk, in id order: chunks of 256, then the other
    # 344); ages 10 (ids 1-500) and 60 (501-1200): age >= 50 is 700 entries, read as a set
    # (a walk is chosen over it); every document is active (a membership probe)
    Walker.objects.bulk_create_sync([
        Walker(id=str(i), age=10 if i <= 500 else 60, active=True,
               tags=["t1"] if i <= 600 else ["t2"]) for i in range(1, 1201)])
    query = Walker.objects.filter(tags__contains="t1", age__gte=50, active=True)
    assert "index walk" in query.explain_sync().strategy
    query.all_sync()
    rows, delta = _delta(redis_client, query.all_sync)
    assert [r.id for r in rows] == [str(i) for i in range(501, 601)]
    # the first chunk has no candidate in the set: no probe of it (one ZMSCORE, for the
    # second chunk's 100 candidates, not one per chunk)
    assert delta["zmscore"] == 1 and delta["zrangebylex"] == 3
    assert Walker.objects.filter(tags__contains="t1", age__gte=50, active=False).count_sync() == 0
