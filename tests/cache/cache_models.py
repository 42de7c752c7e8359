"""Models of the cache tests: SQLite primaries (and two PostgreSQL ones) cached on the
``"cache"`` connection."""

from __future__ import annotations

from quantumorm import Document, IntField, StringField


class Account(Document):
    email = StringField(unique=True)
    name = StringField(indexed=True)
    balance = IntField(default=0)

    class Meta:
        backend = "sqlite"
        collection = "accounts"
        cache = {"connection": "cache", "ttl": 300}


class Profile(Document):
    name = StringField(indexed=True)
    n = IntField(default=0)

    class Meta:
        backend = "sqlite"
        collection = "profiles"
        cache = {"connection": "cache", "ttl": 300, "mode": "write-through",
                 "negative_ttl": 60, "partitions": 4}


class Counter(Document):
    n = IntField(default=0)

    class Meta:
        backend = "sqlite"
        collection = "counters"
        cache = {"connection": "cache", "ttl": 300, "negative_ttl": 30}


class ThroughCounter(Document):
    n = IntField(default=0)

    class Meta:
        backend = "sqlite"
        collection = "through_counters"
        cache = {"connection": "cache", "ttl": 300, "mode": "write-through", "partitions": 3}


class PgCounter(Document):
    """:class:`Counter` on a PostgreSQL primary."""

    n = IntField(default=0)

    class Meta:
        backend = "postgres"
        collection = "pg_counters"
        cache = {"connection": "cache", "ttl": 300, "negative_ttl": 30}


class PgThroughCounter(Document):
    """:class:`ThroughCounter` on a PostgreSQL primary."""

    n = IntField(default=0)

    class Meta:
        backend = "postgres"
        collection = "pg_through_counters"
        cache = {"connection": "cache", "ttl": 300, "mode": "write-through", "partitions": 3}


MODELS = (Account, Profile, Counter, ThroughCounter, PgCounter, PgThroughCounter)
