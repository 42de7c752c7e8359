"""Change a Redis collection's partition count, on a connection::

    from quantumorm.tools.repartition import repartition

    class Order(Document):           # the model as it will be: Meta.partitions = 16
        ...
    report = repartition(Order, from_partitions=4, progress=print)

or ``python -m quantumorm repartition myapp.models:Order --from 4 --url ...``. The move itself
(what is read and written, how an interrupted run resumes) is
:mod:`quantumorm.backends.redis.repartition`; this module only picks the connection and runs
it there, blocking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import logs
from ..backends.redis.repartition import DEFAULT_BATCH, Progress, RepartitionError, moves
from ..connection import Connection, connection_for, get_connection
from ..errors import ConfigurationError


def repartition(model: Any, from_partitions: int, *, from_partition_by: str | None = None,
                connection: Connection | str | None = None, batch: int = DEFAULT_BATCH,
                progress: Callable[[Progress], Any] | None = None,
                using: str | None = None) -> Progress:
    """Move ``model``'s documents from ``from_partitions`` partitions (and the
    ``partition_by`` rule ``from_partition_by``, by default the model's) to the layout its
    ``Meta`` declares now, on ``connection`` (a :class:`~quantumorm.Connection`, or a
    connection's name; by default the model's). Returns the final :class:`Progress`; the
    collection must not be written meanwhile. ``using`` (a connection's name) is the
    keyword this function had before it took ``connection``."""
    if using is not None:
        if connection is not None:
            raise ValueError("pass connection or using, not both")
        connection = using
    op = moves(model, from_partitions, from_partition_by=from_partition_by, batch=batch,
               progress=progress)
    chosen = get_connection(connection) if isinstance(connection, str) else connection
    target = connection_for(model, chosen)
    if target.kind != "redis":
        op.close()
        raise ConfigurationError("repartition moves Redis collections")
    return target.run(lambda backend: logs.tool("repartition", getattr(model, "__name__", "?"),
                                                op))


__all__ = ["DEFAULT_BATCH", "Progress", "RepartitionError", "repartition"]
