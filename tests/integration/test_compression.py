"""``Meta.compress`` on a real Redis: documents at or above the threshold are stored
compressed (marker byte, codec id, payload), and every path that reads stored bytes reads
them as the documents they are: gets, queries, change events, transactions, bulk inserts,
verify / reindex / repartition, soft deletes, and an update by id (which cannot patch a
compressed document in Lua, and reads and rewrites it instead). Turning compression on or
off never makes a stored document unreadable."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call, snapshot, stored_payload

import quantumorm
from quantumorm import (
    ArrayField,
    BulkWriteError,
    CodecUnavailableError,
    CorruptDocumentError,
    Document,
    FloatField,
    IntField,
    JSONField,
    StringField,
    compression,
)
from quantumorm.backends.redis import stored as stored_form
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.compression import Codec, CodecInfo
from quantumorm.engine import drive
from quantumorm.engine.contract import Expiry, encode_document
from quantumorm.tools.repartition import repartition

WORDS = ("the order shipped from Berlin to Zürich on Monday; the customer asked for an "
         "invoice and a second delivery window, which the warehouse confirmed").split()


def body(n: int, size: int) -> str:
    """Text-like content of ``size`` characters, varying with ``n``."""
    out, i = [], n
    while sum(len(w) + 1 for w in out) < size:
        out.append(WORDS[i % len(WORDS)] + ("" if i % 5 else str(i % 97)))
        i += 3
    return " ".join(out)[:size]


def declare(collection: str, compress: Any, name: str = "Article", lang: bool = False,
            **meta: Any) -> Any:
    """The model of ``collection`` with ``Meta.compress = compress`` (two declarations of
    one collection: one deployment with compression, another without); ``lang``: with an
    indexed field more, defaulted."""
    attrs = {"collection": collection, "compress": compress, **meta}
    more = {"lang": StringField(default="en", indexed=True)} if lang else {}
    return type(name, (Document,), {
        "__module__": __name__,
        "title": StringField(indexed=True),
        "views": IntField(indexed=True),
        "score": FloatField(indexed=True),
        "tags": ArrayField(StringField(), indexed=True),
        "body": StringField(),
        "extra": JSONField(),
        **more,
        "Meta": type("Meta", (), attrs)})


def article(Model: Any, n: int, size: int = 2000, **values: Any) -> Any:
    fields = dict(title=f"t{n % 7}", views=n * 3 % 50, score=(n % 11) / 4,
                  tags=[f"g{n % 3}", f"h{n % 4}"], body=body(n, size),
                  extra={"n": n, "nested": [1, {"deep": "é"}], "big": 2**70})
    fields.update(values)
    return Model(id=f"a{n}", **fields)


def json_of(doc: Any) -> bytes:
    """The JSON a save of ``doc`` encodes (what an uncompressed write stores)."""
    return encode_document(doc.clean())


def stored(redis_client: Any, Model: Any, id: str) -> bytes:
    """The document as stored after its version: compressed or JSON."""
    keys = KeySpace(Model._meta)
    raw = stored_payload(redis_client, keys.doc(keys.partition_of(id), id))
    assert raw is not None
    return raw


def sized(Model: Any, n: int, size: int) -> Any:
    """An article whose JSON is exactly ``size`` bytes (its body, ASCII, adjusted)."""
    doc = article(Model, n, size=10)
    doc.body = ""
    base = len(json_of(doc))
    doc.body = body(n, size - base).encode("ascii", "ignore").decode()
    while len(json_of(doc)) < size:
        doc.body += "x"
    assert len(json_of(doc)) == size
    return doc


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("codec", list(Codec))
async def test_round_trips_around_the_threshold(conn: Any, redis_client: Any, codec: str,
                                                mode: str) -> None:
    Model = declare("cz_round", {"codec": codec, "min_size": 700})
    docs = [sized(Model, 1, 699), sized(Model, 2, 700), sized(Model, 3, 701),
            sized(Model, 4, 20_000)]
    for doc in docs:
        await call(doc, "save", mode)
    info = compression.CODECS[Codec(codec)]
    for doc in docs:
        raw = stored(redis_client, Model, doc.id)
        if len(json_of(doc)) < 700:
            assert raw == json_of(doc)  # below the threshold: the JSON as it is
        else:
            assert raw[:2] == compression.MARKER + info.id
            assert len(raw) < len(json_of(doc))
            assert compression.decompress(raw) == json_of(doc)  # the same JSON inside
        got = await call(Model.objects, "get", mode, id=doc.id)
        assert got._values() == doc._values() and got.version == doc.version
    # an update that crosses the threshold both ways
    small, big = docs[0], docs[3]
    small.body += "y" * 50
    big.body = "short"
    await call(small, "save", mode)
    await call(big, "save", mode)
    assert compression.compressed(stored(redis_client, Model, small.id))
    assert stored(redis_client, Model, big.id) == json_of(big)
    assert [d._values() for d in await call(Model.objects.order_by("id"), "all", mode)] == [
        d._values() for d in docs]
    assert_indexes_consistent(redis_client, Model)
    assert (await call(Model.objects, "verify", mode)).ok


QUERIES: list[tuple[str, Any]] = [
    ("equality", lambda qs: qs.filter(title="t3")),
    ("in", lambda qs: qs.filter(title__in=["t1", "t5"]).order_by("id")),
    ("range", lambda qs: qs.filter(views__gte=10, views__lt=30).order_by("views", "id")),
    ("order desc window", lambda qs: qs.order_by("-score", "id")[3:17]),
    ("contains", lambda qs: qs.filter(tags__contains="h2").order_by("-views", "id")),
    ("not indexed (scan)", lambda qs: qs.filter(body__contains="Zürich7").order_by("id")),
    ("everything", lambda qs: qs.order_by("title", "-views", "id")),
]


@pytest.mark.parametrize("partitions", [1, 3])
def test_queries_answer_as_over_uncompressed_documents(conn: Any, redis_client: Any,
                                                       partitions: int) -> None:
    Plain = declare("cz_plain", False, partitions=partitions)
    Packed = declare("cz_packed", {"codec": "zstd", "min_size": 500}, partitions=partitions)
    # sizes on both sides of the threshold: a query's rows mix both forms
    for Model in (Plain, Packed):
        Model.objects.bulk_create_sync([article(Model, n, size=100 + 37 * n)
                                        for n in range(80)], batch_size=25)
    stored_forms = [compression.compressed(stored(redis_client, Packed, f"a{n}"))
                    for n in range(80)]
    assert any(stored_forms) and not all(stored_forms)
    for name, query in QUERIES:
        expected = [(d.id, d._values()) for d in query(Plain.objects).all_sync()]
        got = [(d.id, d._values()) for d in query(Packed.objects).all_sync()]
        assert got == expected, name
        assert query(Packed.objects).count_sync() == len(expected), name
        assert expected, name  # (a query that matches nothing would prove little)
    assert Packed.objects.filter(views__gt=45).exists_sync()
    assert Packed.objects.filter(views__gte=10).count_sync() == Plain.objects.filter(
        views__gte=10).count_sync()
    page = Packed.objects.order_by("-views", "id").limit(9)
    first = page.all_sync()
    after = page.after(page.cursor_for(first[-1])).all_sync()
    plain = Plain.objects.order_by("-views", "id").limit(18).all_sync()
    assert [d.id for d in first + after] == [d.id for d in plain]
    assert_indexes_consistent(redis_client, Packed)


@pytest.mark.parametrize("mode", MODES)
async def test_change_events_carry_the_decoded_document(conn: Any, redis_client: Any,
                                                        mode: str) -> None:
    Model = declare("cz_events", {"codec": "lz4", "min_size": 1}, changes_document=True)
    feed = Model.objects.changes(wait=0)
    await call(feed, "read", mode)
    doc = await call(article(Model, 1), "save", mode)
    created = json.loads(json_of(doc))
    doc.body = body(9, 3000)
    await call(doc, "save", mode)
    updated = json.loads(json_of(doc))
    assert await call(Model.objects.filter(id=doc.id), "update", mode, views=777) == 1
    patched = dict(updated, views=777)
    await call(doc, "reload", mode)
    await call(doc, "delete", mode)
    events = await call(feed, "read", mode)
    assert [(e.op, e.data) for e in events] == [
        ("create", created), ("update", updated), ("update", patched), ("delete", patched)]
    assert events[1].document.body == body(9, 3000)
    # what the stream holds is the stored form: compressed
    entries = redis_client.xrange(KeySpace(Model._meta).changes(0))
    assert all(compression.compressed(bytes(fields[b"d"])) for _, fields in entries)


def test_consumer_groups_and_pubsub_decode_it_too(conn: Any) -> None:
    Model = declare("cz_groups", {"codec": "zlib", "min_size": 1}, changes_document=True,
                    publish=True)
    group = Model.objects.consumer_group("g", start="0")
    with Model.objects.subscribe(wait=2) as subscription:
        doc = article(Model, 5).save_sync()
        message = next(iter(subscription))
    (event,) = group.consumer("c").read_sync()
    assert event.data == message.data == json.loads(json_of(doc))


@pytest.mark.parametrize("mode", MODES)
async def test_documents_written_with_compression_off_read_with_it_on_and_back(
        conn: Any, redis_client: Any, mode: str) -> None:
    Off = declare("cz_mixed", False, name="Off")
    On = declare("cz_mixed", {"codec": "zstd", "min_size": 200}, name="On")
    Lz4 = declare("cz_mixed", {"codec": "lz4", "min_size": 200}, name="Lz4")
    await call(Off.objects, "bulk_create", mode, [article(Off, n) for n in range(10)])
    assert not any(compression.compressed(stored(redis_client, Off, f"a{n}"))
                   for n in range(10))
    # compression turned on: old documents read, rewritten ones compressed
    for n in range(5):
        doc = await call(On.objects, "get", mode, id=f"a{n}")
        doc.views += 1000
        await call(doc, "save", mode)
    assert [compression.codec_of(stored(redis_client, On, f"a{n}")) for n in range(10)] == (
        [Codec.ZSTD] * 5 + [None] * 5)
    # ... and every declaration reads every stored form: the first byte says which
    for Model in (Off, On, Lz4):
        docs = await call(Model.objects.filter(views__gte=1000).order_by("id"), "all", mode)
        assert [d.id for d in docs] == [f"a{n}" for n in range(5)]
        assert (await call(Model.objects, "count", mode)) == 10
        assert (await call(Model.objects, "verify", mode)).ok
    # compression turned off again: compressed documents still read, rewritten as JSON
    doc = await call(Off.objects, "get", mode, id="a1")
    assert doc.body == body(1, 2000)
    doc.title = "back"
    await call(doc, "save", mode)
    assert stored(redis_client, Off, "a1") == json_of(doc)
    assert_indexes_consistent(redis_client, Off)


@pytest.mark.parametrize("mode", MODES)
async def test_update_by_id_of_a_compressed_model_reads_and_rewrites(
        conn: Any, redis_client: Any, mode: str) -> None:
    Model = declare("cz_patch", {"codec": "zstd", "min_size": 300})
    small = await call(article(Model, 1, size=10), "save", mode)
    big = await call(article(Model, 2, size=5000), "save", mode)
    for doc in (small, big):
        assert await call(Model.objects.filter(id=doc.id), "update", mode,
                          views=901, title="patched") == 1
        got = await call(Model.objects, "get", mode, id=doc.id)
        assert (got.views, got.title, got.body) == (901, "patched", doc.body)
        assert got.version > doc.version
    # the small one grew past the threshold with the update: compressed like any save
    assert await call(Model.objects.filter(id=small.id), "update", mode,
                      body=body(3, 4000)) == 1
    assert compression.compressed(stored(redis_client, Model, small.id))
    assert compression.compressed(stored(redis_client, Model, big.id))
    assert await call(Model.objects.filter(id="nope"), "update", mode, views=1) == 0
    assert await call(Model.objects.filter(views=901), "count", mode) == 2
    assert_indexes_consistent(redis_client, Model)
    assert (await call(Model.objects, "verify", mode)).ok


def test_a_patch_script_refuses_a_compressed_document_and_writes_nothing(
        conn: Any, redis_client: Any) -> None:
    """A model that says "off" meets a document stored compressed: patch.lua
    replies COMPRESSED before writing anything, and the update reads and rewrites it."""
    On = declare("cz_refuse", {"codec": "zlib", "min_size": 100}, name="On",
                 changes_document=True)
    Off = declare("cz_refuse", False, name="Off", changes_document=True)
    doc = article(On, 1).save_sync()
    assert compression.compressed(stored(redis_client, On, doc.id))
    before = snapshot(redis_client)
    values = {"views": 5}
    outcome = drive.run(conn.backend.update_fields(Off._meta, [doc.id], values,
                                                   {"views": 5}, Expiry.KEEP),
                        conn.store.sync_executor())
    assert (outcome.count, outcome.declined, outcome.failures) == (0, [doc.id], [])
    assert snapshot(redis_client) == before  # nothing written, no event
    # through the QuerySet: the fallback reads and saves (as JSON, the model says off)
    feed = Off.objects.changes(since="0", wait=0)
    assert Off.objects.filter(id=doc.id).update_sync(views=5) == 1
    got = Off.objects.get_sync(id=doc.id)
    assert (got.views, got.body, got.extra) == (5, doc.body, doc.extra)
    assert stored(redis_client, Off, doc.id) == json_of(got)
    assert [e.op for e in feed.read_sync()] == ["create", "update"]
    # a JSON document of the "off" model is patched in place as before
    assert Off.objects.filter(id=doc.id).update_sync(views=6) == 1
    assert stored(redis_client, Off, doc.id) == json_of(Off.objects.get_sync(id=doc.id))
    assert_indexes_consistent(redis_client, Off)


async def test_transactions_bulk_inserts_and_soft_deletes(conn: Any,
                                                          redis_client: Any) -> None:
    Model = declare("cz_tx", {"codec": "lz4", "min_size": 500}, changes_document=True)
    async with conn.transaction() as tx:
        tx.save(article(Model, 1))
        tx.save(article(Model, 2, size=10))
    await Model.objects.bulk_create([article(Model, n) for n in range(3, 40)], batch_size=16)
    async with conn.transaction() as tx:
        doc = await tx.get(Model, "a3")
        doc.body = body(4, 6000)
        tx.save(doc)
    forms = {n: compression.compressed(stored(redis_client, Model, f"a{n}"))
             for n in range(1, 40)}
    assert forms == {n: n != 2 for n in range(1, 40)}
    assert (await Model.objects.get(id="a3")).body == body(4, 6000)
    victim = await Model.objects.get(id="a5")
    raw = stored(redis_client, Model, "a5")
    feed = Model.objects.changes(wait=0)
    await feed.read()
    await victim.delete(soft=True, ttl=60)
    keys = KeySpace(Model._meta)
    assert stored_payload(redis_client, keys.trash(0, "a5")) == raw  # kept as stored
    (event,) = await feed.read()
    assert event.op == "delete" and event.data == json.loads(json_of(victim))
    assert await Model.objects.count() == 38
    assert_indexes_consistent(redis_client, Model)
    assert (await Model.objects.verify()).ok


def test_verify_finds_a_damaged_payload(conn: Any, redis_client: Any) -> None:
    Model = declare("cz_damage", {"codec": "zstd", "min_size": 100})
    Model.objects.bulk_create_sync([article(Model, n) for n in range(6)])
    assert Model.objects.verify_sync().ok
    keys = KeySpace(Model._meta)
    raw = stored(redis_client, Model, "a2")
    redis_client.set(keys.doc(0, "a2"), raw[:2] + bytes(b ^ 0x33 for b in raw[2:30]) + raw[30:],
                     keepttl=True)
    report = Model.objects.verify_sync()
    assert report.problems == {"corrupt_documents": 1}
    with pytest.raises(quantumorm.CorruptDocumentError) as caught:
        Model.objects.get_sync(id="a2")
    assert caught.value.model == "Article" and caught.value.id == "a2"


def test_reindex_backfills_in_the_stored_form_and_repartition_moves_it(
        conn: Any, redis_client: Any) -> None:
    Old = declare("cz_reindex", {"codec": "zstd", "min_size": 100})
    Old.objects.bulk_create_sync([article(Old, n) for n in range(30)])
    New = declare("cz_reindex", {"codec": "zstd", "min_size": 100}, lang=True)
    report = New.objects.reindex_sync(batch_size=7)
    assert report.ready and report.backfilled == 30
    assert New.objects.filter(lang="en").count_sync() == 30
    raw = stored(redis_client, New, "a4")
    assert compression.codec_of(raw) is Codec.ZSTD
    assert json.loads(compression.decompress(raw))["lang"] == "en"
    assert New.objects.verify_sync().ok
    # repartition: documents move as stored
    Three = declare("cz_reindex", {"codec": "zstd", "min_size": 100}, lang=True,
                    partitions=3)
    before = {d.id: d._values() for d in New.objects.all_sync()}
    assert repartition(Three, from_partitions=1, batch=8).done
    assert {d.id: d._values() for d in Three.objects.all_sync()} == before
    assert all(compression.compressed(stored(redis_client, Three, id)) for id in before)
    assert_indexes_consistent(redis_client, Three)
    assert Three.objects.verify_sync().ok


def test_a_reader_without_the_codec_package_gets_a_precise_error(
        conn: Any, redis_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    Zstd = declare("cz_missing", {"codec": "zstd", "min_size": 1000}, name="Zstd")
    Zstd.objects.bulk_create_sync([article(Zstd, 1), article(Zstd, 2, size=10)])
    Other = declare("cz_missing_zlib", {"codec": "zlib", "min_size": 1000}, name="Other")
    article(Other, 1).save_sync()
    # this process loses the zstandard package (its module cannot be imported)
    info = compression.CODECS[Codec.ZSTD]
    monkeypatch.setitem(compression.CODECS, Codec.ZSTD,
                        CodecInfo(info.id, "quantumorm_absent_zstandard", info.package,
                                  info.extra))
    with pytest.raises(CodecUnavailableError) as caught:
        Zstd.objects.get_sync(id="a1")
    error = caught.value
    assert (error.codec, error.extra, error.model, error.id) == ("zstd", "zstd", "Zstd", "a1")
    assert "pip install 'quantumorm[zstd]'" in str(error)
    with pytest.raises(CodecUnavailableError):
        Zstd.objects.all_sync()
    with pytest.raises(CodecUnavailableError):  # not reported as a corrupt document
        Zstd.objects.verify_sync()
    assert Zstd.objects.get_sync(id="a2").views == article(Zstd, 2).views  # not compressed
    assert Zstd.objects.count_sync() == 2  # (counts read no document)
    assert Other.objects.get_sync(id="a1").body == body(1, 2000)


def test_sqlite_ignores_the_option(tmp_path: Any) -> None:
    quantumorm.create_connection(backend="sqlite", url=f"sqlite:///{tmp_path}/c.db",
                                 name="cz_sqlite")
    try:
        Model = declare("cz_sqlite", True, backend="sqlite", connection="cz_sqlite")
        doc = article(Model, 1, size=5000).save_sync()
        assert Model.objects.get_sync(id=doc.id)._values() == doc._values()
        assert Model.objects.filter(views=doc.views).count_sync() == 1
    finally:
        quantumorm.close_all()
    raw = (tmp_path / "c.db").read_bytes()
    assert body(1, 5000)[:200].encode() in raw  # stored as plain JSON


def test_update_of_several_ids_with_a_compressed_one_and_a_refused_one(
        conn: Any, redis_client: Any) -> None:
    """filter(id__in=...).update(): one id patched in place, one stored compressed (read and
    written whole) and one refused: the refusal is raised with both others written."""
    On = declare("cz_mixed", {"codec": "zlib", "min_size": 100}, name="On")
    Off = declare("cz_mixed", False, name="Off")
    Off.objects.bulk_create_sync([article(Off, 1), article(Off, 3)])
    article(On, 2).save_sync()  # stored compressed
    keys = KeySpace(Off._meta)
    key = keys.doc(keys.partition_of("a1"), "a1")
    # a1 is not a JSON object (its header kept: format 3, written so by the insert)
    header = stored_form.header(bytes(redis_client.get(key)))
    assert header is not None
    redis_client.set(key, b"\x01%d\x00%s\x00[1]" % header[:2], keepttl=True)
    with pytest.raises(BulkWriteError) as refused:
        Off.objects.filter(id__in=["a1", "a2", "a3"]).update_sync(views=49)
    assert [(position, type(error)) for position, error in refused.value.errors] == [
        (0, CorruptDocumentError)]
    assert sorted((d.id, d.views) for d in refused.value.written) == [("a2", 49), ("a3", 49)]
    assert Off.objects.get_sync(id="a2").views == 49 and Off.objects.get_sync(id="a3").views == 49
