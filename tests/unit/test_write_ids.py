"""Write ids (``backends/redis/writeids.py``): 16 lowercase hex digits, distinct, out of
reach of ``random.seed()``, and never repeated by a forked child of the process."""

from __future__ import annotations

import os
import random
import re
import sys

import pytest

from quantumorm.backends.redis.writeids import write_id


def test_a_write_id_is_16_lowercase_hex_digits_and_ids_differ() -> None:
    ids = [write_id() for _ in range(20000)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    # (64 random bits: the leading digit is not always 0, as "%x" of small numbers would be)
    assert len({i[0] for i in ids}) == 16


def test_seeding_the_random_module_does_not_repeat_write_ids() -> None:
    random.seed(7)
    first = [write_id() for _ in range(4)]
    random.seed(7)
    assert not set(first) & {write_id() for _ in range(4)}


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "win32", reason="no fork")
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # (the child: its next ids, to the parent)
        try:
            os.write(write, " ".join(write_id() for _ in range(8)).encode())
        finally:
            os._exit(0)
    os.close(write)
    parent = {write_id() for _ in range(8)}
    with os.fdopen(read, "rb") as pipe:
        child = set(pipe.read().decode().split())
    os.waitpid(pid, 0)
    assert len(child) == 8 and not child & parent
