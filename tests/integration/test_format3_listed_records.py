"""verify() and repair() of a format-3 document whose listed index's record is missing
from its meta hash (bench/format3.md, section 1: the fields of the indexes no script
derives, a case-folded one, a path into an embedded document, which a format-3 document's
meta hash keeps whatever its expiry). Nothing else says which entries such an index holds
for the document: verify reports the record's absence as ``missing_sweep_record`` (a
record the meta hash must keep is absent), and repair() writes it again (``resweep``),
the document staying format 3.

* the only listed record gone (the meta hash with it), for each listed kind;
* one of two listed records gone (the meta hash still there, with the other);
* an expiring document's sweep record without a listed record of no entries;
* a document with every record there is clean (nothing reported).
"""

from __future__ import annotations

from typing import Any

import pytest
from test_format3_writes import (
    FoldedMix,
    Placed,
    _listed_values,
    check_keyspace,
    listed_fields,
)

from quantumorm import ArrayField, Document, StringField
from quantumorm.backends.redis.keys import KeySpace


class TwoListed(Document):
    name = StringField(indexed=True)  # (derived)
    title = StringField()
    label = StringField()

    class Meta:
        collection = "f3l_twolisted"
        indexes = [{"fields": ["title"], "casefold": True},
                   {"fields": ["label"], "casefold": True}]  # (both listed)


class Word(StringField):
    """A user's kind: not derived in Lua, so an index of it is listed."""


class EmptyListed(Document):
    name = StringField(indexed=True)  # (derived)
    tags = ArrayField(Word(), indexed=True)  # (listed: an array of a user's kind)

    class Meta:
        collection = "f3l_emptylisted"


@pytest.mark.parametrize("model", [FoldedMix, Placed])
def test_the_only_listed_record_missing_is_reported_and_repaired(
        conn: Any, redis_client: Any, model: Any) -> None:
    rc, keys = redis_client, KeySpace(model._meta)
    for n, id in enumerate("ab"):
        model(id=id, name=f"n{n}", age=n, **_listed_values(model, n)).save_sync()
    assert rc.get(keys.doc(0, "a"))[:1] == b"\x01"
    assert model.objects.verify_sync().ok
    (field,) = listed_fields(model)
    rc.hdel(keys.meta(0, "a"), field)
    assert not rc.exists(keys.meta(0, "a"))  # (its only field: the hash is gone)
    report = model.objects.verify_sync()
    assert report.problems == {"missing_sweep_record": 1}, report
    repaired = model.objects.repair_sync()
    assert repaired.ok and set(repaired.fixed) == {"missing_sweep_record"}, repaired
    assert model.objects.verify_sync().ok
    assert set(rc.hkeys(keys.meta(0, "a"))) == {field.encode()}
    assert rc.get(keys.doc(0, "a"))[:1] == b"\x01"
    check_keyspace(rc, model)


def test_one_of_two_listed_records_missing_is_reported_and_repaired(
        conn: Any, redis_client: Any) -> None:
    rc, keys = redis_client, KeySpace(TwoListed._meta)
    TwoListed(id="a", name="n", title="Title", label="Label").save_sync()
    TwoListed(id="b", name="m", title="Other", label="Else").save_sync()
    fields = listed_fields(TwoListed)
    assert len(fields) == 2 and set(rc.hkeys(keys.meta(0, "a"))) == {
        f.encode() for f in fields}
    assert TwoListed.objects.verify_sync().ok
    rc.hdel(keys.meta(0, "a"), "f:label__casefold")
    assert rc.exists(keys.meta(0, "a"))  # (the other listed record stays)
    report = TwoListed.objects.verify_sync()
    assert report.problems == {"missing_sweep_record": 1}, report
    repaired = TwoListed.objects.repair_sync()
    assert repaired.ok and set(repaired.fixed) == {"missing_sweep_record"}, repaired
    assert TwoListed.objects.verify_sync().ok
    assert set(rc.hkeys(keys.meta(0, "a"))) == {f.encode() for f in fields}
    check_keyspace(rc, TwoListed)


@pytest.mark.parametrize("ttl", [None, 3600])
def test_a_listed_record_of_no_entries_missing_is_reported_and_repaired(
        conn: Any, redis_client: Any, ttl: Any) -> None:
    """A listed index whose entries are none (an empty array): its record
    holds an empty list, and one absent is reported all the same (a query testing it
    cannot tell an empty record from none); for an expiring document, in its sweep
    record."""
    rc, keys = redis_client, KeySpace(EmptyListed._meta)
    (field,) = listed_fields(EmptyListed)
    EmptyListed(id="a", name="n", tags=[]).save_sync(ttl=ttl)
    assert rc.get(keys.doc(0, "a"))[:1] == b"\x01"
    assert rc.hget(keys.meta(0, "a"), field) == b""
    assert EmptyListed.objects.verify_sync().ok
    rc.hdel(keys.meta(0, "a"), field)
    report = EmptyListed.objects.verify_sync()
    assert report.problems == {"missing_sweep_record": 1}, report
    repaired = EmptyListed.objects.repair_sync()
    assert repaired.ok and set(repaired.fixed) == {"missing_sweep_record"}, repaired
    assert EmptyListed.objects.verify_sync().ok
    assert rc.hget(keys.meta(0, "a"), field) == b""
    check_keyspace(rc, EmptyListed)


def _squeezed(compress: Any, name: str) -> Any:
    """The collection ``f3l_squeezed`` declared with ``Meta.compress = compress``."""
    return type(name, (Document,), {
        "__module__": __name__, "title": StringField(indexed=True), "body": StringField(),
        "Meta": type("Meta", (), {"collection": "f3l_squeezed", "compress": compress})})


def test_a_compressed_documents_records_are_all_needed(conn: Any, redis_client: Any) -> None:
    """A compressed payload (no script reads it): every index is listed, its record
    needed, whatever the model declares now; a document stored uncompressed needs only
    the records of the indexes no script derives (none here), even under a declaration
    that compresses."""
    rc = redis_client
    On = _squeezed({"codec": "zlib", "min_size": 100}, "On")
    Off = _squeezed(False, "Off")
    keys = KeySpace(On._meta)
    On(id="big", title="t", body="x" * 500).save_sync()
    Off(id="small", title="s", body="y").save_sync()  # (uncompressed, no meta hash)
    assert rc.hkeys(keys.meta(0, "big")) and not rc.exists(keys.meta(0, "small"))
    for Model in (On, Off):
        assert Model.objects.verify_sync().ok
        rc.hdel(keys.meta(0, "big"), "f:title")  # (its only record: the hash goes)
        assert not rc.exists(keys.meta(0, "big"))
        report = Model.objects.verify_sync()
        assert report.problems == {"missing_sweep_record": 1}, report
        assert report.samples["missing_sweep_record"] == ["big"]
        repaired = Model.objects.repair_sync()
        assert repaired.ok and set(repaired.fixed) == {"missing_sweep_record"}, repaired
        assert rc.hkeys(keys.meta(0, "big")) == [b"f:title"]
        assert Model.objects.verify_sync().ok
