"""Stored JSON on a real server: the bytes a save stores are the standard library's encoding
with orjson and without it, each reads what the other wrote, and a JSON value or list
changed in place after a load or a save is saved."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from helpers import MODES, call, stored_payload

from quantumorm import (
    ArrayField,
    DecimalField,
    Document,
    FloatField,
    IntField,
    JSONField,
    StringField,
    jsoncodec,
)
from quantumorm.backends.redis.keys import KeySpace


class Note(Document):
    title = StringField(indexed=True)
    count = IntField()
    ratio = FloatField()
    amount = DecimalField()
    extra = JSONField()
    tags = ArrayField(StringField())

    class Meta:
        collection = "notes"


TRICKY: list[dict[str, Any]] = [
    {"title": "plain", "count": 1, "ratio": 0.5, "amount": Decimal("1.10"),
     "extra": {"a": [1, 2]}, "tags": ["x"]},
    {"title": "é \U0001f600 \u2028", "count": 2**64, "ratio": 1.5e-7,
     "amount": Decimal("-0.000000001"), "extra": {"big": -(10**30), "tiny": 1e-5, "nested":
                                                  [[{"k": None}]], "ü": True}, "tags": []},
    {"title": "floats", "count": -(2**63), "ratio": 1e16, "amount": None,
     "extra": [0.1, 123456789012345680.0, -0.0], "tags": ["a", "b"]},
]


@pytest.fixture(params=["orjson", "json"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "orjson":
        pytest.importorskip("orjson")
    else:
        monkeypatch.setattr(jsoncodec, "ORJSON", None)
    return str(request.param)


def _expected(doc: Document) -> bytes:
    return json.dumps(doc.clean(), ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode()


@pytest.mark.parametrize("mode", MODES)
async def test_saved_bytes_and_reads_are_the_same_with_and_without_orjson(
        conn: Any, redis_client: Any, mode: str, codec: str) -> None:
    space = KeySpace(Note._meta)
    for position, values in enumerate(TRICKY):
        doc = await call(Note(id=f"n{position}", **values), "save", mode)
        assert stored_payload(redis_client, space.doc(0, doc.id)) == _expected(doc)
        loaded = await call(Note.objects, "get", mode, id=doc.id)
        for name in Note._fields:
            assert loaded.__dict__[name] == doc.__dict__[name], name
            assert type(loaded.__dict__[name]) is type(doc.__dict__[name]), name
        assert loaded.changed_fields() == []
    found = await call(Note.objects.filter(title="floats"), "all", mode)
    assert [d.count for d in found] == [-(2**63)]


@pytest.mark.parametrize("mode", MODES)
async def test_values_changed_in_place_are_saved(conn: Any, mode: str) -> None:
    doc = await call(Note(id="m", extra={"a": 1}, tags=["x"]), "save", mode)
    doc.extra["a"] = 2  # after a save
    await call(doc, "save", mode)
    loaded = await call(Note.objects, "get", mode, id="m")
    assert loaded.extra == {"a": 2}
    loaded.extra["b"] = [1]  # after a load
    loaded.tags.append("y")
    assert loaded.changed_fields() == ["extra", "tags"]
    await call(loaded, "save", mode)
    again = await call(Note.objects, "get", mode, id="m")
    assert (again.extra, again.tags) == ({"a": 2, "b": [1]}, ["x", "y"])
