"""Format 3's document header, read by this release (bench/format3.md, plan step 1): a
document key holding ``\\x01<version>\\0<W>\\0<payload>`` (``W``: recent write ids, hex
digits and digits, possibly empty; the payload as in format 2, JSON or compressed) reads
as the document at that version, wherever a format-2 document (``\\0<version>\\0<payload>``)
reads. The tests store it by hand (SET), from the format-2 document the ORM wrote
(``format2_writes``: inserts store format 2, as before format 3), keeping the meta hash (as
format 3 keeps one for a document with an expiry); format 1 (JSON alone) and the meta
hash's version beside a header are states only upgraded collections hold.

* by id: get, get_many (a mix of formats 1, 2, 3 and a missing id), reload;
* queries: an exact index walk, set algebra (AND, OR), ordered and limited, count and
  exists, over partitions in one phase (keyed windows merged) and in two (ranked, then the
  winners read by id), a residual filter in Python; a format-3 document's query row never
  reads its meta hash's version (as for format 2);
* compressed payloads, an empty ``W``, a long one (16 + 3 x 32 characters);
* a ``\\x01`` value without its two NULs, or whose version is not plain digits, is refused
  as damaged (CorruptDocumentError naming it), as a damaged format-2 prefix is
  (test_damaged_prefix.py); verify() judges a good one a document (no problem), a
  damaged version ``damaged_header``, and repair() stores it again with its payload (a
  new version, no write ids);
* reindex() builds a new index from format-3 documents, repartition moves them (stored
  in format 2 at the target, as every writer of this release stores), and a delete
  event carries the document without its header.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, call

from quantumorm import CorruptDocumentError, Document, IntField, Q, StringField
from quantumorm.backends.redis import stored
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.backends.redis.reader import two_phase_pays

#: every test starts from format-2 documents (a meta hash with the version and entries)
pytestmark = pytest.mark.usefixtures("format2_writes")

#: recent write ids as format 3 stores them: the newest id alone (16 hex digits), then
#: each older one's id and version (32 characters), newest first
NEWEST = b"00c0ffee12345678"
LONG_W = NEWEST + b"".join(b"%016x%016d" % (0xabc0 + k, 40 - k) for k in range(3))
W_CASES = {"empty": b"", "newest": NEWEST, "long": LONG_W}


class Leaf(Document):
    title = StringField(indexed=True)
    n = IntField(indexed=True)
    tag = StringField(indexed=True)

    class Meta:
        collection = "f3_leaves"


class Packed(Document):
    title = StringField(indexed=True)
    n = IntField(indexed=True)
    body = StringField()

    class Meta:
        collection = "f3_packed"
        compress = {"codec": "zlib", "min_size": 1}


class Spread(Document):
    title = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "f3_spread"
        partitions = 8


def headed(redis_client: Any, key: str, w: bytes) -> int:
    """The format-2 document at ``key`` stored again in format 3 (its version and payload
    kept, ``w`` its write ids); its version."""
    version, payload = stored.split(redis_client.get(key))
    assert redis_client.set(key, b"\x01%d\x00%s\x00%s" % (version, w, payload), keepttl=True)
    return version


def test_split_and_payload_read_format_3() -> None:
    for w in W_CASES.values():
        raw = b"\x0117\x00" + w + b"\x00{\"a\":1}"
        assert stored.split(raw) == (17, b"{\"a\":1}")
        assert stored.split(raw, b"5") == (17, b"{\"a\":1}")  # (the header's, not the meta's)
        assert stored.payload(raw) == b"{\"a\":1}"
        assert stored.document(raw, "M", "x") == {"a": 1}
    assert stored.split(b"\x0117\x00\x00\xff\x00zz") == (17, b"\xff\x00zz")  # (compressed)
    # damaged: the two NULs missing (ValueError), a version that is not plain digits
    for raw in (b"\x01", b"\x0117", b"\x0117\x00{}", b"\x0117\x00" + NEWEST + b"{}"):
        with pytest.raises(ValueError):
            stored.split(raw)
        with pytest.raises(ValueError):
            stored.payload(raw)
        with pytest.raises(CorruptDocumentError):
            stored.document(raw, "M", "x")
    for digits in (b"", b"+17", b" 17", b"017", b"1_7", b"0", b"abc"):
        with pytest.raises(stored.DamagedVersion):
            stored.split(b"\x01" + digits + b"\x00" + NEWEST + b"\x00{}")
        assert stored.payload(b"\x01" + digits + b"\x00" + NEWEST + b"\x00{}") == b"{}"


async def _leaves(mode: str) -> dict[str, Any]:
    saved = {}
    for i, (title, tag) in enumerate([("t", "x"), ("t", "y"), ("u", "x"), ("t", "x"),
                                      ("u", "y"), ("t", "y")]):
        id = "abcdef"[i]
        saved[id] = await call(Leaf(id=id, title=title, n=10 + i, tag=tag), "save", mode)
    return saved


@pytest.mark.parametrize("w", W_CASES)
@pytest.mark.parametrize("mode", MODES)
async def test_reads_by_id_read_format_3(conn: Any, redis_client: Any, mode: str,
                                         w: str) -> None:
    saved = await _leaves(mode)
    keys = KeySpace(Leaf._meta)
    for id in "ace":
        assert headed(redis_client, keys.doc(0, id), W_CASES[w]) == saved[id].version
    # "d" in format 1 (no version in the key: read again with its meta hash's)
    redis_client.set(keys.doc(0, "d"), stored.split(redis_client.get(keys.doc(0, "d")))[1])
    got = await call(Leaf.objects, "get", mode, id="a")
    assert (got.id, got.n, got.title, got.tag, got.version) == (
        "a", 10, "t", "x", saved["a"].version)
    many = await call(Leaf.objects, "get_many", mode, ids=["a", "b", "zz", "c", "d", "a"])
    assert [None if d is None else (d.id, d.n, d.version) for d in many] == [
        ("a", 10, saved["a"].version), ("b", 11, saved["b"].version), None,
        ("c", 12, saved["c"].version), ("d", 13, saved["d"].version),
        ("a", 10, saved["a"].version)]
    # reload: the stored document, read again (a format-3 one made at a later version)
    loaded = await call(Leaf.objects, "get", mode, id="e")
    later = saved["e"].version + 7
    redis_client.set(keys.doc(0, "e"), b"\x01%d\x00%s\x00%s" % (
        later, W_CASES[w], b'{"title":"v","n":99,"tag":"z"}'))
    again = await call(loaded, "reload", mode)
    assert (again.title, again.n, again.tag, again.version) == ("v", 99, "z", later)
    by_id = await call(Leaf.objects.filter(id__in=["e", "a", "b"]).order_by("n"), "all", mode)
    assert [(d.id, d.version) for d in by_id] == [
        ("a", saved["a"].version), ("b", saved["b"].version), ("e", later)]


@pytest.mark.parametrize("w", W_CASES)
@pytest.mark.parametrize("mode", MODES)
async def test_queries_read_format_3_in_each_mode(conn: Any, redis_client: Any, mode: str,
                                                  w: str) -> None:
    saved = await _leaves(mode)
    keys = KeySpace(Leaf._meta)
    for id in "ace":
        headed(redis_client, keys.doc(0, id), W_CASES[w])
    version = {id: doc.version for id, doc in saved.items()}

    async def rows(qs: Any) -> list[tuple[str, int, int]]:
        return [(d.id, d.n, d.version) for d in await call(qs, "all", mode)]

    def want(ids: str) -> list[tuple[str, int, int]]:
        return [(id, 10 + "abcdef".index(id), version[id]) for id in ids]

    objects = Leaf.objects
    cases = [
        (objects.filter(title="t"), "index walk (in order)", "abdf"),  # exact walk
        (objects.filter(title="t").order_by("n"), None, "abdf"),
        (objects.filter(title="t", tag="x").order_by("n"), None, "ad"),  # intersection
        (objects.filter(Q(title="u") | Q(tag="x")).order_by("n"), None, "acde"),  # union
        (objects.filter(n__gte=11).order_by("-n")[:3], None, "fed"),  # ordered, limited
        (objects.filter(n__gte=11, n__lt=15).order_by("n")[1:3], None, "cd"),
        (objects.order_by("n"), None, "abcdef"),  # the id index walked
        (objects.filter(title__startswith="u").order_by("tag", "n"), None, "ce"),
    ]
    for qs, strategy, ids in cases:
        got = await rows(qs)
        assert (got if qs.spec.order else sorted(got)) == want(ids), (qs.spec, ids)
        if strategy is not None:
            assert (await call(qs, "explain", mode)).strategy == strategy
    first = await call(objects.filter(title="u").order_by("-n"), "first", mode)
    assert (first.id, first.version) == ("e", version["e"])
    # count and exists (by the index, and by query.lua with each document checked)
    assert await call(objects.filter(title="t"), "count", mode) == 4
    assert await call(objects.filter(title="u", tag="y"), "count", mode) == 1
    assert await call(objects.filter(title="u", tag="y"), "exists", mode)
    # a format-3 query row takes its version from its header, never from the meta hash
    # (as a format-2 row does): a meta "v" that does not read is not met
    redis_client.hset(keys.meta(0, "a"), "v", b"+%d" % version["a"])
    assert await rows(objects.filter(title="t", tag="x").order_by("n")) == want("ad")
    assert await rows(objects.filter(title="t")[:1]) == want("a")


@pytest.mark.parametrize("mode", MODES)
async def test_queries_over_partitions_read_format_3(conn: Any, redis_client: Any,
                                                     mode: str) -> None:
    keys = KeySpace(Spread._meta)
    version = {}
    for i in range(24):
        doc = await call(Spread(id=f"s{i:02d}", title="t" if i % 3 else "u", n=i), "save",
                         mode)
        version[doc.id] = doc.version
    for i in range(0, 24, 2):
        id = f"s{i:02d}"
        headed(redis_client, keys.doc(keys.partition_of(id), id), LONG_W if i % 4 else b"")
    assert two_phase_pays(Spread._meta.partitions, 80)  # ranked, then the winners by id
    assert not two_phase_pays(Spread._meta.partitions, 5)  # keyed windows merged

    async def rows(qs: Any) -> list[tuple[str, int]]:
        return [(d.id, d.version) for d in await call(qs, "all", mode)]

    def want(ns: Any) -> list[tuple[str, int]]:
        return [(f"s{i:02d}", version[f"s{i:02d}"]) for i in ns]

    t = [i for i in range(24) if i % 3]
    assert await rows(Spread.objects.filter(title="t").order_by("n")[:80]) == want(t)
    assert await rows(Spread.objects.order_by("-n")[:80]) == want(range(23, -1, -1))
    assert await rows(Spread.objects.filter(title="t").order_by("-n")[:5]) == want(
        t[::-1][:5])
    assert await rows(Spread.objects.filter(n__gte=4).order_by("n")[2:5]) == want([6, 7, 8])
    assert sorted(await rows(Spread.objects.filter(title="u"))) == want(range(0, 24, 3))
    assert await call(Spread.objects.filter(title="u"), "count", mode) == 8
    assert [d.id for d in await call(Spread.objects, "get_many", mode,
                                     ids=["s00", "s01", "s02"])] == ["s00", "s01", "s02"]
    # keyed windows and rows: a format-3 row's version is its header's, its meta hash's
    # "v" not read (the two-phase ranking reads it, as for format 2: test_damaged_versions)
    redis_client.hset(keys.meta(keys.partition_of("s02"), "s02"), "v", b"+1")
    assert await rows(Spread.objects.filter(title="t").order_by("n")[:5]) == want(t[:5])
    assert sorted(await rows(Spread.objects.filter(title="t"))) == want(t)


@pytest.mark.parametrize("w", W_CASES)
@pytest.mark.parametrize("mode", MODES)
async def test_compressed_format_3_documents_read(conn: Any, redis_client: Any, mode: str,
                                                  w: str) -> None:
    keys = KeySpace(Packed._meta)
    version = {}
    for i in range(4):
        doc = await call(Packed(id=f"p{i}", title="t", n=i, body="é" * 300 + str(i)), "save",
                         mode)
        version[doc.id] = doc.version
    for id in ("p0", "p2", "p3"):
        assert redis_client.get(keys.doc(0, id)).split(b"\x00", 2)[2][:1] == b"\xff"
        headed(redis_client, keys.doc(0, id), W_CASES[w])
    got = await call(Packed.objects, "get", mode, id="p0")
    assert (got.body, got.version) == ("é" * 300 + "0", version["p0"])
    many = await call(Packed.objects, "get_many", mode, ids=["p3", "p1", "p2"])
    assert [(d.id, d.body[-1], d.version) for d in many] == [
        (id, id[1], version[id]) for id in ("p3", "p1", "p2")]
    found = await call(Packed.objects.filter(title="t").order_by("-n"), "all", mode)
    assert [(d.id, d.n, d.version) for d in found] == [
        (f"p{i}", i, version[f"p{i}"]) for i in (3, 2, 1, 0)]
    report = await call(Packed.objects, "verify", mode)
    assert report.ok and report.documents == 4, report


@pytest.mark.parametrize("mode", MODES)
async def test_verify_judges_a_format_3_document_a_document(conn: Any, redis_client: Any,
                                                            mode: str) -> None:
    saved = await _leaves(mode)
    keys = KeySpace(Leaf._meta)
    for id, w in zip("ace", W_CASES.values(), strict=True):
        headed(redis_client, keys.doc(0, id), w)
    report = await call(Leaf.objects, "verify", mode)
    assert report.ok and report.documents == 6, report
    # its header's version is the document's (its writers compare it): a meta hash beside
    # it holding another is a stale record (format 3 keeps one only as a sweep record)
    redis_client.set(keys.doc(0, "c"), b"\x01%d\x00%s\x00%s" % (
        saved["c"].version + 1, LONG_W, stored.payload(redis_client.get(keys.doc(0, "c")))))
    report = await call(Leaf.objects, "verify", mode)
    assert report.problems == {"stale_sweep_record": 1}, report


#: ``\x01`` values refused as damaged, made from the version and the payload; verify()'s
#: finding for each (as for the format-2 prefix damaged the same way)
DAMAGED = {
    "no NUL": (lambda v, p: b"\x01" + v, "corrupt_documents"),
    "one NUL": (lambda v, p: b"\x01" + v + b"\x00" + p, "corrupt_documents"),
    "W not ended": (lambda v, p: b"\x01" + v + b"\x00" + NEWEST + p, "corrupt_documents"),
    "sign": (lambda v, p: b"\x01+" + v + b"\x00" + NEWEST + b"\x00" + p, "damaged_header"),
    "empty": (lambda v, p: b"\x01\x00\x00" + p, "damaged_header"),
    "leading zero": (lambda v, p: b"\x010" + v + b"\x00\x00" + p, "damaged_header"),
    "text": (lambda v, p: b"\x01abc\x00" + LONG_W + b"\x00" + p, "damaged_header"),
}


@pytest.mark.parametrize("how", DAMAGED)
@pytest.mark.parametrize("mode", MODES)
async def test_a_damaged_format_3_header_is_refused_as_damaged(
        conn: Any, redis_client: Any, mode: str, how: str) -> None:
    saved = await _leaves(mode)
    key = KeySpace(Leaf._meta).doc(0, "a")
    good = redis_client.get(key)
    version, payload = stored.split(good)
    damage, finding = DAMAGED[how]
    # undamaged, the same format-3 value reads; then each damage is refused
    headed(redis_client, key, NEWEST)
    assert (await call(Leaf.objects, "get", mode, id="a")).version == version
    redis_client.set(key, damage(b"%d" % version, payload))
    for target, method, args in [(Leaf.objects, "get", {"id": "a"}),
                                 (Leaf.objects, "get_many", {"ids": ["b", "a"]}),
                                 (Leaf.objects.filter(title="t"), "all", {}),
                                 (Leaf.objects.filter(title="t").order_by("n"), "all", {}),
                                 (Leaf.objects.filter(n__gte=0).order_by("-n")[:9], "all", {})]:
        with pytest.raises(CorruptDocumentError) as raised:
            await call(target, method, mode, **args)
        assert raised.value.id == "a", (method, args)
    with pytest.raises(CorruptDocumentError):
        await call(saved["a"], "reload", mode)
    report = await call(Leaf.objects, "verify", mode)
    assert report.problems == {finding: 1}, report
    if finding == "damaged_header":  # the payload reads: stored again at a new version
        repaired = await call(Leaf.objects, "repair", mode)
        assert repaired.ok and repaired.fixed == {"damaged_header": 1}, repaired
        got = await call(Leaf.objects, "get", mode, id="a")
        assert got.n == 10 and got.version > version
        assert redis_client.get(key) == b"\x01%d\x00\x00%s" % (got.version, payload)


def _declared(indexed: bool) -> Any:
    """The collection ``f3_grown``, its ``title`` indexed or not (two deployments)."""
    return type("Grown", (Document,), {
        "__module__": __name__, "title": StringField(indexed=indexed),
        "n": IntField(indexed=True), "Meta": type("Meta", (), {"collection": "f3_grown"})})


def test_reindex_and_repartition_read_format_3_documents(conn: Any, redis_client: Any) -> None:
    """Both decode each document for its index values (the version from the meta hash):
    a format-3 one reads (the index built from it; moved with its payload)."""
    from test_damaged_versions import _moving_id, model

    from quantumorm.tools.repartition import repartition

    plain = _declared(False)
    plain.objects.bulk_create_sync([plain(id=f"g{i}", title=f"t{i % 2}", n=i)
                                    for i in range(6)])
    keys = KeySpace(plain._meta)
    for i in range(0, 6, 2):
        headed(redis_client, keys.doc(0, f"g{i}"), LONG_W)
    grown = _declared(True)
    grown.objects.reindex_sync()
    assert [d.id for d in grown.objects.filter(title="t0").order_by("n").all_sync()] == [
        "g0", "g2", "g4"]
    assert grown.objects.verify_sync().ok

    one, two = model(1), model(2)
    one.objects.bulk_create_sync([one(title=f"t{i}") for i in range(8)])
    id = _moving_id(two, 8)
    version = headed(redis_client, KeySpace(one._meta).doc(0, id), NEWEST)
    title = one.objects.get_sync(id=id).title
    repartition(two, from_partitions=1)
    moved = two.objects.get_sync(id=id)
    assert (moved.version, moved.title) == (version, title)
    assert two.objects.verify_sync().ok


class Logged(Document):
    title = StringField(indexed=True)

    class Meta:
        collection = "f3_logged"
        changes_document = True


@pytest.mark.parametrize("mode", MODES)
async def test_a_delete_event_carries_a_format_3_documents_payload(
        conn: Any, redis_client: Any, mode: str) -> None:
    """The delete event's document is the stored one without its header (``payload_of``
    in lua/_prelude.lua, which skips ``W`` too)."""
    feed = Logged.objects.changes(wait=0)
    assert await call(feed, "read", mode) == []
    await call(Logged(id="a", title="kept"), "save", mode)
    version = headed(redis_client, KeySpace(Logged._meta).doc(0, "a"), LONG_W)
    loaded = await call(Logged.objects, "get", mode, id="a")
    assert loaded.version == version
    await call(loaded, "delete", mode)
    events = await call(feed, "read", mode)
    deleted = [e for e in events if e.op == "delete"]
    assert [(e.id, e.document.title) for e in deleted] == [("a", "kept")]
