"""Shortcuts of the write scripts' shared Lua (``_write.lua``, ``_prelude.lua``) give what
their general paths give: a state hash whose layout is the caller's as the same text is
accepted with no number read, and one that holds the same number as other text takes the
general path to the same answer; events carry the same fields however many a write has."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call

from quantumorm import Document, IntField, StringField
from quantumorm.backends.redis.keys import KeySpace


class Lamp(Document):
    name = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "wls_lamps"


@pytest.mark.parametrize("mode", MODES)
async def test_a_layout_of_the_same_number_as_other_text_is_the_same_layout(
        conn: Any, redis_client: Any, mode: str) -> None:
    first = await call(Lamp(name="a", n=1), "save", mode)
    state = KeySpace(Lamp._meta).state(0)
    stored = redis_client.hget(state, "layout")
    assert stored is not None and int(stored) > 0  # (the writes send their layout)
    for text in (stored, b"00" + stored):  # the same text; the same number as other text
        redis_client.hset(state, "layout", text)
        doc = await call(Lamp(name="b", n=2), "save", mode)  # insert
        doc.n = 3
        await call(doc, "save", mode)  # update
        assert await call(Lamp.objects.filter(id=doc.id), "update", mode, n=4) == 1  # patch
        doc = await call(Lamp.objects, "get", mode, id=doc.id)
        assert doc.n == 4
        assert await call(doc, "delete", mode) is True
        # (accepted, and not recorded again: the stored text is as it was)
        assert redis_client.hget(state, "layout") == text
    assert (await call(Lamp.objects, "get", mode, id=first.id)).n == 1
    assert_indexes_consistent(redis_client, Lamp)
