"""The models the metrics tests use: one per backend, the same fields."""

from __future__ import annotations

from typing import Any

from quantumorm import Document, IntField, StringField


def _user(name: str, backend: str) -> Any:
    meta = type("Meta", (), {"backend": backend, "collection": "m_users"})
    return type(name, (Document,), {"name": StringField(indexed=True),
                                    "age": IntField(indexed=True), "Meta": meta})


RedisUser = _user("RedisUser", "redis")
LiteUser = _user("LiteUser", "sqlite")
PgUser = _user("PgUser", "postgres")
