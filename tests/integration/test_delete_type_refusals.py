"""A delete refuses a key of another type where it would write (the soft delete's trash key,
the id index of an expired document it purges) with nothing changed: delete.lua checks
them on paths it takes rarely, with no function made for them on the common path."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call

from quantumorm import Document, IntField, StringField
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.errors import WrongTypeError


class Trashed(Document):
    name = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "t_delete_types"


def snapshot(redis_client: Any) -> dict[bytes, Any]:
    out = {}
    for key in sorted(redis_client.keys("*t_delete_types*")):
        kind = redis_client.type(key)
        out[key] = (kind, redis_client.dump(key))
    return out


@pytest.mark.parametrize("mode", MODES)
async def test_a_soft_delete_refuses_a_trash_key_of_another_type(
        conn: Any, redis_client: Any, mode: str) -> None:
    doc = await call(Trashed(id="a", name="x", n=1), "save", mode)
    trash = KeySpace(Trashed._meta).trash(0, "a")
    redis_client.rpush(trash, "foreign")
    kept = snapshot(redis_client)
    with pytest.raises(WrongTypeError):
        await call(doc, "delete", mode, soft=True, ttl=5)
    assert snapshot(redis_client) == kept
    assert_indexes_consistent(redis_client, Trashed)
    redis_client.delete(trash)
    assert await call(doc, "delete", mode, soft=True, ttl=5) is True
    assert redis_client.type(trash) == b"string"


@pytest.mark.parametrize("mode", MODES)
async def test_a_delete_of_an_expired_document_refuses_an_id_index_of_another_type(
        conn: Any, redis_client: Any, mode: str) -> None:
    doc = await call(Trashed(id="b", name="y", n=2), "save", mode, ttl=0.2)
    keys = KeySpace(Trashed._meta)
    deadline = time.monotonic() + 5
    while redis_client.exists(keys.doc(0, "b")) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not redis_client.exists(keys.doc(0, "b"))  # (expired: its meta hash is left)
    ids = keys.ids(0)
    redis_client.delete(ids)
    redis_client.set(ids, "foreign")
    kept = snapshot(redis_client)
    with pytest.raises(WrongTypeError) as refused:
        await call(doc, "delete", mode)
    assert ids in str(refused.value)
    assert snapshot(redis_client) == kept
