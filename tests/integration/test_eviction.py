"""The eviction check: a Redis server whose ``maxmemory-policy`` may evict any key
(``allkeys-*``) is refused at the connection's first use, unless ``allow_eviction=True``.

Every server whose policy a test sets is a private one (``start_redis``, ``start_cluster``,
``start_sentinel``): the session's server keeps its policy, which other tests rely on.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis
from helpers import MODES, call

import quantumorm
from quantumorm import (
    BackendError,
    Document,
    IntField,
    StringField,
    UnsafeEvictionPolicy,
    create_connection,
)
from quantumorm.backends.redis.eviction import UNKNOWN, eviction_policies


class Memo(Document):
    text = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "ev_memos"


def _server(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0]


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.name == "quantumorm.redis" and record.levelno == logging.WARNING]


@pytest.fixture
async def private(start_redis: Any) -> Any:
    """``private(policy, **options)``: a redis-server of its own with that maxmemory-policy,
    the ``"default"`` connection on it, and an admin client; everything closed after."""
    admins: list[redis.Redis] = []

    def start(policy: str, **options: Any) -> tuple[str, redis.Redis]:
        url, _ = start_redis("--maxmemory-policy", policy)
        create_connection(url=url, name="default", make_default=True, **options)
        admins.append(redis.Redis.from_url(url))
        return url, admins[-1]

    try:
        yield start
    finally:
        for admin in admins:
            admin.close()
        await quantumorm.aclose_all()
        quantumorm.close_all()


@pytest.mark.parametrize("mode", MODES)
async def test_allkeys_lru_is_refused_with_a_typed_error_and_nothing_is_written(
        private: Any, mode: str) -> None:
    url, admin = private("allkeys-lru")
    with pytest.raises(UnsafeEvictionPolicy) as caught:
        await call(Memo(text="a", n=1), "save", mode)
    error = caught.value
    assert isinstance(error, BackendError)
    assert (error.policy, error.server) == ("allkeys-lru", _server(url))
    message = str(error)
    for part in ("allkeys-lru", _server(url), "index entries", "noeviction", "volatile-",
                 "allow_eviction=True"):
        assert part in message, part
    assert admin.dbsize() == 0
    assert admin.script_exists(*_shas()) == [False] * len(_shas())  # not even scripts


def _shas() -> list[str]:
    from quantumorm.backends.redis.commands import SCRIPT_NAMES, script

    return [script(name).sha for name in SCRIPT_NAMES]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("policy", ["allkeys-lfu", "allkeys-random"])
async def test_every_allkeys_policy_is_refused(private: Any, policy: str, mode: str) -> None:
    _, admin = private(policy)
    with pytest.raises(UnsafeEvictionPolicy, match=policy) as caught:
        await call(Memo.objects, "count", mode)
    assert caught.value.policy == policy
    assert admin.dbsize() == 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("policy", ["noeviction", "volatile-lru", "volatile-ttl"])
async def test_noeviction_and_volatile_policies_are_accepted(
        private: Any, policy: str, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    private(policy)
    with caplog.at_level(logging.WARNING, logger="quantumorm.redis"):
        await call(Memo(text="a", n=1), "save", mode)
        assert await call(Memo.objects.filter(text="a"), "count", mode) == 1
    assert _warnings(caplog) == []


@pytest.mark.parametrize("mode", MODES)
async def test_the_refusal_persists_until_the_policy_is_safe(private: Any, mode: str) -> None:
    _, admin = private("allkeys-lru")
    for _ in range(2):  # every call asks again, and is refused again
        with pytest.raises(UnsafeEvictionPolicy):
            await call(Memo(text="a", n=1), "save", mode)
    assert admin.dbsize() == 0
    admin.config_set("maxmemory-policy", "volatile-lfu")
    await call(Memo(text="a", n=1), "save", mode)
    assert await call(Memo.objects, "count", mode) == 1
    # once passed, the check is a flag: changing the policy back is not seen by this
    # connection (the check is made on first use, not on every request)
    admin.config_set("maxmemory-policy", "allkeys-lru")
    assert await call(Memo.objects, "count", mode) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_the_check_reads_the_policy_once(private: Any, mode: str) -> None:
    _, admin = private("noeviction")
    admin.config_resetstat()
    for i in range(5):
        await call(Memo(text="a", n=i), "save", mode)
    assert await call(Memo.objects, "count", mode) == 5
    stats = admin.info("commandstats")
    assert stats["cmdstat_info"]["calls"] == 1  # the executor's one INFO memory
    assert "cmdstat_config|get" not in stats


@pytest.mark.parametrize("mode", MODES)
async def test_allow_eviction_accepts_the_server_with_one_warning(
        private: Any, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    url, admin = private("allkeys-lru", allow_eviction=True)
    with caplog.at_level(logging.WARNING, logger="quantumorm.redis"):
        await call(Memo(text="a", n=1), "save", mode)
        await call(Memo(text="b", n=2), "save", mode)
        assert await call(Memo.objects, "count", mode) == 2
    (warning,) = _warnings(caplog)
    assert "allow_eviction=True" in warning and _server(url) in warning
    assert "allkeys-lru" in warning


@pytest.mark.parametrize("mode", MODES)
async def test_info_refused_by_acl_falls_back_to_config_get(start_redis: Any,
                                                            mode: str) -> None:
    url, _ = start_redis("--maxmemory-policy", "allkeys-lru")
    admin = redis.Redis.from_url(url)
    admin.acl_setuser("noinfo", enabled=True, passwords=["+pw"], keys=["*"],
                      commands=["+@all", "-info"])
    create_connection(url=f"redis://noinfo:pw@{_server(url)}/0", name="default",
                      make_default=True)
    try:
        with pytest.raises(UnsafeEvictionPolicy, match="allkeys-lru"):
            await call(Memo(text="a", n=1), "save", mode)
        assert admin.dbsize() == 0
    finally:
        admin.close()
        await quantumorm.aclose_all()


@pytest.mark.parametrize("mode", MODES)
async def test_policy_unreadable_is_logged_not_blocked(
        start_redis: Any, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    url, _ = start_redis("--maxmemory-policy", "allkeys-lru")
    admin = redis.Redis.from_url(url)
    admin.acl_setuser("blind", enabled=True, passwords=["+pw"], keys=["*"],
                      commands=["+@all", "-info", "-config"])
    create_connection(url=f"redis://blind:pw@{_server(url)}/0", name="default",
                      make_default=True)
    try:
        with caplog.at_level(logging.WARNING, logger="quantumorm.redis"):
            await call(Memo(text="a", n=1), "save", mode)
            assert await call(Memo.objects, "count", mode) == 1
        (warning,) = _warnings(caplog)
        assert "cannot read the maxmemory-policy" in warning and _server(url) in warning
        blind = redis.Redis.from_url(url, username="blind", password="pw")
        try:
            assert eviction_policies(blind) == {_server(url): UNKNOWN}
        finally:
            blind.close()
    finally:
        admin.close()
        await quantumorm.aclose_all()


def test_eviction_policies_of_a_server(start_redis: Any) -> None:
    url, _ = start_redis("--maxmemory-policy", "volatile-random")
    client = redis.Redis.from_url(url)
    try:
        assert eviction_policies(client) == {_server(url): "volatile-random"}
    finally:
        client.close()


def test_bad_credentials_stay_an_authentication_error(start_redis: Any) -> None:
    """The check's read fails like any request would: with the typed error, not retried."""
    url, _ = start_redis("--requirepass", "s3cret", password="s3cret")
    create_connection(url=f"redis://:wrong@{_server(url)}/0", name="default",
                      make_default=True)
    try:
        with pytest.raises(quantumorm.AuthenticationError):
            Memo.objects.count_sync()
    finally:
        quantumorm.close_all()


async def test_a_cluster_with_one_allkeys_master_is_refused(start_cluster: Any) -> None:
    cluster = start_cluster(masters=3, replicas=0)
    masters = cluster.masters_now()
    bad = masters[1]
    admin = bad.client()
    admin.config_set("maxmemory-policy", "allkeys-lru")
    admin.close()
    create_connection(url=cluster.url, name="default", make_default=True)
    try:
        for mode in MODES:
            with pytest.raises(UnsafeEvictionPolicy) as caught:
                await call(Memo(text="a", n=1), "save", mode)
            assert (caught.value.policy, caught.value.server) == (
                "allkeys-lru", f"127.0.0.1:{bad.port}")
        for node in masters:
            client = node.client()
            try:
                assert client.dbsize() == 0
            finally:
                client.close()
        seeds = [redis.cluster.ClusterNode("127.0.0.1", masters[0].port)]
        raw = redis.cluster.RedisCluster(startup_nodes=seeds)
        try:
            assert eviction_policies(raw) == {
                f"127.0.0.1:{node.port}": "allkeys-lru" if node is bad else "noeviction"
                for node in masters}
        finally:
            raw.close()
    finally:
        await quantumorm.aclose_all()
        quantumorm.close_all()


async def test_a_sentinel_master_with_allkeys_is_refused(start_sentinel: Any) -> None:
    group = start_sentinel(replicas=0)
    master = group.master()
    admin = master.client()
    admin.config_set("maxmemory-policy", "allkeys-random")
    create_connection(url=group.url, name="default", make_default=True)
    try:
        for mode in MODES:
            with pytest.raises(UnsafeEvictionPolicy) as caught:
                await call(Memo.objects, "count", mode)
            assert (caught.value.policy, caught.value.server) == (
                "allkeys-random", f"127.0.0.1:{master.port}")
        admin.config_set("maxmemory-policy", "noeviction")
        for mode in MODES:
            await call(Memo(text=mode, n=1), "save", mode)
        assert admin.dbsize() > 0
    finally:
        admin.close()
        await quantumorm.aclose_all()
        quantumorm.close_all()
