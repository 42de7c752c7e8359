"""The ``tail`` command: follow a model's change events (``Model.objects.changes()``).

One line per event, human or JSON (``--json``: JSON lines, one object per event, for
``jq`` and scripts). Starts after the last event (``--from $``, the default), at the oldest
event kept (``--from 0``), or where an earlier run stopped (``--from`` a position, printed
on standard error when the command stops). Stops cleanly on Ctrl-C or SIGTERM, or after
``--count`` events.
"""

from __future__ import annotations

import argparse
import json
import signal
from types import FrameType
from typing import Any

from ..events import DEFAULT_BATCH, ChangeEvent
from .common import CONNECTION, Exit, Formatter, UsageError, jsonable, note
from .targets import resolve


def register(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    tail = commands.add_parser(
        "tail", parents=parents, help="follow a model's change events",
        description="Follow a model's change events (every create, update, delete and "
                    "expiry), as lines or JSON lines (--json). Stops on Ctrl-C or SIGTERM "
                    "(printing the position to resume from), or after --count events.",
        epilog="examples:\n  quantumorm tail myapp.models:Order\n"
               "  quantumorm tail --collection orders --from 0 --json | jq .id\n"
               "  quantumorm tail myapp.models:Order --count 10 --from 0",
        formatter_class=Formatter)
    tail.add_argument("model", nargs="?", metavar="MODULE:CLASS",
                      help="the model (its module is imported); or give --collection")
    tail.add_argument("--collection", metavar="NAME",
                      help="a Redis collection by name: its model is rebuilt from the stored "
                           "schema, no module imported")
    tail.add_argument("--namespace", default="qorm", metavar="NS",
                      help="the collection's namespace (Meta.namespace; default qorm)")
    tail.add_argument("--from", dest="since", default="$", metavar="ID",
                      help="where to start: $ (new events only; default), 0 (the oldest "
                           "kept), or a position printed by an earlier run")
    tail.add_argument("--count", type=int, default=None, metavar="N",
                      help="stop after N events")
    tail.set_defaults(run=run)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def event_dict(event: ChangeEvent[Any], label: str) -> dict[str, Any]:
    when = event.time
    return {"model": label, "op": event.op, "id": event.id, "version": event.version,
            "changed": list(event.changed) if event.changed is not None else None,
            "data": jsonable(event.data), "write_id": event.write_id,
            "partition": event.partition, "stream_id": event.stream_id,
            "time": when.isoformat(timespec="milliseconds") if when else None}


def event_line(event: ChangeEvent[Any], label: str) -> str:
    when = event.time
    stamp = when.isoformat(timespec="milliseconds") if when else "-"
    line = f"{stamp} {event.op:<6} {label} {event.id!r} v{event.version}"
    if event.changed:
        line += f" changed: {', '.join(event.changed)}"
    return line


def run(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be positive")
    model, label, _ = resolve(args, allow_eviction=True)
    # (with --count, small batches: the position printed at the end is then past the last
    # event shown, or close to it on a partitioned collection)
    batch = min(args.count, DEFAULT_BATCH) if args.count else DEFAULT_BATCH
    feed = model.objects.using(CONNECTION).changes(since=args.since, batch=batch)
    previous = signal.signal(signal.SIGTERM, _stop)
    seen = unshown = 0
    try:
        # the first read fixes where "$" is: every event after it is seen
        pending = feed.read_sync()
        note(args, f"following {label} from {args.since} (Ctrl-C to stop)")
        while args.count is None or seen < args.count:
            for i, event in enumerate(pending):
                print(json.dumps(event_dict(event, label)) if args.json
                      else event_line(event, label), flush=True)
                seen += 1
                if args.count is not None and seen >= args.count:
                    unshown = len(pending) - i - 1
                    break
            else:
                pending = feed.read_sync(wait=1.0)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    if unshown:
        note(args, f"stopped after {seen} event(s) ({unshown} more read, not shown)")
    else:
        note(args, f"stopped after {seen} event(s); resume with --from {feed.position}")
    return Exit.OK


__all__ = ["event_dict", "event_line", "register", "run"]
