"""The one-insert path of the Redis writer (``Writer._write_one``): a single insert's call is
sent as the first round of the general write loop would send it, and only an "OK" is read
there; every other outcome is handed to that loop as its first round's. Each test checks
the answer against the general path (``Writer._write_all``) or the guarantee at stake: the
same results and errors, one script call per refusal (nothing sent twice), ids allocated
and settled as before."""

from __future__ import annotations

from typing import Any

import pytest
import redis

import quantumorm
from quantumorm import (
    Document,
    DuplicateIdError,
    IntField,
    StringField,
    UniqueViolation,
)
from quantumorm.backends.redis import executor as executor_module
from quantumorm.backends.redis import writer as writer_module
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.engine.contract import WriteRequest, WriteResult
from quantumorm.engine.drive import run


class Entry(Document):
    title = StringField(indexed=True)
    code = StringField(unique=True)
    n = IntField(default=0)

    class Meta:
        collection = "sip_entries"


class Spread(Document):
    title = StringField(indexed=True)

    class Meta:
        collection = "sip_spread"
        partitions = 4


def request(doc: Document) -> WriteRequest:
    data = doc.clean()
    return WriteRequest("insert", doc.id, 0, data, doc._values(), None,
                        raw=quantumorm.engine.contract.encode_document(data))


def outcome(conn: Any, general: bool, doc: Document) -> WriteResult | Exception:
    """The result of inserting ``doc`` through the one-insert path or the general one."""
    backend = conn.backend
    write = backend._write_all if general else backend.write
    try:
        (result,) = run(write(type(doc)._meta, [request(doc)]), conn.store.sync_executor())
    except Exception as exc:  # (raised, not reported: compared as such)
        return exc
    return result


def described(result: WriteResult | Exception) -> Any:
    if isinstance(result, Exception):
        return type(result), str(result)
    error = result.error
    return result.version is not None, None if error is None else (type(error), str(error))


def script_calls(client: redis.Redis) -> int:
    return sum(int(stat["calls"]) for name, stat in client.info("commandstats").items()
               if name in ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_fcall"))


def test_an_insert_gives_what_the_general_path_gives(conn: Any, redis_client: Any) -> None:
    Entry(id="warm", title="w", code="w").save_sync()  # (the schema is read: first use)
    fast = outcome(conn, False, Entry(id="a", title="t", code="ca"))
    general = outcome(conn, True, Entry(id="b", title="t", code="cb"))
    assert isinstance(fast, WriteResult) and isinstance(general, WriteResult)
    assert (fast.id, general.id) == ("a", "b") and fast.error is None is general.error
    assert 0 < fast.version < general.version  # type: ignore[operator]
    # an id allocated by the script (one partition): the next value of the counter
    allocated = [outcome(conn, general, Entry(title="t", code=f"auto{general}"))
                 for general in (False, True)]
    assert [r.id for r in allocated] == ["1", "2"]  # type: ignore[union-attr]
    stored = {d.id: d.version for d in Entry.objects.all_sync()}
    assert stored["a"] == fast.version and stored["1"] == allocated[0].version  # type: ignore[union-attr]


@pytest.mark.parametrize("case", ["duplicate id", "unique value"])
def test_a_refused_insert_is_sent_once_and_refused_alike(conn: Any, redis_client: Any,
                                                         case: str) -> None:
    Entry(id="a", title="t", code="taken").save_sync()
    answers = []
    for general in (False, True):
        doc = (Entry(id="a", title="t", code=f"free{general}") if case == "duplicate id"
               else Entry(id="other", title="t", code="taken"))
        before = script_calls(redis_client)
        answers.append(described(outcome(conn, general, doc)))
        assert script_calls(redis_client) - before == 1  # handed over, never sent again
    assert answers[0] == answers[1]
    expected = DuplicateIdError if case == "duplicate id" else UniqueViolation
    assert answers[0][0] is False and answers[0][1][0] is expected
    # and through the public API: the same error, nothing written
    with pytest.raises(expected):
        Entry(id="a" if case == "duplicate id" else "z", title="t",
              code="fresh" if case == "duplicate id" else "taken").save_sync()
    assert Entry.objects.count_sync() == 1


def test_an_allocated_id_a_user_took_gives_the_next_one(conn: Any, redis_client: Any) -> None:
    """The script skips counter values a user took as ids."""
    Entry(id="warm", title="w", code="w").save_sync()
    Entry(id="1", title="mine", code="mine").save_sync()
    before = script_calls(redis_client)
    doc = Entry(title="auto", code="auto").save_sync()
    assert script_calls(redis_client) - before == 1
    assert doc.id == "2" and doc.version > 0
    assert {d.id: d.title for d in Entry.objects.all_sync()} == {
        "warm": "w", "1": "mine", "2": "auto"}


def test_allocated_ids_all_taken_are_retried_as_the_general_path_retries(
        conn: Any, redis_client: Any) -> None:
    """Every counter value a script may try is taken: refused (EXISTS, no id taken),
    handed to the general loop, which sends it again for fresh values, round after round,
    as it does for a refusal it met itself; then DuplicateIdError either way."""
    Entry.objects.bulk_create_sync([Entry(id=str(n), title="u", code=str(n))
                                    for n in range(1, 1001)])
    answers, sent = [], []
    for general in (False, True):
        before = script_calls(redis_client)
        answers.append(described(outcome(conn, general, Entry(title="a", code="a"))))
        sent.append(script_calls(redis_client) - before)
    assert answers[0] == answers[1] and answers[0][1][0] is DuplicateIdError
    assert sent[0] == sent[1] > 1
    assert Entry.objects.count_sync() == 1000


def _lose_next_reply(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The next round trip of the one-insert path is applied by the server, then its reply
    is "lost" (a ConnectionError); the list returned holds a 1 once it was."""
    real = executor_module._round_trip
    lost: list[int] = []

    def lossy(*args: Any) -> Any:
        replies = real(*args)
        if not lost:
            lost.append(1)
            raise redis.ConnectionError("injected: the reply was lost")
        return replies

    monkeypatch.setattr(executor_module, "_round_trip", lossy)
    return lost


def test_a_lost_reply_of_an_allocating_insert_is_settled_by_its_write_id(
        conn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The call the one-insert path sent (its write id) is the one looked up."""
    Entry(id="warm", title="w", code="w").save_sync()
    lost = _lose_next_reply(monkeypatch)
    doc = Entry(title="once", code="once").save_sync()
    monkeypatch.undo()
    stored = Entry.objects.filter(title="once").all_sync()
    assert [(d.id, d.version) for d in stored] == [(doc.id, doc.version)] and lost


def test_a_lost_reply_of_an_insert_with_its_id_is_recognised(
        conn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    Entry(id="warm", title="w", code="w").save_sync()
    lost = _lose_next_reply(monkeypatch)
    doc = Entry(id="k", title="once", code="k").save_sync()  # resent: its write id known
    monkeypatch.undo()
    assert lost and Entry.objects.get_sync(id="k").version == doc.version
    events = [(e.op, e.id) for e in Entry.objects.changes(since="0").read_sync()]
    assert events.count(("create", "k")) == 1


def test_where_the_one_insert_path_declines(conn: Any, redis_client: Any) -> None:
    """Not taken: at first use (the schema not read yet), for an insert whose id is
    allocated first (several partitions), for several requests; the general path then
    answers, as before."""
    backend = conn.backend
    first = Entry(id="f", title="t", code="f").save_sync()  # first use: general path
    assert first.version > 0
    spread = Spread(title="s").save_sync()  # an id from INCRBY, then the insert
    assert spread.id == "1" and Spread.objects.get_sync(id="1").title == "s"
    two = [request(Entry(id=f"m{i}", title="t", code=f"m{i}")) for i in range(2)]
    results = run(backend.write(Entry._meta, two), conn.store.sync_executor())
    assert [r.id for r in results] == ["m0", "m1"] and all(r.version for r in results)
    keys = KeySpace(Entry._meta)
    assert redis_client.exists(keys.doc(0, "m0"), keys.doc(0, "m1")) == 2


def _place(collection: str, **fields: Any) -> Any:
    meta = type("Meta", (), {"collection": collection})
    return type("Place", (Document,), {**fields, "Meta": meta})


def test_an_insert_with_an_outdated_layout_is_refused_once_then_written(
        conn: Any, redis_client: Any) -> None:
    """Another connection made an index ready (a newer layout) after this one read the
    schema: the script refuses the insert (LAYOUT, nothing written), the general loop reads
    the schema again and sends it again; a known id and an allocated one alike."""
    Old = _place("sip_layout", name=StringField(indexed=True), city=StringField())
    Old.objects.bulk_create_sync([Old(id="x", name="n", city="oslo")])
    New = _place("sip_layout", name=StringField(indexed=True),
                 city=StringField(indexed=True))
    other = quantumorm.create_connection(url=conn.url, name="other")
    try:
        here = New.objects.using("other")
        here.filter(city="oslo").explain_sync()  # "other" reads the schema (index building)
        schema_key = KeySpace(New._meta).schema
        sent: dict[tuple[bool, bool], int] = {}
        for id, general in (("k", False), ("g", True), (None, False), (None, True)):
            assert New.objects.reindex_sync().ready  # through "default": a newer layout
            seen = other.backend._state(New._meta).schema.layout
            assert seen < int(redis_client.hget(schema_key, "layout"))
            before = script_calls(redis_client)
            write = other.backend._write_all if general else other.backend.write
            (result,) = run(write(New._meta, [request(New(id=id, name="n", city="lima"))]),
                            other.store.sync_executor())
            assert result.error is None and result.version
            sent[id is None, general] = script_calls(redis_client) - before
            assert other.backend._state(New._meta).schema.layout == int(
                redis_client.hget(schema_key, "layout"))  # read again
            assert New.objects.get_sync(id=result.id).city == "lima"
        # refused once, the schema read, then written: as the general path does it
        assert sent[False, False] == sent[False, True] and sent[True, False] == sent[True, True]
        assert sent[False, False] > 1
        assert sorted(d.id for d in New.objects.filter(city="lima").all_sync()) == [
            "1", "2", "g", "k"]
    finally:
        other.close()


def _shape(batches: list[Any]) -> list[Any]:
    """A write batching's calls and positions, write ids left out (random per call)."""
    out = []
    for record, positions in batches:
        documents = getattr(record, "documents", None)
        if documents is not None:
            shown = [(d.document_key, d.id_key, d.document, d.values, d.members)
                     for d in documents]
            out.append(("insert_many", record.ids_key, record.expiry, shown, record.lenient,
                        positions))
        else:
            out.append((record.op, record.document_key, record.expiry, positions))
    return out


@pytest.mark.parametrize("batch", ["uniform", "two expiries", "an update", "no id"])
def test_a_batch_of_inserts_is_one_call_as_grouping_makes_it(
        conn: Any, monkeypatch: pytest.MonkeyPatch, batch: str) -> None:
    """A batch of inserts with their ids and one expiry (a bulk insert's) is one
    ``insert_many`` call, without grouping; any other batch is grouped as before, and
    either way the calls are the ones grouping makes."""
    Entry(id="warm", title="w", code="w").save_sync()
    state = conn.backend._state(Entry._meta)
    requests = [request(Entry(id=f"e{i}", title="t", code=f"c{i}")) for i in range(4)]
    if batch == "two expiries":
        requests[2] = WriteRequest("insert", "e2", 0, requests[2].data, requests[2].values,
                                   None, 60_000, requests[2].raw)
    elif batch == "an update":
        requests[1] = WriteRequest("update", "warm", 1, requests[1].data, requests[1].values,
                                   frozenset({"n"}), raw=requests[1].raw)
    elif batch == "no id":
        requests[3] = requests[3].with_id(None)
    positions = [3, 5, 8, 9]
    taken = writer_module._uniform(requests)
    assert taken is (batch == "uniform")
    quick = _shape(writer_module.Writer._batches(state, requests, positions))
    monkeypatch.setattr(writer_module, "_uniform", lambda requests: False)
    grouped = _shape(writer_module.Writer._batches(state, requests, positions))
    assert quick == grouped
    if batch == "uniform":
        assert len(quick) == 1 and quick[0][0] == "insert_many" and quick[0][-1] == positions
    else:
        assert len(quick) > 1


@pytest.mark.parametrize("id", ["k", None])
def test_an_insert_on_a_connection_that_stays_down_raises_the_connection_error(
        conn: Any, monkeypatch: pytest.MonkeyPatch, id: str | None) -> None:
    """Every round trip fails: the error the general path raises (after its retries, or
    the lookup of an allocating insert), nothing written, the document still new."""
    Entry(id="warm", title="w", code="w").save_sync()
    executor = conn.store.sync_executor()

    def down(*args: Any) -> Any:
        raise redis.ConnectionError("injected: the server is gone")

    monkeypatch.setattr(executor, "_send", down)
    monkeypatch.setattr(executor_module, "_round_trip", down)
    doc = Entry(id=id, title="t", code="c")
    with pytest.raises(quantumorm.BackendConnectionError):
        doc.save_sync()
    monkeypatch.undo()
    assert doc.version == 0 and doc.id == id
    assert Entry.objects.count_sync() == 1
