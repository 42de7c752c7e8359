"""What the tests of the waiting pools (``backends/redis/pooling.py``) share: pools made in
both ways of lending, and a PING on a lent connection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from quantumorm.backends.redis.pooling import WaitingConnectionPool


def pool_maker(redis_url: str, quick: bool, max_connections: int,
          timeout: float | None) -> Iterator[Callable[..., WaitingConnectionPool]]:
    """A maker of pools lending ``quick``ly or by redis-py's methods (see the module), with
    these defaults; every pool it made is disconnected afterwards (a fixture's body)."""
    made: list[WaitingConnectionPool] = []

    def make(max_connections: int = max_connections,
             timeout: float | None = timeout) -> WaitingConnectionPool:
        pool = WaitingConnectionPool.from_url(redis_url, max_connections=max_connections,
                                              timeout=timeout)
        pool._quick = quick  # (the two ways of lending: see the module)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.disconnect()


def ping(conn: Any) -> Any:
    conn.send_command("PING")
    return conn.read_response()
