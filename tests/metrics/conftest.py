"""Fixtures of the metrics tests: metrics, traces and the slow log switched off and their
counts forgotten around every test (the counters are per process)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

import postgres_support
import quantumorm
from default_connections import default_connection
from quantumorm import metrics
from quantumorm.engine import observe
from quantumorm.metrics import watch


def _quiet() -> None:
    metrics.disable()
    metrics.slow_log(None)
    watch.WATCH.tracer = None
    watch.sync()
    metrics.reset()


@pytest.fixture(autouse=True)
def quiet_metrics() -> Iterator[None]:
    _quiet()
    try:
        yield
    finally:
        _quiet()
        assert observe.watcher is None


@pytest.fixture
async def lite() -> AsyncIterator[quantumorm.Connection]:
    """An in-memory SQLite connection, the default of its backend."""
    async for connection in default_connection("sqlite", "sqlite://"):
        yield connection


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[quantumorm.Connection]:
    postgres_support.reset(postgres_url)
    async for connection in default_connection("postgres", postgres_url):
        yield connection
