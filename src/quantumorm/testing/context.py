"""What the plugin's ``qorm`` fixture gives a test: :class:`QuantumORMTest`."""

from __future__ import annotations

from typing import Any, TypeVar

from ..connection import Connection
from ..document import Document
from .factories import Factory
from .namespace import IsolatedNamespace

D = TypeVar("D", bound=Document)


class QuantumORMTest:
    """What the ``qorm`` fixture gives a test: its connection, its namespace, a factory."""

    def __init__(self, connection: Connection, url: str, isolation: IsolatedNamespace) -> None:
        self.connection = connection
        #: the Redis server's URL
        self.url = url
        self.isolation = isolation
        #: a factory whose sequence starts at 1 in every test
        self.factory = Factory()

    @property
    def namespace(self) -> str:
        """The test's namespace for models of the default namespace (``qorm.<token>``; a
        model declaring ``Meta.namespace = "app"`` gets ``app.<token>``)."""
        return self.isolation.namespace

    def isolate(self, *models: type[Document]) -> None:
        """Move Redis models defined during the test into its namespaces (those defined
        before it started were moved already; a SQLite or PostgreSQL model raises
        :class:`~quantumorm.errors.UnsupportedOperation`: its table would be left behind)."""
        self.isolation.isolate(*models)

    def build(self, model: type[D], **overrides: Any) -> D:
        return self.factory.build(model, **overrides)

    def make(self, model: type[D], **overrides: Any) -> D:
        return self.factory.make(model, **overrides)

    def make_many(self, model: type[D], n: int, **overrides: Any) -> list[D]:
        return self.factory.make_many(model, n, **overrides)

    async def amake(self, model: type[D], **overrides: Any) -> D:
        return await self.factory.amake(model, **overrides)

    async def amake_many(self, model: type[D], n: int, **overrides: Any) -> list[D]:
        return await self.factory.amake_many(model, n, **overrides)


__all__ = ["QuantumORMTest"]
