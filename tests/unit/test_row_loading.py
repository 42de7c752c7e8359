"""The per-row read path: a model's loading function made once (``ModelOptions.fill``)
gives the instance the field-by-field loop gives, and a query reply's rows are decoded by
orjson itself only when the batch has no text ``json`` would read differently
(``jsoncodec.batch_decoder``), with the same values and errors as :func:`jsoncodec.decode`."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from quantumorm import (
    ArrayField,
    BooleanField,
    DateTimeField,
    DecimalField,
    Document,
    IntField,
    JSONField,
    StringField,
    UUIDField,
    jsoncodec,
)
from quantumorm.backends.redis import results
from quantumorm.engine.contract import Row
from quantumorm.errors import CorruptDocumentError
from quantumorm.fields.base import MISSING
from quantumorm.query.queryset import QuerySet


class Loaded(Document):
    s = StringField()
    n = IntField(default=7)
    quoted = StringField(db_field="stored_q")
    when = DateTimeField()
    d = DecimalField()
    u = UUIDField()
    tags = ArrayField(StringField())
    stamps = ArrayField(DateTimeField())
    blob = JSONField()
    b = BooleanField()

    class Meta:
        collection = "loaded"


def _by_loop(cls: Any, id: str, version: int, data: dict[str, Any],
             only: frozenset[str] | None = None) -> dict[str, Any]:
    """The instance dict the field-by-field loop of ``loaders`` gives (the reference)."""
    values: dict[str, Any] = {"id": id, "_version": version, "_partial": only,
                              "_stored": dict(data)}
    for name, db_name, convert in cls._meta.loaders:
        raw = data.get(db_name, MISSING)
        if raw is MISSING:
            values[name] = cls._fields[name].initial()
        else:
            values[name] = raw if raw is None or convert is None else convert(raw)
    return values


STORED = {"s": "x", "n": 3, "stored_q": "q", "when": "2024-01-02T03:04:05+00:00",
          "d": "1.50", "u": str(uuid.UUID(int=9)), "tags": ["a"],
          "stamps": ["2024-01-02T03:04:05+05:30"], "blob": {"k": [1, {"z": None}]}, "b": False}


def test_fill_gives_what_the_loop_gives() -> None:
    loaded = Loaded.from_storage("r1", 4, STORED)
    assert list(loaded.__dict__.items()) == list(_by_loop(Loaded, "r1", 4, STORED).items())
    assert loaded.when == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert loaded.d == Decimal("1.50") and loaded.quoted == "q" and loaded.n == 3
    assert loaded.changed_fields() == []
    nulls = dict.fromkeys(STORED)
    assert Loaded.from_storage("r2", 1, nulls).__dict__ == _by_loop(Loaded, "r2", 1, nulls)


def test_fill_keeps_loaded_values_apart_from_the_stored_ones() -> None:
    loaded = Loaded.from_storage("r1", 4, STORED)
    assert loaded.tags is not STORED["tags"] and loaded.blob is not STORED["blob"]
    assert loaded._stored is not STORED
    loaded.tags.append("b")
    loaded.blob["k"][1]["z"] = 1
    assert loaded.changed_fields() == ["tags", "blob"]
    assert STORED["tags"] == ["a"] and STORED["blob"] == {"k": [1, {"z": None}]}


@pytest.mark.parametrize("gone", ["s", "n", "stored_q", "d", "stamps", "b"])
def test_a_missing_field_reads_as_its_default(gone: str) -> None:
    data = {k: v for k, v in STORED.items() if k != gone}
    loaded = Loaded.from_storage("r3", 2, data, frozenset({"s"}))
    assert list(loaded.__dict__.items()) == list(
        _by_loop(Loaded, "r3", 2, data, frozenset({"s"})).items())
    assert loaded.n == (7 if gone == "n" else 3)


def test_a_converter_error_is_raised_as_it_was() -> None:
    class Picky(StringField):
        def from_storage(self, raw: Any) -> Any:
            return {"ok": "fine"}[raw]  # a KeyError of the converter, not of the document

    class Keyed(Document):
        a = StringField()
        p = Picky()

        class Meta:
            collection = "keyed"

    assert Keyed.from_storage("k1", 1, {"a": "x", "p": "ok"}).p == "fine"
    with pytest.raises(KeyError, match="bad"):
        Keyed.from_storage("k1", 1, {"a": "x", "p": "bad"})


@pytest.fixture(params=["orjson", "json"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "orjson":
        pytest.importorskip("orjson")
    else:
        monkeypatch.setattr(jsoncodec, "ORJSON", None)
    yield request.param


def test_the_batch_decoder_is_orjson_only_for_a_batch_without_long_numbers(codec: str) -> None:
    plain = [b'{"a":1}', b'{"b":"1234"}']
    decoder = jsoncodec.batch_decoder(plain)
    assert (decoder is not jsoncodec.decode) == (codec == "orjson")
    assert [decoder(raw) for raw in plain] == [json.loads(raw) for raw in plain]
    long = plain + [b'{"big":18446744073709551616}']
    assert jsoncodec.batch_decoder(long) is jsoncodec.decode
    # (a run split between two texts is no long number: a false alarm costs only speed)
    split = [b'{"a":1234567890}', b'{"b":1234567890}']
    assert jsoncodec.batch_decoder(split)(split[1]) == {"b": 1234567890}


def _reply(*docs: bytes) -> list[Any]:
    """A ``query.lua`` "rows" reply of documents with numeric ids 1, 2, ... (version 5, carried
    by each value: no version item)."""
    reply: list[Any] = []
    for i, doc in enumerate(docs, 1):
        reply += [str(i).encode(), b"\x005\x00" + doc]
    return reply


def test_rows_decode_as_decode_does(codec: str) -> None:
    docs = [b'{"a":[1,2.5,null]}', b'{"big":18446744073709551616}', b'{"nan":NaN}',
            b'{"s":"\\ud800"}', b'{"e":"\\u00e9"}']
    rows = results.rows(Loaded._meta, _reply(*docs))
    assert [(r.id, r.version) for r in rows] == [(str(i), 5) for i in range(1, 6)]
    for row, doc in zip(rows, docs, strict=True):
        expected = jsoncodec.decode(doc)
        assert json.dumps(row.data) == json.dumps(expected)  # ints stay ints, NaN read
    assert type(rows[1].data["big"]) is int
    without_long = results.rows(Loaded._meta, _reply(docs[0], docs[2], docs[3]))
    assert json.dumps([r.data for r in without_long]) == json.dumps(
        [jsoncodec.decode(d) for d in (docs[0], docs[2], docs[3])])


@pytest.mark.parametrize("bad", [b"{not json", b'{"a":"\xff"}', b"{}x", b'{"a":1'])
def test_a_corrupt_row_is_an_error(codec: str, bad: bytes) -> None:
    with pytest.raises(CorruptDocumentError, match="invalid JSON"):
        results.rows(Loaded._meta, _reply(b'{"a":1}', bad))


def test_the_batch_decoder_scans_a_big_batch_in_parts(codec: str) -> None:
    texts = [b'{"n":%d}' % i for i in range(600)]
    assert (jsoncodec.batch_decoder(texts) is jsoncodec.decode) == (codec == "json")
    for at in (0, 255, 256, 599):  # a long number in any part is seen
        marked = list(texts)
        marked[at] = b'{"big":18446744073709551616}'
        assert jsoncodec.batch_decoder(marked) is jsoncodec.decode


def test_each_converter_runs_once_when_a_field_is_missing() -> None:
    """A document written before a field was added loads in one pass: the converters of
    the fields it has run once each (no second pass after the missing one)."""
    calls: list[Any] = []

    class Counted(StringField):
        def from_storage(self, raw: Any) -> Any:
            calls.append(raw)
            return raw

    class Older(Document):
        a = Counted()
        later = IntField(default=7)

        class Meta:
            collection = "older_rows"

    loaded = Older.from_storage("o1", 1, {"a": "x"})
    assert (loaded.a, loaded.later, calls) == ("x", 7, ["x"])


# -- the whole-document loader a query uses (Document._loader) ----------------------------


def test_the_loader_gives_what_from_storage_gives() -> None:
    load = Loaded._loader()
    assert load is Loaded._loader()  # (made once per model)
    for data in (STORED, dict.fromkeys(STORED), {k: v for k, v in STORED.items() if k != "n"}):
        loaded = load("r1", 4, data)
        assert type(loaded) is Loaded
        assert list(loaded.__dict__.items()) == list(
            Loaded.from_storage("r1", 4, data).__dict__.items())
    loaded = load("r1", 4, STORED)
    assert loaded.tags is not STORED["tags"] and loaded._stored is not STORED
    assert loaded.changed_fields() == [] and loaded.n == 3 and loaded._partial is None


def test_a_subclass_gets_a_loader_of_its_own() -> None:
    class Derived(Loaded):
        extra = IntField(default=5)

        class Meta:
            collection = "loaded_derived"

    assert type(Loaded._loader()("a", 1, STORED)) is Loaded
    loaded = Derived._loader()("a", 1, STORED)
    assert type(loaded) is Derived and loaded.extra == 5 and loaded.s == "x"


def test_fields_missing_from_stored_data_load_as_their_initial_values() -> None:
    """A field without a default reads a missing value as ``data.get`` gives it (None: the
    loader's shortcut); one with a default, or whose class has its own ``initial()``, as
    ``initial()`` gives it."""

    class Counted(IntField):
        def initial(self) -> Any:
            return 42

    class Sparse(Document):
        plain = StringField()
        listed = ArrayField(StringField())
        when = DateTimeField()
        defaulted = IntField(default=7)
        counted = Counted()

        class Meta:
            collection = "sparse_loader"

    for data in ({}, {"unknown": 1}, dict.fromkeys(("plain", "listed", "when"))):
        loaded = Sparse._loader()("s", 2, data)
        assert list(loaded.__dict__.items()) == list(
            Sparse.from_storage("s", 2, data).__dict__.items())
        assert (loaded.plain, loaded.listed, loaded.when) == (None, None, None)
        assert (loaded.defaulted, loaded.counted) == (7, 42)
        assert loaded._stored == data and "unknown" not in loaded.__dict__


def test_a_default_set_after_the_class_is_made_fills_what_stored_data_lacks() -> None:
    # (a field's default is one of the options that may change after its class is made:
    # a loader generated before sees the new default, as a new document does)
    class Late(Document):
        n = IntField()

        class Meta:
            collection = "late_default_loader"

    assert Late._loader()("a", 1, {}).n is None
    Late._fields["n"].default = 5
    assert Late().n == 5
    assert Late._loader()("a", 1, {}).n == 5
    assert Late.from_storage("a", 1, {}).n == 5
    assert Late._loader()("a", 1, {"n": 3}).n == 3


def test_a_model_that_loads_its_own_way_is_loaded_by_its_from_storage() -> None:
    class Own(Document):
        a = StringField()

        class Meta:
            collection = "own_loading"

        @classmethod
        def from_storage(cls, id: str, version: int, data: dict[str, Any],
                         only: frozenset[str] | None = None) -> Own:
            doc = super().from_storage(id, version, data, only)
            doc.a = (doc.a or "") + "!"
            return doc

    assert Own._loader()("o", 1, {"a": "x"}).a == "x!"
    rows = [Row("o", 1, {"a": "y"})]
    assert [doc.a for doc in QuerySet(Own)._convert(rows)] == ["y!"]


def test_a_converter_error_of_the_loader_is_raised_as_it_was() -> None:
    class Picky(StringField):
        def from_storage(self, raw: Any) -> Any:
            return {"ok": "fine"}[raw]

    class Keyed2(Document):
        p = Picky()

        class Meta:
            collection = "keyed_loader"

    assert Keyed2._loader()("k", 1, {"p": "ok"}).p == "fine"
    with pytest.raises(KeyError, match="bad"):
        Keyed2._loader()("k", 1, {"p": "bad"})


def test_rows_made_by_a_loader_are_its_documents(codec: str) -> None:
    """``rows(..., make)``: each row as ``make(id, version, data)``, the common rows made
    inline and a row of the earlier format (no version in the document key: the meta
    hash's, beside it) through :func:`results.row` first."""
    reply = _reply(b'{"s":"a","n":1,"tags":["x"]}',
                   b'{"s":"b","when":"2024-01-02T03:04:05+00:00"}')
    reply += [b"3", b"9", b'{"s":"old","stored_q":"q"}']  # (its version item: format 1)
    load = Loaded._loader()
    docs = results.rows(Loaded._meta, reply, load)
    expected = [load(r.id, r.version, r.data) for r in results.rows(Loaded._meta, reply)]
    assert all(type(doc) is Loaded for doc in docs)
    assert [doc.__dict__ for doc in docs] == [doc.__dict__ for doc in expected]
    assert [(doc.id, doc.version) for doc in docs] == [("1", 5), ("2", 5), ("3", 9)]
    assert docs[1].when == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    assert docs[2].quoted == "q" and docs[2].n == 7  # (a missing field: its default)
    rows = results.rows(Loaded._meta, reply)
    assert results.made(rows, Row) is rows
    assert [doc.__dict__ for doc in results.made(rows, load)] == [
        doc.__dict__ for doc in expected]
