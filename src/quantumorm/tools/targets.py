"""What a command works on: the model (imported as ``module:Class``, or rebuilt from a Redis
collection's stored schema) and the connection it runs on."""

from __future__ import annotations

import argparse
from typing import Any

from ..backends.redis.inspection import read_schema
from ..connection import Connection
from ..schema import Schema
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


def resolve(args: argparse.Namespace, **redis_options: Any) -> tuple[Any, str, Connection]:
    """The model, its label in messages, and the open connection (``redis_options`` apply
    when the backend is Redis)."""
    collection = getattr(args, "collection", None)
    if args.model and collection:
        raise UsageError("give MODULE:CLASS or --collection, not both")
    if args.model:
        model = import_model(args.model)
        backend = model._meta.backend
        connection = open_connection(args, backend, **redis_options)
        return model, model.__name__, connection
    if not collection:
        raise UsageError("give the model as MODULE:CLASS, or --collection NAME")
    connection = open_connection(args, "redis", **redis_options)
    schema = stored_schema(redis_client(connection), args.namespace, collection)
    return model_from_schema(args.namespace, collection, schema), collection, connection


__all__ = ["redis_client", "resolve", "stored_schema"]
