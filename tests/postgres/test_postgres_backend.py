"""What is particular to PostgreSQL: the stored row (exact JSON text beside jsonb), URLs and
options, typed connection errors, EXPLAIN, serialization failures retried, concurrent
unique claims, long names, and what the backend refuses."""

from __future__ import annotations

import asyncio
import json
import threading
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from postgres_helpers import MODES, call, ids_of, sql

import quantumorm
from quantumorm import (
    ArrayField,
    DecimalField,
    Document,
    IntField,
    JSONField,
    StringField,
)
from quantumorm.backends import backend_capabilities
from quantumorm.backends.postgres.plans import SqlPlan, Statement
from quantumorm.engine.contract import encode_document
from quantumorm.errors import (
    BackendConnectionError,
    BackendError,
    BackendTimeoutError,
    ConfigurationError,
    PoolExhaustedError,
    UniqueViolation,
    UnsupportedOperation,
    VersionConflict,
)


class Note(Document):
    title = StringField(indexed=True, unique=True)
    score = IntField(indexed=True)
    price = DecimalField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    extra = JSONField()

    class Meta:
        backend = "postgres"
        collection = "notes"


def _row(url: str, id: str) -> tuple[Any, ...]:
    from quantumorm import sortable

    (row,) = sql(url, 'SELECT version, doc, body FROM "qorm:notes" WHERE id_key = %s',
                 sortable.id_key(id))
    return row


@pytest.mark.parametrize("mode", MODES)
async def test_the_exact_json_text_is_stored_beside_jsonb(pg: Any, postgres_url: str,
                                                          mode: str) -> None:
    extra = {"z": 1, "a": [10**30, 0.1, "é"], "m": {"b": 2, "a": 1}}
    note = await call(Note(id="n", title="t", score=2**70, price=Decimal("1.10"),
                           extra=extra), "save", mode)
    version, doc, body = _row(postgres_url, "n")
    assert version == note.version
    # the same bytes the Redis backend stores: key order and every digit kept
    assert doc.encode() == encode_document(json.loads(doc))
    assert doc.index('"z"') < doc.index('"a"')
    assert json.loads(doc)["extra"] == extra
    # jsonb holds the same values (big numbers exact: jsonb numbers are numeric)
    assert body["extra"]["a"][0] == 10**30 and body["score"] == 2**70
    assert sql(postgres_url, 'SELECT id FROM "qorm:notes"') == [("n",)]  # for ad-hoc SQL
    got = await call(Note.objects, "get", mode, id="n")
    assert got.extra == extra and got.score == 2**70 and got.price == Decimal("1.10")


def test_a_document_with_nul_keeps_its_text_and_has_no_jsonb(pg: Any, postgres_url: str) -> None:
    Note(id="nul", title="a\x00b", extra={"k": "\x00"}).save_sync()
    Note(id="n\x00l", title="t").save_sync()
    _, doc, body = _row(postgres_url, "nul")
    assert body is None  # jsonb cannot hold U+0000
    assert sql(postgres_url, 'SELECT id FROM "qorm:notes" ORDER BY id NULLS FIRST') == [
        (None,), ("nul",)]  # (nor can text: that id is read by its key only)
    assert Note.objects.get_sync(id="n\x00l").title == "t"
    assert json.loads(doc)["title"] == "a\x00b"
    assert Note.objects.get_sync(title="a\x00b").extra == {"k": "\x00"}


def test_urls_and_options(pg: Any, postgres_url: str) -> None:
    rest = postgres_url.split("://", 1)[1]
    for scheme in ("postgresql", "postgres"):
        c = quantumorm.create_connection(backend="postgres", url=f"{scheme}://{rest}",
                                         name=scheme, max_connections=2, pool_timeout=5,
                                         connect_timeout=3, statement_timeout=30,
                                         application_name="qorm-test", sslmode="disable")
        try:
            assert Note.objects.using(scheme).count_sync() == 0
        finally:
            c.close()
    with pytest.raises(ConfigurationError, match="did you mean 'max_connections'"):
        quantumorm.create_connection(backend="postgres", url=postgres_url, name="x",
                                     max_conections=3)
    with pytest.raises(ConfigurationError) as secret:
        quantumorm.create_connection(backend="postgres", name="x",
                                     url="mysql://user:hunter2@h/db")
    assert "hunter2" not in str(secret.value)
    for bad in ({"min_connections": 5, "max_connections": 2}, {"pool_timeout": 0},
                {"max_connections": True}, {"statement_timeout": -1}, {"sslmode": 1}):
        with pytest.raises(ConfigurationError):
            quantumorm.create_connection(backend="postgres", url=postgres_url, name="x", **bad)
    with pytest.raises(ConfigurationError):
        quantumorm.create_connection(backend="postgres", name="x",
                                     url="postgresql://h/db?bogus_parameter=1")


@pytest.mark.parametrize("mode", MODES)
async def test_connection_errors_are_typed_and_immediate(postgres_url: str, mode: str) -> None:
    """A missing database is reported as such at the first call, not after a pool's
    timeout."""
    base = postgres_url.rsplit("/", 1)[0]
    quantumorm.create_connection(backend="postgres", url=f"{base}/no_such_db",
                                 name="nodb", make_default=True, connect_timeout=30)
    try:
        with pytest.raises(BackendConnectionError, match="no_such_db"):
            await call(Note.objects, "count", mode)
    finally:
        await quantumorm.aclose_all()
        quantumorm.close_all()


def test_a_database_not_in_utf8_is_refused(pg: Any, postgres_url: str) -> None:
    sql(postgres_url, "DROP DATABASE IF EXISTS latin")
    sql(postgres_url, "CREATE DATABASE latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
                      "TEMPLATE template0")
    try:
        base = postgres_url.rsplit("/", 1)[0]
        quantumorm.create_connection(backend="postgres", url=f"{base}/latin", name="latin",
                                     make_default=True)
        with pytest.raises(BackendError, match="UTF8"):
            Note.objects.count_sync()
    finally:
        quantumorm.close_all()
        sql(postgres_url, "DROP DATABASE IF EXISTS latin")


def test_explain_reports_postgres_own_plan(postgres_url: str) -> None:
    postgres_support_reset(postgres_url)
    # the planner prefers a sequential scan over a tiny table: make it show index use
    c = quantumorm.create_connection(backend="postgres", url=postgres_url, name="explain",
                                     make_default=True, options="-c enable_seqscan=off")
    try:
        Note.objects.bulk_create_sync([Note(title=f"t{i}", score=i % 7, tags=[str(i % 3)])
                                       for i in range(50)])
        by_index = Note.objects.filter(score=3).explain_sync()
        assert by_index.backend == "postgres" and not by_index.scanned
        assert by_index.indexes == ("score",) and by_index.strategy == "index"
        assert "qorm:notes!i!score" in by_index.details["postgres plan"]
        members = Note.objects.filter(tags__contains="1").explain_sync()
        assert members.indexes == ("tags",) and not members.scanned
        scan = Note.objects.filter(extra={"a": 1}).explain_sync()
        assert scan.scanned and scan.strategy == "scan"
        assert "Filter" in scan.details["postgres plan"]
        assert Note.objects.filter(id="1").explain_sync().strategy == "ids"
        assert "server, sorted" == Note.objects.order_by("price").explain_sync().ordering
    finally:
        c.close()


def postgres_support_reset(url: str) -> None:
    import postgres_support

    postgres_support.reset(url)


def test_a_serialization_failure_is_retried(pg: Any, postgres_url: str) -> None:
    """Another transaction changes the row between our guard read and our write: PostgreSQL
    fails ours with a serialization failure; the executor runs the plan again, and then
    the compare-and-set itself decides."""
    Note(id="s", title="x", score=1).save_sync()
    note = Note.objects.get_sync(id="s")
    from quantumorm import sortable

    key = sortable.id_key("s")
    with psycopg.connect(postgres_url) as other:
        other.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        # touches the row without changing its version: our save must still succeed
        other.execute('UPDATE "qorm:notes" SET body = body WHERE id_key = %s', (key,))
        done: list[Any] = []
        saver = threading.Thread(target=lambda: done.append(_save(note, 2)))
        saver.start()
        saver.join(0.5)  # it waits for the row lock held by ``other``
        assert saver.is_alive()
        other.commit()
        saver.join(30)
    assert done and done[0] is None, done
    assert Note.objects.get_sync(id="s").score == 2
    # the same race where the other transaction DID write: a typed conflict, no error
    stale = Note.objects.get_sync(id="s")
    fresh = Note.objects.get_sync(id="s")
    fresh.score = 4
    fresh.save_sync()
    stale.score = 5
    with pytest.raises(VersionConflict):
        stale.save_sync()


def _save(note: Any, score: int) -> Exception | None:
    note.score = score
    try:
        note.save_sync()
    except Exception as exc:  # noqa: BLE001 (reported to the test)
        return exc
    return None


def test_concurrent_unique_claims_one_winner(pg: Any, postgres_url: str) -> None:
    """Eight connections claim one unique value at once: one write wins, every other is
    refused with UniqueViolation naming it (never a raw database error)."""
    names = [f"u{i}" for i in range(8)]
    for name in names:
        quantumorm.create_connection(backend="postgres", url=postgres_url, name=name)
    start = threading.Barrier(len(names))
    outcomes: dict[str, Any] = {}

    def claim(name: str) -> None:
        start.wait()
        try:
            Note.objects.using(name).create_sync(id=name, title="same")
            outcomes[name] = "won"
        except UniqueViolation as exc:
            outcomes[name] = exc
        except Exception as exc:  # noqa: BLE001 (reported to the test)
            outcomes[name] = exc

    threads = [threading.Thread(target=claim, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, o in outcomes.items() if o == "won"]
    assert len(winners) == 1, outcomes
    for name, outcome in outcomes.items():
        if name not in winners:
            assert isinstance(outcome, UniqueViolation), outcome
            assert outcome.other_id == winners[0]
    assert ids_of(Note.objects.filter(title="same").all_sync()) == winners


async def test_transactions_under_contention_lose_no_update(pg: Any, postgres_url: str) -> None:
    """run_transaction from many tasks and threads on one counter: serialization failures
    and version conflicts are retried, every increment lands once."""
    await Note(id="c", title="counter", score=0).save()

    async def bump(tx: Any) -> None:
        doc = await tx.get(Note, "c")
        doc.score += 1
        tx.save(doc)

    def bump_sync(tx: Any) -> None:
        doc = tx.get(Note, "c")
        doc.score += 1
        tx.save(doc)

    def worker() -> None:
        for _ in range(5):
            pg.run_transaction_sync(bump_sync, attempts=100)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    await asyncio.gather(*(pg.run_transaction(bump, attempts=100) for _ in range(15)))
    await asyncio.to_thread(lambda: [t.join() for t in threads])
    assert (await Note.objects.get(id="c")).score == 30


def test_long_names_stay_apart(pg: Any, postgres_url: str) -> None:
    """PostgreSQL keeps 63 bytes of a name: longer ones are shortened with a digest, so
    two collections (or indexes) that share a long prefix never share a table."""
    prefix = "c" * 70

    def model(suffix: str) -> Any:
        return type(f"Long{suffix}", (Document,), {
            "v" * 70 + "1": IntField(indexed=True), "v" * 70 + "2": IntField(indexed=True),
            "Meta": type("Meta", (), {"backend": "postgres", "collection": prefix + suffix})})

    a, b = model("a"), model("b")
    a(id="1", **{"v" * 70 + "1": 1, "v" * 70 + "2": 2}).save_sync()
    b(id="1", **{"v" * 70 + "1": 3}).save_sync()
    assert a.objects.filter(**{"v" * 70 + "2": 2}).count_sync() == 1
    assert b.objects.filter(**{"v" * 70 + "1": 3}).count_sync() == 1
    assert b.objects.filter(**{"v" * 70 + "2": 2}).count_sync() == 0
    tables = {row[0] for row in sql(postgres_url, "SELECT tablename FROM pg_tables "
                                                  "WHERE schemaname = 'public'")}
    assert sum(name.startswith("qorm:ccc") for name in tables) == 2
    assert all(len(name.encode()) <= 63 for name in tables)


def test_indexes_named_like_the_sequences_and_the_key_are_built_and_dropped(
        pg: Any, postgres_url: str) -> None:
    """Fields named "versions", "ids" and "pkey" name their indexes so; those live apart
    from the table's sequences and primary key, so each is built (and dropped)."""
    def model(indexed: bool) -> Any:
        return type("Clash", (Document,), {
            "versions": IntField(indexed=indexed), "ids": StringField(unique=True),
            "pkey": IntField(indexed=True),
            "Meta": type("Meta", (), {"backend": "postgres", "collection": "clash"})})

    first = model(True)
    first(id="1", versions=1, ids="a", pkey=2).save_sync()
    kinds = dict(sql(postgres_url, "SELECT relname, relkind::text FROM pg_class "
                                   "WHERE relname LIKE 'qorm:clash!%'"))
    assert {name: kinds.get(f"qorm:clash!i!{name}") for name in ("versions", "ids", "pkey")} \
        == {"versions": "i", "ids": "i", "pkey": "i"}
    assert kinds["qorm:clash!versions"] == "S" and kinds["qorm:clash!pkey"] == "i"
    with pytest.raises(quantumorm.UniqueViolation):  # the unique value is refused
        first(id="2", versions=1, ids="a", pkey=2).save_sync()
    quantumorm.close_all()
    quantumorm.create_connection(backend="postgres", url=postgres_url, name="postgres",
                                 make_default=True)
    second = model(False)  # "versions" no longer indexed: its index goes, the sequence stays
    assert second.objects.get_sync(id="1").versions == 1
    kinds = dict(sql(postgres_url, "SELECT relname, relkind::text FROM pg_class "
                                   "WHERE relname LIKE 'qorm:clash!%'"))
    assert "qorm:clash!i!versions" not in kinds and kinds["qorm:clash!versions"] == "S"


def test_namespace_and_collection_never_fold_into_one_table(pg: Any) -> None:
    def model(namespace: str, collection: str) -> Any:
        return type(f"M_{namespace}_{collection}", (Document,), {
            "n": IntField(indexed=True),
            "Meta": type("Meta", (), {"backend": "postgres", "namespace": namespace,
                                      "collection": collection})})

    one, other = model("a_b", "c"), model("a", "b_c")
    one(id="1", n=1).save_sync()
    other(id="1", n=2).save_sync()
    assert [d.n for d in one.objects.all_sync()] == [1]
    assert [d.n for d in other.objects.all_sync()] == [2]


def test_what_postgres_refuses(pg: Any) -> None:
    caps = backend_capabilities("postgres")
    assert caps.transactions and caps.unique_indexes and not caps.ttl
    assert not caps.change_events and not caps.partitions
    assert "postgres" in str(quantumorm.capabilities())

    class Temp(Document):
        class Meta:
            backend = "postgres"
            ttl = 10

    with pytest.raises(UnsupportedOperation):
        Temp.objects.count_sync()

    class Feed(Document):
        class Meta:
            backend = "postgres"
            changes = True

    with pytest.raises(UnsupportedOperation, match="change events"):
        Feed(id="1").save_sync()


def test_timeouts_and_an_exhausted_pool_are_typed(pg: Any, postgres_url: str) -> None:
    """statement_timeout cancels a statement (BackendTimeoutError); a pool whose only
    connection is busy past pool_timeout says so (PoolExhaustedError)."""
    slow = SqlPlan.read(Statement("SELECT pg_sleep(2)"))
    short = quantumorm.create_connection(backend="postgres", url=postgres_url, name="short",
                                         statement_timeout=0.05)
    with pytest.raises(BackendTimeoutError):
        short.store.sync_executor().execute(slow)
    # the connection is still good for the next call
    assert short.store.sync_executor().execute(SqlPlan.read(Statement("SELECT 1")))
    one = quantumorm.create_connection(backend="postgres", url=postgres_url, name="one",
                                       min_connections=0, max_connections=1,
                                       pool_timeout=0.2)
    executor = one.store.sync_executor()
    executor.execute(SqlPlan.read(Statement("SELECT 1")))  # (the pool is open)
    pool = executor._get_pool()
    held = pool.getconn()  # the only connection, taken from under the executor
    try:
        with pytest.raises(PoolExhaustedError):
            executor.execute(SqlPlan.read(Statement("SELECT 1")))
    finally:
        pool.putconn(held)
    assert executor.execute(SqlPlan.read(Statement("SELECT 1")))


def test_first_use_from_many_connections_at_once(pg: Any, postgres_url: str) -> None:
    """Six connections (as six processes would) create the same collection at the same
    moment, then an evolved model: the DDL runs under an advisory lock, no catalog race."""
    def declare(with_rank: bool) -> Any:
        fields: dict[str, Any] = {"name": StringField(indexed=True, unique=True)}
        if with_rank:
            fields["rank"] = IntField(indexed=True, default=7)
        return type("Racer", (Document,), {
            **fields, "Meta": type("Meta", (), {"backend": "postgres", "collection": "race"})})

    for step, model in enumerate((declare(False), declare(True))):
        names = [f"r{step}-{i}" for i in range(6)]
        for name in names:
            quantumorm.create_connection(backend="postgres", url=postgres_url, name=name)
        start = threading.Barrier(len(names))
        outcomes: list[Any] = []

        def first_use(name: str, model: Any = model, start: Any = start,
                      outcomes: list[Any] = outcomes) -> None:
            start.wait()
            try:
                model.objects.using(name).count_sync()
                outcomes.append("ok")
            except Exception as exc:  # noqa: BLE001 (reported to the test)
                outcomes.append(exc)

        threads = [threading.Thread(target=first_use, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert outcomes == ["ok"] * len(names)
        model(id=f"doc{step}", name=f"n{step}").save_sync()
    evolved = declare(True)
    assert [d.rank for d in evolved.objects.order_by("id").all_sync()] == [7, 7]
