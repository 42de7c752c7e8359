"""The eviction check's decision (no server): which maxmemory policies are refused, and the
``allow_eviction`` option."""

from __future__ import annotations

import logging

import pytest

from quantumorm import BackendError, ConfigurationError, UnsafeEvictionPolicy, create_connection
from quantumorm.backends.redis.eviction import UNKNOWN, policy_of, refusal, settle

SAFE = ["noeviction", "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"]
UNSAFE = ["allkeys-lru", "allkeys-lfu", "allkeys-random"]


@pytest.mark.parametrize("policy", SAFE + [UNKNOWN])
def test_safe_policies_pass(policy: str) -> None:
    assert refusal({"h:1": policy}, allow=False) is None


@pytest.mark.parametrize("policy", UNSAFE)
def test_allkeys_policies_are_refused(policy: str) -> None:
    error = refusal({"h:1": "noeviction", "h:2": policy}, allow=False)
    assert isinstance(error, UnsafeEvictionPolicy) and isinstance(error, BackendError)
    assert (error.policy, error.server) == (policy, "h:2")
    assert policy in str(error) and "h:2" in str(error)
    assert "allow_eviction=True" in str(error) and "noeviction" in str(error)


def test_several_unsafe_servers_name_one_deterministically() -> None:
    policies = {"h:3": "allkeys-lfu", "h:1": "allkeys-lru", "h:2": "noeviction"}
    error = refusal(policies, allow=False)
    assert error is not None and (error.server, error.policy) == ("h:1", "allkeys-lru")


def test_allow_eviction_skips_the_refusal() -> None:
    assert refusal({"h:1": "allkeys-lru"}, allow=True) is None
    assert refusal({}, allow=False) is None


def test_settle_raises_or_warns(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(UnsafeEvictionPolicy):
        settle({"h:1": "allkeys-lru"}, allow=False)
    with caplog.at_level(logging.WARNING, logger="quantumorm.redis"):
        settle({"h:1": "noeviction"}, allow=False)
        assert caplog.records == []
        settle({"h:1": "allkeys-lru"}, allow=True)
        settle({"h:2": UNKNOWN}, allow=False)
    first, second = (record.getMessage() for record in caplog.records)
    assert "allow_eviction=True" in first and "h:1 (allkeys-lru)" in first
    assert "cannot read the maxmemory-policy" in second and "h:2" in second


def test_policy_from_the_replies_of_info_and_config_get() -> None:
    assert policy_of({"used_memory": 1, "maxmemory_policy": "allkeys-lru"}) == "allkeys-lru"
    assert policy_of({b"maxmemory-policy": b"volatile-ttl"}) == "volatile-ttl"
    assert policy_of([b"maxmemory-policy", b"noeviction"]) == "noeviction"
    assert policy_of({"used_memory": 1}) is None
    assert policy_of(b"garbage") is None


def test_allow_eviction_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="allow_eviction"):
        create_connection(url="redis://127.0.0.1:1/0", name="ev_bad", allow_eviction="yes")
