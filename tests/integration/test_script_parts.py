"""The scripts as sent, with the shared parts cut to what each uses (luachunks.py): each
compiles on the server under the SHA the plans send, and calling one runs its body, with no
definition it needs missing (a missing one is a global the server refuses to read)."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from quantumorm.backends.redis.commands import SCRIPT_NAMES, full_source, script


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_every_script_loads_under_its_sha(redis_client: redis.Redis, name: str) -> None:
    assert redis_client.script_load(script(name).source) == script(name).sha
    # the whole text is a different script: the cut one is what plans name
    assert script(name).source != full_source(name)


def test_a_cut_script_answers_as_the_whole_one(redis_client: redis.Redis) -> None:
    """``count`` run from both texts on one server, on each of its paths."""
    keys: tuple[Any, ...] = ("{t:c:p0}:ttl", "{t:c:p0}:ids", "{t:c:p0}:state")
    redis_client.delete(*keys)
    redis_client.zadd(keys[1], {"a": 0, "b": 0})

    def both(*argv: str) -> Any:
        cut = redis_client.eval(script("count").source, len(keys), *keys, *argv)
        assert redis_client.eval(full_source("count"), len(keys), *keys, *argv) == cut
        return cut

    assert both("") == 2
    assert both("", "[a", "[a") == 1
    redis_client.hset(keys[2], "layout", "5")
    assert both("3") == -2  # (layout_refusal, the one shared definition it keeps)
    redis_client.zadd(keys[0], {"a": 1})
    assert both("5") == -1
    redis_client.delete(*keys)
