"""``insert.lua``, the script of a single insert (``save()`` of a new document), writes what
an insert of a batch (``insert_many.lua``) writes: the same document bytes (but the version
before them), meta hash (but its version and recent writes), index entries, schedule entry
and change event, with an auto id and with a known one, for a model with unique,
compound, array and expiring fields whose events carry the document; it refuses a unique
value taken, a taken id and an index key of another type with nothing written; and
``save.lua``, which only updates, refuses an insert sent to it."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call, snapshot

from quantumorm import (
    ArrayField,
    BooleanField,
    Document,
    DuplicateIdError,
    IntField,
    StringField,
    UniqueViolation,
    WrongTypeError,
)
from quantumorm import sortable
from quantumorm.backends.redis import calls, wire
from quantumorm.backends.redis.commands import Call, script
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.backends.redis.stored import header


class Widget(Document):
    name = StringField(indexed=True)
    n = IntField(indexed=True)
    on = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    code = StringField(unique=True)

    class Meta:
        collection = "isc_widgets"
        indexes = [("name", "n")]
        ttl = 3600
        changes_document = True


class Gizmo(Document):
    """No unique index (its inserts send no quadruples), no expiry, the usual events."""

    name = StringField(indexed=True)
    n = IntField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)

    class Meta:
        collection = "isc_gizmos"
        indexes = [("name", "n")]


ROWS: list[dict[str, Any]] = [
    {"name": "a", "n": 1, "on": True, "tags": ["x", "y", "x"], "code": "c1"},
    {"name": None, "n": None, "on": None, "tags": [], "code": None},
    {"name": "é\x00", "n": -(10**20), "on": False, "tags": ["", "long " * 50], "code": "c3"},
    {"name": "many", "n": 7, "on": True, "tags": [f"t{i}" for i in range(600)]},
]


def sent_to_save_lua(self: calls.SaveCall) -> Call:
    """An insert's call sent to ``save.lua`` (whose insert mode insert.lua replaced)."""
    made = CALL(self)
    args = made.args  # (insert.lua's own: save.lua's less the op, version and changed)
    return Call("save", made.keys, ("insert", "0", *args[:10], b"", *args[10:]))


CALL = calls.SaveCall.call


def stored(redis_client: Any, model: Any, id: str) -> dict[str, Any]:
    """What an insert wrote for document ``id``, without what differs between two inserts
    of the same values (the version, the write id, the expiry's instant, the event's id)."""
    ks = KeySpace(model._meta)
    id_key = sortable.id_key(id)
    raw = redis_client.get(ks.doc(0, id))
    head = header(raw)
    if head is None:  # (format 2: its version before it, and in its meta hash)
        assert raw.startswith(b"\0")
        out: dict[str, Any] = {"document": raw[raw.index(b"\0", 1) + 1:], "format": 2}
    else:  # (format 3: the version and the write id in the header)
        version, w, payload = head
        assert len(w) == 16 and int(w, 16) >= 0
        out = {"document": payload, "format": 3}
    for index in model._meta.indexes:
        key = ks.index(0, index.name)
        out[index.name] = sorted(m[:-len(id_key)] for m in redis_client.zrange(key, 0, -1)
                                 if m.endswith(id_key))
    meta = redis_client.hgetall(ks.meta(0, id))
    out["meta"] = {f: v for f, v in meta.items() if f not in (b"v", b"r")}
    if head is None:
        assert meta[b"r"][16:].lstrip(b"0") == meta[b"v"]  # (its write id, then its version)
    else:
        # (a sweep record while it expires: "v" and every index's fields, no "r"; else no
        # meta hash: no listed index here)
        assert b"r" not in meta
        assert meta.get(b"v") == (str(version).encode() if model._meta.ttl else None)
        meta[b"v"] = str(version).encode()
    out["listed"] = redis_client.zscore(ks.ids(0), id_key)
    out["scheduled"] = redis_client.zscore(ks.ttl(0), id_key) is not None
    out["expires"] = redis_client.pttl(ks.doc(0, id)) > 3500 * 1000  # (else -1: none)
    events = [fields for _, fields in redis_client.xrange(ks.changes(0))
              if fields[b"id"] == id_key]
    assert len(events) == 1 and events[0][b"v"] == meta[b"v"]
    out["event"] = {f: v for f, v in events[0].items() if f not in (b"v", b"w", b"id")}
    return out


def scripts_called(redis_client: Any) -> list[str]:
    """The scripts of the EVALSHA calls the slow log holds (every command: see below), by
    name, oldest first; the log is emptied."""
    names = {script(name).sha.encode(): name for name in ("insert", "save")}
    called = [names.get(bytes(entry["command"]).split()[1], "other")
              for entry in redis_client.slowlog_get(128)
              if bytes(entry["command"]).startswith(b"EVALSHA")]
    redis_client.slowlog_reset()
    return called[::-1]


@pytest.mark.parametrize("mode", MODES)
async def test_a_new_document_is_saved_by_insert_lua(conn: Any, redis_client: Any,
                                                     mode: str) -> None:
    await call(Widget(name="first"), "save", mode)  # (the model's schema, scripts loaded)
    slower_than = redis_client.config_get("slowlog-log-slower-than")["slowlog-log-slower-than"]
    redis_client.config_set("slowlog-log-slower-than", 0)  # (every command is logged)
    try:
        redis_client.slowlog_reset()
        doc = await call(Widget(**ROWS[0]), "save", mode)
        known = await call(Widget(id="k", **ROWS[1]), "save", mode)
        assert scripts_called(redis_client) == ["insert", "insert"]
        doc.n = 2
        await call(doc, "save", mode)  # (an update: save.lua's)
        assert scripts_called(redis_client) == ["save"]
    finally:
        redis_client.config_set("slowlog-log-slower-than", slower_than)
    found = assert_indexes_consistent(redis_client, Widget)
    assert found[doc.id][1]["n"] == 2 and found[known.id][0] == known.version


@pytest.mark.parametrize("format", [3, 2])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("model", [Widget, Gizmo], ids=lambda m: m.__name__)
async def test_an_insert_writes_what_a_batch_insert_writes(conn: Any, redis_client: Any,
                                                           mode: str, model: Any,
                                                           format: int,
                                                           request: Any) -> None:
    if format == 2:
        request.getfixturevalue("format2_writes")
    for i, full in enumerate(ROWS):
        # (each row inserted four times: no unique value)
        row = {k: v for k, v in full.items() if k in model._fields and k != "code"}
        auto = await call(model(**row), "save", mode)
        known = await call(model(id=f"k{i}", **row), "save", mode)
        (auto_batch,) = await call(model.objects, "bulk_create", mode, [model(**row)])
        (known_batch,) = await call(model.objects, "bulk_create", mode,
                                    [model(id=f"g{i}", **row)])
        assert stored(redis_client, model, auto.id)["format"] == format
        assert stored(redis_client, model, auto.id) == stored(redis_client, model,
                                                              auto_batch.id)
        assert stored(redis_client, model, known.id) == stored(redis_client, model,
                                                               known_batch.id)
        assert int(auto_batch.id) == int(auto.id) + 1  # (the same counter)
        assert auto.version < known.version < auto_batch.version < known_batch.version
    assert_indexes_consistent(redis_client, model)


@pytest.mark.parametrize("mode", MODES)
async def test_an_insert_refuses_with_nothing_written(conn: Any, redis_client: Any,
                                                      mode: str) -> None:
    holder = await call(Widget(id="h", name="h", code="same"), "save", mode)
    ks = KeySpace(Widget._meta)
    kept = snapshot(redis_client)
    for doc in (Widget(name="x", code="same"), Widget(id="mine", name="y", code="same")):
        with pytest.raises(UniqueViolation) as refused:
            await call(doc, "save", mode)
        assert refused.value.other_id == holder.id
    with pytest.raises(DuplicateIdError):
        await call(Widget(id="h", name="again"), "save", mode)
    assert snapshot(redis_client) == kept  # (nothing written, no id taken)
    # an index key of another type: refused by its ZADD, what came before taken back, the
    # allocated id given back
    on = ks.index(0, "on")
    entries = redis_client.zrange(on, 0, -1)
    redis_client.delete(on)
    redis_client.set(on, "written by someone else")
    kept = snapshot(redis_client)
    with pytest.raises(WrongTypeError):
        await call(Widget(name="z", on=True, tags=["t"]), "save", mode)
    assert snapshot(redis_client) == kept
    redis_client.delete(on)
    redis_client.zadd(on, dict.fromkeys(entries, 0))
    fresh = await call(Widget(name="z", on=True, tags=["t"]), "save", mode)
    assert fresh.id == "1"  # (the id the refused insert took was given back)
    assert_indexes_consistent(redis_client, Widget)


@pytest.mark.parametrize("mode", MODES)
async def test_save_lua_refuses_an_insert(conn: Any, redis_client: Any, mode: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """save.lua only updates: an insert sent to it (which it would take for an update of a
    missing document) is an error, with nothing written."""
    await call(Widget(name="first"), "save", mode)  # (the model's schema, scripts loaded)
    kept = snapshot(redis_client)
    monkeypatch.setattr(calls.SaveCall, "call", sent_to_save_lua)
    for doc in (Widget(name="auto"), Widget(id="known", name="known")):
        with pytest.raises(Exception, match="save.lua only updates"):
            await call(doc, "save", mode)
    assert snapshot(redis_client) == kept


def quadruples_cut_short(self: calls.SaveCall) -> Call:
    """An insert's call whose index quadruples miss the last index's."""
    made = CALL(self)
    described = wire.unpack_items(made.args[4])  # (insert.lua's ARGV[5])
    return Call(made.script, made.keys, (*made.args[:4], wire.items(described[:-4]),
                                       *made.args[5:]))


@pytest.mark.parametrize("mode", MODES)
async def test_an_insert_whose_quadruples_miss_an_index_is_refused(
        conn: Any, redis_client: Any, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """insert.lua reads index i at KEYS[6 + i] and its uniqueness at quadruple i: a count of
    quadruples that does not match the indexes would enforce uniqueness in the wrong index
    (or in none), so it is refused with nothing written."""
    await call(Widget(name="first", code="c0"), "save", mode)
    kept = snapshot(redis_client)
    monkeypatch.setattr(calls.SaveCall, "call", quadruples_cut_short)
    with pytest.raises(Exception, match="index quadruple items"):
        await call(Widget(name="second", code="c0"), "save", mode)
    assert snapshot(redis_client) == kept
