"""Model classes made at runtime are freed once the application drops them: nothing in
QuantumORM (connections, backends, planners, caches) keeps them alive."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
from helpers import MODES, call

import quantumorm
from quantumorm import Document, IntField, StringField


def make(i: int, backend: str) -> Any:
    meta = type("Meta", (), {"backend": backend, "collection": f"runtime_{i}"})
    return type(f"Runtime{i}", (Document,), {
        "name": StringField(indexed=True), "n": IntField(indexed=True), "Meta": meta})


async def use(model: Any, mode: str) -> None:
    doc = await call(model(name="x", n=1), "save", mode)
    doc.n = 2
    await call(doc, "save", mode)
    assert await call(model.objects.filter(name="x", n__gte=2), "count", mode) == 1
    assert len(await call(model.objects.filter(n__in=[1, 2]).order_by("-n"), "all", mode)) == 1
    await call(model.objects.filter(name="x"), "explain", mode)
    await call(model.objects, "get_many", mode, [doc.id])
    await call(doc, "delete", mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", ["redis", "sqlite"])
async def test_runtime_models_are_freed(conn: Any, backend: str, mode: str) -> None:
    if backend == "sqlite":
        quantumorm.create_connection(backend="sqlite", url="sqlite://", name="lifetime-sqlite",
                                     make_default=True)
    refs = []
    for i in range(100):
        model = make(i, backend)
        await use(model, mode)
        refs.append(weakref.ref(model))
        del model
    # (in sync mode the calls run in a worker thread, which may still hold the last call's
    # objects for a moment after handing its result over: give it that moment)
    for _ in range(100):
        gc.collect()
        if all(ref() is None for ref in refs):
            break
        await asyncio.sleep(0.01)
    alive = [ref() for ref in refs if ref() is not None]
    holders = [type(r).__name__ for model in alive for r in gc.get_referrers(model)
               if r is not alive]
    assert not alive, holders
