"""``get(id=x)`` on an unfiltered queryset reads the document by id (the backend's
``get_many``), not through a query: on every backend and in both modes it answers what the
general path (``get(Q(id=x))``, a query of ``filter(id=x)[:2]``) answers, with the same
errors, projections and change detection."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from contract_models import run

from quantumorm import Q, QueryError

WHEN = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


async def _stored(models: Any, mode: str) -> Any:
    Item = models.Item
    await run(Item(id="a", s="x", n=1, f=0.1, b=True, t=WHEN,
                   d=Decimal("1.10"), u=uuid.UUID(int=7), tags=["p", "q"],
                   j={"k": [1, 2.5, None]}, note="hi"), "save", mode)
    await run(Item(id="5", s="y"), "save", mode)
    return Item


async def test_by_id_answers_as_the_general_path(models: Any, mode: str) -> None:
    Item = await _stored(models, mode)
    for given in ("a", "5", 5):
        fast = await run(Item.objects, "get", mode, id=given)
        general = await run(Item.objects, "get", mode, Q(id=given))
        assert type(fast) is Item and fast.id == general.id == str(given)
        assert fast.version == general.version > 0
        assert fast.to_dict() == general.to_dict()
        assert fast.changed_fields() == general.changed_fields() == []
    fast = await run(Item.objects, "get", mode, id="a")
    assert fast.d == Decimal("1.10") and fast.u == uuid.UUID(int=7)
    assert fast.t == WHEN and fast.j == {"k": [1, 2.5, None]}
    assert fast.tags == ["p", "q"] and fast.note == "hi"


async def test_by_id_raises_as_the_general_path(models: Any, mode: str) -> None:
    Item = await _stored(models, mode)
    for given in ("missing", 6, None, "a\x00b", "a:{0}*"):
        with pytest.raises(Item.DoesNotExist):
            await run(Item.objects, "get", mode, id=given)
        with pytest.raises(Item.DoesNotExist):
            await run(Item.objects, "get", mode, Q(id=given))
    for bad in ("", 1.5, ["a"], True):
        with pytest.raises(QueryError):
            await run(Item.objects, "get", mode, id=bad)
        with pytest.raises(QueryError):
            await run(Item.objects, "get", mode, Q(id=bad))


async def test_by_id_with_projections(models: Any, mode: str) -> None:
    Item = await _stored(models, mode)
    only = await run(Item.objects.only("s", "tags"), "get", mode, id="a")
    general = await run(Item.objects.only("s", "tags"), "get", mode, Q(id="a"))
    assert (only.s, only.tags, only.n, only.note) == ("x", ["p", "q"], None, None)
    assert only.to_dict() == general.to_dict()
    values = await run(Item.objects.values("s", "n"), "get", mode, id="a")
    assert values == await run(Item.objects.values("s", "n"), "get", mode, Q(id="a"))
    assert values == {"id": "a", "s": "x", "n": 1}
    flat = await run(Item.objects.values_list("n", flat=True), "get", mode, id="a")
    assert flat == 1


async def test_by_id_loads_a_document_whose_changes_save_sees(models: Any, mode: str) -> None:
    Item = await _stored(models, mode)
    doc = await run(Item.objects, "get", mode, id="a")
    doc.tags.append("r")  # in place: the stored snapshot must not change with it
    doc.j["k"].append(3)
    assert doc.changed_fields() == ["tags", "j"]
    await run(doc, "save", mode)
    again = await run(Item.objects, "get", mode, id="a")
    assert again.tags == ["p", "q", "r"] and again.j == {"k": [1, 2.5, None, 3]}
    assert again.version == doc.version
