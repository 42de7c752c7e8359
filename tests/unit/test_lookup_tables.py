"""Lookups as tables: each consumer of a lookup's meaning is one table keyed by ``Lookup``.

* the reference evaluator handles every ``Lookup``;
* each built-in backend's ``lookups`` capability is exactly what its compiler's table holds,
  and every lookup it declares compiles (SQLite) or plans (Redis) on every kind of field that
  allows it, indexed or not;
* every token the Redis planner emits has a compiler in ``query.lua``'s table;
* the lookups a field allows come from one table per field kind;
* what a backend's capabilities lack (a lookup, ordering, keyset positions, compound
  indexes) is refused with ``UnsupportedOperation``, naming the backend;
* the boolean connectives are one enum, spelled by each backend through a table.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import quantumorm
from quantumorm import (
    ArrayField,
    BooleanField,
    DateTimeField,
    DecimalField,
    Document,
    FloatField,
    IntField,
    JSONField,
    Q,
    StringField,
    UnsupportedOperation,
    UUIDField,
    create_connection,
    register_backend,
)
from quantumorm.backends import _registry, backend_capabilities
from quantumorm.backends.redis import lookup_plans
from quantumorm.backends.redis.planner import Planner
from quantumorm.backends.sqlite import backend as sqlite_backend
from quantumorm.backends.sqlite import compiler
from quantumorm.backends.sqlite import open_connection as open_sqlite
from quantumorm.backends.sqlite.schema import Layout
from quantumorm.query import evaluate
from quantumorm.query.lookups import KIND_LOOKUPS, FieldKind, Lookup
from quantumorm.query.nodes import ID, And, BoolOp, Condition, Not, Or, QuerySpec


class Every(Document):
    """One field of each kind, indexed, and the same unindexed."""

    s = StringField(indexed=True)
    n = IntField(indexed=True)
    b = BooleanField(indexed=True)
    t = ArrayField(StringField(), indexed=True)
    j = JSONField()
    s2 = StringField()
    n2 = IntField()
    t2 = ArrayField(StringField())

    class Meta:
        backend = "sqlite"
        collection = "every"
        indexes = [("s", "n")]


#: a value each lookup accepts on each field of Every
VALUES: dict[str, Any] = {"s": "ab", "n": 3, "b": True, "t": "x", "j": {"k": 1}}


def _value(field: str, lookup: Lookup) -> Any:
    base = VALUES[field.rstrip("2")] if field != ID else "7"
    if lookup is Lookup.ISNULL:
        return True
    if lookup in (Lookup.IN, Lookup.NIN):
        return [base, base]
    if field.startswith("t") and lookup in (Lookup.EXACT, Lookup.NE):
        return [base]
    return base


def _conditions() -> Iterator[tuple[str, Lookup]]:
    options = Every._meta
    for name in (ID, *options.fields):
        allowed = KIND_LOOKUPS[FieldKind.ID] if name == ID else options.fields[name].lookups
        for lookup in Lookup:
            if lookup in allowed:
                yield name, lookup


def _node(name: str, lookup: Lookup) -> Any:
    qs = Every.objects.filter(**{f"{name}__{lookup.value}": _value(name, lookup)})
    return qs.spec.where


def test_the_evaluator_handles_every_lookup() -> None:
    assert set(evaluate.PREDICATES) == set(Lookup)
    values = {"id": "7", "s": "ab", "n": 3, "b": True, "t": ["x"], "j": {"k": 1},
              "s2": None, "n2": None, "t2": None}
    for name, lookup in _conditions():
        assert isinstance(evaluate.matches(Every._meta, _node(name, lookup), values), bool)


@pytest.mark.parametrize(("backend", "table"), [
    ("sqlite", compiler.SQL),
    ("redis", lookup_plans.LOOKUPS),
])
def test_a_backends_lookups_are_its_compilers_table(backend: str, table: dict[Lookup, Any]
                                                    ) -> None:
    assert backend_capabilities(backend).lookups == frozenset(table)
    assert set(table) == set(Lookup)  # the built-in backends serve every lookup


def test_every_lookup_sqlite_declares_compiles() -> None:
    layout = Layout(Every._meta)
    seen = set()
    for name, lookup in _conditions():
        node = _node(name, lookup)
        assert lookup in sqlite_backend.CAPABILITIES.lookups
        sql, params = compiler.where(layout, node)
        assert sql.count("?") == len(params), (name, lookup, sql)
        seen.add(lookup)
    assert seen == sqlite_backend.CAPABILITIES.lookups


def test_every_lookup_redis_declares_plans() -> None:
    options = dataclasses.replace(Every._meta, backend="redis")
    planner = Planner(options)
    seen = set()
    for name, lookup in _conditions():
        node = _node(name, lookup)
        for order in ((), ("n",)):
            spec = QuerySpec(node, tuple(Every.objects.order_by(*order).spec.order))
            plan = planner.plan(spec)
            served = planner.evaluable(node)
            # what the server cannot test is checked in Python, never dropped
            assert (plan.residual is None) is served, (name, lookup)
            assert plan.tokens
        seen.add(lookup)
    assert seen == frozenset(lookup_plans.LOOKUPS)


def test_query_lua_compiles_every_token_the_planner_emits() -> None:
    lua = (Path(lookup_plans.__file__).parent / "lua" / "query.lua").read_text()
    compiled = set(re.findall(r"^compilers\.([A-Z]+) =", lua, re.M))
    emitted = {token.decode() for token in lookup_plans.BOOL_TOKENS.values()}
    emitted |= {"T", "F", "ID", "ZIN", "ZRNG", "EQ", "IN", "GT", "GE", "LT", "LE", "PRE", "HAS",
                "NULL"}
    assert compiled == emitted
    assert lookup_plans.BOOL_TOKENS == {BoolOp.AND: b"AND", BoolOp.OR: b"OR", BoolOp.NOT: b"NOT"}


@pytest.mark.parametrize(("field", "kind"), [
    (StringField(), FieldKind.TEXT),
    (IntField(), FieldKind.ORDERED),
    (FloatField(), FieldKind.ORDERED),
    (DecimalField(), FieldKind.ORDERED),
    (DateTimeField(), FieldKind.ORDERED),
    (BooleanField(), FieldKind.EQUALITY),
    (UUIDField(), FieldKind.EQUALITY),
    (JSONField(), FieldKind.WHOLE),
    (ArrayField(IntField()), FieldKind.ARRAY),
])
def test_field_lookups_come_from_the_kind_table(field: Any, kind: FieldKind) -> None:
    assert field.lookups == KIND_LOOKUPS[kind]


def test_the_id_allows_equality_and_range_lookups() -> None:
    assert KIND_LOOKUPS[FieldKind.ID] == {Lookup.EXACT, Lookup.NE, Lookup.IN, Lookup.NIN,
                                          Lookup.GT, Lookup.GTE, Lookup.LT, Lookup.LTE}
    with pytest.raises(quantumorm.QueryError, match="not supported on the id"):
        Every.objects.filter(id__startswith="3")
    with pytest.raises(quantumorm.QueryError, match="not supported on an integer field"):
        Every.objects.filter(n__startswith="3")
    with pytest.raises(quantumorm.QueryError, match="not supported on a boolean field"):
        Every.objects.filter(b__gt=True)


def test_nodes_carry_their_connective() -> None:
    where = Every.objects.filter(Q(s="a") | ~Q(n=1), n2=2).spec.where
    assert isinstance(where, And) and where.op is BoolOp.AND
    ors = [c for c in where.children if isinstance(c, Or)]
    assert ors and ors[0].op is BoolOp.OR
    assert any(isinstance(c, Not) and c.op is BoolOp.NOT for c in ors[0].children)
    assert repr(Q(s="a") & Q(n=1)).startswith("Q[and](")
    assert isinstance(Condition("s", Lookup.EXACT, "a"), Condition)


# -- what a backend lacks is refused ----------------------------------------------------------


class _Lacking(sqlite_backend.SqliteBackend):
    """SQLite, declaring less than it can do."""

    capabilities = dataclasses.replace(
        sqlite_backend.CAPABILITIES,
        lookups=sqlite_backend.CAPABILITIES.lookups - {Lookup.ENDSWITH},
        ordering=False, keyset_pagination=False,
        index_kinds=sqlite_backend.CAPABILITIES.index_kinds - {"compound"})


def _open_lacking(url: str, **options: Any) -> Any:
    connection = open_sqlite("sqlite://")
    connection.backend = _Lacking(connection.backend.max_document_bytes)
    return connection


class Plain(Document):
    name = StringField(indexed=True)

    class Meta:
        backend = "lacking"
        collection = "plain"


class Paired(Document):
    name = StringField()
    age = IntField()

    class Meta:
        backend = "lacking"
        collection = "paired"
        indexes = [("name", "age")]


@pytest.fixture
def lacking() -> Iterator[None]:
    register_backend("lacking", _open_lacking, capabilities=_Lacking.capabilities)
    create_connection(backend="lacking", url="lacking://", name="lacking")
    yield
    quantumorm.close_all()
    _registry.pop("lacking", None)


def test_what_a_backend_lacks_is_refused_naming_it(lacking: None) -> None:
    Plain(name="ab").save_sync()
    assert Plain.objects.filter(name__startswith="a").count_sync() == 1
    with pytest.raises(UnsupportedOperation, match="lacking.*'endswith'") as caught:
        Plain.objects.filter(name__endswith="b").all_sync()
    assert caught.value.backend == "lacking"
    with pytest.raises(UnsupportedOperation, match="order_by"):
        Plain.objects.order_by("name").all_sync()
    qs = Plain.objects
    cursor = qs.cursor_for(Plain.objects.first_sync())
    with pytest.raises(UnsupportedOperation, match="keyset pagination"):
        qs.after(cursor).all_sync()
    with pytest.raises(UnsupportedOperation, match="compound indexes"):
        Paired(name="x", age=1).save_sync()


def test_iteration_without_keyset_pagination_reads_the_whole_result(lacking: None) -> None:
    """Plain iteration pages with keyset cursors of its own; a backend without them is read
    at once instead of failing after the first page."""
    from quantumorm.query.queryset import ITER_CHUNK

    Plain.objects.bulk_create_sync([Plain(name=f"n{i}") for i in range(ITER_CHUNK + 5)])
    assert len({doc.id for doc in Plain.objects}) == ITER_CHUNK + 5
