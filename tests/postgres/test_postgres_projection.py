"""Aggregates on PostgreSQL read only the fields they use from the jsonb ``body``, except
where jsonb would change the value: floats (kept as numeric there: ``-0.0`` becomes ``0``,
``1e+30`` an integer), wherever they are."""

from __future__ import annotations

import math
from typing import Any

import pytest

from quantumorm import ArrayField, Document, FloatField, JSONField, Sum

pytestmark = pytest.mark.postgres


class Reading(Document):
    f = FloatField()
    vals = ArrayField(FloatField())
    raw = JSONField()

    class Meta:
        backend = "postgres"
        collection = "readings"


async def test_float_values_keep_their_type_and_sign(pg: Any) -> None:
    await Reading(id="a", f=-0.0, vals=[1e30, -0.0], raw={"x": 1e30}).save()
    await Reading(id="b", f=1e30, vals=[0.1], raw=[2.5]).save()
    frequencies = await Reading.objects.item_frequencies("vals")
    assert frequencies == {-0.0: 1, 0.1: 1, 1e30: 1}
    assert all(type(value) is float for value in frequencies)
    assert all(type(value) is float for value in await Reading.objects.distinct("f"))
    signs = [math.copysign(1.0, v) for v in await Reading.objects.distinct("f")]
    assert signs == [-1.0, 1.0]  # -0.0 kept its sign
    assert (await Reading.objects.aggregate(total=Sum("f")))["total"] == 1e30
    # (a JSON field has no order, so no distinct(); its values are read whole all the same)
    assert sorted(await Reading.objects.values_list("raw", flat=True).all(), key=str) == [
        [2.5], {"x": 1e30}]
