"""Fixtures of the contract suite: every test runs on every backend, in sync and async mode.

``store`` (parametrized over ``redis``, ``redis-resp3`` (RESP3 replies), ``redis-acl``,
``sqlite`` and ``postgres`` (a private server, see ``postgres_support``)) opens
an empty store of that kind, makes it the default connection of its backend and gives the
backend's name; ``models`` are the suite's model classes
declared for that backend (the same declarations, ``Meta.backend`` aside); ``mode`` is
``"sync"`` or ``"async"`` and :func:`run` calls an operation in that mode.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from contract_models import MODELS, open_store

import postgres_support
import quantumorm
from quantumorm.backends.redis.acl import acl_rule

#: "redis-resp3": the Redis backend with RESP3 replies (``protocol=3``); "redis-acl": as a
#: user holding only quantumorm's published least-privilege ACL rule (acl.acl_rule)
BACKENDS = ("redis", "redis-resp3", "redis-acl", "sqlite", "postgres")
ACL_USER, ACL_PASSWORD = "qorm-contract", "contract-secret"





@pytest.fixture(params=BACKENDS)
async def store(request: Any) -> AsyncIterator[str]:
    backend = "redis" if request.param.startswith("redis") else request.param
    if backend == "redis":
        redis_url = request.getfixturevalue("redis_url")
        client = request.getfixturevalue("redis_client")
        client.flushdb()
        extra: dict[str, Any] = {}
        if request.param == "redis-resp3":
            extra["protocol"] = 3
        if request.param == "redis-acl":
            client.execute_command("ACL", "SETUSER", ACL_USER, "reset", "on",
                                   f">{ACL_PASSWORD}", *acl_rule("contract").split())
            extra.update(username=ACL_USER, password=ACL_PASSWORD)
        quantumorm.create_connection(backend="redis", url=redis_url, name="contract-redis",
                                     make_default=True, **extra)
    else:
        if backend == "postgres":
            postgres_support.reset(request.getfixturevalue("postgres_url"))
        open_store(backend, request)
    try:
        yield backend
    finally:
        try:
            await quantumorm.aclose_all()
        finally:
            quantumorm.close_all()


@pytest.fixture
def models(store: str) -> Any:
    return MODELS[store]


@pytest.fixture(params=("sync", "async"))
def mode(request: Any) -> str:
    return str(request.param)
