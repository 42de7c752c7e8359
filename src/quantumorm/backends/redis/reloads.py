"""Scripts on the wire: how a step becomes a command, and what happens after NOSCRIPT.

Scripts are called by SHA (EVALSHA, or EVALSHA_RO for reads that may go to replicas). A
server that lost them (restart, failover, SCRIPT FLUSH) answers NOSCRIPT without running
anything, so those steps, and only those, are sent again after the scripts are loaded: up
to :data:`SCRIPT_RELOADS` times, the last time with the script's source (EVAL), which no
flush can refuse. :func:`reloads` is that policy, written once; the exchange
(``exchange.py``) composes it. :func:`load_all` and :func:`aload_all` are the executors'
I/O for loading the scripts.
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


def step_args(step: Step, read_only: bool = False, inline: bool = False) -> tuple[Any, ...]:
    """The command of a step. Read-only plans call their scripts with EVALSHA_RO, which
    replicas accept (the read scripts declare ``no-writes``); ``inline`` sends the script's
    source (EVAL / EVAL_RO) instead of its SHA."""
    if isinstance(step, Command):
        return step.args
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


def noscript(reply: Any) -> bool:
    return isinstance(reply, rx.NoScriptError)


def load_all(client: Any) -> None:
    """Every script, in one round trip per server (a SCRIPT FLUSH from elsewhere then has
    the least time to land between the load and the call); on a cluster, on every node
    (replicas too: reads may go there)."""
    if isinstance(client, redis.cluster.RedisCluster):
        for node in client.get_nodes():  # type: ignore[no-untyped-call]
            _load_pipelined(client.get_redis_connection(node))
        return
    _load_pipelined(client)


def _load_pipelined(client: Any) -> None:
    pipe = client.pipeline(transaction=False)
    for name in SCRIPT_NAMES:
        pipe.script_load(script(name).source)
    pipe.execute()


async def aload_all(client: Any) -> None:
    """The asyncio twin of :func:`load_all`."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        for node in client.get_nodes():
            commands = [PipelineCommand(i, "SCRIPT LOAD", script(name).source)
                        for i, name in enumerate(SCRIPT_NAMES)]
            await node.execute_pipeline(commands)
            for command in commands:
                if isinstance(command.result, BaseException):
                    raise command.result
        return
    pipe = client.pipeline(transaction=False)
    for name in SCRIPT_NAMES:
        pipe.script_load(script(name).source)
    await pipe.execute()


__all__ = ["SCRIPT_RELOADS", "Resend", "aload_all", "load_all", "noscript", "reloads",
           "step_args"]
