"""The least Redis ACL that QuantumORM needs: :func:`acl_rule`.

Redis 7 checks every command a script calls against the calling user's ACL, so the rule
lists the commands of the Lua scripts as well as those the client sends. Keys: every key of
a collection starts with ``{<namespace>:`` (see ``keys.py``), so ``~{<namespace>:*`` covers
them all and nothing else; Pub/Sub notifications go to ``<namespace>:<collection>:changes``
(``&<namespace>:*``). The tests run the whole contract suite as a user holding only this
rule (tests/contract, store ``redis-acl``).
"""

from __future__ import annotations

#: what the scripts call (lua/*.lua), and what the client sends around them
COMMANDS: dict[str, tuple[str, ...]] = {
    # scripts: EVALSHA (EVALSHA_RO for reads on replicas), loaded with SCRIPT LOAD; EVAL
    # (EVAL_RO) when scripts keep vanishing (reloads.py: the last resend carries the source)
    "scripts": ("evalsha", "evalsha_ro", "script|load", "eval", "eval_ro"),
    "documents": ("get", "mget", "set", "del", "exists", "type", "rename", "incr", "incrby",
                  "pexpire", "pexpireat", "pexpiretime", "persist", "pttl", "time"),
    "meta and state hashes": ("hget", "hmget", "hset", "hdel", "hgetall"),
    "ids, indexes, schedules": ("zadd", "zrem", "zcard", "zcount", "zlexcount", "zscore",
                                "zmscore", "zrange", "zrangebylex", "zrevrangebylex",
                                "zrangebyscore", "unlink"),
    "change events": ("xadd", "xread", "xreadgroup", "xrevrange", "xack", "xautoclaim",
                      "xpending", "xgroup|create", "publish", "subscribe", "unsubscribe"),
    # the eviction policy check (INFO; CONFIG GET where INFO is refused), verify's search for
    # unlisted keys and drop_collection (SCAN), WAIT for wait_replicas=N
    "checks and tools": ("info", "scan", "wait"),
    "connection": ("ping", "hello", "select"),
}


#: what ``scripts="functions"`` adds: FCALL (FCALL_RO) of the libraries, FUNCTION LOAD
FUNCTIONS = ("fcall", "fcall_ro", "function|load")


def acl_rule(namespace: str = "qorm", functions: bool = False) -> str:
    """The rule to give a user (``ACL SETUSER <name> on ><password> <rule>``) that runs
    every QuantumORM feature on the models of ``namespace`` and can reach nothing else.

    ``functions=True`` adds what ``scripts="functions"`` calls. Function libraries are the
    whole server's, not a namespace's: a user allowed ``FUNCTION LOAD`` can replace any
    library (``REPLACE``), another application's included, whose code then runs with the
    permissions of whoever calls it. Grant it only where every user that holds it is
    trusted with every namespace of the server (without it, ``scripts="functions"`` falls
    back to EVALSHA)."""
    groups = [*COMMANDS.values(), *([FUNCTIONS] if functions else [])]
    commands = " ".join(f"+{c}" for group in groups for c in group)
    return f"resetkeys ~{{{namespace}:* resetchannels &{namespace}:* -@all {commands}"
