"""The ``health`` and ``capabilities`` commands: the store's health report
(:meth:`Connection.health_sync`) and the backend capability matrix
(:func:`quantumorm.capabilities`)."""

from __future__ import annotations

import argparse
from typing import Any

from ..backends.matrix import capabilities
from ..errors import QuantumORMError
from ..health import unreachable
from .common import (
    Exit,
    Formatter,
    UsageError,
    backend_of_url,
    emit,
    need_url,
    open_connection,
)


def register(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    health = commands.add_parser(
        "health", parents=parents, help="probe the store: roles, versions, latency, policy",
        description="Probe every server of the store (each master and replica of a Redis "
                    "Cluster, the master Sentinel names, the one server of a URL; a SQLite "
                    "file; a PostgreSQL server): role, version, latency, maxmemory-policy "
                    "and whether it may evict QuantumORM's keys, replication, memory. Exit 0 "
                    "when healthy (warnings allowed), 1 when a problem is found, 2 when the "
                    "store cannot be reached.",
        epilog="examples:\n  quantumorm health --url redis+cluster://10.0.0.1:7000\n"
               "  quantumorm health --url postgresql://app@db/app --json",
        formatter_class=Formatter)
    health.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="connect and socket timeout (default 5)")
    health.set_defaults(run=run_health)

    matrix = commands.add_parser(
        "capabilities", parents=parents, help="what each backend supports",
        description="The capability matrix of every registered backend: features, lookups "
                    "and index kinds (no connection is opened).",
        epilog="example:\n  quantumorm capabilities --json",
        formatter_class=Formatter)
    matrix.set_defaults(run=run_capabilities)


def run_health(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    url = need_url(args)
    backend = args.backend or backend_of_url(url)
    options: dict[str, Any] = {}
    if backend == "redis":
        options = {"connect_timeout": args.timeout, "socket_timeout": args.timeout}
    try:
        report = open_connection(args, backend, **options).health_sync()
    except QuantumORMError as exc:
        report = unreachable(backend, url, exc)
        emit(args, report.to_dict(), str(report))
        return Exit.FAILED
    emit(args, report.to_dict(), str(report))
    return Exit.OK if report.ok else Exit.PROBLEMS


def run_capabilities(args: argparse.Namespace) -> int:
    matrix = capabilities()
    names = list(matrix.backends)
    features = {label: {name: cell == "yes" for name, cell in zip(names, cells, strict=True)}
                for label, cells in matrix.rows()}
    emit(args, {"backends": names, "features": features}, str(matrix))
    return Exit.OK


__all__ = ["register", "run_capabilities", "run_health"]
