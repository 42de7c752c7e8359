"""Fixtures of the contract suite: every test runs on every backend, in sync and async mode.

``store`` (parametrized over ``redis``, ``redis-resp3`` (RESP3 replies) and ``sqlite``) opens
an empty store of that kind, makes it the default connection of its backend and gives the
backend's name; ``models`` are the suite's model classes
declared for that backend (the same declarations, ``Meta.backend`` aside); ``mode`` is
``"sync"`` or ``"async"`` and :func:`run` calls an operation in that mode.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from contract_models import MODELS

import quantumorm

#: "redis-resp3": the Redis backend with RESP3 replies (``protocol=3``)
BACKENDS = ("redis", "redis-resp3", "sqlite")


@pytest.fixture(params=BACKENDS)
async def store(request: Any) -> AsyncIterator[str]:
    backend = "redis" if request.param.startswith("redis") else request.param
    if backend == "redis":
        redis_url = request.getfixturevalue("redis_url")
        client = request.getfixturevalue("redis_client")
        client.flushdb()
        protocol = {"protocol": 3} if request.param == "redis-resp3" else {}
        quantumorm.create_connection(backend="redis", url=redis_url, name="contract-redis",
                                     make_default=True, **protocol)
    else:
        quantumorm.create_connection(backend="sqlite", url="sqlite://", name="contract-sqlite",
                                     make_default=True)
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
