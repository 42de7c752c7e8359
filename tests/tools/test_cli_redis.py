"""``quantumorm inspect|tail|health|capabilities`` run as separate processes against the test
Redis server: what they print (parsed from ``--json``) and their exit codes."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
from cli_support import command, environment, runner

from quantumorm import ArrayField, Document, IntField, StringField
from quantumorm.events import ChangeEvent
from quantumorm.tools.follow import before, start_of

MODELS = textwrap.dedent('''
    from quantumorm import ArrayField, Document, IntField, StringField

    class Item(Document):
        name = StringField(indexed=True)
        size = IntField(indexed=True)
        tags = ArrayField(StringField(), indexed=True)

        class Meta:
            collection = "cli_items"

    class Spread(Document):
        name = StringField()

        class Meta:
            collection = "cli_spread"
            partitions = 3
            changes = True

    class Unstored(Document):
        name = StringField()

        class Meta:
            collection = "cli_unstored"
''')


class Item(Document):  # the same declaration as cli_models.Item
    name = StringField(indexed=True)
    size = IntField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)

    class Meta:
        collection = "cli_items"


class NewItem(Document):  # a new release adds an index to the collection
    name = StringField(indexed=True)
    size = IntField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    color = StringField(indexed=True)

    class Meta:
        collection = "cli_items"


class Spread(Document):  # the same declaration as cli_models.Spread
    name = StringField()

    class Meta:
        collection = "cli_spread"
        partitions = 3
        changes = True


class Note(Document):
    text = StringField()

    class Meta:
        collection = "cli_notes"
        namespace = "other"


@pytest.fixture
def cli(models_dir: Path, run_cli: Any) -> Any:
    (models_dir / "cli_models.py").write_text(MODELS)
    return run_cli


def test_inspect_describes_collections_from_the_server_alone(conn: Any, bare_cli: Any) -> None:
    Item.objects.bulk_create_sync([Item(id=str(i), name=f"n{i}", size=i, tags=["a", "b"])
                                   for i in range(30)])
    for doc in Item.objects.filter(size__lt=4).all_sync():
        doc.touch_sync(3600)
    NewItem.objects.count_sync()  # its first use stores the new declaration: color building
    group = Item.objects.consumer_group("workers", start="0")
    assert len(group.consumer("w1", batch=7).read_sync()) == 7  # 7 pending
    Note(text="x").save_sync()

    # no model module on the path: everything comes from the stored schemas
    listed = bare_cli("inspect", "--json", "--quiet")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    found = json.loads(listed.stdout)
    assert found["namespace"] == "qorm"
    (items,) = found["collections"]  # cli_notes is in another namespace
    assert items["collection"] == "cli_items" and items["documents"] == 30
    assert items["fields"] == {"name": "StringField", "size": "IntField",
                               "tags": "ArrayField[StringField]", "color": "StringField"}
    indexes = {i["name"]: (i["state"], i["entries"]) for i in items["indexes"]}
    assert indexes == {"name": ("ready", 30), "size": ("ready", 30), "tags": ("ready", 60),
                       "color": ("building", 0)}
    assert items["expiring"] == 4 and items["next_expiry"] is not None
    assert items["stream_length"] == 30
    assert items["groups"] == [{"name": "workers", "consumers": 1, "pending": 7, "lag": 23}]
    assert items["sampled"] == 20 and items["estimated_bytes"] > 0
    assert all(i["bytes"] > 0 for i in items["indexes"] if i["name"] != "color")

    other = bare_cli("inspect", "--namespace", "other", "--json", "--quiet")
    assert [c["collection"] for c in json.loads(other.stdout)["collections"]] == ["cli_notes"]

    text = bare_cli("inspect", "--collection", "cli_items", "--sample", "0")
    assert text.returncode == 0, text.stderr
    assert "qorm:cli_items: 30 documents" in text.stdout
    assert "color (color): building, 0 entries, 0 B" in text.stdout
    assert "expiry: 4 document(s) scheduled" in text.stdout
    assert "workers (1 consumer(s), 7 pending, lag 23)" in text.stdout
    assert "memory:" not in text.stdout  # --sample 0
    assert text.stderr.splitlines()[-1].startswith("inspect cli_items: 1/1 partitions")


def test_inspect_of_a_model_and_of_nothing(conn: Any, cli: Any) -> None:
    Item(name="a", size=1, tags=[]).save_sync()
    by_model = cli("inspect", "cli_models:Item", "--json", "--quiet")
    assert by_model.returncode == 0, by_model.stderr
    assert json.loads(by_model.stdout)["collections"][0]["documents"] == 1
    empty = cli("inspect", "--namespace", "nothing_here")
    assert empty.returncode == 0 and "no collections in namespace 'nothing_here'" in empty.stdout


def test_tail_sees_two_writes_made_while_it_runs(conn: Any, models_dir: Path,
                                                redis_url: str) -> None:
    (models_dir / "cli_models.py").write_text(MODELS)
    Item(id="before", name="b", size=0, tags=[]).save_sync()  # not after "$": not shown
    tail = subprocess.Popen(
        command("tail", "cli_models:Item", "--json", "--count", "2", "--url", redis_url),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=environment(models_dir))
    try:
        assert tail.stderr is not None
        ready = tail.stderr.readline()  # printed once the start position is fixed
        assert ready.startswith("following Item from $"), ready
        Item(id="one", name="x", size=1, tags=[]).save_sync()
        doc = Item(id="two", name="y", size=2, tags=[])
        doc.save_sync()
        out, err = tail.communicate(timeout=60)
    finally:
        tail.kill()
        tail.wait()
    assert tail.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["op"], e["id"]) for e in events] == [("create", "one"), ("create", "two")]
    assert events[1]["version"] == doc._version and events[1]["model"] == "Item"
    assert "stopped after 2 event(s); resume with --from" in err


def test_tail_from_the_oldest_event_by_collection_name(conn: Any, bare_cli: Any) -> None:
    doc = Item(id="a", name="x", size=1, tags=[])
    doc.save_sync()
    doc.size = 2
    doc.save_sync()
    doc.delete_sync()
    shown = bare_cli("tail", "--collection", "cli_items", "--from", "0", "--count", "3")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert [line.split()[1] for line in lines] == ["create", "update", "delete"]
    assert "cli_items 'a'" in lines[0] and lines[1].endswith("changed: size")
    bad = bare_cli("tail", "--collection", "cli_items", "--count", "0")
    assert bad.returncode == 2 and "--count must be positive" in bad.stderr


def test_tail_stops_cleanly_on_sigterm(conn: Any, models_dir: Path, redis_url: str) -> None:
    (models_dir / "cli_models.py").write_text(MODELS)
    Item(id="stored", name="s", size=0, tags=[]).save_sync()  # (the collection exists)
    tail = subprocess.Popen(command("tail", "cli_models:Item", "--url", redis_url),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environment(models_dir))
    try:
        assert tail.stderr is not None
        assert tail.stderr.readline().startswith("following Item")
        tail.terminate()
        out, err = tail.communicate(timeout=60)
    finally:
        tail.kill()
        tail.wait()
    assert tail.returncode == 0 and out == ""
    assert "stopped after 0 event(s)" in err and "Traceback" not in err


def test_health_of_a_live_server_and_of_a_dead_port(conn: Any, cli: Any, redis_url: str) -> None:
    live = cli("health", "--json")
    assert live.returncode == 0, live.stdout + live.stderr
    report = json.loads(live.stdout)
    assert report["ok"] is True and report["backend"] == "redis"
    (node,) = report["nodes"]
    assert node["role"] == "master" and node["discovered"] == "url"
    assert node["maxmemory_policy"] == "noeviction" and node["can_evict"] is False
    assert node["version"] and node["latency"] > 0 and node["used_memory"] > 0
    assert node["connected_replicas"] == 0

    text = cli("health")
    assert text.returncode == 0 and ": OK" in text.stdout.splitlines()[0]

    dead = cli("health", "--json", url="redis://127.0.0.1:1/0")
    assert dead.returncode == 2
    down = json.loads(dead.stdout)
    assert down["ok"] is False and down["reachable"] is False and down["nodes"] == []
    assert "cannot reach" in down["problems"][0]


def test_health_reports_an_eviction_policy_that_may_drop_keys(start_redis: Any,
                                                             cli: Any) -> None:
    url, _ = start_redis("--maxmemory-policy", "allkeys-lru")
    found = cli("health", "--json", url=url)
    assert found.returncode == 1, found.stdout + found.stderr
    report = json.loads(found.stdout)
    assert report["nodes"][0]["can_evict"] is True
    assert "maxmemory-policy allkeys-lru" in report["problems"][0]


def test_capabilities_as_a_table_and_as_json(cli: Any) -> None:
    table = cli("capabilities", url=None)
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split() == ["postgres", "redis", "sqlite"]
    found = cli("capabilities", "--json", url=None)
    matrix = json.loads(found.stdout)
    assert matrix["backends"] == ["postgres", "redis", "sqlite"]
    assert matrix["features"]["TTL"] == {"postgres": False, "redis": True, "sqlite": False}


class Order(Document):
    customer = StringField(indexed=True)

    class Meta:
        collection = "cli_orders"
        partitions = 4


def test_inspect_and_verify_by_name_on_a_cluster(cluster_conn: Any, redis_cluster: Any) -> None:
    Order.objects.bulk_create_sync([Order(id=str(i), customer=f"c{i % 3}") for i in range(40)])
    run = runner(None, redis_cluster.url)
    shown = run("inspect", "--json", "--quiet")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    (orders,) = json.loads(shown.stdout)["collections"]  # found on every master
    assert (orders["collection"], orders["partitions"], orders["documents"]) == (
        "cli_orders", 4, 40)
    (index,) = orders["indexes"]
    assert index["bytes"] > 0 and {k: v for k, v in index.items() if k != "bytes"} == {
        "name": "customer", "fields": ["customer"], "unique": False, "state": "ready",
        "entries": 40}
    assert orders["sampled"] == 40  # 20 asked per partition: all 40 (about 10 in each)
    checked = run("verify", "--collection", "cli_orders", "--json", "--quiet")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert json.loads(checked.stdout)["documents"] == 40
    followed = run("tail", "--collection", "cli_orders", "--from", "0", "--count", "40",
                   "--json", "--quiet")
    assert followed.returncode == 0, followed.stderr
    assert {json.loads(line)["id"] for line in followed.stdout.splitlines()} == {
        str(i) for i in range(40)}


def test_tail_resumes_at_the_first_event_not_shown(conn: Any, cli: Any) -> None:
    # three partitions: a read returns up to --count events from each, more than are shown
    for i in range(12):
        Spread(id=f"s{i}", name=str(i)).save_sync()
    seen: list[str] = []
    since = "0"
    for _ in range(12):  # (bounded: each run shows at least one event)
        if len(seen) >= 12:
            break
        shown = cli("tail", "cli_models:Spread", "--json", "--from", since, "--count", "2")
        assert shown.returncode == 0, shown.stderr
        seen += [json.loads(line)["id"] for line in shown.stdout.splitlines()]
        last = shown.stderr.splitlines()[-1]
        assert "resume with --from " in last, last
        since = last.rpartition("--from ")[2]
        assert since != "None" and len(since.split(",")) == 3
    # every event exactly once: none skipped though read, none shown twice
    assert sorted(seen) == sorted(f"s{i}" for i in range(12)) and len(seen) == 12


def test_the_resume_position_before_each_partitions_first_unshown_event() -> None:
    assert before("1700000000000-3") == "1700000000000-2"
    assert before("1700000000000-0") == "1699999999999-18446744073709551615"
    events = [ChangeEvent(model=Item, op="create", id=str(i), version=1, changed=None,
                          data=None, write_id=None, partition=p, stream_id=sid)
              for i, (p, sid) in enumerate([(0, "5-0"), (2, "7-1"), (0, "6-0")])]
    assert start_of("6-0,3-0,7-1", events) == ["4-18446744073709551615", "3-0", "7-0"]
    assert start_of(None, []) is None


def test_read_only_commands_refuse_a_model_that_is_not_the_stored_schema(
        conn: Any, cli: Any, redis_client: Any, models_dir: Path) -> None:
    Item(id="a", name="x", size=1, tags=[]).save_sync()
    before_keys = sorted(redis_client.keys("*"))
    (models_dir / "cli_models.py").write_text(MODELS.replace(
        "tags = ArrayField(StringField(), indexed=True)",
        "tags = ArrayField(StringField(), indexed=True)\n    color = StringField("
        "indexed=True)", 1))
    for args in (("verify", "cli_models:Item"), ("tail", "cli_models:Item", "--count", "1")):
        refused = cli(*args, "--json")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        said = "the stored schema differs from cli_models:Item; run reindex to apply the " \
               "declaration, or pass --collection to read the stored one"
        assert said in refused.stderr
        assert json.loads(refused.stdout) == {"error": said, "exit": 2}
    for args in (("verify", "cli_models:Unstored"), ("tail", "cli_models:Unstored")):
        missing = cli(*args)
        assert missing.returncode == 2
        assert "no collection qorm:cli_unstored (no stored schema)" in missing.stderr
    # nothing was written: no schema evolved, no collection created
    assert sorted(redis_client.keys("*")) == before_keys


def test_a_closed_pipe_ends_the_command_quietly(conn: Any, models_dir: Path,
                                                redis_url: str) -> None:
    (models_dir / "cli_models.py").write_text(MODELS)
    for i in range(300):
        Item(id=f"p{i}", name="x", size=i, tags=[]).save_sync()
    for args in (("capabilities",), ("tail", "cli_models:Item", "--from", "0", "--json")):
        writer = subprocess.Popen(command(*args, "--url", redis_url), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=environment(models_dir))
        assert writer.stdout is not None
        try:
            first = writer.stdout.readline()  # the reader takes one line, then leaves
            assert first
            writer.stdout.close()
            _, err = writer.communicate(timeout=60)
        finally:
            writer.kill()
            writer.wait()
        assert writer.returncode == 0, err
        assert b"Traceback" not in err and b"BrokenPipeError" not in err, err


def test_json_gets_the_error_of_a_store_that_cannot_be_opened(bare_cli: Any) -> None:
    shown = bare_cli("verify", "--collection", "x", "--json", url="unknown://nowhere")
    assert shown.returncode == 2 and shown.stderr.startswith("error: ")
    found = json.loads(shown.stdout)
    assert found["exit"] == 2 and found["error"] in shown.stderr
