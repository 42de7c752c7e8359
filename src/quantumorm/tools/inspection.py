"""The ``inspect`` command: describe Redis collections from the server alone.

Lists the collections of a namespace (or describes one) from their stored schemas
(:mod:`quantumorm.backends.redis.inspection`): no model module is imported, so it works on
a server whose application code is not at hand. A model given as ``module:Class`` only
names its namespace and collection.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from typing import Any

from ..backends.redis.inspection import DEFAULT_SAMPLE, CollectionStats, collections, describe
from .common import Exit, Formatter, UsageError, emit, import_model, open_connection
from .progress import progress_bar
from .targets import redis_client, stored_schema


def register(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    inspect = commands.add_parser(
        "inspect", parents=parents, help="describe Redis collections (no model needed)",
        description="Describe the collections of a namespace on Redis, from their stored "
                    "schemas (no model module is imported): documents, indexes and their "
                    "state (ready, or building until reindex), entries per index, memory "
                    "(MEMORY USAGE of a random sample, scaled), the expiry schedule, change "
                    "stream length and consumer groups.",
        epilog="examples:\n  quantumorm inspect --url redis://localhost:6379/0\n"
               "  quantumorm inspect --collection orders --json\n"
               "  quantumorm inspect myapp.models:Order",
        formatter_class=Formatter)
    inspect.add_argument("model", nargs="?", metavar="MODULE:CLASS",
                         help="a model: describe its collection (the module is imported "
                              "only to read its Meta)")
    inspect.add_argument("--collection", metavar="NAME",
                         help="describe this collection only (default: every collection of "
                              "the namespace)")
    inspect.add_argument("--namespace", default="qorm", metavar="NS",
                         help="the namespace (Meta.namespace; default qorm)")
    inspect.add_argument("--sample", type=int, default=DEFAULT_SAMPLE, metavar="N",
                         help="documents per partition whose memory is measured "
                              f"(default {DEFAULT_SAMPLE}; 0: none)")
    inspect.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.sample < 0:
        raise UsageError("--sample must be 0 or more")
    if args.model and args.collection:
        raise UsageError("give MODULE:CLASS or --collection, not both")
    namespace, names = args.namespace, [args.collection] if args.collection else None
    if args.model:
        meta = import_model(args.model)._meta
        if meta.backend != "redis":
            raise UsageError(f"inspect reads Redis collections ({args.model} is on "
                             f"{meta.backend})")
        namespace, names = meta.namespace, [meta.collection]
    client = redis_client(open_connection(args, "redis", allow_eviction=True))
    if names is None:
        names = collections(client, namespace)
    found = []
    for name in names:
        schema = stored_schema(client, namespace, name)
        with progress_bar(f"inspect {name}", None if args.quiet else sys.stderr,
                          unit="partitions") as progress:
            found.append(describe(client, namespace, name, schema, args.sample, progress))
    emit(args, {"namespace": namespace, "collections": found},
         "\n".join(text(stats) for stats in found)
         or f"no collections in namespace {namespace!r}")
    return Exit.OK


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def text(stats: CollectionStats) -> str:
    """The human description of one collection."""
    lines = [f"{stats.namespace}:{stats.collection}: {stats.documents} documents "
             f"({stats.partitions} partition(s) by {stats.partition_by}; storage format "
             f"{stats.format})",
             "  fields: " + (", ".join(f"{name} ({kind})" for name, kind in
                                       sorted(stats.fields.items())) or "none")]
    if stats.indexes:
        lines.append("  indexes:")
        for index in stats.indexes:
            unique = " unique" if index.unique else ""
            lines.append(f"    {index.name} ({', '.join(index.fields)}){unique}: "
                         f"{index.state}, {index.entries} entries, {_size(index.bytes)}")
    else:
        lines.append("  indexes: none")
    if stats.expiring:
        assert stats.next_expiry is not None
        at = datetime.fromtimestamp(stats.next_expiry, tz=timezone.utc)
        lines.append(f"  expiry: {stats.expiring} document(s) scheduled; next at "
                     f"{at.isoformat(timespec='seconds')} "
                     f"(in {max(0.0, stats.next_expiry - time.time()):.0f} s)")
    else:
        lines.append("  expiry: no document scheduled")
    changes = f"  changes: {stats.stream_length} event(s) kept"
    if stats.groups:
        changes += "; groups: " + ", ".join(
            f"{g.name} ({g.consumers} consumer(s), {g.pending} pending"
            + (f", lag {g.lag})" if g.lag is not None else ")") for g in stats.groups)
    lines.append(changes)
    if stats.estimated_bytes is not None:
        lines.append(f"  memory: about {_size(stats.estimated_bytes)} in documents and meta "
                     f"data (sampled {stats.sampled}, "
                     f"{_size(stats.sampled_bytes / stats.sampled)} each; indexes apart)")
    return "\n".join(lines)


__all__ = ["register", "run", "text"]
