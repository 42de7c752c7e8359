"""``bench/bench_workload.py`` (issue 12's benchmark) at a tiny size, as CI runs it: a smoke
test that it completes against the test server with its three sides (the ORM, plain
hand-written redis-py, and the floor: hand-written code that keeps the ORM's guarantees),
prints every operation's row with the floor's columns and the memory breakdown, and that its
cross-check of the sides' results passed. Its timings are never asserted.

The floor's guarantees are then checked directly (``bench/workload_floor.py`` on its own key
prefix): compare-and-set, versions that never repeat, expiry, events and key type refusals;
a floor that skipped one would make the ORM's ratio to it look worse than it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "bench_workload.py"
sys.path.insert(0, str(ROOT / "bench"))  # the floor side's module, imported as the bench does

from workload_floor import VERSION, Floor, Refused  # noqa: E402

ROWS = ["bulk insert, per document", "get by id: get_many([id])", "get by id: get(id=)",
        "equality query (~10 rows)", "range + order by + limit 100",
        'active & age > 60 & "t7" in tags', "count of a range", "update one field by id",
        "update one field by id: filter(id=).update()", "single insert", "delete by id",
        "memory per document"]
OPERATIONS = {"bulk", "get", "get_q", "eq", "range", "compound", "count", "update",
              "update_q", "insert", "delete"}


def run_bench(redis_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    # this tree's package first, whatever the interpreter has installed
    path = os.pathsep.join(p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": path}
    return subprocess.run([sys.executable, str(SCRIPT), "--n", "300", "--iterations", "5",
                           "--warmup", "2", *extra],
                          capture_output=True, text=True, env=env, timeout=300)


def test_the_workload_benchmark_runs_and_its_sides_agree(redis_url: str) -> None:
    done = run_bench(redis_url)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert "| ORM ÷ floor |" in rows[0] and rows[0].endswith("| floor commands per op |")
    for label in ROWS:
        found = [r for r in rows if r.startswith("| " + label)]
        assert found, (label, done.stdout)
        cells = [c.strip() for c in found[0].strip("|").split("|")]
        assert cells[2].endswith("x"), found[0]  # ORM ÷ floor
        assert "–" not in cells[-2:], found[0]  # the floor's µs and commands (or memory)
    assert "| bytes per document, by kind of key | ORM | hand | floor |" in rows
    assert [r for r in rows if r.startswith("| documents | ")]  # the ORM's breakdown
    # (format 3: the workload's documents expire not and have no listed index, so the ORM
    # keeps no meta hash; a format-2 collection's would show as "meta hashes")
    assert not [r for r in rows if r.startswith("| meta hashes | ")]
    assert "cross-check: passed" in done.stdout and "eq (floor)" in done.stdout


def test_the_json_output_has_every_operation_on_every_side(redis_url: str) -> None:
    done = run_bench(redis_url, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out["sides"] == ["orm", "hand", "floor"]
    for side in ("orm", "hand", "floor"):
        assert set(out["median_us"][side]) == OPERATIONS
        assert set(out["counts"][side]) == OPERATIONS
        assert set(out["python_calls"][side]) == OPERATIONS
        assert out["memory"][side]["keys"] > 0
        assert out["memory_by_kind"][side]["documents"] > 0
    assert {"index name", "index tags", "ids", "stream"} <= set(out["memory_by_kind"]["floor"])
    assert {"documents", "index name", "ids", "stream"} <= set(out["memory_by_kind"]["orm"])
    assert "meta hashes" not in out["memory_by_kind"]["orm"]  # (format 3: see above)
    for key in ("get", "eq", "range", "compound", "count", "update", "update_q", "insert ids"):
        assert out["cross_check"][key + " (floor)"], key
    assert out["cross_check"] and all(out["cross_check"].values())


def test_a_choice_of_sides_runs_only_those(redis_url: str) -> None:
    done = run_bench(redis_url, "--json", "--sides", "floor,hand")
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out["sides"] == ["hand", "floor"] and set(out["median_us"]) == {"hand", "floor"}
    assert "eq (floor)" in out["cross_check"] and "eq" not in out["cross_check"]
    assert all(out["cross_check"].values())
    assert run_bench(redis_url, "--sides", "orm,nosuch").returncode == 2


# -- the floor's guarantees ---------------------------------------------------------------

PREFIX = "{qbench-floor-test}:"
DOC = {"name": "ann", "age": 30, "active": True, "tags": ["a", "b"],
       "created_at": "2024-01-01T00:00:00+00:00"}


@pytest.fixture
def floor(redis_url: str) -> Iterator[tuple[Floor, redis.Redis]]:
    client = redis.Redis.from_url(redis_url)
    wipe = lambda: [client.delete(k) for k in client.scan_iter(match=PREFIX + "*")]
    wipe()
    try:
        yield Floor(client, PREFIX), client
    finally:
        wipe()
        client.close()


def state(client: redis.Redis) -> dict[bytes, Any]:
    """Every key of the floor's prefix with its content (to show that nothing changed)."""
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(match=PREFIX + "*"):
        kind = client.type(key)
        out[key] = {b"string": client.get, b"zset": lambda k: client.zrange(k, 0, -1,
                                                                           withscores=True),
                    b"hash": client.hgetall, b"stream": client.xlen}[kind](key)
    return out


def test_the_floor_compares_and_sets_and_never_repeats_a_version(
        floor: tuple[Floor, redis.Redis]) -> None:
    f, client = floor
    id = f.insert(DOC)
    row = f.get(id)
    assert row is not None and row[VERSION] > 0 and row["age"] == 30
    v2 = f.save(row, {**row, "age": 31, "name": "bob", "tags": ["b", "c"]})
    assert v2 > row[VERSION]
    with pytest.raises(Refused, match="VERSION"):
        f.save(row, {**row, "age": 32})  # the version read first is stale
    with pytest.raises(Refused, match="VERSION"):
        f.delete_row(row)
    assert [r["id"] for r in f.eq("bob")] == [id] and f.eq("ann") == []
    assert client.zrangebylex(PREFIX + "i:tags", "-", "+") == [b"b\0" + id.encode(),
                                                                b"c\0" + id.encode()]
    v3 = f.update_q(id, 40)
    now = f.get(id)
    assert now is not None and now[VERSION] == v3 > v2 and now["age"] == 40
    f.delete(id)
    assert f.get(id) is None and f.eq("bob") == [] and f.count(0, 100) == 0
    again = f.insert(DOC)  # a new document: its version is above every earlier one
    got = f.get(again)
    assert got is not None and got[VERSION] > v3
    events = [e[1][b"op"] for e in client.xrange(PREFIX + "x")]
    assert events == [b"create", b"update", b"update", b"delete", b"create"]


def test_an_expired_floor_document_is_never_read_nor_counted(
        floor: tuple[Floor, redis.Redis]) -> None:
    f, client = floor
    kept = f.insert(DOC)
    gone = f.insert({**DOC, "age": 35}, expiry_ms=50)
    assert {r["id"] for r in f.eq("ann")} == {kept, gone} and f.count(30, 40) == 2
    time.sleep(0.1)
    assert [r["id"] for r in f.eq("ann")] == [kept]
    assert [r["id"] for r in f.range(0, 100, 1)] == [kept]  # read on past the expired one
    assert f.count(30, 40) == 1  # (its entries are still there: not swept yet)
    assert client.zscore(PREFIX + "i:age", gone) is not None
    f.update_q(kept, 31)  # a write sweeps what is due
    assert client.zscore(PREFIX + "i:age", gone) is None
    assert client.zcard(PREFIX + "ttl") == 0 and not client.exists(PREFIX + "e:" + gone)
    assert f.count(30, 40) == 1
    newest = [e[1][b"op"] for e in client.xrevrange(PREFIX + "x", count=2)]
    assert newest == [b"expire", b"update"]  # (the sweep runs after the write)


def test_a_floor_write_meeting_a_foreign_key_type_writes_nothing(
        floor: tuple[Floor, redis.Redis]) -> None:
    f, client = floor
    id = f.insert(DOC)
    row = f.get(id)
    assert row is not None
    insert, delete = lambda: f.insert(DOC), lambda: f.delete_row(row)
    save = lambda: f.save(row, {**row, "tags": ["z"]})
    # each key, and the writes that write it (the first write of a script or a later one)
    for key, writes in (("i:tags", [insert, delete, save]), ("x", [insert, delete, save]),
                        ("state", [insert, save]), ("ids", [insert, delete])):
        kind = client.type(PREFIX + key)
        client.rename(PREFIX + key, PREFIX + "saved")
        client.set(PREFIX + key, "foreign")
        before = state(client)
        for write in writes:
            with pytest.raises(Refused, match="WRONGTYPE"):
                write()
            assert state(client) == before, key
        client.delete(PREFIX + key)
        client.rename(PREFIX + "saved", PREFIX + key)
        assert client.type(PREFIX + key) == kind
