"""Fixtures of the contract suite: every test runs on every backend, in sync and async mode.

``store`` (parametrized over ``redis`` and ``sqlite``) opens an empty store of that kind and
makes it the default connection of its backend; ``models`` are the suite's model classes
declared for that backend (the same declarations, ``Meta.backend`` aside); ``mode`` is
``"sync"`` or ``"async"`` and :func:`run` calls an operation in that mode.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from contract_models import MODELS

import quantumorm

BACKENDS = ("redis", "sqlite")


@pytest.fixture(params=BACKENDS)
async def store(request: Any) -> AsyncIterator[str]:
    backend = request.param
    if backend == "redis":
        redis_url = request.getfixturevalue("redis_url")
        client = request.getfixturevalue("redis_client")
        client.flushdb()
        quantumorm.create_connection(backend="redis", url=redis_url, name="contract-redis",
                                     make_default=True)
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
