"""``python -m quantumorm verify|reindex|repair|repartition module:Model --url URL``: the
maintenance operations from a shell, with a progress bar and exit codes scripts can rely on.

Exit codes: 0 when the collection is clean (verify found nothing; reindex made every index
ready; repair left nothing behind; repartition moved everything), 1 when problems remain
(printed, or as JSON with ``--json``), 2 when the command could not run (bad arguments, a
model that cannot be imported, a server that cannot be reached, a repartition refused).

The progress bar is rich's when rich is installed (``pip install 'quantumorm[cli]'``) and
standard error is a terminal; otherwise a line per tenth of the way, so that logs stay
readable. Written by hand only for that fallback: rich does the real bar.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from ..connection import create_connection
from ..errors import QuantumORMError
from ..maintenance import Progress, ReindexReport, RepairReport, VerifyReport
from .repartition import Progress as MoveProgress
from .repartition import repartition

COMMANDS = ("verify", "reindex", "repair", "repartition")
CONNECTION = "quantumorm-cli"


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 2
    except Exception:  # a crash must not look like "problems found" (1) to a script
        traceback.print_exc()
        return 2


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m quantumorm",
        description="Check, build and repair a model's documents and indexes.")
    parser.add_argument("command", choices=COMMANDS, help=(
        "verify: check documents, meta data and indexes (changes nothing); reindex: build "
        "the indexes that are building (or rebuild all), online; repair: fix what verify "
        "finds, then verify again; repartition: move a Redis collection's documents to the "
        "partition count its model declares now (stop writes first)"))
    parser.add_argument("model", help="the model, as module:Class (the module is imported)")
    parser.add_argument("--url", default=os.environ.get("QUANTUMORM_URL")
                        or os.environ.get("REDIS_URL"),
                        help="the store's URL (default: $QUANTUMORM_URL, then $REDIS_URL)")
    parser.add_argument("--backend", default=None,
                        help="the backend of the URL (default: the model's Meta.backend)")
    parser.add_argument("--batch", type=int, default=500, help="documents per round trip")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress")
    parser.add_argument("--allow-eviction", action="store_true",
                        help="reindex on a server whose maxmemory-policy is allkeys-* "
                             "(verify and repair always run there, and report it)")
    parser.add_argument("--from", dest="from_partitions", type=int, default=None,
                        help="repartition: the partition count the data has now")
    parser.add_argument("--from-partition-by", choices=("id", "tag"), default=None,
                        help="repartition: the partition_by rule the data has now "
                             "(default: the model's)")
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error("--batch must be positive")
    moving = args.command == "repartition"
    if moving and args.from_partitions is None:
        parser.error("repartition needs --from (the partition count the data has now)")
    if not moving and (args.from_partitions is not None or args.from_partition_by):
        parser.error("--from and --from-partition-by belong to repartition")
    if not args.url:
        parser.error("--url (or QUANTUMORM_URL / REDIS_URL) is required")
    try:
        model = load_model(args.model)
    except Exception as exc:  # (importing the module runs its code: anything can fail)
        parser.error(f"cannot load the model {args.model!r}: {type(exc).__name__}: {exc}")
    backend = args.backend or model._meta.backend
    options: dict[str, Any] = {}
    if backend == "redis":
        # verify and repair must be able to see (and report) an unsafe eviction policy;
        # reindex and repartition write whole collections and refuse it like any write
        options["allow_eviction"] = args.allow_eviction or args.command in ("verify", "repair")
    try:
        connection = create_connection(backend, args.url, name=CONNECTION, **options)
    except QuantumORMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if moving:
            report: Any = repartition(
                model, args.from_partitions, from_partition_by=args.from_partition_by,
                connection=connection, batch=args.batch,
                progress=None if args.quiet else _moved)
        else:
            with progress_bar(f"{args.command} {model.__name__}",
                              None if args.quiet else sys.stderr) as progress:
                method = getattr(model.objects.using(CONNECTION), f"{args.command}_sync")
                report = method(batch_size=args.batch, progress=progress)
    except (QuantumORMError, ValueError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    finally:
        connection.close()
    print(json.dumps(as_dict(report), indent=2, default=str) if args.json else report)
    return 0 if clean(report) else 1


def load_model(path: str) -> Any:
    """``module:Class`` -> the class (``module.Class`` is accepted too)."""
    module, _, name = path.partition(":") if ":" in path else path.rpartition(".")
    if not module or not name:
        raise ValueError("expected module:Class")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    if not hasattr(target, "objects") or not hasattr(target, "_meta"):
        raise ValueError(f"{path} is not a QuantumORM model")
    return target


def _moved(progress: MoveProgress) -> None:
    print(progress, file=sys.stderr, flush=True)


def clean(report: VerifyReport | ReindexReport | RepairReport | MoveProgress) -> bool:
    if isinstance(report, ReindexReport):
        return report.ready
    if isinstance(report, MoveProgress):
        return report.done
    return report.ok


def as_dict(report: Any) -> dict[str, Any]:
    out = dataclasses.asdict(report)
    out["ok"] = clean(report)
    return out


@contextmanager
def progress_bar(label: str, stream: TextIO | None) -> Iterator[Progress | None]:
    """A ``progress(done, total)`` callback drawing on ``stream`` (None: no progress)."""
    if stream is None:
        yield None
        return
    try:
        if not stream.isatty():
            raise ImportError
        from rich.progress import Progress as Bar
    except ImportError:
        yield _lines(label, stream)
        return
    with Bar(transient=False) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
        yield update


def _lines(label: str, stream: TextIO) -> Callable[[int, int], None]:
    """The plain fallback: one line per tenth of the way."""
    started, shown = time.monotonic(), [-1]

    def update(done: int, total: int) -> None:
        tenth = 10 if total == 0 else min(10, done * 10 // total)
        if tenth > shown[0]:
            shown[0] = tenth
            print(f"{label}: {done}/{total} documents ({time.monotonic() - started:.1f} s)",
                  file=stream, flush=True)
    return update
