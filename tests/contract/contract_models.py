"""The contract suite's models, declared once and built for every backend, and its helpers."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import quantumorm
from quantumorm import (
    ArrayField,
    BooleanField,
    DateTimeField,
    DecimalField,
    Document,
    FloatField,
    IntField,
    JSONField,
    StringField,
    UUIDField,
)


def _declare(backend: str) -> SimpleNamespace:
    def meta(**options: Any) -> type:
        return type("Meta", (), {"backend": backend, "namespace": "contract", **options})

    class Item(Document):
        s = StringField(indexed=True)
        n = IntField(indexed=True)
        f = FloatField(indexed=True)
        b = BooleanField(indexed=True)
        t = DateTimeField(indexed=True)
        d = DecimalField(indexed=True)
        u = UUIDField(indexed=True)
        tags = ArrayField(StringField(), indexed=True)
        j = JSONField()
        note = StringField()  # unindexed: answered by a scan on Redis
        Meta = meta(collection="items", indexes=[("s", "n")])

    class Account(Document):
        email = StringField(required=True, unique=True, max_length=40)
        age = IntField(min_value=0, indexed=True)
        Meta = meta(collection="accounts")

    return SimpleNamespace(Item=Item, Account=Account)


#: the backends the contract suite runs on
STORES = ("redis", "sqlite", "postgres")
MODELS = {backend: _declare(backend) for backend in STORES}


async def run(obj: Any, name: str, mode: str, /, *args: Any, **kwargs: Any) -> Any:
    """``await obj.name(...)`` in async mode, ``obj.name_sync(...)`` in sync mode, run in a
    worker thread: a blocking call is refused on the thread running the test's event loop."""
    if mode == "sync":
        return await asyncio.to_thread(getattr(obj, f"{name}_sync"), *args, **kwargs)
    return await getattr(obj, name)(*args, **kwargs)


def open_store(backend: str, request: Any, **extra: Any) -> None:
    """Open the default connection of ``backend`` for the contract tests (the store is not
    emptied: the ``store`` fixture did that)."""
    if backend == "redis":
        quantumorm.create_connection(backend="redis", url=request.getfixturevalue("redis_url"),
                                     name="contract-redis", make_default=True, **extra)
    elif backend == "postgres":
        quantumorm.create_connection(backend="postgres",
                                     url=request.getfixturevalue("postgres_url"),
                                     name="contract-postgres", make_default=True, **extra)
    else:
        quantumorm.create_connection(backend="sqlite", url="sqlite://", name="contract-sqlite",
                                     make_default=True, **extra)
