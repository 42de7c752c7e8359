"""The models the metrics tests use: one per backend, the same fields."""

from __future__ import annotations

from quantumorm import Document, IntField, StringField


class RedisUser(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)

    class Meta:
        backend = "redis"
        collection = "m_users"


class LiteUser(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)

    class Meta:
        backend = "sqlite"
        collection = "m_users"


class PgUser(Document):
    name = StringField(indexed=True)
    age = IntField(indexed=True)

    class Meta:
        backend = "postgres"
        collection = "m_users"
