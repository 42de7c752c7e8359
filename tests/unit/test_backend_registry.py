"""The backend registry and capabilities: a third party registers a tiny backend of its own.

The tiny backend keeps documents in a dict and answers queries with the reference evaluator;
it supports no ``endswith`` and no partitions, so the ORM must refuse those, naming it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import quantumorm
from quantumorm import (
    Capabilities,
    ConfigurationError,
    Document,
    IntField,
    StringField,
    UnsupportedOperation,
    VersionConflict,
    create_connection,
    register_backend,
)
from quantumorm.backends import _registry, backend_capabilities
from quantumorm.backends.base import Explanation, Row, WriteRequest, WriteResult
from quantumorm.errors import DuplicateIdError
from quantumorm.options import ModelOptions
from quantumorm.query import evaluate
from quantumorm.query.lookups import Lookup
from quantumorm.query.nodes import QuerySpec

TINY = Capabilities(lookups=frozenset(Lookup) - {Lookup.ENDSWITH},
                    index_kinds=frozenset({"scan"}), unique_indexes=False)


class TinyBackend:
    """Documents in a dict; every operation is a generator that needs no I/O at all."""

    name = "tiny"
    capabilities = TINY

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Row]] = {}
        self.counter = 0

    def _table(self, options: ModelOptions) -> dict[str, Row]:
        return self.rows.setdefault(options.collection, {})

    def allocate_ids(self, options: ModelOptions, count: int) -> Any:
        yield None  # a plan the executor ignores: operations are generators
        start, self.counter = self.counter + 1, self.counter + count
        return [str(n) for n in range(start, self.counter + 1)]

    def write(self, options: ModelOptions, requests: Sequence[WriteRequest]) -> Any:
        yield None
        table, out = self._table(options), []
        for r in requests:
            if r.kind == "insert":
                if r.id is None:
                    self.counter += 1
                    r = WriteRequest("insert", str(self.counter), 0, r.data, r.values)
                if r.id in table:
                    out.append(WriteResult(r.id, None, DuplicateIdError(options.model_name,
                                                                        str(r.id))))
                    continue
                assert r.id is not None and r.data is not None
                table[r.id] = Row(r.id, 1, dict(r.data))
                out.append(WriteResult(r.id, 1))
                continue
            assert r.id is not None
            current = table.get(r.id)
            actual = None if current is None else current.version
            if r.kind == "delete" and current is None:
                out.append(WriteResult(r.id, None))
            elif actual != r.expected_version and r.expected_version:
                out.append(WriteResult(r.id, None, VersionConflict(
                    options.model_name, r.id, r.expected_version, actual)))
            elif r.kind == "delete":
                del table[r.id]
                out.append(WriteResult(r.id, 0))
            else:
                assert current is not None and r.data is not None
                table[r.id] = Row(r.id, current.version + 1, dict(r.data))
                out.append(WriteResult(r.id, current.version + 1))
        return out

    def get_many(self, options: ModelOptions, ids: Sequence[str]) -> Any:
        yield None
        table = self._table(options)
        return [table.get(i) for i in ids]

    def query(self, options: ModelOptions, spec: QuerySpec) -> Any:
        yield None
        model_values = []
        for row in self._table(options).values():
            values = {"id": row.id}
            for name, field in options.fields.items():
                raw = row.data.get(field.db_name)
                values[name] = None if raw is None else field.from_storage(raw)
            if evaluate.matches(options, spec.where, values):
                model_values.append((evaluate.sort_keys(options, spec.order, values), row))
        ordered = evaluate.sort_rows(model_values, lambda item: item[0],
                                     evaluate.directions(spec.order))
        rows = [row for _, row in ordered]
        end = None if spec.limit is None else spec.offset + spec.limit
        return rows[spec.offset:end]

    def count(self, options: ModelOptions, spec: QuerySpec) -> Any:
        return len((yield from self.query(options, spec)))

    def exists(self, options: ModelOptions, spec: QuerySpec) -> Any:
        return bool((yield from self.query(options, spec)))

    def explain(self, options: ModelOptions, spec: QuerySpec) -> Any:
        yield None
        return Explanation("tiny", "scan", (), True, "none", repr(spec.where), "client")

    def drop_collection(self, options: ModelOptions) -> Any:
        yield None
        return len(self.rows.pop(options.collection, {}))


class _Executor:
    def execute(self, plan: Any) -> None:
        return None


class _AsyncExecutor:
    async def execute(self, plan: Any) -> None:
        return None


class TinyConnection:
    def __init__(self, url: str, **options: Any) -> None:
        self.backend = TinyBackend()

    def sync_executor(self) -> _Executor:
        return _Executor()

    def async_executor(self) -> _AsyncExecutor:
        return _AsyncExecutor()

    def close(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class Pet(Document):
    name = StringField(indexed=True)
    age = IntField()

    class Meta:
        backend = "tiny"
        collection = "pets"


class Herd(Document):
    name = StringField()

    class Meta:
        backend = "tiny"
        collection = "herd"
        partitions = 4


@pytest.fixture
def tiny() -> Any:
    register_backend("tiny", TinyConnection, capabilities=TINY)
    connection = create_connection(backend="tiny", url="tiny://", name="tiny")
    yield connection
    quantumorm.close_all()
    _registry.pop("tiny", None)


def test_a_registered_backend_runs_the_whole_api(tiny: Any) -> None:
    a = Pet(name="Rex", age=3).save_sync()
    Pet.objects.bulk_create_sync([Pet(name="Tom", age=5), Pet(name="Ada", age=1)])
    assert [p.name for p in Pet.objects.order_by("age").all_sync()] == ["Ada", "Rex", "Tom"]
    assert Pet.objects.filter(age__gt=2).count_sync() == 2
    a.age = 4
    a.save_sync()
    stale = Pet.objects.get_many_sync([a.id])[0]
    a.age = 6
    a.save_sync()
    stale.age = 9
    with pytest.raises(VersionConflict):
        stale.save_sync()
    assert Pet.objects.filter(name__startswith="T").update_sync(age=7) == 1
    assert Pet.objects.get_sync(name="Tom").age == 7
    assert Pet.objects.filter(age__lt=5).delete_sync() == 1
    assert tiny.backend.capabilities is TINY


def test_unsupported_features_raise_naming_the_backend(tiny: Any) -> None:
    with pytest.raises(UnsupportedOperation, match="tiny.*endswith") as caught:
        Pet.objects.filter(name__endswith="x").all_sync()
    assert caught.value.backend == "tiny"
    with pytest.raises(UnsupportedOperation, match="partitions"):
        Herd(name="x").save_sync()


def test_capabilities_of_builtin_backends_need_no_connection() -> None:
    assert backend_capabilities("redis").partitions is True
    assert backend_capabilities("sqlite").partitions is False
    matrix = quantumorm.capabilities()
    assert {"redis", "sqlite"} <= set(matrix.backends)
    assert "partitions" in str(matrix)
    # (kept on the frozen flags, read by every query)
    assert backend_capabilities("redis").every_lookup is True
    assert TINY.every_lookup is False
    assert Capabilities(lookups=frozenset(Lookup), index_kinds=frozenset()).every_lookup


def test_registration_is_checked() -> None:
    with pytest.raises(ConfigurationError):
        register_backend("", TinyConnection)
    with pytest.raises(ConfigurationError):
        register_backend("bad", "no-colon-here")
    with pytest.raises(ConfigurationError):
        register_backend("bad", TinyConnection, capabilities={"ttl": True})  # type: ignore[arg-type]
    assert "bad" not in _registry


def test_docs_table_is_the_generated_one() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "backends.md").read_text(
        encoding="utf-8")
    found = re.search(r"<!-- capabilities:start[^>]*-->\n(.*?)\n<!-- capabilities:end -->",
                      page, re.S)
    assert found is not None, "docs/backends.md lost its capability table markers"
    builtin = quantumorm.CapabilityMatrix(
        {name: backend_capabilities(name) for name in ("redis", "sqlite", "postgres")})
    assert found.group(1) == builtin.markdown()


def test_topology_urls_are_parsed_and_checked() -> None:
    from quantumorm.backends.redis.topology import parse

    cluster = parse("rediss+cluster://app:p%40ss@10.0.0.1:7000,[::1]:7001")
    assert (cluster.kind, cluster.hosts, cluster.tls) == (
        "cluster", (("10.0.0.1", 7000), ("::1", 7001)), True)
    assert (cluster.username, cluster.password) == ("app", "p@ss")
    sentinel = parse("redis+sentinel://s1:26379,s2:26379/main/3")
    assert (sentinel.kind, sentinel.service, sentinel.db, sentinel.tls) == (
        "sentinel", "main", 3, False)
    assert parse("redis://localhost:6379/0").kind == "single"
    for bad in ("redis+cluster://h:1?read_from_replicas=1", "redis+cluster://h:1/2",
                "redis+sentinel://h:1", "redis+cluster://", "redis+cluster://h:0",
                "memcached://h:1", "redis+sentinel://h:1/svc/db"):
        with pytest.raises(ConfigurationError):
            parse(bad)
