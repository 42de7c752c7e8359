"""``quantumorm.logs`` without a server: the loggers and their NullHandler, plan summaries
(no values), hash tags, where a request went, tool counts, and the DEBUG switch that
follows level changes made at any time."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis

from quantumorm import logs
from quantumorm.backends.redis.commands import Call, Command, RedisPlan
from quantumorm.backends.sqlite.plans import SqlPlan, Statement
from quantumorm.cache.dispatch import Pause, ToCache
from quantumorm.maintenance import ReindexReport, RepairReport, VerifyReport


def test_one_logger_per_area_under_quantumorm_with_a_null_handler() -> None:
    assert [logs.area(name).name for name in logs.AREAS] == [
        "quantumorm.redis", "quantumorm.sqlite", "quantumorm.postgres", "quantumorm.cache",
        "quantumorm.events", "quantumorm.tools"]
    assert logs.redis is logging.getLogger("quantumorm.redis")
    assert logs.tools is logs.area("tools")
    assert any(isinstance(h, logging.NullHandler) for h in logs.root.handlers)
    assert all(logs.area(name).handlers == [] for name in logs.AREAS)  # (the app decides)


def test_a_redis_plan_is_summarised_by_commands_scripts_and_hash_tags_only() -> None:
    plan = RedisPlan((
        Call("save", ("{ns:users:p0}:d:alice", "{ns:users:p0}:m:alice"), ("s3cr3t", b"{}")),
        Call("save", ("{ns:users:p1}:d:bob",), ("s3cr3t",)),
        Command(("HGET", "{ns:users:p0}:state", "layout")),
        Command(("PING",)),
    ))
    text = logs.describe(plan)
    assert text == ("steps=4 read_only=False commands=script:save,HGET,PING "
                    "tags={ns:users:p0},{ns:users:p1}")
    assert "alice" not in text and "s3cr3t" not in text
    assert logs.describe(ToCache(plan)) == "to=cache " + text


def test_a_sql_plan_is_summarised_by_its_statements_verbs_only() -> None:
    plan = SqlPlan(((Statement('SELECT 1 FROM "t" WHERE k = ?', ("s3cr3t",)),
                     Statement('insert into "t" VALUES (?)', ("s3cr3t",))),
                    (Statement("SELECT 2"),)), write=True)
    assert logs.describe(plan) == "statements=3 write=True verbs=SELECT,INSERT"
    assert logs.describe(Pause(0.1)) == "plan=Pause"


@pytest.mark.parametrize(("key", "tag"), [
    ("{ns:c:p3}:d:x", "{ns:c:p3}"), (b"{ns:c}:schema", "{ns:c}"), ("plain", None),
    ("{}", None), ("a}{", None), (7, None)])
def test_hash_tags(key: Any, tag: str | None) -> None:
    assert logs.hash_tag(key) == tag


def test_where_a_request_went_never_shows_credentials() -> None:
    # (clients never connected: their pools know their addresses)
    client = redis.Redis(host="127.0.0.1", port=7001, username="u", password="pw-secret")
    unix = redis.Redis(unix_socket_path="/run/redis.sock", password="pw-secret")
    try:
        assert logs.node(client) == "127.0.0.1:7001"
        assert logs.node(unix) == "/run/redis.sock"
        assert logs.node(object()) == "-"
        assert logs.nodes(None) == "-"
    finally:
        client.close()
        unix.close()


def test_tool_counts() -> None:
    verify = VerifyReport("M", problems={"missing_entries": 2}, documents=5, entries=9)
    assert logs.counts(verify) == "documents=5 entries=9 problems=2 ok=False"
    after = VerifyReport("M", documents=5)
    repair = RepairReport(verify, after, fixed={"missing_entries": 2})
    assert logs.counts(repair) == "found=2 fixed=2 remaining=0 ok=True"
    report = ReindexReport("M", ("a",), documents=4, ready=True)
    assert logs.counts(report) == ("documents=4 gone=0 backfilled=0 unsettled=0 ready=True "
                                   "conflicts=0")
    assert logs.counts(3) == "purged=3"


def test_the_debug_switch_follows_level_changes(caplog: pytest.LogCaptureFixture) -> None:
    """What ``Connection.run`` reads: the logger's remembered answer, or a call that
    remembers one; a level change clears what was remembered (the dict stays the same)."""
    log = logs.area("unit-test-switch")
    known = logs.levels(log)

    def on() -> bool:
        return known[logging.DEBUG] if logging.DEBUG in known else logs.plans_on(log)

    caplog.set_level(logging.WARNING)
    assert not on() and known == {logging.DEBUG: False}
    log.setLevel(logging.DEBUG)
    try:
        assert logging.DEBUG not in known  # cleared by the level change
        assert on() and known[logging.DEBUG] is True
    finally:
        log.setLevel(logging.NOTSET)
    assert not on()
    assert known is logs.levels(log)


def test_tool_logs_start_end_and_failure(caplog: pytest.LogCaptureFixture) -> None:
    def works() -> Any:
        got = yield "a plan"
        return got * 2

    def fails() -> Any:
        yield "a plan"
        raise KeyError("boom")

    caplog.set_level(logging.INFO, logger="quantumorm.tools")
    op = logs.tool("sweep", "M", works())
    assert op.__name__ == "sweep"  # (what DEBUG plan lines show as op=)
    assert next(op) == "a plan"
    with pytest.raises(StopIteration) as done:
        op.send(2)
    assert done.value.value == 4
    op = logs.tool("verify", "M", fails())
    next(op)
    with pytest.raises(KeyError):
        op.send(None)
    assert [r.getMessage() for r in caplog.records] == [
        "sweep started model=M", "sweep finished model=M purged=4",
        "verify started model=M", "verify failed model=M error=KeyError"]
