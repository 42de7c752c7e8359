"""The scripts as Redis Functions (``scripts="functions"``: ``functions.py``,
``reloads.py``): every script loads as a library and runs as a function; a server that lost
the libraries (FUNCTION FLUSH, also on cluster nodes) gets them again and only the calls that
did not run are sent again; a server that refuses FUNCTION LOAD gets EVALSHA; no call's
state outlives it in the library."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis
from helpers import MODES, assert_indexes_consistent, call

import quantumorm
from quantumorm import Document, IntField, StringField
from quantumorm.backends.redis.acl import acl_rule
from quantumorm.backends.redis.commands import SCRIPT_NAMES, script
from quantumorm.backends.redis.functions import library


class Tune(Document):
    title = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        namespace = "fn"
        collection = "tunes"
        partitions = 3  # several script calls in one pipeline


class Loud(Document):
    name = StringField(indexed=True)

    class Meta:
        namespace = "fn"
        collection = "loud"
        changes_document = True


class Quiet(Document):
    name = StringField(indexed=True)

    class Meta:
        namespace = "fn"
        collection = "quiet"
        changes = False


@pytest.fixture
def fconn(conn: Any, redis_url: str) -> Any:
    """The default connection (on the emptied test server), calling scripts as functions."""
    return quantumorm.create_connection(url=redis_url, name="default", make_default=True,
                                        scripts="functions")


def stats(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT."""
    found = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in found.items()}


def pairs(entry: Any) -> dict[str, Any]:
    """FUNCTION LIST's flat [name, value, ...] (RESP2) as a dict with str keys."""
    if isinstance(entry, dict):
        return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
    return {k.decode(): v for k, v in zip(entry[::2], entry[1::2], strict=True)}


def library_names(client: redis.Redis) -> set[str]:
    return {pairs(entry)["library_name"].decode() for entry in client.function_list()}


def test_every_script_loads_as_a_library_with_its_flags(redis_client: redis.Redis) -> None:
    redis_client.function_flush()
    for name in SCRIPT_NAMES:
        assert redis_client.function_load(library(name).source) == library(name).name.encode()
    listed = {}
    for entry in redis_client.function_list():
        lib = pairs(entry)["library_name"].decode()
        [function] = map(pairs, pairs(entry)["functions"])
        assert function["name"].decode() == lib
        listed[lib] = sorted(flag.decode() for flag in function["flags"])
    for name in SCRIPT_NAMES:
        first = script(name).source.splitlines()[0]
        flags = first.partition("flags=")[2].split(",") if "flags=" in first else []
        assert listed[library(name).name] == sorted(f for f in flags if f)
    assert len(listed) == len(SCRIPT_NAMES)  # a name per script


@pytest.mark.parametrize("mode", MODES)
async def test_every_operation_survives_a_function_flush(
        fconn: Any, redis_client: redis.Redis, mode: str) -> None:
    def flush() -> None:
        redis_client.function_flush()
        assert library_names(redis_client) == set()

    redis_client.config_resetstat()
    flush()
    docs = await call(Tune.objects, "bulk_create", mode,
                      [Tune(title=f"t{i % 4}", n=i) for i in range(40)])  # insert_many x3
    flush()
    doc = await call(Tune(title="single", n=100), "save", mode)              # save
    flush()
    assert await call(Tune.objects.filter(title="t1"), "count", mode) == 10  # counts
    flush()
    rows = await call(Tune.objects.filter(n__gte=30).order_by("-n"), "all", mode)  # query x3
    assert [d.n for d in rows] == [100, *range(39, 29, -1)]
    flush()
    fetched = await call(Tune.objects, "get_many", mode, [d.id for d in docs[:6]])  # fetch
    assert [d.n for d in fetched] == list(range(6))
    flush()
    assert await call(doc, "delete", mode) is True                             # delete
    flush()
    assert await call(Tune.objects.filter(title="t2"), "update", mode, n=-1) == 10
    assert {library(n).name for n in SCRIPT_NAMES} <= library_names(redis_client)
    assert_indexes_consistent(redis_client, Tune)
    calls = stats(redis_client)
    assert calls.get("fcall", 0) > 0
    assert calls.get("evalsha", 0) == calls.get("eval", 0) == 0


@pytest.mark.parametrize("mode", MODES)
async def test_scripts_eval_calls_them_with_evalsha(
        conn: Any, redis_client: redis.Redis, redis_url: str, mode: str) -> None:
    quantumorm.create_connection(url=redis_url, name="default", make_default=True,
                                 scripts="eval")
    redis_client.config_resetstat()
    redis_client.script_flush()
    await call(Tune(title="a", n=1), "save", mode)
    assert await call(Tune.objects.filter(title="a"), "count", mode) == 1
    calls = stats(redis_client)
    assert calls.get("evalsha", 0) > 0
    assert calls.get("fcall", 0) == calls.get("fcall_ro", 0) == 0


def test_by_default_scripts_are_called_with_evalsha(conn: Any, redis_url: str,
                                                    redis_client: redis.Redis) -> None:
    quantumorm.create_connection(url=redis_url, name="default", make_default=True)
    redis_client.function_flush()
    redis_client.config_resetstat()
    Tune(title="a", n=1).save_sync()
    assert Tune.objects.filter(title="a").count_sync() == 1
    calls = stats(redis_client)
    assert calls.get("evalsha", 0) >= 1
    assert calls.get("fcall", 0) == calls.get("fcall_ro", 0) == 0
    assert library_names(redis_client) == set()


def test_functions_call_them_with_fcall(fconn: Any, redis_client: redis.Redis) -> None:
    redis_client.config_resetstat()
    Tune(title="a", n=1).save_sync()
    assert Tune.objects.filter(title="a").count_sync() == 1
    calls = stats(redis_client)
    assert calls.get("fcall", 0) >= 1
    assert calls.get("evalsha", 0) == calls.get("eval", 0) == 0


def test_a_call_leaves_no_state_in_its_library(fconn: Any, redis_client: redis.Redis) -> None:
    """A save with change events, then one of a model without: the second appends no
    event (the first call's events setting is not the second's)."""
    Loud(name="a").save_sync()
    Quiet(name="b").save_sync()
    Quiet(name="b").save_sync()
    streams = [key for key in redis_client.scan_iter("{fn:*") if redis_client.type(key) ==
               b"stream"]
    assert {key: redis_client.xlen(key) for key in streams} == {b"{fn:loud:p0}:x": 1}


@pytest.mark.parametrize("mode", MODES)
async def test_a_user_without_function_load_falls_back_to_evalsha(
        conn: Any, redis_client: redis.Redis, redis_url: str, mode: str,
        caplog: pytest.LogCaptureFixture) -> None:
    await call(Tune.objects, "count", mode)  # the schema, stored as the default user
    redis_client.function_flush()
    rule = acl_rule("fn", functions=True).replace(" +function|load", "")
    redis_client.execute_command("ACL", "SETUSER", "no-functions", "reset", "on", ">pw",
                                 *rule.split())
    try:
        quantumorm.create_connection(url=redis_url, name="default", make_default=True,
                                     username="no-functions", password="pw",
                                     scripts="functions")
        redis_client.config_resetstat()
        with caplog.at_level(logging.WARNING, logger="quantumorm.redis"):
            await call(Tune(title="a", n=1), "save", mode)
            await call(Tune(title="b", n=2), "save", mode)
            assert await call(Tune.objects.filter(title="a"), "count", mode) == 1
        refused = [r for r in caplog.records if "FUNCTION LOAD refused" in r.getMessage()]
        assert len(refused) == 1
        calls = stats(redis_client)
        assert calls.get("evalsha", 0) >= 3
        assert library_names(redis_client) == set()
    finally:
        redis_client.execute_command("ACL", "DELUSER", "no-functions")


@pytest.mark.parametrize("mode", MODES)
async def test_a_cluster_node_without_the_libraries_gets_them(
        cluster_conn: Any, redis_cluster: Any, mode: str) -> None:
    quantumorm.create_connection(url=redis_cluster.url, name="default", make_default=True,
                                 scripts="functions")
    docs = await call(Tune.objects, "bulk_create", mode,
                      [Tune(title=f"t{i % 4}", n=i) for i in range(30)])
    for node in redis_cluster.nodes:
        client = node.client()
        try:
            if client.info("replication")["role"] == "master":
                client.function_flush()
        finally:
            client.close()
    rows = await call(Tune.objects.filter(title="t1").order_by("n"), "all", mode)
    assert [d.n for d in rows] == list(range(1, 30, 4))
    doc = docs[0]
    doc.n = 1000
    await call(doc, "save", mode)
    assert await call(Tune.objects.filter(n=1000), "count", mode) == 1
    for node in redis_cluster.nodes:
        client = node.client()
        try:
            if client.info("replication")["role"] == "master":
                names = library_names(client)
                assert library("query").name in names and library("save").name in names
        finally:
            client.close()


@pytest.mark.parametrize("mode", MODES)
async def test_a_server_above_maxmemory_gets_the_scripts_by_script_load(
        fconn: Any, redis_client: redis.Redis, mode: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """FUNCTION LOAD is denied above maxmemory, SCRIPT LOAD is not: a delete and a count
    (which run there, see docs/design.md) still run, by EVALSHA, where the libraries are
    missing (a new version deployed while the server is full)."""
    docs = await call(Tune.objects, "bulk_create", mode,
                      [Tune(title="t", n=i) for i in range(20)])
    redis_client.function_flush()
    redis_client.script_flush()
    policy = redis_client.config_get("maxmemory-policy")["maxmemory-policy"]
    try:
        redis_client.config_set("maxmemory-policy", "noeviction")
        redis_client.set("filler", "x" * 200_000)
        redis_client.config_set("maxmemory", int(redis_client.info("memory")["used_memory"])
                                - 100_000)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            redis_client.set("more", "x")  # (the server is above maxmemory)
        with caplog.at_level(logging.WARNING, logger="quantumorm.redis"):
            assert await call(docs[0], "delete", mode)
            assert await call(Tune.objects.filter(title="t"), "count", mode) == 19
        assert [r for r in caplog.records if "FUNCTION LOAD refused" in r.getMessage()]
        assert library_names(redis_client) == set()
    finally:
        redis_client.config_set("maxmemory", 0)
        redis_client.config_set("maxmemory-policy", policy)
        redis_client.delete("filler")


@pytest.mark.parametrize("mode", MODES)
async def test_a_user_without_fcall_calls_the_scripts_with_evalsha_at_once(
        conn: Any, redis_client: redis.Redis, redis_url: str, mode: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """FCALL refused by the ACL, FUNCTION LOAD allowed: loading again cannot help, so the
    connection turns to EVALSHA at the first refusal (it reloaded the libraries five times
    per call, then sent the source)."""
    await call(Tune.objects, "count", mode)  # the schema, stored as the default user
    rule = acl_rule("fn", functions=True).replace(" +fcall_ro", "").replace(" +fcall", "")
    redis_client.execute_command("ACL", "SETUSER", "no-fcall", "reset", "on", ">pw",
                                 *rule.split())
    try:
        quantumorm.create_connection(url=redis_url, name="default", make_default=True,
                                     username="no-fcall", password="pw", scripts="functions")
        redis_client.config_resetstat()
        with caplog.at_level(logging.WARNING, logger="quantumorm.redis"):
            for i in range(3):
                await call(Tune(title="a", n=i), "save", mode)
            assert await call(Tune.objects.filter(title="a"), "count", mode) == 3
        refused = [r for r in caplog.records if "FCALL refused" in r.getMessage()]
        assert len(refused) == 1
        calls = stats(redis_client)
        assert calls.get("function|load", 0) == calls.get("eval", 0) == 0
        assert calls.get("evalsha", 0) >= 4
    finally:
        redis_client.execute_command("ACL", "DELUSER", "no-fcall")


def test_the_acl_rule_grants_functions_only_when_asked() -> None:
    assert "fcall" not in acl_rule("fn") and "function|load" not in acl_rule("fn")
    assert {"+fcall", "+fcall_ro", "+function|load"} <= set(acl_rule("fn", functions=True)
                                                           .split())
