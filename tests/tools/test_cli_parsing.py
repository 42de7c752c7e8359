"""The command line's argument parsing and the pure parts of health and of models rebuilt
from a stored schema (no server)."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from quantumorm import (
    ArrayField,
    BooleanField,
    DateTimeField,
    DecimalField,
    Document,
    FloatField,
    IntField,
    JSONField,
    StringField,
    UUIDField,
)
from quantumorm.backends.redis.health import cluster_listing, node_health
from quantumorm.health import NodeHealth, judge, report
from quantumorm.schema import Schema, declared
from quantumorm.tools import follow, inspection, maintain, status
from quantumorm.tools.cli import COMMANDS, main, parser
from quantumorm.tools.common import CommandError, backend_of_url, jsonable
from quantumorm.tools.progress import progress_bar
from quantumorm.tools.stored import field_of, model_from_schema


def test_every_command_is_there_with_its_handler() -> None:
    cli = parser()
    handlers = {
        "inspect": inspection.run, "verify": maintain.run_maintenance,
        "reindex": maintain.run_maintenance, "repair": maintain.run_maintenance,
        "repartition": maintain.run_repartition, "sweep": maintain.run_sweep,
        "tail": follow.run, "capabilities": status.run_capabilities,
        "health": status.run_health}
    assert set(handlers) == set(COMMANDS)
    for name, handler in handlers.items():
        extra = ["m:M", "--from", "2"] if name == "repartition" else []
        extra = extra or (["m:M"] if name in ("reindex", "repair", "sweep") else [])
        args = cli.parse_args([name, *extra, "--url", "redis://h:1/0"])
        assert args.run is handler and args.command == name and args.url == "redis://h:1/0"


def test_options_and_their_defaults() -> None:
    cli = parser()
    verify = cli.parse_args(["verify", "app.models:Order", "--batch", "10", "--json",
                             "--quiet", "--url", "redis://x"])
    assert (verify.model, verify.batch, verify.json, verify.quiet) == (
        "app.models:Order", 10, True, True)
    assert verify.collection is None and verify.namespace == "qorm"
    by_name = cli.parse_args(["verify", "--collection", "orders", "--namespace", "shop"])
    assert by_name.model is None and (by_name.collection, by_name.namespace) == (
        "orders", "shop")
    tail = cli.parse_args(["tail", "--collection", "orders"])
    assert tail.since == "$" and tail.count is None and tail.json is False
    tail = cli.parse_args(["tail", "m:M", "--from", "0", "--count", "2", "--json"])
    assert (tail.since, tail.count, tail.json) == ("0", 2, True)
    move = cli.parse_args(["repartition", "m:M", "--from", "4", "--from-partition-by", "tag"])
    assert (move.from_partitions, move.from_partition_by, move.batch) == (4, "tag", 500)
    sweep = cli.parse_args(["sweep", "m:M"])
    assert sweep.limit == 1000
    inspect = cli.parse_args(["inspect"])
    assert inspect.model is None and inspect.sample == 20
    health = cli.parse_args(["health"])
    assert health.timeout == 5.0


def test_the_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUANTUMORM_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://from-redis-url")
    assert parser().parse_args(["health"]).url == "redis://from-redis-url"
    monkeypatch.setenv("QUANTUMORM_URL", "sqlite://")
    assert parser().parse_args(["health"]).url == "sqlite://"
    assert parser().parse_args(["health", "--url", "redis://given"]).url == "redis://given"


@pytest.mark.parametrize("argv", [
    ["repartition", "m:M"],  # --from is required
    ["verify", "m:M", "--from", "2"],  # --from belongs to repartition and tail
    ["rebuild", "m:M"],
    [],
    ["tail", "--count", "two"],
    ["repartition", "m:M", "--from", "2", "--from-partition-by", "name"],
])
def test_usage_errors_exit_with_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        parser().parse_args(argv)
    assert exit.value.code == 2
    assert "usage: quantumorm" in capsys.readouterr().err


def test_usage_errors_found_after_parsing_exit_with_2(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUANTUMORM_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["verify", "--url", "redis://x"]) == 2
    err = capsys.readouterr().err
    assert "usage: quantumorm verify" in err and "give the model as MODULE:CLASS" in err
    assert main(["verify", "m:M", "--collection", "c"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["health"]) == 2
    assert "--url (or QUANTUMORM_URL / REDIS_URL) is required" in capsys.readouterr().err
    assert main(["verify", "m:M", "--batch", "0", "--url", "redis://x"]) == 2
    assert "--batch must be positive" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_reads_well(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        parser().parse_args([command, "--help"] if command else ["--help"])
    assert exit.value.code == 0
    shown = capsys.readouterr().out
    assert "exit codes:" in shown and "2  could not run" in shown
    assert "example" in shown
    if command:
        assert "--url URL" in shown and "--json" in shown


def test_backend_of_url() -> None:
    assert backend_of_url("sqlite:///a.db") == "sqlite"
    assert backend_of_url("postgresql://u@h/db") == "postgres"
    assert backend_of_url("postgres://u@h/db") == "postgres"
    assert backend_of_url("redis+cluster://h:1") == "redis"
    assert backend_of_url("unix:///tmp/r.sock") == "redis"


def test_jsonable() -> None:
    node = NodeHealth("h:1", "master")
    found = jsonable({"t": (1, 2), "s": frozenset({3}), "n": node, "x": object})
    assert json.loads(json.dumps(found))["n"]["address"] == "h:1"
    assert found["t"] == [1, 2] and found["s"] == [3]


# -- models rebuilt from a stored schema ---------------------------------------------------


class Everything(Document):
    name = StringField(indexed=True)
    count = IntField(indexed=True)
    ratio = FloatField()
    price = DecimalField(indexed=True)
    flag = BooleanField(indexed=True)
    at = DateTimeField(indexed=True)
    token = UUIDField(indexed=True)
    blob = JSONField()
    tags = ArrayField(StringField(), indexed=True)
    numbers = ArrayField(IntField())
    saved = StringField(db_field="save")  # a storage name that is a Document attribute

    class Meta:
        collection = "everything"
        namespace = "shop"
        partition_by = "tag"
        indexes = [{"fields": ["name", "count"], "unique": True, "name": "name_count"},
                   ("flag", "at")]


def test_a_model_rebuilt_from_a_schema_declares_the_same_schema() -> None:
    stored = Schema.load(declared(Everything._meta).dump())
    model = model_from_schema("shop", "everything", stored)
    assert declared(model._meta).fingerprint == stored.fingerprint
    meta = model._meta
    assert (meta.namespace, meta.collection, meta.partitions, meta.partition_by) == (
        "shop", "everything", 1, "tag")
    assert meta.connection == "quantumorm-cli" and meta.changes is True
    assert {f.db_name for f in meta.fields.values()} == set(stored.fields)
    assert model.__name__ == "everything"


def test_kinds_that_cannot_be_rebuilt_are_refused() -> None:
    assert type(field_of("ArrayField[UUIDField]")).__name__ == "ArrayField"
    with pytest.raises(CommandError, match="not a built-in field"):
        field_of("MoneyField")
    stored = Schema.load(declared(Everything._meta).dump())
    custom = Schema(fields={**stored.fields, "name": "MoneyField"}, indexes=stored.indexes,
                    partitions=1, partition_by="tag")
    with pytest.raises(CommandError, match="module:Class"):
        model_from_schema("shop", "everything", custom)
    older = Schema(fields=stored.fields, indexes=stored.indexes, partitions=1,
                   partition_by="tag", format=1)
    with pytest.raises(CommandError, match="cannot be declared exactly"):
        model_from_schema("shop", "everything", older)


# -- health, judged -----------------------------------------------------------------------

INFO: dict[str, Any] = {
    "redis_version": "7.2.4", "role": "master", "used_memory": 950, "maxmemory": 1000,
    "maxmemory_policy": "allkeys-lru", "connected_slaves": 2, "loading": 0}


def test_a_node_from_its_info() -> None:
    node = node_health("h:1", "url", 0.001, INFO, None, None)
    assert (node.role, node.version, node.used_memory, node.connected_replicas) == (
        "master", "7.2.4", 950, 2)
    assert node.can_evict is True and node.loading is False
    replica = node_health("h:2", "cluster", 0.001, {
        "role": "slave", "master_link_status": "down", "maxmemory_policy": "noeviction"},
        None, {"cluster_state": "ok"})
    assert (replica.role, replica.master_link_status, replica.can_evict) == (
        "replica", "down", False)
    unread = node_health("h:3", "url", 0.001, {}, "unknown", None)
    assert unread.can_evict is None and unread.maxmemory_policy == "unknown"


def test_problems_and_warnings() -> None:
    evicting = node_health("h:1", "url", 0.001, INFO, None, None)
    problems, warnings = judge(evicting)
    assert len(problems) == 1 and "allkeys-lru" in problems[0]
    assert len(warnings) == 1 and "95%" in warnings[0]
    assert judge(NodeHealth("h:2", "replica", error="refused")) == (
        [], ["h:2 (replica) does not answer: refused"])
    assert judge(NodeHealth("h:3", "master", error="refused"))[0] == [
        "h:3 (master) does not answer: refused"]
    assert judge(NodeHealth("h:4", "master", cluster_state="fail"))[0] == [
        "h:4: cluster_state is fail"]
    assert "writes will fail" in judge(NodeHealth("pg", "standby", in_recovery=True))[0][0]
    found = report("redis", "redis://u:s3cret@h:1/0", [NodeHealth("h:2", "replica",
                                                                  error="refused")])
    assert found.ok and found.warnings and "s3cret" not in found.url
    assert "s3cret" not in json.dumps(found.to_dict())


def test_the_cluster_listing() -> None:
    text = ("07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected\n"
            "e7d1 127.0.0.1:30001@40001,host myself,master - 0 0 1 connected 0-5460\n"
            "aaaa :0@0 master,noaddr - 0 0 0 disconnected\n")
    assert cluster_listing(text) == [("127.0.0.1", 30001, "master", ("master",), 5461),
                                     ("127.0.0.1", 30004, "replica", ("slave",), 0)]
    parsed = {"127.0.0.1:30004": {"flags": "slave", "slots": []},
              "127.0.0.1:30001": {"flags": "myself,master", "slots": [["0", "5460"]]}}
    assert cluster_listing(parsed) == cluster_listing(text)


# -- progress -------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_its_stream_never_on_standard_output(
        capsys: pytest.CaptureFixture[str]) -> None:
    plain = io.StringIO()  # not a terminal: a line per tenth
    with progress_bar("verify Shop", plain) as update:
        assert update is not None
        for done in range(0, 101, 5):
            update(done, 100)
    shown = plain.getvalue().splitlines()
    assert len(shown) == 11 and shown[-1].startswith("verify Shop: 100/100 documents")

    terminal = Terminal()  # a terminal: rich's bar, on that stream
    with progress_bar("verify Shop", terminal) as update:
        assert update is not None
        update(50, 100)
        update(100, 100)
    assert "verify Shop" in terminal.getvalue()
    assert capsys.readouterr().out == ""

    with progress_bar("quiet", None) as update:
        assert update is None
