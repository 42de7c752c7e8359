"""Connection configuration against real servers: redis-py options passed through, the URL
from the environment, one default connection per backend, and scripts reloaded as often as
a SCRIPT FLUSH from another client takes them away."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import MODES, assert_indexes_consistent, call

import quantumorm
from quantumorm import (
    ConfigurationError,
    Document,
    IntField,
    StringField,
    create_connection,
    get_connection,
)


class Item(Document):
    text = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "cfg_items"


class Flushed(Document):
    text = StringField(indexed=True)
    n = IntField(indexed=True)
    visits = IntField(default=0)

    class Meta:
        collection = "cfg_flushed"
        partitions = 3  # several script calls in one pipeline


class LiteItem(Document):
    text = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        backend = "sqlite"
        collection = "cfg_lite_items"


@pytest.fixture
async def closing() -> Any:
    """Every connection the test opens is closed afterwards (blocking and asyncio pools)."""
    try:
        yield
    finally:
        try:
            await quantumorm.aclose_all()
        finally:
            quantumorm.close_all()


def _clients(url: str) -> list[dict[str, Any]]:
    raw = redis.Redis.from_url(url)
    try:
        return [dict(c) for c in raw.client_list()]
    finally:
        raw.close()


# -- redis-py options pass through ----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_redis_py_options_reach_the_server(start_redis: Any, closing: None,
                                                 mode: str) -> None:
    """A password given as a keyword, a client name, health checks and keepalive: accepted
    at create_connection and used by the blocking and asyncio clients alike."""
    url, _ = start_redis("--requirepass", "s3cret", password="s3cret")
    create_connection(url=url, name="default", make_default=True, password="s3cret",
                      client_name=f"qorm-{mode}", health_check_interval=30,
                      socket_keepalive=True, protocol=2)
    doc = await call(Item(text="a", n=1), "save", mode)
    assert (await call(Item.objects, "get", mode, n=1)).id == doc.id
    admin = redis.Redis.from_url(url, password="s3cret")
    try:
        names = {c["name"] for c in admin.client_list()}
    finally:
        admin.close()
    assert f"qorm-{mode}" in names


# -- the URL from the environment ----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_the_url_comes_from_the_environment(redis_url: str, redis_client: Any,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  closing: None, mode: str) -> None:
    redis_client.flushdb()
    monkeypatch.delenv("QUANTUMORM_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", redis_url)
    connection = create_connection(make_default=True)
    assert connection.url == redis_url and connection.name == "default"
    await call(Item(text="env", n=3), "save", mode)
    assert await call(Item.objects.filter(text="env"), "count", mode) == 1

    # QUANTUMORM_URL comes first; its mistakes are reported as its own, password hidden
    monkeypatch.setenv("QUANTUMORM_URL", "redis+cluster://:pw-in-env@127.0.0.1:7000/1")
    with pytest.raises(ConfigurationError) as caught:
        create_connection(name="other")
    assert "$QUANTUMORM_URL" in str(caught.value) and "pw-in-env" not in str(caught.value)
    monkeypatch.setenv("QUANTUMORM_URL", redis_url.rsplit("/", 1)[0] + "/2")
    assert create_connection(name="other").url.endswith("/2")


def test_without_a_url_anywhere_the_error_says_where_to_put_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUANTUMORM_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(ConfigurationError) as caught:
        create_connection()
    assert "$QUANTUMORM_URL" in str(caught.value) and "$REDIS_URL" in str(caught.value)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")  # (for Redis only)
    with pytest.raises(ConfigurationError) as caught:
        create_connection(backend="sqlite")
    assert "$QUANTUMORM_URL" in str(caught.value) and "REDIS_URL" not in str(caught.value)
    monkeypatch.setenv("QUANTUMORM_URL", "")  # empty counts as unset
    with pytest.raises(ConfigurationError, match="needs a url"):
        create_connection(backend="sqlite")
    assert not quantumorm.registry._connections


async def test_sqlite_reads_quantumorm_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           closing: None) -> None:
    monkeypatch.setenv("QUANTUMORM_URL", f"sqlite:///{tmp_path}/env.db")
    connection = create_connection(backend="sqlite")
    assert connection.name == "sqlite" and get_connection(backend="sqlite") is connection
    await LiteItem(text="x", n=1).save()
    assert (tmp_path / "env.db").exists()


# -- one default connection per backend ----------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_each_backend_keeps_its_own_default(redis_url: str, redis_client: Any,
                                                  tmp_path: Path, closing: None,
                                                  mode: str) -> None:
    redis_client.flushdb()
    red = create_connection(backend="redis", url=redis_url, make_default=True)
    lite = create_connection(backend="sqlite", url=f"sqlite:///{tmp_path}/a.db",
                             make_default=True)
    assert get_connection() is red and get_connection(backend="sqlite") is lite
    assert red.name != lite.name and red.store is not lite.store
    for i in range(3):  # interleaved, side by side
        await call(Item(text="r", n=i), "save", mode)
        await call(LiteItem(text="s", n=i), "save", mode)
    assert await call(Item.objects.filter(text="r"), "count", mode) == 3
    assert await call(LiteItem.objects.filter(text="s"), "count", mode) == 3

    # another default for one backend leaves the other's alone
    lite2 = create_connection(backend="sqlite", url="sqlite://", name="lite2",
                              make_default=True)
    assert get_connection(backend="sqlite") is lite2 and get_connection() is red
    assert await call(Item.objects, "count", mode) == 3
    assert await call(LiteItem.objects, "count", mode) == 0

    # a name taken over by another backend's connection is no longer the old default
    create_connection(backend="sqlite", url="sqlite://", name=red.name)
    with pytest.raises(ConfigurationError, match="no redis connection"):
        get_connection()
    assert get_connection(backend="sqlite") is lite2


# -- NOSCRIPT under a SCRIPT FLUSH loop -----------------------------------------------------


def _flusher(clients: list[redis.Redis], pause: float = 0.0002) -> tuple[
        threading.Thread, threading.Event, list[int]]:
    """A thread sending SCRIPT FLUSH and FUNCTION FLUSH (for scripts="functions") to these
    servers in turn, every ``pause`` seconds, until the event is set; and the count of
    flushes."""
    stop, flushes = threading.Event(), [0]

    def loop() -> None:
        try:
            while not stop.is_set():
                try:
                    client = clients[flushes[0] % len(clients)]
                    client.script_flush()
                    client.function_flush()
                except redis.RedisError:  # (a timeout on a busy machine: flush again)
                    continue
                flushes[0] += 1
                time.sleep(pause)
        finally:
            for client in clients:
                client.close()

    thread = threading.Thread(target=loop, name="script-flusher", daemon=True)
    thread.start()
    return thread, stop, flushes


def missing(errors: dict[str, Any]) -> int:
    """Replies that said a script is missing: NOSCRIPT (the tests below call the scripts
    with EVALSHA, ``scripts="eval"``). Only that code: "Function not found" is an ERR, as
    are replies that mean anything else, and errorstats counts them all under ERR."""
    return int(errors.get("errorstat_NOSCRIPT", {}).get("count", 0))


def test_missing_counts_noscript_replies_and_nothing_else() -> None:
    assert missing({"errorstat_ERR": {"count": 7}, "errorstat_WRONGTYPE": {"count": 2}}) == 0
    assert missing({"errorstat_NOSCRIPT": {"count": 3}, "errorstat_ERR": {"count": 7}}) == 3


@pytest.fixture
def flushing(start_redis: Any) -> Iterator[tuple[str, threading.Event, list[int]]]:
    """A private server and a thread flushing its scripts in a loop until the test ends;
    yields its URL, the stop event and the count of flushes."""
    url, _ = start_redis()
    thread, stop, flushes = _flusher([redis.Redis.from_url(url)])
    try:
        yield url, stop, flushes
    finally:
        stop.set()
        thread.join(timeout=10)


async def _workload(mode: str, rounds: int) -> list[Flushed]:
    """Inserts, updates, atomic increments, counts, ordered queries and fetches."""
    docs: list[Flushed] = await call(Flushed.objects, "bulk_create", mode,
                                     [Flushed(text=f"t{i % 3}", n=i) for i in range(30)])
    for round_ in range(rounds):
        for doc in docs[:6]:
            await call(doc, "inc", mode, "visits")
        doc = await call(Flushed(text="loop", n=100 + round_), "save", mode)
        doc.text = "looped"
        await call(doc, "save", mode)
        assert await call(Flushed.objects.filter(text="t1"), "count", mode) == 10
        rows = await call(Flushed.objects.filter(n__lt=30).order_by("-n"), "all", mode)
        assert [d.n for d in rows] == list(range(29, -1, -1))
        assert len(await call(Flushed.objects, "get_many", mode,
                              [d.id for d in docs[:5]])) == 5
    return docs


async def _applied_once(mode: str, docs: list[Flushed], rounds: int) -> None:
    """Nothing was applied twice: every increment counted once, no insert made twice."""
    for doc in docs[:6]:
        assert (await call(Flushed.objects, "get", mode, id=doc.id)).visits == rounds
    assert await call(Flushed.objects.filter(text="looped"), "count", mode) == rounds
    assert await call(Flushed.objects, "count", mode) == 30 + rounds


@pytest.mark.parametrize("mode", MODES)
async def test_operations_succeed_while_another_client_flushes_the_scripts(
        flushing: tuple[str, threading.Event, list[int]], closing: None, mode: str) -> None:
    url, stop, flushes = flushing
    create_connection(url=url, name="default", make_default=True, scripts="eval")
    docs = await _workload(mode, rounds=12)
    stop.set()
    raw = redis.Redis.from_url(url)
    try:
        errors = raw.info("errorstats")
        await _applied_once(mode, docs, rounds=12)
        assert_indexes_consistent(raw, Flushed)
    finally:
        raw.close()
    assert flushes[0] > 0  # (how many depends on the machine: the NOSCRIPT count proves it)
    assert missing(errors) > 0  # (the test did bite)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wait_replicas", [0, 1])
async def test_cluster_operations_succeed_while_scripts_are_flushed(
        redis_cluster: Any, closing: None, mode: str, wait_replicas: int) -> None:
    """The same on a cluster, where plans go one pipeline per node, and with WAIT."""
    redis_cluster.flush()
    for node in redis_cluster.live():  # (NOSCRIPT replies of earlier tests do not count)
        client = node.client()
        client.config_resetstat()
        client.close()
    create_connection(url=redis_cluster.url, name="default", make_default=True,
                      wait_replicas=wait_replicas, wait_timeout=5.0, scripts="eval")
    thread, stop, flushes = _flusher([node.client() for node in redis_cluster.live()],
                                     pause=0.001)
    try:
        docs = await _workload(mode, rounds=4)
    finally:
        stop.set()
        thread.join(timeout=10)
    await _applied_once(mode, docs, rounds=4)
    # (how many flushes fit in the workload depends on the machine's speed: the NOSCRIPT
    # replies counted below are what proves the test bit)
    assert flushes[0] > 0
    noscript = 0
    for node in redis_cluster.live():
        client = node.client()
        noscript += missing(client.info("errorstats"))
        client.close()
    assert noscript > 0
