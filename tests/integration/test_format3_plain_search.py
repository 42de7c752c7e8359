"""query.lua's plain search of a format-3 candidate's member (bench/format3.md, section 4
"Queries"): the value a query tests is found in the stored JSON without decoding it (an
object with no backslash and no nested object, the name's only key text), its entry made in
place for an int, a string, a boolean or null; every other document goes to the colder tier
(the cjson proof, the scan, ``_derive.lua``). Both must answer what Python reads.

The documents are written by the ORM, then their JSON rewritten by hand in forms Python
reads alike (blanks, member order, the name's text inside string values, a member stored
twice, a nested object, escapes) and stored as format 3 without a meta hash: the index
entries stay those of the values Python reads, so any wrong reading of the text is a wrong
answer against the reference evaluator.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from reference_queries import assert_query_agrees

from quantumorm import (
    ArrayField,
    BooleanField,
    Document,
    IntField,
    Q,
    QueryError,
    StringField,
)
from quantumorm.backends.redis import stored
from quantumorm.backends.redis.keys import KeySpace

NEWEST = b"00c0ffee12345678"


class Plain3(Document):
    s = StringField(indexed=True)
    n = IntField(indexed=True)
    b = BooleanField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    m = IntField(indexed=True, db_field="nn")  # (a key text holding the other's name)

    class Meta:
        collection = "f3_plain"


#: ints around every length the entry's exponent and the plain search's common case
#: (fewer than 10 digits) change at, trailing zeros (dropped from the entry), the exactness
#: of a double (15 and 16 digits, 2**53 + 1), negatives and zero
INTS = [0, 1, 7, 10, 100, 120, 99, 123456789, 100000000, 999999999, 1000000000, 1234567890,
        10**14, 999999999999999, 10**15, 1000000000000001, 2**53, 2**53 + 1, 10**30,
        -1, -5, -10, -100, -123456789, -1000000000, -999999999999999, -(10**15), -(2**60)]


def compact(values: dict[str, Any]) -> str:
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False)


def blanks(values: dict[str, Any]) -> str:
    return json.dumps(values, separators=(" , ", " : "), ensure_ascii=False)


def reordered(values: dict[str, Any]) -> str:
    return compact(dict(reversed(list(values.items()))))


def twice(values: dict[str, Any]) -> str:
    # (each member first with another value: Python reads the last)
    wrong = {k: (v + 1 if type(v) is int else "zz" if isinstance(v, str) else v)
             for k, v in values.items()}
    return compact(wrong)[:-1] + "," + compact(values)[1:]


def nested(values: dict[str, Any]) -> str:
    # (the names inside an object before the members: never the top level's)
    return '{"z":' + compact({k: 1 for k in values}) + "," + compact(values)[1:]


def escaped(values: dict[str, Any]) -> str:
    return json.dumps(values, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/")


FORMS = [compact, blanks, reordered, twice, nested, escaped]


def to_format3(redis_client: Any, model: type[Document], id: str, text: str | None,
               same: bool = True) -> None:
    """The document ``id`` stored again in format 3 (its version kept), its JSON ``text``
    when given (else as written; ``same``: what Python reads of it checked unchanged), its
    meta hash deleted."""
    keys = KeySpace(model._meta)
    p = keys.partition_of(id)
    key = keys.doc(p, id)
    version, payload = stored.split(redis_client.get(key))
    if text is not None:
        read = json.loads(text)
        read.pop("z", None)  # (an unknown member: the loader ignores it)
        assert read == json.loads(payload) or not same, (text, payload)
        payload = text.encode()
    redis_client.set(key, b"\x01%d\x00%s\x00%s" % (version, NEWEST, payload))
    redis_client.delete(keys.meta(p, id))


def _gets(redis_client: Any) -> int:
    stats = redis_client.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


def load(redis_client: Any) -> list[Document]:
    """Every int of INTS in every form, with strings holding the names' texts ("n", "nn",
    "n:", ...), some members null; plus format-2 documents."""
    docs, texts = [], {}
    strings = ["x", "n", "nn", "b", 'n":', "a,b:c]", "{n}", "é", "tab\there", "", "x y"]
    i = 0
    for value in INTS:
        for form in FORMS:
            i += 1
            s = strings[i % len(strings)]
            tags = [strings[(i + 3) % len(strings)], "n"] if i % 3 else []
            doc = Plain3(id=str(i), s=s, n=value, b=bool(i % 2), tags=tags,
                         m=INTS[(i * 7) % len(INTS)] if i % 5 else None)
            docs.append(doc)
            values = {"s": s, "n": value, "b": bool(i % 2), "tags": tags,
                      "nn": doc.m}
            texts[doc.id] = form(values) if i % 9 else None  # (some as the ORM wrote them)
    for j, value in enumerate(INTS[::3]):  # (format 2, beside them)
        docs.append(Plain3(id=f"f2:{j}", s="x", n=value, b=True, tags=["n"], m=value))
    Plain3.objects.bulk_create_sync(docs)
    for id, text in texts.items():
        to_format3(redis_client, Plain3, id, text)
    return list(Plain3.objects.all_sync())


def test_values_read_from_the_text_agree_with_python(conn: Any, redis_client: Any) -> None:
    reference = load(redis_client)
    before = _gets(redis_client)
    bounds = [0, 10, 999999999, 1000000000, 999999999999999, 10**15, 2**53, -1, -10,
              -(10**15), 10**30]
    for bound in bounds:
        for where in (Q(n__gte=bound), Q(n__gt=bound), Q(n__lt=bound), Q(n__lte=bound),
                      Q(m__gte=bound) | Q(n=bound)):
            for order in ([], ["-n"], ["b", "m", "id"]):
                # (a condition on b that reads no set first: the range tested per candidate)
                assert_query_agrees(Plain3, reference, where & Q(b=True), order, 0, None,
                                    None)
    for where in (Q(s="x"), Q(s__gte="n"), Q(s__isnull=False), Q(m__isnull=True),
                  Q(tags__contains="n")):
        for order in (["n"], ["-s", "m"], ["s", "id"]):
            assert_query_agrees(Plain3, reference, where, order, 0, None, None)
            assert_query_agrees(Plain3, reference, where, order, 2, 5, None)
    assert _gets(redis_client) > before + 1000  # (the documents were read)


def test_an_int_compared_at_its_every_digit(conn: Any, redis_client: Any) -> None:
    """Each int of INTS against bounds one below, at and one above it, on documents of that
    int alone (no form twice: each candidate read from its text)."""
    docs = [Plain3(id=str(i), s="x", n=value, b=True, tags=[], m=-value)
            for i, value in enumerate(INTS)]
    Plain3.objects.bulk_create_sync(docs)
    for doc in docs:
        to_format3(redis_client, Plain3, str(doc.id), None)
    reference = list(Plain3.objects.all_sync())
    for value in INTS:
        for bound in (value - 1, value, value + 1):
            for where in (Q(n__gte=bound), Q(n__gt=bound), Q(n__lte=bound), Q(n__lt=bound),
                          Q(m__gt=-bound)):
                assert_query_agrees(Plain3, reference, where & Q(s="x"), ["-m"], 0, None,
                                    None)


def test_a_name_only_inside_a_nested_object_is_absent(conn: Any, redis_client: Any) -> None:
    """The only "n" key inside a nested object: the top level has no such member, which
    Python reads as null; the query refuses the document (as for any absent member) rather
    than read the nested one."""
    for i in range(3):
        Plain3(id=str(i), s="x", n=i + 1, b=True, tags=[], m=1).save_sync()
    to_format3(redis_client, Plain3, "1", '{"z":{"n":2},"s":"x","b":true,"tags":[],"nn":1}',
               same=False)
    with pytest.raises(QueryError, match="'f:n'.*format 3.*no such member"):
        Plain3.objects.filter(s="x").order_by("-n", "id").all_sync()


def test_a_name_only_inside_a_string_is_absent(conn: Any, redis_client: Any) -> None:
    # (the text '"n"' only as strings of an array, one of them followed by a string that
    # starts with ':')
    for i in range(3):
        Plain3(id=str(i), s="x", n=i + 1, b=True, tags=[], m=1).save_sync()
    to_format3(redis_client, Plain3, "1", '{"s":"x","b":true,"tags":["n",":3,"],"nn":1}',
               same=False)
    with pytest.raises(QueryError, match="'f:n'.*format 3.*no such member"):
        Plain3.objects.filter(s="x").order_by("-n", "id").all_sync()


def _calls(redis_client: Any, command: str) -> int:
    stats = redis_client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_format_3_candidates_are_read_without_their_meta_hash(conn: Any,
                                                              redis_client: Any) -> None:
    """Once a call has met a format-3 candidate (its meta read found nothing), the next
    candidates' documents are read first: derived whole by the plain search, they need no
    meta read (one HMGET per call, not one per candidate)."""
    docs = [Plain3(id=str(i), s="x", n=i * 7 % 50, b=i % 2 == 0, tags=["n"], m=i)
            for i in range(40)]
    Plain3.objects.bulk_create_sync(docs)
    for doc in docs:
        to_format3(redis_client, Plain3, str(doc.id), None)
    reference = list(Plain3.objects.all_sync())
    queries = [(Q(s="x") & Q(n__gte=10), ["-n", "id"]), (Q(b=True), ["m"]),
               (Q(n__lt=30) & Q(s="x"), [])]
    gets = _gets(redis_client)
    for where, order in queries:
        before = _calls(redis_client, "hmget")
        got = [d.id for d in Plain3.objects.filter(where).order_by(*order).all_sync()]
        assert _calls(redis_client, "hmget") - before <= 1, where
        assert_query_agrees(Plain3, reference, where, order, 0, None, None)
        assert got == [d.id for d in Plain3.objects.filter(where).order_by(*order).all_sync()]
    assert _gets(redis_client) - gets >= 40  # (the documents were read)


class MyInt(IntField):
    """An int field of the user's own class: its index is listed (no kind derived in Lua),
    its entries kept in the meta hash of a format-3 document."""


class Swept3(Document):
    s = StringField(indexed=True)
    n = IntField(indexed=True)
    k = MyInt(indexed=True)
    body = StringField()

    class Meta:
        collection = "f3_swept"
        compress = {"codec": "zlib", "min_size": 200}


def test_documents_read_first_fall_back_to_their_meta_hash(conn: Any,
                                                           redis_client: Any) -> None:
    """With the documents read first: a compressed one with an expiry answers from its sweep
    record, a listed index's field from the meta hash, as when the meta hash is read first."""
    keys = KeySpace(Swept3._meta)
    docs = [Swept3(id=str(i), s="x", n=(i * 13) % 40, k=i % 7,
                   body="y" * (300 if i % 4 == 0 else 3)) for i in range(60)]
    Swept3.objects.bulk_create_sync(docs)
    for doc in docs:
        id = str(doc.id)
        if int(id) % 4 == 0:  # (compressed: an expiry and its sweep record)
            doc.touch_sync(3600)
        version, payload = stored.split(redis_client.get(keys.doc(0, id)))
        redis_client.set(keys.doc(0, id), b"\x01%d\x00%s\x00%s" % (version, NEWEST, payload),
                         keepttl=True)
        if int(id) % 4 == 0:
            redis_client.hdel(keys.meta(0, id), "r")
        else:  # (the listed index's field kept, nothing else)
            kept = [f for f in redis_client.hkeys(keys.meta(0, id)) if f not in (b"v", b"r")]
            kept = [f for f in kept if b"n" not in f and b"s" not in f]
            assert kept, redis_client.hkeys(keys.meta(0, id))
            pairs = dict(zip(kept, redis_client.hmget(keys.meta(0, id), kept)))
            redis_client.delete(keys.meta(0, id))
            redis_client.hset(keys.meta(0, id), mapping=pairs)
    reference = list(Swept3.objects.all_sync())
    for where, order in ((Q(s="x") & Q(n__gte=10), ["-n", "id"]), (Q(s="x"), ["n"]),
                         (Q(s="x") & Q(k__gte=3), ["-n"]), (Q(s="x"), ["k", "-n"])):
        assert_query_agrees(Swept3, reference, where, order, 0, None, None)
        assert_query_agrees(Swept3, reference, where, order, 1, 7, None)
