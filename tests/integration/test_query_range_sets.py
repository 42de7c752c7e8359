"""query.lua reads a range condition's index ranges as a set of ids (set algebra) when they
are small enough against the candidates: the id key of each member is found after the first
``\\0`` when the index holds no string value, else after the last (a string's encoding may
hold a ``\\0``, escaped as ``\\0\\xff``). Each answer is compared with one computed in Python,
on values whose strings hold ``\\0`` followed by bytes that look like an id key, and the
server's command counts show that the ranges were read as sets (no meta hash read for a
rejected candidate).
"""

from __future__ import annotations

from typing import Any

from quantumorm import Document, IntField, StringField

N = 600


class Word(Document):
    word = StringField(indexed=True)
    n = IntField(indexed=True)
    tag = StringField(indexed=True)

    class Meta:
        collection = "qrs_words"


def _values() -> dict[str, dict[str, Any]]:
    # a "\0" then bytes shaped like a numeric id key (\x01, 0x20 + length, digits): what the
    # id of such a member is not
    # (and words longer than 16 bytes, which the meta test compares in chunks)
    return {str(i): {"word": (f"long-prefix-0123456789-{i % 13}" if i % 5 == 0
                              else f"w{i % 9}\0\x01\x22{i % 97:02d}" if i % 3 else f"w{i % 9}"),
                     "n": i % 50, "tag": "a" if i % 2 else "b"}
            for i in range(1, N + 1)}


VALUES = _values()


def _calls(client: Any) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(stat["calls"])
            for name, stat in client.info("commandstats").items()}


async def test_ranges_read_as_sets_give_the_reference_answers(conn: Any,
                                                              redis_client: Any) -> None:
    await Word.objects.bulk_create([Word(id=id, **v) for id, v in VALUES.items()])
    cases = [
        # a range of an index of numbers only: ids after the first \0
        (lambda: Word.objects.filter(tag="a", n__gte=40),
         lambda v: v["tag"] == "a" and v["n"] >= 40),
        # a range of an index of strings, some holding \0: ids after the last \0
        (lambda: Word.objects.filter(tag="a", word__gte="w7"),
         lambda v: v["tag"] == "a" and v["word"] >= "w7"),
        (lambda: Word.objects.filter(tag="b", word__lt="w1\0\x02", n__lt=10),
         lambda v: v["tag"] == "b" and v["word"] < "w1\0\x02" and v["n"] < 10),
    ]
    for make, test in cases:
        matching = sorted((id for id, v in VALUES.items() if test(v)), key=int)
        assert matching
        await make().all()  # (the script loaded, the schema read)
        before = _calls(redis_client)
        rows = await make().all()
        after = _calls(redis_client)
        assert [d.id for d in rows] == matching
        assert [(d.word, d.n, d.tag) for d in rows] == [
            (VALUES[id]["word"], VALUES[id]["n"], VALUES[id]["tag"]) for id in matching]
        # the ranges were read as sets: no meta hash read per candidate (at most one per row
        # returned, for its version, and the layout check's)
        reads = sum(after.get(c, 0) - before.get(c, 0) for c in ("hget", "hmget"))
        assert reads <= len(rows) + 1
        assert after.get("zrangebylex", 0) > before.get("zrangebylex", 0)
        assert await make().count() == len(matching)


async def test_ranges_tested_on_the_meta_hash_give_the_reference_answers(conn: Any) -> None:
    # few candidates (an equality), a range of most entries: each candidate's value is
    # compared with the bounds (byte order, chunk by chunk)
    await Word.objects.bulk_create([Word(id=id, **v) for id, v in VALUES.items()])
    for bound in ("long-prefix-0123456789-5", "long-prefix-0123456789-", "w3\0\x01\x2250",
                  "w3\0", "w3", "long-prefix-0123456789-12x", ""):
        for n in (0, 5, 7):
            got = await Word.objects.filter(n=n, word__gt=bound).all()
            assert [d.id for d in got] == sorted(
                (id for id, v in VALUES.items() if v["n"] == n and v["word"] > bound), key=int)
            got = await Word.objects.filter(n=n, word__lte=bound).order_by("-word").all()
            assert [d.id for d in got] == sorted(
                (id for id, v in VALUES.items() if v["n"] == n and v["word"] <= bound),
                key=lambda id: (VALUES[id]["word"], int(id)), reverse=True)


class Duo(Document):
    n = IntField()
    word = StringField()

    class Meta:
        collection = "qrs_duos"
        indexes = [("n", "word")]


async def test_long_index_ranges_of_single_and_compound_indexes(conn: Any) -> None:
    # index ranges of many members (a walk's, a driver's): the id key after the first \0 only
    # in a single-field index of no string; a compound index's members hold a \0 per value
    await Word.objects.bulk_create([Word(id=id, **v) for id, v in VALUES.items()])
    await Duo.objects.bulk_create([Duo(id=id, n=v["n"], word=v["word"])
                                   for id, v in VALUES.items()])
    by_n = await Word.objects.filter(n__gte=10, n__lt=30).order_by("n").all()
    assert [d.id for d in by_n] == sorted(
        (id for id, v in VALUES.items() if 10 <= v["n"] < 30), key=lambda id: (VALUES[id]["n"],
                                                                              int(id)))
    by_word = await Word.objects.filter(word__gte="w3").order_by("-word").all()
    assert [d.id for d in by_word] == sorted(
        (id for id, v in VALUES.items() if v["word"] >= "w3"),
        key=lambda id: (VALUES[id]["word"], int(id)), reverse=True)
    for model in (Word, Duo):
        got = await model.objects.filter(n__gte=10, n__lt=30).all()
        assert [d.id for d in got] == sorted(
            (id for id, v in VALUES.items() if 10 <= v["n"] < 30), key=int)
    got = await Duo.objects.filter(n__gte=45).order_by("-n").limit(50).all()
    assert [d.id for d in got] == sorted(
        (id for id, v in VALUES.items() if v["n"] >= 45),
        key=lambda id: (VALUES[id]["n"], int(id)), reverse=True)[:50]
