"""SQLite's registry of path tokens (``backends/sqlite/paths.py``): a condition gets a fresh
token each time it is compiled (tokens are never shared by Python equality), the registry of
conditions is bounded, and a model's path tokens go with the model."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest

from quantumorm import Document, EmbeddedDocument, EmbeddedDocumentField, JSONField, StringField
from quantumorm.backends.sqlite import paths as path_sql
from quantumorm.query import paths as query_paths
from quantumorm.query.lookups import Lookup
from quantumorm.query.nodes import Condition


class Spot(EmbeddedDocument):
    city = StringField()
    extra = JSONField()


def _model(i: int) -> Any:
    return type(f"RegistryModel{i}", (Document,), {
        "address": EmbeddedDocumentField(Spot),
        "Meta": type("Meta", (), {"backend": "sqlite", "collection": f"registry_{i}"})})


@pytest.fixture(autouse=True)
def _sqlite(sdb: Any) -> None:
    """The default SQLite connection (closed afterwards), on a file and in memory."""


def test_equal_conditions_of_different_types_get_their_own_tokens() -> None:
    M = _model(0)
    one = path_sql.condition_token(M._meta, Condition("address__extra", Lookup.EXACT, 1))
    true = path_sql.condition_token(M._meta, Condition("address__extra", Lookup.EXACT, True))
    assert one != true
    assert path_sql._conditions[true][1].value is True
    M(id="i", address=Spot(extra=1)).save_sync()
    M(id="b", address=Spot(extra=True)).save_sync()
    assert [d.id for d in M.objects.filter(address__extra=1).all_sync()] == ["i"]
    assert [d.id for d in M.objects.filter(address__extra=True).all_sync()] == ["b"]


def test_the_condition_registry_is_bounded() -> None:
    M = _model(1)
    for i in range(path_sql.CONDITIONS + 10):
        path_sql.condition_token(M._meta, Condition("address__city", Lookup.EXACT, str(i)))
    assert len(path_sql._conditions) <= path_sql.CONDITIONS


def test_path_tokens_go_with_their_model() -> None:
    M = _model(2)
    M(id="a", address=Spot(city="x")).save_sync()
    assert [d.id for d in M.objects.order_by("address__city").all_sync()] == ["a"]
    token = path_sql.path_token(M._meta, "address__city")
    assert path_sql.path_token(M._meta, "address__city") == token  # (one per model and path)
    assert path_sql.key('{"address": {"city": "x"}}', token) != path_sql.key(None, token)
    ref = weakref.ref(M)
    del M
    query_paths._cached.cache_clear()  # (the resolution cache: bounded, it holds models too)
    for _ in range(10):
        gc.collect()
        if ref() is None:
            break
    assert ref() is None
    assert token not in path_sql._paths
    with pytest.raises(ValueError, match="unknown path token"):
        path_sql.key(None, token)
