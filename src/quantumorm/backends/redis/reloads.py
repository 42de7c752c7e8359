"""Scripts on the wire: how a step becomes a command, and what happens after NOSCRIPT.

Scripts are called by SHA (EVALSHA, or EVALSHA_RO for reads that may go to replicas), or
with ``scripts="functions"`` as Redis Functions (FCALL, FCALL_RO: one library per script,
``functions.py``). A server that lacks them (restart, failover, FUNCTION FLUSH or
SCRIPT FLUSH, or never loaded) answers "Function not found" or NOSCRIPT without running
anything, so those steps, and only those, are sent again after the scripts are loaded: up
to :data:`SCRIPT_RELOADS` times, the last time with the script's source (EVAL), which no
flush can refuse. :func:`reloads` is that policy, written once; the exchange
(``exchange.py``) composes it. :func:`load_all` and :func:`aload_all` are the executors'
I/O for loading the scripts; a server that refuses FUNCTION LOAD (an ACL without it, a
server above maxmemory, a server without Functions) gets the scripts with SCRIPT LOAD
instead, and they answer False so that the connection calls them with EVALSHA from then on.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio.cluster
import redis.cluster
from redis import exceptions as rx
from redis.asyncio.cluster import PipelineCommand

from .commands import SCRIPT_NAMES, Command, Step, script
from .functions import library


def step_args(step: Step, read_only: bool = False, inline: bool = False,
              functions: bool = False) -> tuple[Any, ...]:
    """The command of a step: FCALL with ``functions``, else EVALSHA. Read-only plans call
    their scripts with FCALL_RO / EVALSHA_RO, which replicas accept (the read scripts
    declare ``no-writes``); ``inline`` sends the script's source (EVAL / EVAL_RO)."""
    if isinstance(step, Command):
        return step.args
    if functions and not inline:
        return ("FCALL_RO" if read_only else "FCALL", library(step.script).name,
                len(step.keys), *step.keys, *step.args)
    code = script(step.script)
    if inline:
        return ("EVAL_RO" if read_only else "EVAL", code.source, len(step.keys), *step.keys,
                *step.args)
    command = "EVALSHA_RO" if read_only else "EVALSHA"
    return (command, code.sha, len(step.keys), *step.keys, *step.args)


#: how many times one plan loads the scripts again after NOSCRIPT replies (a restart, a
#: failover, or a SCRIPT FLUSH that keeps landing between the load and the call); the last
#: resend carries the scripts' source (EVAL), so a plan never fails with NOSCRIPT
SCRIPT_RELOADS = 5


@dataclass(frozen=True)
class Resend:
    """What the NOSCRIPT policy asks a driver to send: the positions of the plan's steps,
    whether to load the scripts first, and whether to send the scripts' source."""

    positions: list[int]
    load: bool = False
    inline: bool = False


def reloads(count: int) -> Generator[Resend, list[Any], list[Any]]:
    """The NOSCRIPT policy of every send path, sync and async: yields what to send (all
    ``count`` steps, then only those answered NOSCRIPT: they did not run, so resending them
    applies nothing twice), receives their replies, and returns every step's reply."""
    replies: list[Any] = [None] * count
    todo = Resend(list(range(count)))
    for reload in range(1, SCRIPT_RELOADS + 1):
        for i, reply in zip(todo.positions, (yield todo), strict=True):
            replies[i] = reply
        missing = [i for i in todo.positions if noscript(replies[i])]
        if not missing:
            return replies
        todo = Resend(missing, load=True, inline=reload == SCRIPT_RELOADS)
    for i, reply in zip(todo.positions, (yield todo), strict=True):
        replies[i] = reply
    return replies


#: Redis's reply to FCALL of a function it lacks (7.0, 7.2 and Valkey 7.2-8 say the same)
FUNCTION_NOT_FOUND = "Function not found"


def noscript(reply: Any) -> bool:
    """Did this reply say the script is missing (so the step did not run)? NOSCRIPT, the
    "Function not found" of FCALL, or FCALL itself refused (an ACL without it, a server
    without Functions): loading the scripts then falls back to EVALSHA."""
    if not isinstance(reply, rx.ResponseError):
        return False
    if isinstance(reply, rx.NoScriptError):
        return True
    text = str(reply)
    if text == FUNCTION_NOT_FOUND:
        return True
    return _fcall_refused(text)


def _fcall_refused(text: str) -> bool:
    lowered = text.lower()
    return (("no permissions" in lowered or lowered.startswith("unknown command"))
            and ("'fcall'" in lowered or "'fcall_ro'" in lowered))


def fcall_refused(reply: Any) -> bool:
    """Did the server refuse FCALL itself (an ACL without it)? Loading the libraries cannot
    help then: the connection calls the scripts with EVALSHA instead."""
    return isinstance(reply, rx.ResponseError) and _fcall_refused(str(reply))


def _refused(reply: Any) -> bool:
    """Is this reply to FUNCTION LOAD a refusal of the command (NOPERM, a server that does
    not know it, or one above ``maxmemory``, where FUNCTION LOAD is denied and SCRIPT LOAD
    is not) rather than a failure of the library?"""
    if isinstance(reply, (rx.NoPermissionError, rx.OutOfMemoryError)):
        return True
    lowered = str(reply).lower() if isinstance(reply, rx.ResponseError) else ""
    return lowered.startswith(("unknown command", "unknown subcommand", "oom "))


def _loaded(replies: list[Any]) -> bool:
    """FUNCTION LOAD's replies: True when every library is there (loaded now, or before:
    "already exists"; a replica's READONLY: its master's copy reaches it by replication),
    False when the server refused the command; any other error is raised."""
    for reply in replies:
        if not isinstance(reply, BaseException):
            continue
        if _refused(reply):
            return False
        if isinstance(reply, rx.ReadOnlyError) or "already exists" in str(reply):
            continue
        raise reply
    return True


def _loads(functions: bool) -> list[tuple[str, ...]]:
    if functions:
        return [("FUNCTION LOAD", library(name).source) for name in SCRIPT_NAMES]
    return [("SCRIPT LOAD", script(name).source) for name in SCRIPT_NAMES]


def load_all(client: Any, functions: bool = False) -> bool:
    """Every script, in one round trip per server (a flush from elsewhere then has the
    least time to land between the load and the call); on a cluster, on every node
    (replicas too: reads may go there). With ``functions``, as libraries (FUNCTION LOAD);
    a server that refuses it gets them with SCRIPT LOAD, and the answer is False: call
    them with EVALSHA. True: loaded as asked."""
    if isinstance(client, redis.cluster.RedisCluster):
        clients = [client.get_redis_connection(node)
                   for node in client.get_nodes()]  # type: ignore[no-untyped-call]
    else:
        clients = [client]
    for one in clients:
        if functions and not _loaded(_load_pipelined(one, True)):
            load_all(client)
            return False
        if not functions:
            _raise_first(_load_pipelined(one, False))
    return True


def _raise_first(replies: list[Any]) -> None:
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply


def _load_pipelined(client: Any, functions: bool) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for command in _loads(functions):
        pipe.execute_command(*command)
    return list(pipe.execute(raise_on_error=False))


async def aload_all(client: Any, functions: bool = False) -> bool:
    """The asyncio twin of :func:`load_all`."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        for node in client.get_nodes():
            commands = [PipelineCommand(i, *command)
                        for i, command in enumerate(_loads(functions))]
            await node.execute_pipeline(commands)
            results = [command.result for command in commands]
            if functions and not _loaded(results):
                await aload_all(client)
                return False
            if not functions:
                _raise_first(results)
        return True
    pipe = client.pipeline(transaction=False)
    for command in _loads(functions):
        pipe.execute_command(*command)
    results = list(await pipe.execute(raise_on_error=False))
    if functions and not _loaded(results):
        await aload_all(client)
        return False
    if not functions:
        _raise_first(results)
    return True


__all__ = ["FUNCTION_NOT_FOUND", "SCRIPT_RELOADS", "Resend", "aload_all", "load_all",
           "noscript", "reloads", "step_args"]
