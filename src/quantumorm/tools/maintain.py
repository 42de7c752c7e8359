"""The maintenance commands: ``verify``, ``reindex``, ``repair``, ``repartition``, ``sweep``.

Each runs the library's own operation (``Model.objects.verify_sync()`` ..., the
:mod:`.repartition` tool, ``Model.objects.sweep_sync()``) on the command's connection, with
progress on standard error. ``verify`` also takes a collection by name (``--collection``):
its model is then rebuilt from the stored schema (:mod:`.stored`, which says why the others
need the model class).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from ..maintenance import ReindexReport, RepairReport, VerifyReport
from .common import (
    CONNECTION,
    CommandError,
    Exit,
    Formatter,
    UsageError,
    emit,
    import_model,
    jsonable,
    note,
    open_connection,
)
from .progress import progress_bar
from .repartition import Progress as MoveProgress
from .repartition import repartition
from .targets import resolve

#: sweep passes at most (documents expiring as fast as they are swept would never end it)
MAX_PASSES = 1000

Report = VerifyReport | ReindexReport | RepairReport | MoveProgress


def clean(report: Report) -> bool:
    if isinstance(report, ReindexReport):
        return report.ready
    if isinstance(report, MoveProgress):
        return report.done
    return report.ok


def as_dict(report: Report) -> dict[str, Any]:
    out: dict[str, Any] = jsonable(dataclasses.asdict(report))
    out["ok"] = clean(report)
    return out


def _finish(args: argparse.Namespace, report: Report) -> int:
    emit(args, as_dict(report), str(report))
    return Exit.OK if clean(report) else Exit.PROBLEMS


def _model_arguments(parser: argparse.ArgumentParser, stored: bool) -> None:
    if stored:
        parser.add_argument("model", nargs="?", metavar="MODULE:CLASS",
                            help="the model (its module is imported); or give --collection")
        parser.add_argument("--collection", metavar="NAME",
                            help="a Redis collection by name: its model is rebuilt from the "
                                 "stored schema, no module imported")
        parser.add_argument("--namespace", default="qorm", metavar="NS",
                            help="the collection's namespace (Meta.namespace; default qorm)")
    else:
        parser.add_argument("model", metavar="MODULE:CLASS",
                            help="the model (its module is imported)")
    parser.add_argument("--batch", type=int, default=500, metavar="N",
                        help="documents per round trip (default 500)")


def register(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    verify = commands.add_parser(
        "verify", parents=parents, help="check documents, meta data and indexes",
        description="Check a collection's documents, meta data and indexes; changes "
                    "nothing, and writers may go on meanwhile. Exit 1 when problems are "
                    "found (listed; as JSON with --json).",
        epilog="examples:\n  quantumorm verify myapp.models:Order --url redis://localhost\n"
               "  quantumorm verify --collection orders --json",
        formatter_class=Formatter)
    _model_arguments(verify, stored=True)
    verify.set_defaults(run=run_maintenance)

    reindex = commands.add_parser(
        "reindex", parents=parents, help="build the indexes that are building (online)",
        description="Build the model's indexes that are building (added to a collection "
                    "with data, or changed), or rebuild them all when none is; online, and "
                    "resumed where an interrupted run stopped. The model's declaration "
                    "becomes the stored schema. Exit 1 when an index is not ready after.",
        epilog="example:\n  quantumorm reindex myapp.models:Order --batch 1000",
        formatter_class=Formatter)
    _model_arguments(reindex, stored=False)
    reindex.add_argument("--allow-eviction", action="store_true",
                         help="run on a server whose maxmemory-policy is allkeys-*")
    reindex.set_defaults(run=run_maintenance)

    repair = commands.add_parser(
        "repair", parents=parents, help="fix what verify finds, then verify again",
        description="Fix what verify finds (missing or stale index entries, meta data), "
                    "then verify again. Exit 1 when problems remain (those it cannot fix "
                    "alone: corrupt documents, unique duplicates, an unsafe eviction policy).",
        epilog="example:\n  quantumorm repair myapp.models:Order",
        formatter_class=Formatter)
    _model_arguments(repair, stored=False)
    repair.set_defaults(run=run_maintenance)

    move = commands.add_parser(
        "repartition", parents=parents, help="move a Redis collection to new partitions",
        description="Move a Redis collection's documents to the partition count its "
                    "model declares now. Stop writes to the collection first.",
        epilog="example:\n  quantumorm repartition myapp.models:Order --from 4",
        formatter_class=Formatter)
    _model_arguments(move, stored=False)
    move.add_argument("--from", dest="from_partitions", type=int, required=True,
                      metavar="N", help="the partition count the data has now")
    move.add_argument("--from-partition-by", choices=("id", "tag"), default=None,
                      help="the partition_by rule the data has now (default: the model's)")
    move.set_defaults(run=run_repartition)

    sweep = commands.add_parser(
        "sweep", parents=parents, help="purge what expired documents left behind",
        description="Run the TTL sweeper: purge the index entries and ids that expired "
                    "documents left behind (writes also sweep a few each time), in passes "
                    "of --limit per partition until a pass finds nothing.",
        epilog="example (cron):\n  quantumorm sweep myapp.models:Session --quiet",
        formatter_class=Formatter)
    sweep.add_argument("model", metavar="MODULE:CLASS",
                       help="the model (its module is imported)")
    sweep.add_argument("--limit", type=int, default=1000, metavar="N",
                       help="documents purged per partition and pass (default 1000)")
    sweep.set_defaults(run=run_sweep)


def _check_batch(args: argparse.Namespace) -> None:
    if args.batch < 1:
        raise UsageError("--batch must be positive")


def run_maintenance(args: argparse.Namespace) -> int:
    _check_batch(args)
    # verify and repair must be able to see (and report) an unsafe eviction policy;
    # reindex writes whole collections and refuses it like any write
    allow = args.command != "reindex" or args.allow_eviction
    # (verify reads only: it must not register a declaration the store does not have)
    model, label, _ = resolve(args, read_only=args.command == "verify", allow_eviction=allow)
    with progress_bar(f"{args.command} {label}",
                      None if args.quiet else sys.stderr) as progress:
        method = getattr(model.objects.using(CONNECTION), f"{args.command}_sync")
        report: Report = method(batch_size=args.batch, progress=progress)
    return _finish(args, report)


def run_repartition(args: argparse.Namespace) -> int:
    _check_batch(args)
    model = import_model(args.model)
    connection = open_connection(args, model._meta.backend)

    def moved(progress: MoveProgress) -> None:
        note(args, str(progress))
    try:
        report = repartition(model, args.from_partitions,
                             from_partition_by=args.from_partition_by,
                             connection=connection, batch=args.batch, progress=moved)
    except ValueError as exc:
        raise CommandError(f"{type(exc).__name__}: {exc}") from exc
    return _finish(args, report)


def run_sweep(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be positive")
    model, _, _ = resolve(args)
    objects = model.objects.using(CONNECTION)
    purged = passes = 0
    while passes < MAX_PASSES:
        found = int(objects.sweep_sync(limit=args.limit))
        passes += 1
        purged += found
        if found == 0:
            break
        note(args, f"sweep {model.__name__}: pass {passes}: purged {found}")
    emit(args, {"model": model.__name__, "purged": purged, "passes": passes, "ok": True},
         f"{model.__name__}: swept; purged {purged} expired document(s) in {passes} pass(es)")
    return Exit.OK


__all__ = ["as_dict", "clean", "register"]
