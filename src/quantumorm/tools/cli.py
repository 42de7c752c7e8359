"""The ``quantumorm`` command (also ``python -m quantumorm``): the entry point.

Each command lives in its own module and registers its subcommand here: ``inspect``
(:mod:`.inspection`), ``verify`` / ``reindex`` / ``repair`` / ``repartition`` / ``sweep``
(:mod:`.maintain`), ``tail`` (:mod:`.follow`), ``health`` / ``capabilities``
(:mod:`.status`). What they share (options, exit codes, connection, model loading) is
:mod:`.common`; progress bars, :mod:`.progress`.

Exit codes: 0 ok, 1 problems found (printed, or as JSON with ``--json``), 2 the command
could not run (bad arguments, a model that cannot be imported, a store that cannot be
reached, a refused operation; with ``--json``, ``{"error": ..., "exit": 2}`` on standard
output as well). A crash is 2 as well, never 1: a script must not read a bug as "problems
found". A reader that closes the output early (``| head``) ends the command with 0 and no
traceback: it chose to stop.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback

from ..errors import QuantumORMError
from ..registry import close_all
from . import follow, inspection, maintain, status
from .common import (
    EXIT_CODES,
    CommandError,
    Exit,
    Formatter,
    UsageError,
    common_options,
    load_model,
)
from .maintain import as_dict, clean
from .progress import progress_bar

COMMANDS = ("inspect", "verify", "reindex", "repair", "repartition", "sweep", "tail",
            "capabilities", "health")

EPILOG = f"""\
{EXIT_CODES}

models: MODULE:CLASS imports the module (myapp.models:Order). inspect, verify and tail
also take a Redis collection by name (--collection orders [--namespace qorm]): the model
is then rebuilt from the schema stored with the collection, and no module is imported.
reindex, repair, sweep and repartition need the model class: they write with the model's
own field classes and Meta (reindex also makes the declaration the stored schema).

examples:
  quantumorm health --url redis://localhost:6379/0
  quantumorm inspect --url redis://localhost:6379/0
  quantumorm verify myapp.models:Order --json
  quantumorm tail --collection orders --from 0 --count 10

the URL: --url, else $QUANTUMORM_URL, else $REDIS_URL. Run `quantumorm COMMAND --help`
for a command's options."""


def parser() -> argparse.ArgumentParser:
    """The whole command line (every subcommand with its options)."""
    top = argparse.ArgumentParser(
        prog="quantumorm",
        description="Inspect, check, repair and follow QuantumORM collections, and probe the "
                    "store's health.",
        epilog=EPILOG, formatter_class=Formatter)
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parents = [common_options()]
    inspection.register(commands, parents)
    maintain.register(commands, parents)
    follow.register(commands, parents)
    status.register(commands, parents)
    for sub in commands.choices.values():
        sub.set_defaults(subparser=sub)  # (for usage errors found after parsing)
        if sub.epilog:
            sub.epilog = f"{sub.epilog}\n\n{EXIT_CODES}"
    return top


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    cli = parser()
    args = cli.parse_args(argv)  # (argparse exits with 2 on a usage error)
    chosen: argparse.ArgumentParser = args.subparser
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # (a closed pipe shows here, not at exit)
        return code
    except BrokenPipeError:
        return _reader_left()
    except UsageError as exc:
        chosen.print_usage(sys.stderr)
        return _failed(args, f"{chosen.prog}: error: {exc}", str(exc))
    except CommandError as exc:
        return _failed(args, f"error: {exc}", str(exc))
    except (QuantumORMError, ValueError) as exc:  # (ValueError: an argument refused)
        return _failed(args, f"error: {type(exc).__name__}: {exc}",
                       f"{type(exc).__name__}: {exc}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return Exit.FAILED
    except Exception:  # a crash must not look like "problems found" (1) to a script
        traceback.print_exc()
        return Exit.FAILED
    finally:
        close_all()


def _failed(args: argparse.Namespace, line: str, error: str) -> int:
    """The command could not run: ``line`` on standard error and, with ``--json``, the
    error as a JSON object on standard output (a script reading it gets JSON either way)."""
    try:
        print(line, file=sys.stderr)
        if getattr(args, "json", False):
            print(json.dumps({"error": error, "exit": int(Exit.FAILED)}), flush=True)
    except BrokenPipeError:
        _reader_left()
    return Exit.FAILED


def _reader_left() -> int:
    """The reader of the output closed it (``quantumorm ... | head -1``): it chose to stop,
    so exit 0 quietly. Python's own recipe: the rest of the output goes to os.devnull, so
    the flush at exit raises no second BrokenPipeError (on standard error too, when that
    pipe is closed as well)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            except (OSError, ValueError):  # (a stream with no file: nothing to redirect)
                pass
    return Exit.OK


# (kept importable from here: earlier versions of this module defined them)
__all__ = ["COMMANDS", "as_dict", "clean", "load_model", "main", "parser", "progress_bar"]
