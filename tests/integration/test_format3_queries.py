"""Queries over format-3 documents without per-document encodings (bench/format3.md,
section 4 "Queries", plan step 4). A format-3 document (``\\x01<version>\\0<W>\\0<payload>``)
has no meta hash, or only a sweep record when it has an expiry (``v`` and every index's
fields, no ``r``). Nothing writes format 3 yet: the tests store it by hand from what the ORM
wrote, deleting the meta hash (or keeping it without ``r`` for a document with an expiry).

Every query shape must answer what the reference evaluator answers in Python over the same
documents (``reference_queries``, as the planner's differential test): conditions that
``query.lua`` tests on a candidate's values read them, for a format-3 candidate without
them, from its document (derived kinds, ``lua/_derive.lua``); where that cannot be exact
(a compressed payload, a member absent, a kind not derived) the query is refused with a
typed error, never answered by a guess.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_queries import assert_query_agrees
from test_planner_differential import dataset, make_model, orderings, trees

from quantumorm import (
    Document,
    IntField,
    Q,
    QueryError,
    StringField,
)
from quantumorm.backends.redis import stored
from quantumorm.backends.redis.keys import KeySpace

Single3 = make_model("f3q_single", 1)
Multi3 = make_model("f3q_multi", 3)

NEWEST = b"00c0ffee12345678"


def to_format3(redis_client: Any, model: type[Document], id: str, sweep: bool) -> None:
    """The document ``id`` stored again in format 3 (its version and payload kept); its
    meta hash deleted, or kept without ``r`` (a sweep record) when ``sweep``."""
    keys = KeySpace(model._meta)
    p = keys.partition_of(id)
    key, meta = keys.doc(p, id), keys.meta(p, id)
    version, payload = stored.split(redis_client.get(key))
    assert redis_client.set(key, b"\x01%d\x00%s\x00%s" % (version, NEWEST, payload),
                            keepttl=True)
    if sweep:
        redis_client.hdel(meta, "r")
    else:
        redis_client.delete(meta)


def mixed(redis_client: Any, model: type[Document], size: int = 120) -> list[Document]:
    """The differential test's data set stored, then about half of it made format 3 (a
    third of those with an expiry and a sweep record); every document as loaded."""
    docs = dataset(model, size)
    model.objects.bulk_create_sync(docs)
    rng = random.Random(77)
    loaded = {d.id: d for d in model.objects.all_sync()}
    for id, doc in loaded.items():
        r = rng.random()
        if r < 0.15:
            doc.touch_sync(3600)
            to_format3(redis_client, model, id, sweep=True)
        elif r < 0.55:
            to_format3(redis_client, model, id, sweep=False)
    return list(loaded.values())


SHAPES = [
    Q(n=5),
    Q(n__gt=1),
    Q(n__gte=-5) & Q(n__lt=2**53 + 1),
    Q(b=True) & Q(n__gt=0) & Q(tags__contains="x"),
    Q(n__lt=0) | Q(s__startswith="a"),
    ~Q(n__gt=1),
    Q(n__isnull=True),
    Q(s__isnull=True),
    Q(tags__isnull=True),
    Q(tags__isnull=False),
    Q(s__gt="a"),
    Q(s__contains="b"),
    Q(s__endswith="b"),
    Q(d__gt=Decimal("0.1")),
    Q(t__gte=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)),
    Q(s="a") & Q(n__gte=0),
    Q(tags__contains="x y"),
]


@pytest.mark.parametrize("model", [Single3, Multi3], ids=["p1", "p3"])
def test_reference_shapes_on_mixed_formats(conn: Any, redis_client: Any,
                                           model: type[Document]) -> None:
    reference = mixed(redis_client, model)
    for where in SHAPES:
        for order in ([], ["n"], ["-s", "id"], ["d"], ["-t"], ["b", "-n"]):
            for offset, limit in ((0, None), (0, 7), (3, 5)):
                assert_query_agrees(model, reference, where, order, offset, limit, None)
    # a keyset position, and a count of everything
    assert_query_agrees(model, reference, Q(n__gt=-5), ["n"], 0, 10, 17)
    assert model.objects.count_sync() == len(reference)


@pytest.mark.parametrize("model", [Single3, Multi3], ids=["p1", "p3"])
def test_random_queries_on_mixed_formats(conn: Any, redis_client: Any,
                                         model: type[Document]) -> None:
    reference = mixed(redis_client, model)

    @settings(max_examples=120, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(where=trees(), order=orderings,
           offset=st.integers(0, 5), limit=st.one_of(st.none(), st.integers(0, 12)),
           cursor_at=st.one_of(st.none(), st.integers(0, 119)))
    def check(where: Q, order: list[str], offset: int, limit: int | None,
              cursor_at: int | None) -> None:
        assert_query_agrees(model, reference, where, order, offset, limit, cursor_at)

    check()


def test_only_format_3_documents(conn: Any, redis_client: Any) -> None:
    """Every document format 3 without a meta hash: nulls, ranges and orderings read from
    the documents (the test a wrong null reading fails first)."""
    docs = dataset(Single3, 60)
    Single3.objects.bulk_create_sync(docs)
    reference = list(Single3.objects.all_sync())
    for doc in reference:
        to_format3(redis_client, Single3, str(doc.id), sweep=False)
    for where in (Q(n__isnull=True), Q(n__gt=1), Q(s__isnull=False) & Q(b=False),
                  Q(d__lte=Decimal("0.1")) | Q(n__in=[0, 5])):
        for order in ([], ["-n"], ["s", "t"]):
            assert_query_agrees(Single3, reference, where, order, 0, None, None)
            assert_query_agrees(Single3, reference, where, order, 1, 4, None)


class Packed3(Document):
    title = StringField(indexed=True)
    n = IntField(indexed=True)
    body = StringField()

    class Meta:
        collection = "f3q_packed"
        compress = {"codec": "zlib", "min_size": 1}


def test_not_derivable_is_refused(conn: Any, redis_client: Any) -> None:
    """A compressed format-3 payload without a meta hash: its values cannot be read in Lua,
    so a query that must test them is refused (QueryError naming the document), never
    answered; one the index answers alone still is."""
    for i in range(4):
        Packed3(id=str(i), title="t" * (i + 1), n=i, body="x" * 300).save_sync()
    to_format3(redis_client, Packed3, "2", sweep=False)
    with pytest.raises(QueryError, match="'f:title'.*format 3.*compressed"):
        Packed3.objects.order_by("-title", "n").all_sync()
    with pytest.raises(QueryError, match="'f:n'.*format 3.*compressed"):
        Packed3.objects.filter(Q(n__gte=0) | Q(title="x")).order_by("-title").all_sync()
    # an exact index walk reads no value: answered
    assert [d.id for d in Packed3.objects.filter(n=2).all_sync()] == ["2"]
    assert [d.id for d in Packed3.objects.order_by("n").all_sync()] == ["0", "1", "2", "3"]


def test_member_absent_is_refused(conn: Any, redis_client: Any) -> None:
    """A format-3 document whose JSON lacks an indexed member (a field added since): not
    derivable, refused."""
    Single3(id="1", n=3, s="a").save_sync()
    Single3(id="2", n=4, s="b").save_sync()
    keys = KeySpace(Single3._meta)
    to_format3(redis_client, Single3, "2", sweep=False)
    version, payload = stored.split(redis_client.get(keys.doc(0, "2")))
    assert b'"n":4,' in payload
    redis_client.set(keys.doc(0, "2"),
                     b"\x01%d\x00\x00%s" % (version, payload.replace(b'"n":4,', b"")))
    with pytest.raises(QueryError, match="'f:n'.*format 3.*no such member"):
        Single3.objects.order_by("b", "-n").all_sync()
    # the index answers alone (a range read as a set): no value read, answered
    assert [d.id for d in Single3.objects.filter(n__gt=3).all_sync()] == ["2"]


def _gets(redis_client: Any) -> int:
    stats = redis_client.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


@pytest.mark.usefixtures("format2_writes")  # (a collection of format 2)
def test_format_2_candidates_read_no_document_for_their_tests(conn: Any,
                                                              redis_client: Any) -> None:
    """A collection of format-2 documents: the tests and orderings that read values read
    the meta hash only, as before (no GET: a document read per candidate is format 3's),
    in rows, keyed (several partitions) and count modes."""
    references = {}
    for model in (Single3, Multi3):
        docs = dataset(model, 60)
        model.objects.bulk_create_sync(docs)
        reference = references[model] = list(model.objects.all_sync())
        before = _gets(redis_client)
        for where, order in ((Q(b=True) & Q(n__gt=0) & Q(tags__contains="x"), ["-s"]),
                             (~Q(n__gt=1), ["d", "-n"]), (Q(s__isnull=True), ["t"])):
            assert_query_agrees(model, reference, where, order, 0, None, None)
            assert_query_agrees(model, reference, where, order, 2, 3, None)
        assert _gets(redis_client) == before
    # (the count sees a document read: one format-3 candidate's, for its ordering)
    reference = references[Single3]
    to_format3(redis_client, Single3, str(reference[0].id), sweep=False)
    assert_query_agrees(Single3, reference, ~Q(n__gt=1), ["d", "-n"], 0, None, None)
    assert _gets(redis_client) > before


@pytest.mark.parametrize("order", [("s", "id"), ("id",)], ids=["by_s", "by_id"])
def test_a_two_phase_ordered_fetch_ranks_format_3_rows_in_its_first_round(
        conn: Any, redis_client: Any, monkeypatch: pytest.MonkeyPatch,
        order: tuple[str, ...]) -> None:
    # (the first phase's sort keys carry each row's version, which the fetch of the winners
    # compares: a format-3 row without a meta hash must bring its header's, or every round
    # is thrown away and the query falls back to the one-phase merge)
    from quantumorm.backends.redis import reader

    docs = mixed(redis_client, Multi3, 400)
    rounds: list[bool] = []
    winners = reader.Reader._winners

    def counted(self: Any, options: Any, ranked: Any) -> Any:
        got = yield from winners(self, options, ranked)
        rounds.append(got is not None)
        return got

    monkeypatch.setattr(reader.Reader, "_winners", counted)
    assert_query_agrees(Multi3, docs, Q(n__gt=-10**40) | Q(b=True), list(order), 0, 300,
                        None)
    assert rounds and all(rounds), rounds


def test_a_member_name_written_with_an_escape_is_refused(conn: Any,
                                                         redis_client: Any) -> None:
    """JSON may name a member twice, the second time escaped (``"\\u006e"`` is ``"n"``):
    Python reads the last, which a scan of the raw key texts would not see. The ORM writes no
    such document; a query reading its value refuses it rather than answer from the first."""
    for i in range(3):
        Single3(id=str(i), n=i, s="x").save_sync()
    keys = KeySpace(Single3._meta)
    to_format3(redis_client, Single3, "1", sweep=False)
    raw = redis_client.get(keys.doc(0, "1"))
    redis_client.set(keys.doc(0, "1"), raw[:-1] + b',"\\u006e":99}')
    assert Single3.objects.get_sync(id="1").n == 99
    with pytest.raises(QueryError, match="'f:n'.*format 3.*escape"):
        Single3.objects.filter(s="x").order_by("-n", "id").all_sync()
