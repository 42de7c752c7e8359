"""The maintenance paths and tools on format-3 documents (bench/format3.md, plan steps 3
and 5): ``\\x01<version>\\0<W>\\0<payload>``, with a meta hash only as an expiring
document's sweep record ("v" and every index's entries, no "r"). Nothing writes format 3
yet: each test inserts documents as format 2, then stores each again in format 3 by hand
(its version and payload kept) and deletes its meta hash, or strips it to a sweep record
for a document with an expiry.

* verify() judges a format-3 document from the document: a clean collection of them is
  clean (no ``missing_meta``); each finding of format 3 (``damaged_header``,
  ``missing_sweep_record``, ``stale_sweep_record``, ``orphan_meta``, ``missing_entries``,
  ``stale_entries``, ``unlisted_documents``) is provoked, counted and fixed by repair(),
  the document staying format 3;
* reindex() over format-3 documents: the entries exact, the documents still format 3, a
  meta hash written only for an expiring document (its sweep record, extended) and for a
  listed index (a user's kind);
* repartition of a format-3 collection: every document moved once, at its version, none
  left behind;
* the readers of recent write ids outside the scripts (an allocating insert's lost reply,
  a two-phase intent's late versions) find a write in a format-3 header's W, at each
  position.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from helpers import MODES, call

from quantumorm import ArrayField, Document, IntField, StringField, sortable
from quantumorm.backends.redis import stored
from quantumorm.backends.redis.keys import KeySpace

#: W as format 3 stores it: the newest write's id alone, then each older one's id and
#: version (zero-padded to 16 digits), newest first
NEWEST = b"00c0ffee12345678"


def older(ids_versions: list[tuple[bytes, int]]) -> bytes:
    return b"".join(b"%s%016d" % (write_id, version) for write_id, version in ids_versions)


LONG_W = NEWEST + older([(b"%016x" % (0xabc0 + k), 40 - k) for k in range(3)])


class Kit(Document):
    name = StringField(indexed=True)
    n = IntField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    code = StringField(unique=True)
    city = StringField()

    class Meta:
        collection = "f3t_kits"
        indexes = [("city", "n")]


KEYS = KeySpace(Kit._meta)


def headed(redis_client: Any, id: str, w: bytes = LONG_W, keys: KeySpace = KEYS,
           partition: int = 0) -> int:
    """The document ``id`` stored again in format 3 (version and payload kept, ``w`` its
    write ids): its meta hash deleted, or, for a document with an expiry, made its sweep
    record ("v" and every index's fields, no "r"). Its version."""
    doc, meta = keys.doc(partition, id), keys.meta(partition, id)
    version, payload = stored.split(redis_client.get(doc))
    assert redis_client.set(doc, b"\x01%d\x00%s\x00%s" % (version, w, payload), keepttl=True)
    if redis_client.pttl(doc) > 0:
        redis_client.hdel(meta, "r")
    else:
        redis_client.delete(meta)
    return version


def seed(redis_client: Any, expiring: tuple[str, ...] = ("k1", "k4")) -> dict[str, int]:
    """Six kits in format 3 (those in ``expiring`` with an hour to live): their versions."""
    for i in range(6):
        kit = Kit(id=f"k{i}", name=f"n{i % 2}", n=i, tags=[f"t{i % 3}", "all"], code=f"c{i}",
                  city=("paris", "rome")[i % 2])
        kit.save_sync(ttl=3600 if kit.id in expiring else None)
    return {f"k{i}": headed(redis_client, f"k{i}", (b"", NEWEST, LONG_W)[i % 3])
            for i in range(6)}


def format3_state(redis_client: Any) -> dict[str, Any]:
    """Per kit: its first byte, and its meta hash's fields (sorted)."""
    return {f"k{i}": ((redis_client.get(KEYS.doc(0, f"k{i}")) or b"")[:1],
                      sorted(redis_client.hkeys(KEYS.meta(0, f"k{i}"))))
            for i in range(6)}


def sweep_fields() -> list[bytes]:
    return sorted([b"v", b"f:name", b"f:n", b"f:tags", b"f:code", b"f:city", b"x:city__n"])


def expected_state() -> dict[str, Any]:
    return {f"k{i}": (b"\x01", sweep_fields() if i in (1, 4) else []) for i in range(6)}


@pytest.mark.parametrize("mode", MODES)
async def test_a_clean_collection_of_format_3_documents_verifies_clean(
        conn: Any, redis_client: Any, mode: str) -> None:
    await asyncio.to_thread(seed, redis_client)  # blocking: off the loop's thread
    assert format3_state(redis_client) == expected_state()
    report = await call(Kit.objects, "verify", mode)
    # (5 indexes: name, n, tags (2 entries each), code, city__n)
    assert report.ok and report.problems == {}, report
    assert (report.documents, report.entries, report.expired) == (6, 6 * 6, 0)
    repaired = await call(Kit.objects, "repair", mode)
    assert repaired.ok and repaired.fixed == {}
    assert format3_state(redis_client) == expected_state()  # (nothing written)
    # queries read them as they are
    assert [k.id for k in await call(Kit.objects.filter(tags__contains="t1").order_by("n"), "all",
                                     mode)] == ["k1", "k4"]


def _entry(field: str, value: Any, id: str) -> bytes:
    (key,) = Kit._meta.fields[field].index_keys([value] if field == "tags" else value)
    return key + sortable.id_key(id)


#: per damage: what it does to the seeded collection, and verify()'s findings
def _damage_header_version(r: Any) -> None:
    raw = r.get(KEYS.doc(0, "k0"))
    r.set(KEYS.doc(0, "k0"), b"\x01+" + raw[1:])


def _damage_header_w(r: Any) -> None:
    version, _w, payload = stored.header(r.get(KEYS.doc(0, "k2")))  # type: ignore[misc]
    r.set(KEYS.doc(0, "k2"), b"\x01%d\x00%s\x00%s" % (version, b"xyz" + NEWEST, payload))


def _damage_expiring_header(r: Any) -> None:
    raw = r.get(KEYS.doc(0, "k1"))
    r.set(KEYS.doc(0, "k1"), b"\x01" + raw[1:].replace(b"\x00", b"\x00zz", 1), keepttl=True)


def _missing_sweep_record(r: Any) -> None:
    r.delete(KEYS.meta(0, "k4"))


def _stale_sweep_entries(r: Any) -> None:
    r.hset(KEYS.meta(0, "k1"), "f:name", sortable.pack_list(
        Kit._meta.fields["name"].index_keys("other")))
    # (the entry it records, which its document does not imply, is in the index too)
    r.zadd(KEYS.index(0, "name"), {_entry("name", "other", "k1"): 0})


def _stale_sweep_version(r: Any) -> None:
    r.hset(KEYS.meta(0, "k4"), "v", b"%d" % (int(r.hget(KEYS.meta(0, "k4"), "v")) + 5))


def _sweep_record_of_another_type(r: Any) -> None:
    r.delete(KEYS.meta(0, "k4"))
    r.rpush(KEYS.meta(0, "k4"), b"x")


def _orphan_sweep_record(r: Any) -> None:
    r.delete(KEYS.doc(0, "k1"))
    r.zrem(KEYS.ttl(0), sortable.id_key("k1"))


def _missing_entries(r: Any) -> None:
    assert r.zrem(KEYS.index(0, "tags"), _entry("tags", "all", "k3")) == 1
    assert r.zrem(KEYS.index(0, "name"), _entry("name", "n1", "k3")) == 1


def _stale_entries(r: Any) -> None:
    r.zadd(KEYS.index(0, "name"), {_entry("name", "ghost", "k3"): 0})
    r.zadd(KEYS.index(0, "n"), {_entry("n", 99, "k5"): 0})


def _unlisted(r: Any) -> None:
    r.zrem(KEYS.ids(0), sortable.id_key("k2"))


#: per damage: what it does, verify()'s findings, and the kinds repair() fixes (an orphan
#: sweep record's purge takes the entries it lists with it: none is left to drop)
DAMAGE = {
    "header version": (_damage_header_version, {"damaged_header": 1}),
    "header W": (_damage_header_w, {"damaged_header": 1}),
    "expiring header": (_damage_expiring_header, {"damaged_header": 1}),
    "missing sweep record": (_missing_sweep_record, {"missing_sweep_record": 1}),
    "stale sweep record": (_stale_sweep_entries, {"stale_sweep_record": 1}),
    "sweep record version": (_stale_sweep_version, {"stale_sweep_record": 1}),
    "sweep record type": (_sweep_record_of_another_type, {"stale_sweep_record": 1}),
    "orphan sweep record": (_orphan_sweep_record, {"orphan_meta": 1, "orphan_entries": 6},
                            {"orphan_meta"}),
    "missing entries": (_missing_entries, {"missing_entries": 2}),
    "stale entries": (_stale_entries, {"stale_entries": 2}),
    "unlisted": (_unlisted, {"unlisted_documents": 1}),
}


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("mode", MODES)
async def test_each_finding_on_format_3_documents_is_fixed_by_repair(
        conn: Any, redis_client: Any, mode: str, how: str) -> None:
    versions = await asyncio.to_thread(seed, redis_client)
    before = {id: redis_client.get(KEYS.doc(0, id)) for id in versions}
    damage, findings, *fixes = DAMAGE[how]  # type: ignore[misc]
    damage(redis_client)
    report = await call(Kit.objects, "verify", mode)
    assert report.problems == findings, report
    assert "missing_meta" not in report.problems
    repaired = await call(Kit.objects, "repair", mode)
    assert repaired.ok, repaired
    assert set(repaired.fixed) == (fixes[0] if fixes else set(findings)), repaired
    assert (await call(Kit.objects, "verify", mode)).ok
    gone = {"k1"} if how == "orphan sweep record" else set()
    want = {id: state for id, state in expected_state().items() if id not in gone}
    got = format3_state(redis_client)
    assert {id: got[id] for id in want} == want  # (still format 3, m only where it expires)
    assert not redis_client.exists(*(KEYS.meta(0, id) for id in gone)) if gone else True
    for id in versions:
        if id in gone:
            continue
        raw = redis_client.get(KEYS.doc(0, id))
        if findings == {"damaged_header": 1} and raw != before[id]:
            # stamped again: a new version from the clock, no write ids, the payload kept
            version, w, payload = stored.header(raw)  # type: ignore[misc]
            assert version > max(versions.values()) and w == b""
            assert payload == stored.payload(before[id])
            meta = redis_client.hgetall(KEYS.meta(0, id))
            assert meta.get(b"v", b"%d" % version) == b"%d" % version
        else:
            assert raw == before[id], id  # (untouched: its header as it was)
    # the entries are exact again: every query answers from them
    kits = sorted(k.id for k in await call(Kit.objects, "all", mode))
    assert kits == sorted(set(versions) - gone)
    # (exact walks of each index: queries that test values beside the walk are step 4's)
    for qs, ids in [(Kit.objects.filter(tags__contains="all"), kits),
                    (Kit.objects.filter(name="n1"), ["k1", "k3", "k5"]),
                    (Kit.objects.filter(n=3), ["k3"]), (Kit.objects.filter(code="c3"), ["k3"]),
                    (Kit.objects.filter(city="rome", n=1), ["k1"])]:
        got = sorted(k.id for k in await call(qs, "all", mode))
        assert got == [id for id in ids if id not in gone], (qs.spec, got)


def test_a_repaired_sweep_record_lets_the_sweep_remove_the_expired_documents_entries(
        conn: Any, redis_client: Any) -> None:
    seed(redis_client)
    redis_client.delete(KEYS.meta(0, "k4"))  # no sweep record: its entries would stay
    assert Kit.objects.verify_sync().problems == {"missing_sweep_record": 1}
    assert Kit.objects.repair_sync().ok
    assert sorted(redis_client.hkeys(KEYS.meta(0, "k4"))) == sweep_fields()
    redis_client.pexpire(KEYS.doc(0, "k4"), 1)  # (expired early, and due)
    redis_client.zadd(KEYS.ttl(0), {sortable.id_key("k4"): 1})
    time.sleep(0.01)
    Kit.objects.sweep_sync()
    assert not redis_client.exists(KEYS.meta(0, "k4"))
    assert not any(b"k4" in m for name in ("name", "n", "tags", "code", "city__n")
                   for m in redis_client.zrange(KEYS.index(0, name), 0, -1))
    assert Kit.objects.verify_sync().ok


class Label(StringField):
    """A user's kind: its entries are not derived in Lua, its index is *listed* (format 3
    keeps its entries in every document's meta hash)."""


def _grown(indexed: bool) -> Any:
    """The collection ``f3t_grown``, its ``title`` indexed or not; ``size`` and ``label`` (a
    listed index) added with defaults in the second deployment."""
    fields: dict[str, Any] = {"__module__": __name__, "title": StringField(indexed=indexed),
                              "n": IntField(indexed=True),
                              "Meta": type("Meta", (), {"collection": "f3t_grown"})}
    if indexed:
        fields["size"] = IntField(default=7, indexed=True)
        fields["label"] = Label(default="x", indexed=True)
    return type("Grown", (Document,), fields)


def test_reindex_over_format_3_documents(conn: Any, redis_client: Any) -> None:
    plain = _grown(False)
    for i in range(6):
        plain(id=f"g{i}", title=f"t{i % 2}", n=i).save_sync(ttl=3600 if i == 4 else None)
    keys = KeySpace(plain._meta)
    versions = {f"g{i}": headed(redis_client, f"g{i}", (b"", NEWEST, LONG_W)[i % 3], keys)
                for i in range(6)}
    headers = {id: stored.header(redis_client.get(keys.doc(0, id))) for id in versions}
    # (a sweep record's version that does not read is not the document's: not read)
    redis_client.hset(keys.meta(0, "g4"), "v", b"+1")
    grown = _grown(True)
    report = grown.objects.reindex_sync()
    assert report.ready and report.documents == 6 and report.backfilled == 6, report
    for id, (version, w, _payload) in headers.items():  # type: ignore[misc]
        again = stored.header(redis_client.get(keys.doc(0, id)))
        assert again is not None and again[:2] == (version, w)  # (format 3, as it was)
        doc = grown.objects.get_sync(id=id)
        assert (doc.version, doc.size) == (versions[id], 7)
        # a meta hash holding the listed index's entries, and for the expiring one its
        # sweep record, extended
        fields = sorted(redis_client.hkeys(keys.meta(0, id)))
        assert fields == ([b"f:label", b"f:n", b"f:size", b"f:title", b"v"] if id == "g4"
                          else [b"f:label"]), id
    assert redis_client.hget(keys.meta(0, "g4"), "v") == b"%d" % versions["g4"]
    assert [d.id for d in grown.objects.filter(title="t0").order_by("n").all_sync()] == [
        "g0", "g2", "g4"]
    assert grown.objects.filter(size=7).count_sync() == 6
    assert grown.objects.filter(label="x").count_sync() == 6
    members = redis_client.zrange(keys.index(0, "title"), 0, -1)
    assert sorted(members) == sorted(
        grown._meta.fields["title"].index_keys(f"t{i % 2}")[0] + sortable.id_key(f"g{i}")
        for i in range(6))
    assert grown.objects.verify_sync().ok


def test_reindex_refuses_a_format_3_document_whose_header_does_not_read(
        conn: Any, redis_client: Any) -> None:
    from quantumorm import CorruptDocumentError

    plain = _grown(False)
    plain(id="g0", title="t", n=0).save_sync()
    keys = KeySpace(plain._meta)
    headed(redis_client, "g0", b"", keys)
    raw = redis_client.get(keys.doc(0, "g0"))
    redis_client.set(keys.doc(0, "g0"), raw.replace(b"\x00\x00", b"\x00xyz\x00", 1))
    with pytest.raises(CorruptDocumentError) as raised:
        _grown(True).objects.reindex_sync()
    assert raised.value.id == "g0"


def test_repartition_of_a_format_3_collection(conn: Any, redis_client: Any) -> None:
    from test_damaged_versions import model

    from quantumorm.tools.repartition import repartition

    one, two = model(1), model(2)
    saved = one.objects.bulk_create_sync([one(title=f"t{i % 3}") for i in range(12)])
    one.objects.get_sync(id=saved[5].id).save_sync(ttl=3600)  # (one with an expiry)
    old = KeySpace(one._meta)
    versions = {d.id: headed(redis_client, d.id, (b"", NEWEST, LONG_W)[n % 3], old)
                for n, d in enumerate(saved)}
    titles = {d.id: d.title for d in saved}
    repartition(two, from_partitions=1)
    new = KeySpace(two._meta)
    moved = [id for id in versions if new.partition_of(id) == 1]
    assert moved and len(moved) < len(versions)
    for id, version in versions.items():
        doc = two.objects.get_sync(id=id)
        assert (doc.version, doc.title) == (version, titles[id])
    expiring = saved[5].id
    for id in moved:  # kept format 3, header whole; nothing left behind in the old partition
        raw = redis_client.get(new.doc(1, id))
        assert raw[:1] == b"\x01" and stored.header(raw)[0] == versions[id], raw[:40]
        assert bool(redis_client.exists(new.meta(1, id))) == (id == expiring)
        assert not redis_client.exists(old.doc(0, id), old.meta(0, id))
        assert redis_client.zscore(old.ids(0), sortable.id_key(id)) is None
    assert not any(sortable.split_member(m)[1] in {sortable.id_key(i) for i in moved}
                   for m in redis_client.zrange(old.index(0, "title"), 0, -1))
    assert two.objects.count_sync() == 12
    assert sorted(d.id for d in two.objects.filter(title="t0").all_sync()) == sorted(
        id for id in versions if titles[id] == "t0")
    assert two.objects.verify_sync().ok


class Note(Document):
    title = StringField(indexed=True)

    class Meta:
        collection = "f3t_notes"


def test_an_allocating_inserts_lost_reply_is_found_in_a_format_3_header(
        conn: Any, redis_client: Any) -> None:
    from quantumorm.backends.redis.commands import RedisPlan
    from quantumorm.engine.contract import WriteRequest
    from quantumorm.engine.drive import run

    backend, executor = conn.backend, conn.store.sync_executor()
    layout = backend._state(Note._meta).writes
    keys = KeySpace(Note._meta)

    def lost_insert(title: str) -> Any:
        doc = Note(title=title)
        lost = layout.save(WriteRequest("insert", None, 0, doc.clean(), doc._values(), None))
        (reply,) = executor.execute(RedisPlan((lost.call(),)))
        assert reply[0] == b"OK"  # applied; suppose its reply never came back
        return lost, sortable.id_from_key(bytes(reply[2])), int(reply[1])

    # its write id the header's newest: the header's version
    lost, id, version = lost_insert("lost")
    write_id = lost.write_id.encode()
    headed(redis_client, id, write_id + older([(NEWEST, version - 1)]), keys)
    settled = run(backend._settle_allocating(Note._meta, lost), executor)
    assert settled == [[b"OK", version, sortable.id_key(id)]]
    # written over since (by hand): found at an older position, with its version there
    lost, id, version = lost_insert("older")
    write_id = lost.write_id.encode()
    _v, payload = stored.split(redis_client.get(keys.doc(0, id)))
    redis_client.set(keys.doc(0, id), b"\x01%d\x00%s\x00%s" % (
        version + 9, NEWEST + older([(b"%016x" % 7, version + 3), (write_id, version)]),
        payload))
    redis_client.delete(keys.meta(0, id))
    settled = run(backend._settle_allocating(Note._meta, lost), executor)
    assert settled == [[b"OK", version, sortable.id_key(id)]]
    # a format-3 document without it: not applied, sent again (stored once)
    headed(redis_client, id, NEWEST, keys)
    never = layout.save(WriteRequest("insert", None, 0, {"title": "never"},
                                     Note(title="never")._values(), None))
    settled = run(backend._settle_allocating(Note._meta, never), executor)
    assert settled[0][0] == b"OK"
    assert sorted(n.title for n in Note.objects.all_sync()) == ["lost", "never", "older"]


def test_an_allocating_inserts_lookup_refuses_a_damaged_format_3_header(
        conn: Any, redis_client: Any) -> None:
    from quantumorm import CorruptDocumentError
    from quantumorm.backends.redis.commands import RedisPlan
    from quantumorm.engine.contract import WriteRequest
    from quantumorm.engine.drive import run

    backend, executor = conn.backend, conn.store.sync_executor()
    doc = Note(title="lost")
    lost = backend._state(Note._meta).writes.save(
        WriteRequest("insert", None, 0, doc.clean(), doc._values(), None))
    (reply,) = executor.execute(RedisPlan((lost.call(),)))
    id = sortable.id_from_key(bytes(reply[2]))
    # its write id is there, but W is not of the form (16 + 32k): never a version guessed
    headed(redis_client, id, lost.write_id.encode() + b"0" * 17, KeySpace(Note._meta))
    with pytest.raises(CorruptDocumentError) as raised:
        run(backend._settle_allocating(Note._meta, lost), executor)
    assert raised.value.id == id


def test_late_versions_of_an_intent_are_read_from_format_3_headers(
        conn: Any, redis_client: Any) -> None:
    """A committed intent's versions, read back from its documents' recent write ids when
    its apply's reply came very late: from a format-3 header's W (no "r")."""
    from test_damaged_transaction import _stored_intent

    from quantumorm.backends.redis import wire

    _intent, keys, args = _stored_intent(conn, redis_client)
    nindexes = len(wire.unpack(bytes(args[0]))) // 3
    rows = args[6:]
    written = [n for n in range(len(rows) // 9) if bytes(rows[9 * n]) in (b"insert",
                                                                           b"update")]
    assert written
    want = []
    for k, n in enumerate(written):
        doc_key, meta_key = keys[3 + nindexes + 2 * n], keys[4 + nindexes + 2 * n]
        write_id = bytes(rows[9 * n + 4])
        _v, payload = stored.split(redis_client.get(doc_key))
        version = 500 + 10 * k
        # the first row's write id the newest (the header's version), the others older
        w = write_id + LONG_W[16:] if k == 0 else NEWEST + older([(write_id, version)])
        redis_client.set(doc_key, b"\x01%d\x00%s\x00%s" % (
            version if k == 0 else version + 4, w, payload))
        redis_client.delete(meta_key)
        want.append(version)
    got = conn.run(lambda b: conn.backend._late_versions(keys, tuple(args)))
    assert [got[n] for n in written] == want  # type: ignore[index]
    # one of them written over too often since: not known
    doc_key = keys[3 + nindexes + 2 * written[0]]
    _v, payload = stored.split(redis_client.get(doc_key))
    redis_client.set(doc_key, b"\x01900\x00%s\x00%s" % (LONG_W, payload))
    assert conn.run(lambda b: conn.backend._late_versions(keys, tuple(args))) is None
