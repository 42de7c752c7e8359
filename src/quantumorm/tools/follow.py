"""The ``tail`` command: follow a model's change events (``Model.objects.changes()``).

One line per event, human or JSON (``--json``: JSON lines, one object per event, for
``jq`` and scripts). Starts after the last event (``--from $``, the default), at the oldest
event kept (``--from 0``), or where an earlier run stopped (``--from`` a position, printed
on standard error when the command stops: past the last event printed, so that a stop in
the middle of a batch resumes at the first event not shown). Stops cleanly on Ctrl-C or
SIGTERM, or after ``--count`` events.
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


#: the largest sequence part of a stream id (``ms-seq``)
_MAX_SEQ = 2 ** 64 - 1


def before(stream_id: str) -> str:
    """The stream id just before ``stream_id``: a feed resumed there reads ``stream_id``
    next (a feed reads after its position)."""
    ms, _, seq = stream_id.partition("-")
    if int(seq or 0) > 0:
        return f"{ms}-{int(seq) - 1}"
    return f"{int(ms) - 1}-{_MAX_SEQ}" if int(ms) > 0 else "0-0"


def start_of(after: str | None, batch: list[ChangeEvent[Any]]) -> list[str] | None:
    """Where a feed stood before reading ``batch`` (one position per partition), from where
    it stands after (``after``): before the batch's first event of each partition it read
    from; the same elsewhere. None when the feed has no position."""
    if after is None:
        return None
    positions = after.split(",")
    for event in reversed(batch):  # (the first event of each partition is set last)
        if event.stream_id and 0 <= event.partition < len(positions):
            positions[event.partition] = before(event.stream_id)
    return positions


def run(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        raise UsageError("--count must be positive")
    model, label, _ = resolve(args, allow_eviction=True, read_only=True)
    # (with --count, small batches: fewer events read and not shown)
    batch = min(args.count, DEFAULT_BATCH) if args.count else DEFAULT_BATCH
    feed = model.objects.using(CONNECTION).changes(since=args.since, batch=batch)
    previous = signal.signal(signal.SIGTERM, _stop)
    seen = 0
    # the resume position: past the last event printed, per partition (the feed's own
    # position is past every event read, shown or not); None until the first read
    shown: list[str] | None = None
    try:
        # the first read fixes where "$" is: every event after it is seen
        pending = feed.read_sync()
        shown = start_of(feed.position, pending)
        note(args, f"following {label} from {args.since} (Ctrl-C to stop)")
        while args.count is None or seen < args.count:
            for event in pending:
                print(json.dumps(event_dict(event, label)) if args.json
                      else event_line(event, label), flush=True)
                seen += 1
                if shown is not None and event.stream_id:
                    shown[event.partition] = event.stream_id
                if args.count is not None and seen >= args.count:
                    break
            else:
                pending = feed.read_sync(wait=1.0)
                shown = start_of(feed.position, pending)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    if shown is None:
        note(args, f"stopped before the first read; start again with --from {args.since}")
    else:
        note(args, f"stopped after {seen} event(s); resume with --from {','.join(shown)}")
    return Exit.OK


__all__ = ["before", "event_dict", "event_line", "register", "run", "start_of"]
