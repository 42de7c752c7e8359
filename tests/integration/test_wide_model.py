"""A model with the most indexes a model may have (``options.MAX_INDEXES``) on Redis: every
write carries each index's key and entries in one script call, whose arguments the script
unpacks onto Lua's stack, so the widest model allowed must write, update, patch and delete.
(Past about 2,000 indexes an update of every field once failed on the stack; past about
4,000 an insert failed after its first writes: the limit refuses such models instead.)"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, call

from quantumorm import Document, IntField
from quantumorm.options import MAX_INDEXES

# (one unique index among them: an insert then sends every index's quadruple too)
_FIELDS: dict[str, Any] = {f"f{i}": IntField(indexed=True, default=0)
                           for i in range(MAX_INDEXES - 1)}
_FIELDS["tag"] = IntField(indexed=True, unique=True)
_FIELDS["Meta"] = type("Meta", (), {"collection": "wide_models"})
Wide = type("Wide", (Document,), _FIELDS)


@pytest.mark.parametrize("mode", MODES)
async def test_the_widest_model_allowed_writes_updates_patches_and_deletes(
        conn: Any, mode: str) -> None:
    assert len(Wide._meta.indexes) == MAX_INDEXES
    doc = await call(Wide(id="a", tag=1), "save", mode)
    await call(Wide.objects, "bulk_create", mode, [Wide(id="b", tag=2), Wide(id="c", tag=3)])
    for i in range(MAX_INDEXES - 1):
        setattr(doc, f"f{i}", i + 1)
    await call(doc, "save", mode)  # (every field changed: every index's entry moves)
    await call(Wide.objects.filter(id="b"), "update", mode, f7=70)
    assert [d.id for d in await call(Wide.objects.filter(f998=999), "all", mode)] == ["a"]
    assert [d.id for d in await call(Wide.objects.filter(f7=70), "all", mode)] == ["b"]
    assert await call(Wide.objects.filter(f0=0), "count", mode) == 2
    await call(doc, "delete", mode)
    assert await call(Wide.objects.filter(f998=999), "count", mode) == 0
    report = await call(Wide.objects, "verify", mode)
    assert report.ok, report.problems
