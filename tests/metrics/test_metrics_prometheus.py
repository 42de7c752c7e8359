"""The Prometheus face: a scrape (``generate_latest``) parsed back, with exact values for a
known sequence of operations."""

from __future__ import annotations

from typing import Any

import pytest
from metrics_models import LiteUser

import quantumorm
from quantumorm import metrics

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from quantumorm.metrics import prometheus  # noqa: E402


def _scrape(registry: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _op(name: str, operation: str, **extra: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    labels = {"model": "LiteUser", "operation": operation, "backend": "sqlite", **extra}
    return name, tuple(sorted(labels.items()))


async def test_scrape_has_exact_values(lite: quantumorm.Connection) -> None:
    await LiteUser.objects.count()
    registry = CollectorRegistry()
    assert prometheus.register(registry) is prometheus.register(registry)  # (once)
    metrics.enable()
    saved = await LiteUser(name="ann", age=3).save()
    await LiteUser(name="bob", age=4).save()
    await LiteUser.objects.get(id=saved.id)
    with pytest.raises(LiteUser.DoesNotExist):
        await LiteUser.objects.get(id="nope")
    found = _scrape(registry)
    assert found[_op("quantumorm_operations_total", "save")] == 2
    assert found[_op("quantumorm_operations_total", "get")] == 2
    assert found[_op("quantumorm_operation_errors_total", "get", type="DoesNotExist")] == 1
    assert _op("quantumorm_operation_errors_total", "save", type="DoesNotExist") not in found
    assert found[_op("quantumorm_operation_round_trips_total", "save")] == 4
    assert found[_op("quantumorm_operation_duration_seconds_count", "get")] == 2
    assert found[_op("quantumorm_operation_duration_seconds_bucket", "get", le="+Inf")] == 2
    assert 0 < found[_op("quantumorm_operation_duration_seconds_sum", "get")]
    buckets = sorted((float(dict(labels)["le"]), value) for (name, labels), value
                     in found.items() if name.endswith("_bucket")
                     and dict(labels)["operation"] == "save")
    assert [value for _, value in buckets] == sorted(value for _, value in buckets)
    assert len(buckets) == len(metrics.BUCKETS) + 1
    pool = ("connection", "sqlite"), ("backend", "sqlite"), ("pool", "sqlite")
    assert found[("quantumorm_pool_connections", tuple(sorted((*pool, ("state", "idle")))))] \
        == 1
    assert found[("quantumorm_pool_connections", tuple(sorted((*pool, ("state", "in_use")))))]\
        == 0
    assert found[("quantumorm_pool_max_connections", tuple(sorted(pool)))] == 1
    assert found[("quantumorm_script_reloads_total", ())] == 0
    metrics.reset()
    assert _op("quantumorm_operations_total", "save") not in _scrape(registry)
    prometheus.unregister(registry)
    assert not [name for name, _ in _scrape(registry) if name.startswith("quantumorm")]


def test_cache_and_retry_families(lite: quantumorm.Connection) -> None:
    from quantumorm.cache import stats

    registry = CollectorRegistry()
    prometheus.register(registry)
    counters = stats.counters(LiteUser._meta)
    counters.add(hits=5, misses=2, fills=2, refused_fills=1, query_hits=1)
    metrics.enable()
    metrics.watch.WATCH.note("retry", "ConnectionError")  # (as an executor reports one)
    try:
        found = _scrape(registry)
        cache = {labels: value for (name, labels), value in found.items()
                 if name == "quantumorm_cache_requests_total"}
        assert cache[(("kind", "document"), ("model", "LiteUser"), ("result", "hit"))] == 5
        assert cache[(("kind", "document"), ("model", "LiteUser"), ("result", "miss"))] == 2
        assert cache[(("kind", "query"), ("model", "LiteUser"), ("result", "hit"))] == 1
        fills = {labels: value for (name, labels), value in found.items()
                 if name == "quantumorm_cache_fills_total"}
        assert fills[(("kind", "document"), ("model", "LiteUser"), ("result", "refused"))] == 1
        assert found[("quantumorm_retries_total", (("reason", "ConnectionError"),))] == 1
    finally:
        counters.reset()
        prometheus.unregister(registry)
