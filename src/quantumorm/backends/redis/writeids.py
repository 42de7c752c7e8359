"""Write ids: the 16 hex digits each write script call carries, by which a write sent again
(its reply lost) is recognised as applied (``lua/_write.lua``, the meta hash's "r").

A write id only has to differ from the other writes to the same document (its last few);
it is no secret. They come from a private generator seeded from the system's random source
(``os.urandom``) and seeded again in a forked child, so two processes never share a
sequence, and no user call of ``random.seed()`` reaches it: 64 random bits per write, with
no system call per write as ``os.urandom`` makes (a read by id or an update by id is a few
tens of microseconds of client work; that call was one or two of them). A bulk insert's
batch takes its write ids from one ``os.urandom`` read instead (``WriteLayout.insert_many``).

The reseed in a child relies on the fork running Python's at-fork hooks, as ``os.fork``,
``multiprocessing`` and every extension that follows CPython's rules for forking
(``PyOS_AfterFork_Child``) do. A child forked without them would repeat its parent's ids,
and a resend check could then take another process's write for its own.
"""

from __future__ import annotations

import os
import random

_source = random.Random()  # (seeded from os.urandom)
_bits = _source.getrandbits

if hasattr(os, "register_at_fork"):  # (not on Windows, which does not fork)
    # (a child would otherwise repeat its parent's ids; seed() with no argument reads
    # os.urandom)
    os.register_at_fork(after_in_child=_source.seed)


def write_id() -> str:
    """A new write id: 16 lowercase hex digits."""
    return "%016x" % _bits(64)


__all__ = ["write_id"]
