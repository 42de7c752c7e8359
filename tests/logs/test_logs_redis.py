"""What QuantumORM logs on a real Redis server: retries after a killed connection, NOSCRIPT
reloads, refused layouts, connections opened and closed (never with the password), plans at
DEBUG (never with a document value), schema changes, change consumers and the tools."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest
import redis
from log_support import debug_everywhere, everything, killed_when_blocked, lines

import quantumorm
from modes import MODES, call
from quantumorm import BackendConnectionError, Document, IntField, StringField
from quantumorm.backends.redis.acl import acl_rule
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.tools.repartition import repartition

SECRET = "s3cr3t-value"
PASSWORD = "s3cr3t-pass"


class Person(Document):
    name = StringField(indexed=True)
    note = StringField()
    age = IntField(indexed=True)

    class Meta:
        namespace = "qlogs"
        collection = "people"


def model(partitions: int) -> Any:
    """The collection ``qlogs:moved`` declared with ``partitions``."""
    meta = type("Meta", (), {"namespace": "qlogs", "collection": "moved",
                             "partitions": partitions})
    return type(f"Moved{partitions}", (Document,), {
        "__module__": __name__, "n": IntField(indexed=True), "Meta": meta})


# -- retries, reloads, refused layouts ------------------------------------------------------


def test_a_read_retried_after_its_connection_was_killed_logs_a_warning_with_the_attempt(
        conn: Any, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    Person(name="a").save_sync()  # (and the scripts loaded, if they were not)
    feed = Person.objects.changes()  # (from now: the read blocks until it times out)
    caplog.set_level(logging.WARNING, logger="quantumorm")
    with killed_when_blocked(redis_client, "xread") as killed:
        assert feed.read_sync(wait=0.5) == []  # killed while blocked, then sent again
    assert len(killed) == 1
    (line,) = lines(caplog, "quantumorm.redis", logging.WARNING)
    assert line.startswith("retrying plan after ConnectionError attempt=2/")
    assert "wait_ms=" in line and "node=127.0.0.1:" in line


def test_a_write_that_cannot_be_retried_logs_no_retry(
        conn: Any, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    """A consumer group's read of new events is not retried (XREADGROUP > moves them to
    the pending list): the error reaches the caller, and the consumer says it lost its
    connection."""
    consumer = Person.objects.consumer_group("workers").consumer("w1")
    assert consumer.read_sync() == []  # (the group exists)
    caplog.set_level(logging.INFO, logger="quantumorm")
    with killed_when_blocked(redis_client, "xreadgroup") as killed, \
            pytest.raises(BackendConnectionError):
        consumer.read_sync(wait=0.5)
    assert len(killed) == 1
    assert lines(caplog, "quantumorm.redis") == []
    (line,) = lines(caplog, "quantumorm.events", logging.WARNING)
    assert line == ("change consumer lost its connection; its pending events are read "
                    "again model=Person group=workers consumer=w1")


@pytest.mark.parametrize("mode", MODES)
async def test_a_noscript_reload_logs_a_warning(
        conn: Any, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture,
        mode: str) -> None:
    """Scripts are loaded at their first NOSCRIPT (INFO: expected on a server that never
    saw them); a NOSCRIPT after that means the server lost them (WARNING)."""
    await call(Person(name="a", age=3), "save", mode)
    caplog.set_level(logging.INFO, logger="quantumorm")
    # (whether or not this executor loaded them yet; functions by default, or scripts)
    redis_client.script_flush()
    redis_client.function_flush()
    adults = Person.objects.filter(age__gte=3)  # (a query: a script; get() needs none)
    await call(adults, "count", mode)
    redis_client.script_flush()
    redis_client.function_flush()
    caplog.clear()
    assert await call(adults, "count", mode) == 1
    (line,) = lines(caplog, "quantumorm.redis", logging.WARNING)
    assert line == ("NOSCRIPT (or function not found): loading the scripts and resending "
                    "steps=1 of=1 inline=False first=False")


def test_a_refused_layout_logs_a_warning_and_the_schema_stored_again(
        conn: Any, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    person = Person(name="a", age=1).save_sync()
    keys = KeySpace(Person._meta)
    stamped = int(redis_client.hget(keys.state(0), "layout")) + 10
    redis_client.hset(keys.state(0), "layout", stamped)  # as if another process moved on
    caplog.set_level(logging.INFO, logger="quantumorm")
    person.age = 2
    person.save_sync()
    assert Person.objects.get_sync(id=person.id).age == 2
    (refused,) = lines(caplog, "quantumorm.redis", logging.WARNING)
    assert refused.startswith("layout refused: the schema changed in another process; "
                              "reading it again model=Person layout=")
    (stored,) = lines(caplog, "quantumorm", logging.INFO)
    assert stored == (f"schema evolved model=Person backend=redis layout={stamped + 1} "
                      "dropped=-")


def test_a_new_collection_logs_its_schema_created(
        conn: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="quantumorm")
    Person.objects.count_sync()
    Person.objects.count_sync()  # (known now: nothing more)
    (line,) = lines(caplog, "quantumorm", logging.INFO)
    assert line.startswith("schema created model=Person backend=redis layout=")


# -- connections and secrets ----------------------------------------------------------------


def test_connections_log_open_and_close_and_the_password_never_appears(
        redis_url: str, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    """An ACL user with a password, every level of every logger captured, a little of
    everything done: the password is in no record, the URL is shown redacted."""
    redis_client.flushdb()
    redis_client.execute_command("ACL", "SETUSER", "loguser", "reset", "on", f">{PASSWORD}",
                                 *acl_rule("qlogs").split())
    url = redis_url.replace("redis://", f"redis://loguser:{PASSWORD}@")
    debug_everywhere(caplog)
    try:
        connection = quantumorm.create_connection(url=url, name="default", make_default=True)
        person = Person(name="a", note=SECRET, age=5).save_sync()
        person.note = "other"
        person.save_sync()
        assert Person.objects.filter(name="a").count_sync() == 1
        redis_client.script_flush()  # (a reload, logged)
        assert Person.objects.get_sync(id=person.id).note == "other"
        connection.close()
        wrong = url.replace(PASSWORD, "not-" + PASSWORD)
        quantumorm.create_connection(url=wrong, name="bad")
        with pytest.raises(quantumorm.AuthenticationError):
            Person.objects.using("bad").count_sync()
    finally:
        quantumorm.close_all()
        redis_client.execute_command("ACL", "DELUSER", "loguser")
    shown = url.replace(PASSWORD, "***")
    assert f"connection opened name=default backend=redis url={shown}" in lines(
        caplog, "quantumorm", logging.INFO)
    assert f"connection closed name=default backend=redis url={shown}" in lines(
        caplog, "quantumorm", logging.INFO)
    assert lines(caplog, "quantumorm.redis", logging.DEBUG)  # plans were logged
    text = everything(caplog)
    assert PASSWORD not in text
    assert SECRET not in text


@pytest.mark.parametrize("mode", MODES)
async def test_debug_plans_name_the_operation_and_never_a_value(
        conn: Any, caplog: pytest.LogCaptureFixture, mode: str) -> None:
    debug_everywhere(caplog)
    person = await call(Person(name=SECRET, note=SECRET, age=41), "save", mode)
    await call(Person.objects, "get", mode, id=person.id)
    assert await call(Person.objects.filter(name=SECRET, age__gte=40), "count", mode) == 1
    found = await call(Person.objects.filter(name__startswith="s3"), "all", mode)
    assert [p.note for p in found] == [SECRET]
    await call(Person.objects.filter(name=SECRET), "update", mode, note=SECRET + "2")
    await call(Person.objects.filter(id=person.id), "delete", mode)
    plans = lines(caplog, "quantumorm.redis", logging.DEBUG)
    # (a new document is saved by insert.lua)
    assert any(p.startswith("plan op=save steps=1 read_only=False commands=script:insert "
                            "tags={qlogs:people:p0}") for p in plans), plans
    assert any(p.startswith("plan op=get ") for p in plans), plans
    assert SECRET not in everything(caplog)
    assert "s3" not in "\n".join(plans)  # (not even the prefix queried)


def test_an_operation_calls_no_logging_function_when_debug_is_off(conn: Any) -> None:
    """The DEBUG plan line is decided without a call: with logging at its default
    (WARNING), an operation enters no function of the logging module."""
    person = Person(name="a", age=1).save_sync()
    Person.objects.get_sync(id=person.id)  # (the levels remembered: the steady state)
    entered: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            where = frame.f_code.co_filename if event == "call" else repr(arg)
            if "logging" in where:
                entered.append(where)

    sys.setprofile(profile)
    try:
        Person.objects.get_sync(id=person.id)
        person.age = 2
        person.save_sync()
    finally:
        sys.setprofile(None)
    assert entered == []
    # and with DEBUG on, the same operation does log (so the check above checks something)
    logging.getLogger("quantumorm.redis").setLevel(logging.DEBUG)
    try:
        sys.setprofile(profile)
        try:
            Person.objects.get_sync(id=person.id)
        finally:
            sys.setprofile(None)
    finally:
        logging.getLogger("quantumorm.redis").setLevel(logging.NOTSET)
    assert entered


# -- tools and change events ----------------------------------------------------------------


def test_the_tools_log_their_start_and_end_with_counts(
        conn: Any, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    for i in range(5):
        Person(name=f"p{i}", age=i).save_sync()
    keys = KeySpace(Person._meta)
    redis_client.delete(keys.index(0, "age"))  # damage: every age entry lost
    caplog.set_level(logging.INFO, logger="quantumorm")
    assert not Person.objects.verify_sync().ok
    assert Person.objects.repair_sync().ok
    assert Person.objects.reindex_sync().ready
    assert Person.objects.sweep_sync() == 0
    tools = lines(caplog, "quantumorm.tools", logging.INFO)
    assert tools == [
        "verify started model=Person",
        "verify finished model=Person documents=5 entries=5 problems=5 ok=False",
        "repair started model=Person",
        "repair finished model=Person found=5 fixed=5 remaining=0 ok=True",
        "reindex started model=Person",
        "reindex finished model=Person documents=5 gone=0 backfilled=0 unsettled=0 "
        "ready=True conflicts=0",
        "sweep started model=Person",
        "sweep finished model=Person purged=0",
    ], tools


def test_repartition_logs_its_start_and_end(
        conn: Any, caplog: pytest.LogCaptureFixture) -> None:
    one, three = model(1), model(3)
    one.objects.bulk_create_sync([one(n=i) for i in range(20)])
    caplog.set_level(logging.INFO, logger="quantumorm.tools")
    final = repartition(three, from_partitions=1)
    assert final.done
    assert lines(caplog, "quantumorm.tools", logging.INFO) == [
        "repartition started model=Moved3",
        f"repartition finished model=Moved3 scanned=20 moved={final.moved} "
        f"stayed={final.stayed} done=True"]


def test_a_tool_that_fails_logs_a_warning(
        conn: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="quantumorm.tools")
    with pytest.raises(ValueError, match="limit"):
        Person.objects.sweep_sync(limit=0)
    assert lines(caplog, "quantumorm.tools") == [
        "sweep started model=Person", "sweep failed model=Person error=ValueError"]


def test_claimed_change_events_are_logged(
        conn: Any, caplog: pytest.LogCaptureFixture) -> None:
    group = Person.objects.consumer_group("g", start="0")
    first, second = group.consumer("first"), group.consumer("second")
    Person(name="a").save_sync()
    Person(name="b").save_sync()
    assert len(first.read_sync()) == 2  # held by "first", never acknowledged
    caplog.set_level(logging.INFO, logger="quantumorm.events")
    assert len(second.claim_sync(min_idle=0)) == 2
    assert second.claim_sync(min_idle=3600) == []  # (nothing claimed: nothing logged)
    assert lines(caplog, "quantumorm.events", logging.INFO) == [
        "claimed idle change events model=Person group=g consumer=second count=2"]
