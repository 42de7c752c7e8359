"""What every command of the command line shares: exit codes, the options every command
takes (``--url``, ``--backend``, ``--json``, ``--quiet``), opening the connection, finding
the model (``module:Class``, or rebuilt from the stored schema: :mod:`.stored`), and
printing a report as text or JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
from enum import IntEnum
from typing import Any

from ..connection import Connection, create_connection
from ..errors import QuantumORMError

#: the name of the connection a command opens (models rebuilt from a schema use it)
CONNECTION = "quantumorm-cli"
#: where ``--url`` comes from when it is not given, in order
URL_VARIABLES = ("QUANTUMORM_URL", "REDIS_URL")


class Exit(IntEnum):
    """Exit codes scripts can rely on."""

    OK = 0
    #: problems found (verify), left (repair, reindex), or an unhealthy store (health)
    PROBLEMS = 1
    #: the command could not run: bad arguments, a model that cannot be loaded, a store
    #: that cannot be reached, a refused operation
    FAILED = 2


EXIT_CODES = """\
exit codes:
  0  ok (also when the reader closes the output early, as `| head` does)
  1  problems found: verify found some, repair or reindex left some, health is not ok
  2  could not run: bad arguments, a model that cannot be imported, a store that
     cannot be reached, a refused operation (or a crash); with --json, standard
     output has {"error": "...", "exit": 2}"""


class CommandError(Exception):
    """A command cannot run (exit 2); the message is printed as ``error: ...``."""


class UsageError(CommandError):
    """A usage mistake: printed with the command's usage line (exit 2)."""


class Formatter(argparse.HelpFormatter):
    """Descriptions wrapped to the terminal's width; text of several lines (examples, exit
    codes) kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def common_options() -> argparse.ArgumentParser:
    """The options every command takes (an argparse parent parser)."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection and output")
    group.add_argument("--url", default=_url_from_environment(), metavar="URL",
                       help="the store's URL: redis://, redis+cluster://, redis+sentinel://, "
                            "sqlite://, postgresql:// (default: $QUANTUMORM_URL, then "
                            "$REDIS_URL)")
    group.add_argument("--backend", default=None, metavar="NAME",
                       help="the backend of the URL (default: the model's Meta.backend, or "
                            "guessed from the URL's scheme)")
    group.add_argument("--json", action="store_true",
                       help="print the result as JSON (JSON lines for tail)")
    group.add_argument("--quiet", action="store_true", help="no progress on standard error")
    return parent


def _url_from_environment() -> str | None:
    for name in URL_VARIABLES:
        value = os.environ.get(name)
        if value:
            return value
    return None


def backend_of_url(url: str) -> str:
    """The backend a URL's scheme names (``redis`` for anything else)."""
    scheme = url.partition("://")[0].lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgres", "postgresql"):
        return "postgres"
    return "redis"


def need_url(args: argparse.Namespace) -> str:
    if not args.url:
        raise UsageError("--url (or QUANTUMORM_URL / REDIS_URL) is required")
    url: str = args.url
    return url


def open_connection(args: argparse.Namespace, backend: str | None = None,
                    **options: Any) -> Connection:
    """The command's connection (registered as :data:`CONNECTION`)."""
    url = need_url(args)
    backend = args.backend or backend or backend_of_url(url)
    try:
        return create_connection(backend, url, name=CONNECTION, **(
            options if backend == "redis" else {}))
    except QuantumORMError as exc:
        raise CommandError(str(exc)) from exc


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


def import_model(path: str) -> Any:
    """:func:`load_model`, failing as a usage error (importing runs the module's code:
    anything can fail there)."""
    try:
        return load_model(path)
    except Exception as exc:
        raise UsageError(f"cannot load the model {path!r}: {type(exc).__name__}: {exc}") from exc


def jsonable(value: Any) -> Any:
    """Dataclasses, tuples, sets and enums as JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        return jsonable(to_dict() if to_dict else dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print ``data`` as JSON with ``--json``, else ``text``."""
    if args.json:
        print(json.dumps(jsonable(data), indent=2))
    else:
        print(text)


def note(args: argparse.Namespace, message: str) -> None:
    """A progress line on standard error (none with ``--quiet``)."""
    if not args.quiet:
        print(message, file=sys.stderr, flush=True)


__all__ = ["CONNECTION", "EXIT_CODES", "CommandError", "Exit", "Formatter", "UsageError",
           "backend_of_url", "common_options", "emit", "import_model", "jsonable", "load_model",
           "need_url", "note", "open_connection"]
