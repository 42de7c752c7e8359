"""bulk_create sends each document's value encodings to insert_many.lua as one run of
MessagePack values (per index its count, then its encodings), or, for a document with very
many, as one array per index: an index of 128 entries or more (a longer count) first, a
document beyond the run's limit, unique values enforced in both forms; every index
consistent after and the entries those of a save."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call

from quantumorm import ArrayField, Document, IntField, StringField, sortable
from quantumorm.backends.redis import stored
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.errors import BulkWriteError


class Flat(Document):
    tags = ArrayField(StringField(), indexed=True)  # (the first index: its count first)
    code = StringField(unique=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "b_flat"


def _docs(prefix: str) -> list[Flat]:
    return [Flat(id=f"{prefix}{i}", tags=[f"t{j}" for j in range(size)],
                 code=f"{prefix}-code{i}", n=i)
            for i, size in enumerate([0, 1, 127, 128, 200, 3000, 5])]


@pytest.mark.parametrize("mode", MODES)
async def test_flat_and_array_entries_equal_those_of_saves(conn: Any, redis_client: Any,
                                                           mode: str) -> None:
    await call(Flat.objects, "bulk_create", mode, _docs("b"))
    for doc in _docs("s"):
        await call(doc, "save", mode)
    stored = assert_indexes_consistent(redis_client, Flat)
    assert len(stored) == 14
    for tag, expected in (("t0", 6), ("t127", 3), ("t199", 2), ("t2999", 1), ("t4", 5)):
        ids = {d.id for d in await call(Flat.objects.filter(tags__contains=tag), "all", mode)}
        assert len(ids) == 2 * expected and {i[1:] for i in ids if i[0] == "b"} == {
            i[1:] for i in ids if i[0] == "s"}, tag
    assert {d.id for d in await call(Flat.objects.filter(code="b-code5"), "all", mode)} == {"b5"}
    assert (await call(Flat.objects, "verify", mode)).ok


@pytest.mark.parametrize("mode", MODES)
async def test_unique_values_refused_in_both_forms(conn: Any, redis_client: Any,
                                                   mode: str) -> None:
    await call(Flat.objects, "bulk_create", mode, [Flat(id="a", tags=["x"], code="one", n=1)])
    many = [f"m{j}" for j in range(3000)]
    docs = [Flat(id="b", tags=many, code="one", n=2),  # (arrays form: taken by "a")
            Flat(id="c", tags=many[:200], code="two", n=3),  # (a count of 200)
            Flat(id="d", tags=many, code="two", n=4),  # (taken by "c", earlier in the batch)
            Flat(id="e", tags=many[:3], code="three", n=5)]
    with pytest.raises(BulkWriteError) as caught:
        await call(Flat.objects, "bulk_create", mode, docs)
    assert sorted(position for position, _ in caught.value.errors) == [0, 2]
    assert sorted(d.id for d in caught.value.written) == ["c", "e"]
    assert_indexes_consistent(redis_client, Flat)
    assert {d.id for d in await call(Flat.objects.filter(tags__contains="m150"), "all",
                                     mode)} == {"c"}


class Counted(Document):
    n = IntField(indexed=True)

    class Meta:
        collection = "b_counted"


@pytest.mark.parametrize("format", [3, 2])
@pytest.mark.parametrize("mode", MODES)
async def test_versions_of_a_batch_across_hundreds(conn: Any, redis_client: Any,
                                                   mode: str, format: int,
                                                   request: Any) -> None:
    """insert_many.lua writes a batch's versions (consecutive) from one string.format per
    hundred and the last two digits between: every text is the version's, in the document
    key (format 3: its header, then the write id; no meta hash), in format 2 the document
    key and the meta hash ("v", and "r" after the write id), the event and the reply."""
    if format == 2:
        request.getfixturevalue("format2_writes")
    written = await call(Counted.objects, "bulk_create", mode,
                         [Counted(id=f"c{i}", n=i) for i in range(250)], batch_size=250)
    versions = [d.version for d in written]
    assert versions == list(range(versions[0], versions[0] + 250))
    keys = KeySpace(Counted._meta)
    events = {e[b"id"]: e[b"v"] for _, e in redis_client.xrange(keys.changes(0))}
    for doc in written:
        text = str(doc.version).encode()
        p = keys.partition_of(doc.id)
        raw = redis_client.get(keys.doc(p, doc.id))
        if format == 3:
            assert raw.startswith(b"\x01" + text + b"\0")
            head = stored.header(raw)
            assert head is not None and head[0] == doc.version
            assert len(head[1]) == 16 and int(head[1], 16) >= 0  # (W: the write id)
            assert not redis_client.exists(keys.meta(p, doc.id))
        else:
            meta = redis_client.hgetall(keys.meta(p, doc.id))
            assert meta[b"v"] == text and meta[b"r"][-16:] == text.rjust(16, b"0")
            assert raw.startswith(b"\0" + text + b"\0")
        assert events[sortable.id_key(doc.id)] == text
    loaded = await call(Counted.objects, "get_many", mode, [d.id for d in written])
    assert [d.version for d in loaded] == versions


class Pair(Document):
    a = StringField(indexed=True)
    b = IntField()

    class Meta:
        collection = "b_pair"
        indexes = [{"fields": ["a", "b"], "unique": True}]


@pytest.mark.parametrize("mode", MODES)
async def test_a_compound_unique_value_with_a_null_part_is_not_enforced(
        conn: Any, redis_client: Any, mode: str) -> None:
    """The documents whose compound unique value has a null part (not enforced) are named
    once per batch (their number in it): the others are enforced, wherever they are."""
    docs = [Pair(id="p1", a="y", b=1), Pair(id="p2", a="x", b=None),
            Pair(id="p3", a="x", b=None), Pair(id="p4", a="y", b=1),
            Pair(id="p5", a="x", b=None), Pair(id="p6", a="z", b=2)]
    with pytest.raises(BulkWriteError) as caught:
        await call(Pair.objects, "bulk_create", mode, docs)
    assert [position for position, _ in caught.value.errors] == [3]
    assert sorted(d.id for d in caught.value.written) == ["p1", "p2", "p3", "p5", "p6"]
    with pytest.raises(BulkWriteError) as again:  # (enforced against the stored ones too)
        await call(Pair.objects, "bulk_create", mode,
                   [Pair(id="q1", a="x", b=None), Pair(id="q2", a="z", b=2)])
    assert [position for position, _ in again.value.errors] == [1]
    assert_indexes_consistent(redis_client, Pair)


class Single(Document):
    tags = ArrayField(StringField(), indexed=True)  # (the model's only index)

    class Meta:
        collection = "b_single"


@pytest.mark.parametrize("mode", MODES)
async def test_one_index_with_no_entry_and_both_forms(conn: Any, redis_client: Any,
                                                      mode: str) -> None:
    """insert_many.lua tells the two forms apart by what unpacks: a model of one index sends
    a document with no entry as the lone count 0 (one value, as the arrays form is), and
    one with very many as the arrays; each in a batch of its own and all in one."""
    sizes = [0, 3000, 2, 0, 1]
    many = [Single(id=f"b{i}", tags=[f"t{j}" for j in range(size)])
            for i, size in enumerate(sizes)]
    await call(Single.objects, "bulk_create", mode, many)
    for i, size in enumerate(sizes):
        await call(Single.objects, "bulk_create", mode,
                   [Single(id=f"a{i}", tags=[f"t{j}" for j in range(size)])])
        await call(Single(id=f"s{i}", tags=[f"t{j}" for j in range(size)]), "save", mode)
    assert len(assert_indexes_consistent(redis_client, Single)) == 15
    for tag, expected in (("t0", 3), ("t1", 2), ("t2", 1), ("t2999", 1)):
        ids = {d.id for d in await call(Single.objects.filter(tags__contains=tag), "all", mode)}
        assert {i[1:] for i in ids if i[0] == "b"} == {i[1:] for i in ids if i[0] == "a"} == {
            i[1:] for i in ids if i[0] == "s"} and len(ids) == 3 * expected, tag
    assert (await call(Single.objects, "verify", mode)).ok
