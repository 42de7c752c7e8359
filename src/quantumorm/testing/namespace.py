"""One test's own namespace: models moved into it for the test, its keys deleted after.

A model's keys all start with its namespace (``{ns:coll:p0}:d:<id>``, ``ns:cache:coll``...,
see :mod:`quantumorm.backends.redis.keys`). :class:`IsolatedNamespace` gives each model a
namespace of its own for one test, ``<its namespace>.t<random hex>``, by replacing its
options with a copy that differs only by the namespace (the state a connection keeps about a
model hangs off the options, so the copy starts with none), and puts the original options back
afterwards. :meth:`IsolatedNamespace.delete_keys` then deletes the keys of those namespaces,
and nothing else: tests can share a server (and run side by side) without FLUSHDB. Only
Redis models are moved: on SQLite and PostgreSQL a namespace names a table, which would be
left behind in the user's database after every test.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

from ..document import Document
from ..errors import UnsupportedOperation
from ..options import ModelOptions

SCAN_COUNT = 1000
REDIS = "redis"  # the backend whose keys delete_keys deletes


def concrete_models(root: type[Document] = Document) -> list[type[Document]]:
    """Every non-abstract model class defined so far (subclasses of ``root``)."""
    found: list[type[Document]] = []
    stack = list(root.__subclasses__())
    seen: set[type[Document]] = set()
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        if "_meta" in vars(model):
            found.append(model)
        stack.extend(model.__subclasses__())
    return found


class IsolatedNamespace:
    """The namespaces of one test (one per original namespace, sharing one random token)."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or f"t{secrets.token_hex(5)}"
        self._saved: dict[type[Document], ModelOptions] = {}
        self._used: set[str] = set()

    def name_for(self, namespace: str) -> str:
        """The test's namespace standing in for ``namespace``."""
        return f"{namespace}.{self.token}"

    @property
    def namespace(self) -> str:
        """The test's namespace for models of the default namespace (``qorm``)."""
        return self.name_for("qorm")

    def namespaces(self) -> set[str]:
        """The namespaces the test's models were given (until :meth:`delete_keys`)."""
        return set(self._used)

    def isolate(self, *models: type[Document]) -> None:
        """Move ``models`` into the test's namespaces (a model already moved stays). Redis
        models only: on SQLite and PostgreSQL the namespace names a table, which
        :meth:`delete_keys` would leave behind in the user's database, so a model of those
        backends raises :class:`~quantumorm.errors.UnsupportedOperation`."""
        for model in models:
            if model in self._saved or "_meta" not in vars(model):
                continue
            if model._meta.backend != REDIS:
                raise UnsupportedOperation(
                    model._meta.backend, "test namespaces",
                    f"{model.__name__} keeps its table: give the test a database of its own "
                    "(an in-memory SQLite database, or drop its documents after the test)")
            options = model._meta
            self._saved[model] = options
            namespace = self.name_for(options.namespace)
            self._used.add(namespace)
            model._meta = dataclasses.replace(options, namespace=namespace)

    def isolate_all(self) -> None:
        """Move every Redis model defined so far (the others keep their namespaces: see
        :meth:`isolate`)."""
        self.isolate(*(model for model in concrete_models() if model._meta.backend == REDIS))

    def restore(self) -> None:
        """Give every moved model its own options back (the test's keys stay until
        :meth:`delete_keys`)."""
        saved, self._saved = self._saved, {}
        for model, options in saved.items():
            model._meta = options

    def delete_keys(self, client: Any) -> int:
        """Delete every key of the test's namespaces through ``client`` (a redis-py client or
        non-transactional pipeline factory: anything with ``scan_iter`` and ``unlink``);
        returns how many. Keys of other namespaces are never touched."""
        deleted = 0
        for namespace in sorted(self._used | {self.namespace}):
            # the namespace is [A-Za-z0-9_.-]: no glob character to escape
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"*{namespace}:*", count=SCAN_COUNT):
                batch.append(key)
                if len(batch) >= SCAN_COUNT:
                    deleted += int(client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(client.unlink(*batch))
        return deleted


__all__ = ["IsolatedNamespace", "concrete_models"]
