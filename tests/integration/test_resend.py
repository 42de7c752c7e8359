"""Writes sent twice: what happens when a reply is lost and the executor sends the same write
again. Each script recognises its own earlier application (by its write id) and reports it
without applying anything twice; an insert that allocates its id is looked up first."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from quantumorm import (
    BackendConnectionError,
    Document,
    IntField,
    StringField,
    VersionConflict,
    WriteOutcomeUnknown,
    sortable,
)
from quantumorm.backends.redis import executor as executor_module
from quantumorm.backends.redis.commands import RedisPlan
from quantumorm.engine.contract import WriteRequest
from quantumorm.engine.drive import run


class Note(Document):
    title = StringField(indexed=True)
    n = IntField(default=0)

    class Meta:
        collection = "resend_notes"


def layout(conn: Any) -> Any:
    return conn.backend._state(Note._meta).writes


def send(conn: Any, *calls: Any) -> list[Any]:
    return list(conn.store.sync_executor().execute(RedisPlan(tuple(calls))))


def request_of(doc: Note, kind: str, expected: int = 0) -> WriteRequest:
    data = doc.clean()
    return WriteRequest(kind, doc.id, expected, data, doc._values(),  # type: ignore[arg-type]
                        None if kind == "insert" else frozenset({"n"}))


def events(conn: Any) -> list[tuple[str, str, int]]:
    return [(e.op, e.id, e.version) for e in Note.objects.changes(since="0").read_sync()]


def expected(id: str, version: int) -> int:
    """The expected version an update of ``id`` sends: a format-3 document's carries the
    entries of the document loaded (a Headed, as ``get()`` gives), a format-2 one's is the
    plain number (format 3 answers ENTRIES to it)."""
    loaded = Note.objects.get_sync(id=id).version
    assert loaded == version
    return loaded


@pytest.mark.parametrize("form", ["2", "3"])
def test_a_resent_insert_or_update_is_reported_once_applied_once(conn: Any, request: Any,
                                                                 form: str) -> None:
    if form == "2":
        request.getfixturevalue("format2_writes")
    insert = layout(conn).save(request_of(Note(id="a", title="t"), "insert")).call()
    reply = send(conn, insert)
    created = reply[0][1]
    assert reply == send(conn, insert) == [[b"OK", created, b"\x02a"]] and created > 0
    assert (type(Note.objects.get_sync(id="a").version) is int) == (form == "2")
    at_created = expected("a", created)
    update = layout(conn).save(request_of(Note(id="a", title="t", n=5), "update",
                                          at_created)).call()
    first, again = send(conn, update), send(conn, update)
    updated = first[0][1]
    # the resend reports the version its first attempt wrote
    assert first == again and first[0][0] == b"OK" and updated > created
    # another writer on top: the resend still recognises its own write in the history
    other = Note.objects.get_sync(id="a")
    other.n = 6
    other.save_sync()
    assert other.version > updated
    assert send(conn, update)[0][:2] == [b"OK", updated]
    stored = Note.objects.get_sync(id="a")
    assert (stored.n, stored.version) == (6, other.version)
    assert events(conn) == [("create", "a", created), ("update", "a", updated),
                            ("update", "a", other.version)]
    # the same change under a new write id is a different write: refused by the version
    fresh = layout(conn).save(request_of(Note(id="a", title="t", n=5), "update",
                                         at_created)).call()
    assert send(conn, fresh)[0][:2] == [b"VERSION", str(other.version).encode()]


@pytest.mark.parametrize("form", ["2", "3"])
def test_a_resent_batch_and_transaction_apply_once(conn: Any, request: Any,
                                                   form: str) -> None:
    if form == "2":
        request.getfixturevalue("format2_writes")
    batch = layout(conn).insert_many(0, [request_of(Note(id=f"b{i}", title="t"), "insert")
                                         for i in range(3)]).call()
    reply = send(conn, batch)  # every document written: one reply, the first version
    assert reply[0][0] == b"ALL"
    created = [reply[0][1] + k for k in range(3)]
    # sent again, each is recognised by its write id: one reply each, the version it wrote
    assert send(conn, batch) == [[[b"OK", v] for v in created]]
    assert 0 < created[0] < created[1] < created[2]  # written in turn
    tx = layout(conn).tx(0, [("b0", created[0])],
                         [request_of(Note(id="b1", title="t", n=1), "update",
                                     expected("b1", created[1])),
                          request_of(Note(id="c", title="t"), "insert")]).call()
    reply = send(conn, tx)
    assert reply == send(conn, tx)
    # the version read (b0), then the versions written (b1, c)
    read, b1, c = reply[0][1]
    assert reply[0][0] == b"OK" and read == created[0] and created[2] < b1 < c
    assert Note.objects.count_sync() == 4
    assert sorted(events(conn)) == sorted([("create", f"b{i}", created[i]) for i in range(3)]
                                          + [("update", "b1", b1), ("create", "c", c)])


def test_an_insert_that_allocates_its_id_is_looked_up_before_being_resent(conn: Any) -> None:
    backend = conn.backend
    executor = conn.store.sync_executor()
    lost = layout(conn).save(request_of(Note(title="lost reply"), "insert"))
    send(conn, lost.call())  # applied, but suppose the reply never came back
    Note(title="someone else").save_sync()  # the counter moves on meanwhile
    settled = run(backend._settle_allocating(Note._meta, lost), executor)
    # found: the version it wrote, and the id it was given
    first = Note.objects.get_sync(id="1")
    assert first.title == "lost reply" and first.version > 0
    assert settled[0][:2] == [b"OK", first.version] and settled[0][2] == sortable.id_key("1")
    never_sent = layout(conn).save(request_of(Note(title="never arrived"), "insert"))
    settled = run(backend._settle_allocating(Note._meta, never_sent), executor)
    assert settled[0][0] == b"OK"
    titles = sorted(n.title for n in Note.objects.all_sync())
    assert titles == ["lost reply", "never arrived", "someone else"]  # each exactly once


def test_the_retry_budget_is_a_checked_connection_option(conn: Any, redis_url: str) -> None:
    import quantumorm

    for bad in (0, -1, True, "3"):
        with pytest.raises(quantumorm.ConfigurationError, match="retries"):
            quantumorm.create_connection(url=redis_url, name="bad-retries", retries=bad)
    good = quantumorm.create_connection(url=redis_url, name="patient", retries=9)
    assert good.store.sync_executor().link.retries == 9


def lose_first_reply(conn: Any, monkeypatch: pytest.MonkeyPatch,
                     meanwhile: Any = lambda: None) -> list[int]:
    """The next plan the blocking executor sends is applied by the server, then the
    connection "breaks" before the reply arrives (``meanwhile`` runs in between: other
    writers). The executor's own retry logic takes it from there."""
    executor = conn.store.sync_executor()
    calls: list[int] = []
    inside: list[bool] = []  # (a round trip of _send that goes through _round_trip: once)

    def losing(real: Any) -> Any:
        def lossy(*args: Any) -> Any:  # (one round trip: see exchange.Send, _round_trip)
            if inside:
                return real(*args)
            calls.append(1)
            inside.append(True)
            try:
                replies = real(*args)
            finally:
                inside.clear()
            if len(calls) == 1:
                meanwhile()
                raise redis.ConnectionError("injected: the reply was lost")
            return replies
        return lossy

    # both ways a round trip goes: a first round straight to the pool (execute()), and
    # every round of the exchange (_send)
    monkeypatch.setattr(executor, "_send", losing(executor._send))
    monkeypatch.setattr(executor_module, "_round_trip", losing(executor_module._round_trip))
    return calls


def test_a_lost_reply_is_resolved_by_the_write_id(conn: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    counter = Note(id="c", title="t", n=0).save_sync()
    calls = lose_first_reply(conn, monkeypatch, meanwhile=lambda: [
        Note.objects.get_sync(id="c").inc_sync("n") for _ in range(2)])
    # applied (n = 1), then two other writers (n = 3), then the resend is recognised
    assert counter.inc_sync("n") == 1
    assert len(calls) > 2 and Note.objects.get_sync(id="c").n == 3  # never applied twice


def test_a_lost_reply_beyond_the_write_id_memory_is_reported_not_repeated(
        conn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = Note(id="c", title="t", n=0).save_sync()
    lose_first_reply(conn, monkeypatch, meanwhile=lambda: [
        Note.objects.get_sync(id="c").inc_sync("n") for _ in range(5)])
    with pytest.raises(WriteOutcomeUnknown) as unknown:
        counter.inc_sync("n")
    assert isinstance(unknown.value.refusal, VersionConflict)
    assert Note.objects.get_sync(id="c").n == 6  # 1 + 5 others: never applied twice


def test_a_lost_delete_reply_is_not_resent(conn: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = Note(id="d", title="t").save_sync()
    calls = lose_first_reply(conn, monkeypatch)
    with pytest.raises(BackendConnectionError):
        doc.delete_sync()
    assert len(calls) == 1 and Note.objects.count_sync() == 0


def test_a_resent_patch_is_reported_once_applied_once(conn: Any) -> None:
    """An update by id (patch.lua: no expected version) recognises its first attempt
    by its write id too, even after another writer's change on top."""
    created = Note(id="p", title="t").save_sync().version
    patch = layout(conn).patch("p", {"n": 5}, {"n": 5}, "keep").call()
    first = send(conn, patch)
    updated = first[0][1]
    assert first[0][0] == b"OK" and updated > created
    other = Note.objects.get_sync(id="p")
    other.n = 6
    other.save_sync()
    assert send(conn, patch) == first  # not applied again over the other writer's value
    assert Note.objects.get_sync(id="p").n == 6
    assert events(conn) == [("create", "p", created), ("update", "p", updated),
                            ("update", "p", other.version)]
