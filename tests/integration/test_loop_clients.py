"""asyncio clients live as long as their event loop: each ``asyncio.run()`` of an async
operation closes what it opened (no server client, file descriptor or loop left behind),
and ``aclose()`` closes the clients of loops running in other threads too."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from typing import Any

import redis

import quantumorm
from quantumorm import Document, StringField


class Item(Document):
    name = StringField(indexed=True)

    class Meta:
        collection = "loop_items"


def clients(admin: redis.Redis) -> int:
    return int(admin.info("clients")["connected_clients"])


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_asyncio_run_after_asyncio_run_leaves_nothing_behind(redis_url: str,
                                                              redis_client: Any) -> None:
    redis_client.flushdb()
    quantumorm.create_connection(url=redis_url, name="default", make_default=True)
    try:
        Item(name="x").save_sync()
        asyncio.run(Item.objects.count())  # (warm up: scripts, first use)
        gc.collect()
        before_clients, before_fds = clients(redis_client), fds()
        for _ in range(200):
            assert asyncio.run(Item.objects.filter(name="x").count()) == 1
        gc.collect()
        assert clients(redis_client) <= before_clients
        assert fds() <= before_fds
    finally:
        quantumorm.close_all()


async def test_aclose_closes_the_clients_of_a_loop_in_another_thread(
        redis_url: str, redis_client: Any) -> None:
    redis_client.flushdb()
    connection = quantumorm.create_connection(url=redis_url, name="default",
                                              make_default=True)
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever)
    thread.start()
    try:
        baseline = clients(redis_client)
        done = asyncio.run_coroutine_threadsafe(Item(name="there").save(), other)
        await asyncio.wrap_future(done)
        assert await Item.objects.count() == 1  # (this loop's clients too)
        assert clients(redis_client) >= baseline + 2
        await connection.aclose()
        assert clients(redis_client) <= baseline
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join()
        other.close()
        quantumorm.close_all()
