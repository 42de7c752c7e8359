"""What a plan says about itself without its values: the names of the commands and scripts
of a Redis plan, the SQL text of a SQL plan (whose values are always parameters, never in
the text), the cache's plans as what they wrap.

Plans are opaque to the core, and this package imports no backend (``import quantumorm``
needs no driver), so plans are read by their shape: a Redis plan has ``steps`` (a script
call has ``script``, a command ``args``), a SQL plan ``groups`` of statements with ``sql``,
the cache's ``ToCache`` a ``plan`` and its ``Pause`` ``seconds``. Nothing here ever reads a
command's arguments past its name, nor a statement's parameters.
"""

from __future__ import annotations

from typing import Any

#: at most this many characters of SQL text per statement in a summary
SQL_CHARS = 200


def script_command(executor: Any, plan: Any) -> str | None:
    """What ``executor`` calls ``plan``'s scripts with (``FCALL``, ``EVALSHA_RO``...): its
    ``script_command(plan)`` (the Redis executors', and the cache's dispatch), read when
    the plan is handed to it; None when it has none (SQL)."""
    named = getattr(executor, "script_command", None)
    return None if named is None else named(plan)


def _name(step: Any, calls: str | None) -> str:
    script = getattr(step, "script", None)
    if script is not None:
        return f"{calls or 'EVALSHA'} {script}"
    args = getattr(step, "args", None)
    if not args:
        return type(step).__name__
    first = args[0]
    return (first.decode("ascii", "replace") if isinstance(first, bytes) else str(first)).upper()


#: what the scripts of a plan were sent with: one command for every step, or one per step
Calls = str | tuple[str, ...] | None


def sent_with(executor: Any, plan: Any, replies: Any) -> Calls:
    """What ``plan``'s scripts ran with, once ``replies`` came back: the command per step
    the replies name (``calls``: a Redis plan whose last reload after NOSCRIPT sent some by
    their source, EVAL), else :func:`script_command`."""
    calls = getattr(replies, "calls", None)
    return calls if calls is not None else script_command(executor, plan)


def commands(plan: Any, calls: Calls = None) -> list[str]:
    """A name per command or statement of ``plan``: ``EVALSHA save``, ``XLEN``, ``SELECT``;
    a cache plan's prefixed ``cache:``. ``calls``: the command the scripts were sent with
    (:func:`script_command`: ``FCALL save`` with Redis Functions; a tuple: one per step,
    :func:`sent_with`), EVALSHA if None."""
    inner = getattr(plan, "plan", None)
    if inner is not None:
        return [f"cache:{name}" for name in commands(inner, calls)]
    steps = getattr(plan, "steps", None)
    if steps is not None:
        if isinstance(calls, tuple):
            return [_name(step, one) for step, one in zip(steps, calls, strict=True)]
        return [_name(step, calls) for step in steps]
    groups = getattr(plan, "groups", None)
    if groups is not None:
        return [statement.sql.split(None, 1)[0].upper() if statement.sql.strip() else "SQL"
                for group in groups for statement in group]
    if hasattr(plan, "seconds"):
        return ["pause"]
    return [type(plan).__name__]


def summary(plan: Any, calls: Calls = None) -> str:
    """One line for ``plan``, explain-style: repeated names counted (``EVALSHA query x4``),
    a read-only Redis plan marked, a SQL plan's statements as their text (clipped).
    ``calls``: as for :func:`commands`."""
    inner = getattr(plan, "plan", None)
    if inner is not None:
        return f"cache: {summary(inner, calls)}"
    groups = getattr(plan, "groups", None)
    if groups is not None:
        texts = [" ".join(statement.sql.split())[:SQL_CHARS]
                 for group in groups for statement in group]
        return "; ".join(texts) or "(no statement)"
    line = counted(commands(plan, calls))
    if getattr(plan, "read_only", False):
        line += " (read-only)"
    return line


def counted(names: list[str]) -> str:
    """``["EVALSHA query", "EVALSHA query"]`` as ``"EVALSHA query x2"``."""
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    return ", ".join(name if n == 1 else f"{name} x{n}" for name, n in seen.items())


__all__ = ["SQL_CHARS", "Calls", "commands", "counted", "script_command", "sent_with",
           "summary"]
