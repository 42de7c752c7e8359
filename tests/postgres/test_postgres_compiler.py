"""The PostgreSQL compiler without a server: every lookup compiles, values only ever travel
as parameters, and the backend's ``lookups`` capability is its compiler's table."""

from __future__ import annotations

import re
from typing import Any

import pytest

from quantumorm import ArrayField, Document, IntField, JSONField, Q, StringField
from quantumorm.backends import backend_capabilities
from quantumorm.backends.postgres import compiler
from quantumorm.backends.postgres.schema import Layout, ident, quote
from quantumorm.errors import QueryError
from quantumorm.query.lookups import Lookup
from quantumorm.query.nodes import TRUE, QuerySpec


class Every(Document):
    s = StringField(indexed=True)
    n = IntField(indexed=True)
    t = ArrayField(StringField(), indexed=True)
    j = JSONField()

    class Meta:
        backend = "postgres"
        collection = "every"


VALUES: dict[str, Any] = {"s": "x'); DROP TABLE t; --", "n": 7, "t": "tag", "j": {"k": 1}}


def _value(name: str, lookup: Lookup) -> Any:
    if lookup is Lookup.ISNULL:
        return True
    if lookup in (Lookup.REGEX, Lookup.IREGEX) and name == "s":
        return re.escape(VALUES[name])  # (a valid pattern, quotes and all)
    if lookup in (Lookup.IN, Lookup.NIN):
        return [VALUES[name] if name != "t" else ["a"], None] + (
            [str(i) for i in range(40)] if name == "s" else [])  # (a long list: one array)
    if name == "t" and lookup is not Lookup.CONTAINS:
        return ["a", "b"]
    return VALUES[name]


def test_the_lookups_capability_is_the_compilers_table() -> None:
    assert backend_capabilities("postgres").lookups == frozenset(compiler.SQL)
    assert set(compiler.SQL) == set(Lookup)


@pytest.mark.parametrize("lookup", list(Lookup))
def test_every_lookup_compiles_to_parameters(lookup: Lookup) -> None:
    layout = Layout(Every._meta)
    compiled = 0
    for name in ("s", "n", "t", "j", "id"):
        value = (["1", "2"] if lookup in (Lookup.IN, Lookup.NIN) else "1") if name == "id" \
            else _value(name, lookup)
        try:
            node = Every.objects.filter(Q(**{f"{name}__{lookup.value}": value})).spec.where
        except QueryError:
            continue  # (not a lookup of that field type)
        # (case-folded and pattern lookups are checked in Python: the SQL is the rest)
        server, residue = compiler.client_residue(QuerySpec(node))
        assert (residue is not None) is (lookup in compiler.CLIENT_LOOKUPS and node != TRUE)
        sql, params = compiler.where(layout, server.where)
        assert sql.count("%b") == len(params), (name, lookup, sql)
        assert "DROP" not in sql and "%s" not in sql
        assert all(isinstance(p, bytes | int | list) for p in params), params
        compiled += 1
    assert compiled


def test_identifiers_are_quoted_and_kept_within_postgres_limit() -> None:
    assert quote('a"b') == '"a""b"'
    long = "x" * 100
    assert len(ident(long).encode()) <= 63 and ident(long) != ident(long + "y")
    assert ident("short") == "short"
    assert len(ident("é" * 40).encode()) <= 63
