"""What a command works on: the model (imported as ``module:Class``, or rebuilt from a Redis
collection's stored schema) and the connection it runs on.

A model's first use registers its declaration: it evolves the stored schema (Redis) or
creates the tables (SQLite, PostgreSQL). A read-only command (``verify``, ``tail``) must not
write, so a model given as ``module:Class`` is used only when its declaration is the stored
schema already (the same fingerprint): otherwise the command refuses, as it does for a
collection given by name whose stored schema cannot be declared exactly (:mod:`.stored`).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from ..backends.redis.inspection import read_schema
from ..connection import Connection
from ..engine import drive
from ..errors import BackendError
from ..schema import Schema, declared
from .common import CommandError, UsageError, import_model, open_connection
from .stored import model_from_schema


def redis_client(connection: Connection) -> Any:
    """The blocking redis-py client of a Redis connection (CommandError for another
    backend: collections by name are found on Redis only)."""
    if connection.kind != "redis":
        raise CommandError(f"collections by name are read from Redis (this is "
                           f"{connection.kind}): pass the model as module:Class")
    return connection.store.sync_executor().client


def stored_schema(client: Any, namespace: str, collection: str) -> Schema:
    schema = read_schema(client, namespace, collection)
    if schema is None:
        raise CommandError(f"no collection {namespace}:{collection} (no stored schema): "
                           "run `quantumorm inspect` to list the collections")
    return schema


def schema_of(connection: Connection, model: Any) -> Schema | None:
    """The schema stored for ``model``'s collection, read without writing anything; None
    when there is none (on SQL stores: no schema table yet, or no row for the table)."""
    options = model._meta
    if connection.kind == "redis":
        return read_schema(redis_client(connection), options.namespace, options.collection)
    executor = connection.store.sync_executor()
    try:
        if connection.kind in ("sqlite", "postgres"):
            # The backend's modules, by name: its package is loaded already (this connection
            # is open on it), and naming it at the top would make every command, even
            # --help, need the PostgreSQL driver.
            lifecycle = importlib.import_module(f"quantumorm.backends.{connection.kind}.lifecycle")
            layout = importlib.import_module(f"quantumorm.backends.{connection.kind}.schema")
            found: Schema | None = drive.run(
                lifecycle.read_schema(layout.Layout(options)), executor)
            return found
    except BackendError as exc:
        said = str(exc)
        if "no such table" in said or "does not exist" in said:  # (SQLite, PostgreSQL)
            return None
        raise
    raise CommandError(f"cannot read the stored schema of a {connection.kind} store")


def check_stored(connection: Connection, model: Any, path: str) -> None:
    """CommandError unless ``model``'s declaration is its collection's stored schema (see
    the module docstring): using the model could not write then."""
    options = model._meta
    stored = schema_of(connection, model)
    if stored is None:
        raise CommandError(f"no collection {options.namespace}:{options.collection} (no "
                           f"stored schema) for {path}: a read-only command does not create "
                           "it")
    if stored.fingerprint != declared(options).fingerprint:
        raise CommandError(f"the stored schema differs from {path}; run reindex to apply the "
                           "declaration, or pass --collection to read the stored one")


def resolve(args: argparse.Namespace, read_only: bool = False,
            **redis_options: Any) -> tuple[Any, str, Connection]:
    """The model, its label in messages, and the open connection (``redis_options`` apply
    when the backend is Redis). ``read_only``: the command must not write, so a model
    given as ``module:Class`` must be the stored schema already (:func:`check_stored`)."""
    collection = getattr(args, "collection", None)
    if args.model and collection:
        raise UsageError("give MODULE:CLASS or --collection, not both")
    if args.model:
        model = import_model(args.model)
        backend = model._meta.backend
        connection = open_connection(args, backend, **redis_options)
        if read_only:
            check_stored(connection, model, args.model)
        return model, model.__name__, connection
    if not collection:
        raise UsageError("give the model as MODULE:CLASS, or --collection NAME")
    connection = open_connection(args, "redis", **redis_options)
    schema = stored_schema(redis_client(connection), args.namespace, collection)
    return model_from_schema(args.namespace, collection, schema), collection, connection


__all__ = ["check_stored", "redis_client", "resolve", "schema_of", "stored_schema"]
