"""What a Redis plan is made of: commands and script calls, sent in one round trip.

Pure data; the executors (``executor.py``) are the only code that sends them. Scripts are
``.lua`` files next to this module, loaded by name, each with ``lua/_prelude.lua`` (helpers
they share) placed after its shebang line, and the libraries a ``-- uses: _name`` line names
after that, of which only the definitions the script uses are kept (``luachunks.py``); their
SHA1 is computed here so a plan can say ``EVALSHA`` without asking the server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, ClassVar, Union

from .luachunks import Chunk, cold_table, prune, split


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str


def _lua(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")


@cache
def _part(name: str) -> tuple[Chunk, ...]:
    return tuple(split(_lua(name)))


def _assemble(name: str) -> tuple[str, list[str], str]:
    """A script's shebang line (or ""), the shared parts it includes, and its body."""
    text = _lua(name)
    shebang, body = ("", text)
    if text.startswith("#!"):
        first, _, body = text.partition("\n")
        shebang = first + "\n"
    libraries = [lib for line in body.splitlines() if line.startswith("-- uses:")
                 for lib in line.removeprefix("-- uses:").split()]
    return shebang, ["_prelude", *libraries], body


@cache
def script(name: str) -> Script:
    """A script's text: its shebang line (flags), of the shared prelude and the libraries
    its ``-- uses:`` line names only the definitions it uses (see ``luachunks.py``: Redis
    runs the whole text on every call), then its body."""
    shebang, parts, body = _assemble(name)
    source = shebang + prune([_part(part) for part in parts], body) + body
    return Script(name, source, hashlib.sha1(source.encode("utf-8")).hexdigest())


def full_source(name: str) -> str:
    """A script's text with the shared parts whole (for tests and measurements)."""
    shebang, parts, body = _assemble(name)
    shared = "".join(_lua(part) for part in parts)
    # (every definition made in place: cold_paths() only gathers the names)
    declared, gatherer = cold_table(body, shared)
    return shebang + declared + shared + gatherer + body


SCRIPT_NAMES: tuple[str, ...] = (
    "save", "insert_many", "delete", "query", "fetch", "count", "expire", "sweep", "group", "tx",
    "restore", "schema", "reindex", "stamp", "inspect", "entries", "repair", "preflight", "now",
    "tx_apply")
#: an update by id (writer.py's update_fields)
SCRIPT_NAMES += ("patch",)
#: a single insert (the save of a new document: save.lua's record, save.lua's replies)
SCRIPT_NAMES += ("insert",)
#: the scripts of a two-phase commit's record and registry (twophase.py)
SCRIPT_NAMES += ("tx_begin", "tx_decide", "tx_release", "tx_open", "tx_due")
#: the scripts of the cache in front of a primary database (quantumorm.cache)
SCRIPT_NAMES += ("cache_read", "cache_fill", "cache_begin", "cache_finish", "cache_invalidate",
                 "cache_query_get", "cache_query_put")


#: the commands whose raw reply is what ``execute_command`` would return (redis-py has no
#: reply callback for them, RESP2 or RESP3): the executors send them themselves
RAW_REPLIES = frozenset({"FCALL", "FCALL_RO", "EVALSHA", "EVALSHA_RO", "EVAL", "EVAL_RO",
                         "WAIT", "MGET"})


@dataclass(frozen=True)
class Command:
    """A plain Redis command, e.g. ``Command(("GET", key))``."""

    args: tuple[Any, ...]
    #: the command as the RESP bytes hiredis's ``pack_command`` makes of it, when its maker
    #: built them from parts it keeps packed (a read by id's ``MGET``: ``Reader.get_many``);
    #: None otherwise. Not a field, as :attr:`Call.wire`, and sent as it is. Only a command
    #: of :data:`RAW_REPLIES` may carry it: its reply is read as it comes, with no redis-py
    #: reply callback.
    wire: ClassVar[bytes | None] = None

    def __init__(self, args: tuple[Any, ...], wire: bytes | None = None) -> None:
        # (still frozen and hashable; written into the instance dict, where the frozen
        # dataclass's own __init__ makes one object.__setattr__ call per field: every
        # operation builds its plan's steps)
        self.__dict__["args"] = args
        if wire is not None:
            if args[0] not in RAW_REPLIES:
                raise ValueError(f"a {args[0]} command's reply needs redis-py's callback: "
                                 "it cannot be sent as packed bytes")
            self.__dict__["wire"] = wire


@dataclass(frozen=True)
class Call:
    """One script call: ``EVALSHA sha len(keys) *keys *args`` (EVAL after NOSCRIPT)."""

    script: str
    keys: tuple[str, ...]
    args: tuple[Any, ...]
    #: the call's ``EVALSHA`` command as the RESP bytes hiredis's ``pack_command`` makes of
    #: it, when its maker built them from parts it keeps packed (an update by id, a single
    #: save or a delete: ``WriteLayout.patch_calls``, ``WriteLayout.save`` and
    #: ``WriteLayout.delete``); None otherwise. Not a field: two calls are equal by their
    #: script, keys and arguments. The sync and asyncio executors send it, without building
    #: the command, when the call is a plan's lone step sent by ``EVALSHA``
    #: (``exchange.first_wire``; nothing else reads it: a reload, a resend, ``FCALL`` and a
    #: cluster pack the command from the keys and arguments).
    wire: ClassVar[bytes | None] = None

    def __init__(self, script: str, keys: tuple[str, ...], args: tuple[Any, ...],
                 wire: bytes | None = None) -> None:
        fields = self.__dict__  # (as Command's)
        fields["script"] = script
        fields["keys"] = keys
        fields["args"] = args
        if wire is not None:
            fields["wire"] = wire


Step = Union[Command, Call]


class Replies(list):  # type: ignore[type-arg]
    """A plan's replies, marked ``resent`` when the executor had to send the plan again
    after a broken connection: a write refused then (version moved, id taken) may have been
    applied by the first attempt, beyond what its write id can still show. ``calls``: the
    command each step's script last ran with, when a reload after NOSCRIPT sent some by
    their source (``EVAL``), for the metrics, traces and slow log to name what ran."""

    resent = False
    calls: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RedisPlan:
    """Steps pipelined in one round trip, non-transactionally; replies come back in order."""

    steps: tuple[Step, ...]
    #: True when every step is read-only, so a lost connection may simply retry it
    read_only: bool = False
    #: True when the steps may be sent again after the connection broke mid-way: each one
    #: recognises its own earlier application (write ids, see ``lua/_write.lua``) or does
    #: the same thing twice (TTL, sweep, acknowledgements, id allocation: gaps only)
    idempotent: bool = False
    #: True for read-only steps that the master must answer even with
    #: ``read_from_replicas``: what a read checks against two-phase commits (their locks and
    #: records, and the read sent again after settling them), as a replica may lag behind
    primary: bool = False

    def __init__(self, steps: tuple[Step, ...], read_only: bool = False,
                 idempotent: bool = False, primary: bool = False) -> None:
        fields = self.__dict__  # (as Command's: every operation builds at least one plan)
        fields["steps"] = steps
        fields["read_only"] = read_only
        fields["idempotent"] = idempotent
        fields["primary"] = primary

    @property
    def retryable(self) -> bool:
        return self.read_only or self.idempotent
