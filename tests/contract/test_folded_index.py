"""Case-folded indexes on every backend, sync and async.

``Meta.indexes = [{"fields": ["email"], "casefold": True}]`` keeps ``email.casefold()`` in an
index (a derived field, never stored): ``iexact``/``istartswith`` are served by it with no
scan, ``icontains``/``iendswith`` by the folded value's own tests, and ``unique`` makes the
field unique regardless of case. Expected results are computed here with plain Python, and
compared with the same field without the index.
"""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest
from contract_models import run

from quantumorm import (
    ConfigurationError,
    Document,
    EmbeddedDocument,
    EmbeddedDocumentField,
    IntField,
    ListField,
    QueryError,
    StringField,
    UniqueViolation,
    UnknownFieldError,
)
from quantumorm.query.lookups import Lookup
from quantumorm.query.nodes import Condition

WORDS = [None, "Straße", "STRASSE", "strasse", "İstanbul", "istanbul", "ISTANBUL",
         "ΣΊΣΥΦΟΣ", "σίσυφος", "Éclair", "éclair", "E\u0301clair", "a\x00B", "A\x00b", "",
         "naïve", "NAÏVE", "Ǆemal", "ǆemal"]

CASES: list[tuple[str, str]] = [
    ("iexact", "strasse"), ("iexact", "STRAßE"), ("iexact", "éCLAIR"), ("iexact", ""),
    ("iexact", "a\x00b"), ("iexact", "nobody"),
    ("istartswith", "i"), ("istartswith", "İ"), ("istartswith", "ǅ"), ("istartswith", "STR"),
    ("istartswith", "a\x00"), ("istartswith", ""),
    ("icontains", "SS"), ("icontains", "ß"), ("icontains", "Ï"), ("icontains", ""),
    ("iendswith", "ς"), ("iendswith", "Σ"), ("iendswith", "LAIR"), ("iendswith", "\x00b"),
]


def _matches(lookup: str, value: str | None, wanted: str) -> bool:
    if value is None:
        return False
    v, w = value.casefold(), wanted.casefold()
    return {"iexact": v == w, "istartswith": v.startswith(w), "icontains": w in v,
            "iendswith": v.endswith(w)}[lookup]


class Contact(EmbeddedDocument):
    email = StringField()


def _declare(backend: str) -> SimpleNamespace:
    def meta(collection: str, indexes: list[Any]) -> type:
        return type("Meta", (), {"backend": backend, "namespace": "contract",
                                 "collection": collection, "indexes": indexes})

    class Word(Document):
        s = StringField()  # case-folded index
        plain = StringField()  # the same values, no index: the reference
        contact = EmbeddedDocumentField(Contact)
        n = IntField()
        Meta = meta("folded_words", [{"fields": ["s"], "casefold": True},
                                     {"fields": ["contact__email"], "casefold": True}])

    class User(Document):
        email = StringField(required=True, indexed=True)
        Meta = meta("folded_users", [{"fields": ["email"], "casefold": True, "unique": True}])

    return SimpleNamespace(Word=Word, User=User)


_MODELS: dict[str, SimpleNamespace] = {}


@pytest.fixture
def folded(store: str) -> SimpleNamespace:
    if store not in _MODELS:
        _MODELS[store] = _declare(store)
    return _MODELS[store]


async def _words(Word: Any, mode: str) -> dict[str, Any]:
    docs = [Word(id=f"w{i:02d}", s=word, plain=word, n=i,
                 contact=None if word is None else Contact(email=word))
            for i, word in enumerate(WORDS)]
    await run(Word.objects, "bulk_create", mode, docs)
    return {d.id: d for d in docs}


async def _ids(qs: Any, mode: str) -> list[str]:
    return sorted(doc.id for doc in await run(qs, "all", mode))


@pytest.mark.parametrize("lookup, value", CASES, ids=[f"{c[0]}-{c[1]!r}" for c in CASES])
async def test_folded_lookups_agree_with_and_without_the_index(
        folded: SimpleNamespace, mode: str, lookup: str, value: str) -> None:
    docs = await _words(folded.Word, mode)
    want = sorted(i for i, d in docs.items() if _matches(lookup, d.s, value))
    W = folded.Word.objects
    for field in ("s", "plain", "contact__email"):
        qs = W.filter(**{f"{field}__{lookup}": value})
        assert await _ids(qs, mode) == want, field
        assert await run(qs, "count", mode) == len(want)
        excluded = W.exclude(**{f"{field}__{lookup}": value})
        assert await _ids(excluded, mode) == sorted(set(docs) - set(want)), field
    # combined with another condition, and in an OR
    both = W.filter(**{f"s__{lookup}": value}, n__gte=10)
    assert await _ids(both, mode) == [i for i in want if docs[i].n >= 10]


async def test_the_index_serves_iexact_and_istartswith(folded: SimpleNamespace, mode: str,
                                                        store: str) -> None:
    await _words(folded.Word, mode)
    W = folded.Word.objects
    for query in (W.filter(s__iexact="STRASSE"), W.filter(s__istartswith="Str"),
                  W.filter(contact__email__iexact="éclair")):
        plan = await run(query, "explain", mode)
        assert plan.client_filter is None, plan
        if store == "redis":
            assert not plan.scanned and any("casefold" in i for i in plan.indexes), plan
        else:
            assert "casefold" in (plan.server_filter or ""), plan
        if store != "postgres":  # (PostgreSQL may prefer a scan of rows it has analysed)
            assert not plan.scanned and any("casefold" in i for i in plan.indexes), plan
    # the case-sensitive lookups stay on the field itself (no index: a scan)
    assert (await run(W.filter(s="Straße"), "explain", mode)).scanned
    assert await _ids(W.filter(s__iexact="STRASSE"), mode) == ["w01", "w02", "w03"]


def test_queries_are_rewritten_to_the_folded_field(folded: SimpleNamespace) -> None:
    W = folded.Word
    assert W.objects.filter(s__iexact="ÉCLAIR").spec.where == Condition(
        "s__casefold", Lookup.EXACT, "éclair")
    assert W.objects.filter(s__istartswith="ST").spec.where == Condition(
        "s__casefold", Lookup.STARTSWITH, "st")
    assert W.objects.filter(contact__email__iendswith="SS").spec.where == Condition(
        "contact__email__casefold", Lookup.ENDSWITH, "ss")
    assert W.objects.filter(plain__iexact="X").spec.where == Condition(
        "plain", Lookup.IEXACT, "X")
    # the field's value alone is stored: the folded value is computed, never kept
    doc = W(id="x", s="ABC")
    assert "s__casefold" not in doc.to_dict()
    assert "s__casefold" not in doc.to_dict(storage=True)


async def test_the_index_follows_writes(folded: SimpleNamespace, mode: str) -> None:
    await _words(folded.Word, mode)
    W = folded.Word.objects
    doc = await run(W, "get", mode, id="w01")
    doc.s = "Brötchen"
    await run(doc, "save", mode)
    assert await _ids(W.filter(s__iexact="BRÖTCHEN"), mode) == ["w01"]
    assert await _ids(W.filter(s__iexact="strasse"), mode) == ["w02", "w03"]
    await run(W.filter(id="w02"), "update", mode, s=None)
    assert await _ids(W.filter(s__iexact="strasse"), mode) == ["w03"]
    await run(W.filter(s__iexact="STRASSE"), "delete", mode)
    assert await _ids(W.filter(s__istartswith="S"), mode) == []
    assert await _ids(W.filter(s__istartswith="σ"), mode) == ["w07", "w08"]
    assert await run(W, "count", mode) == len(WORDS) - 1
    # update operators move the folded value too (by id, and by a query)
    await run(W.filter(id="w04"), "update", mode, set__s="Ärger")
    assert await _ids(W.filter(s__iexact="äRGER"), mode) == ["w04"]
    await run(W.filter(s__iexact="istanbul"), "update", mode, set__s="Köln")
    assert await _ids(W.filter(s__iexact="KÖLN"), mode) == ["w05", "w06"]
    await run(W.filter(id__in=["w05", "w07"]), "update", mode, unset__s=True)
    assert await _ids(W.filter(s__istartswith="K"), mode) == ["w06"]
    assert await _ids(W.filter(s__istartswith="σ"), mode) == ["w08"]


async def test_the_folded_value_cannot_be_set(folded: SimpleNamespace, mode: str) -> None:
    await _words(folded.Word, mode)
    with pytest.raises(UnknownFieldError):
        await run(folded.Word.objects.filter(id="w01"), "update", mode, set__s__casefold="x")
    with pytest.raises(QueryError):
        folded.Word.objects.filter(s__casefold="x")
    assert await _ids(folded.Word.objects.filter(s__iexact="STRASSE"), mode) == [
        "w01", "w02", "w03"]


async def test_unique_regardless_of_case(folded: SimpleNamespace, mode: str) -> None:
    User = folded.User
    await run(User(id="u1", email="Ann@Example.com"), "save", mode)
    with pytest.raises(UniqueViolation):
        await run(User(id="u2", email="ann@example.COM"), "save", mode)
    with pytest.raises(UniqueViolation):
        await run(User(id="u3", email="ANN@EXAMPLE.COM"), "save", mode)
    await run(User(id="u4", email="bob@example.com"), "save", mode)
    bob = await run(User.objects, "get", mode, id="u4")
    bob.email = "ANN@example.com"
    with pytest.raises(UniqueViolation):
        await run(bob, "save", mode)
    # the value is freed when its document changes
    ann = await run(User.objects, "get", mode, id="u1")
    ann.email = "ann@elsewhere.org"
    await run(ann, "save", mode)
    await run(bob, "save", mode)
    got = await run(User.objects.filter(email__iexact="Ann@Example.Com"), "all", mode)
    assert [(u.id, u.email) for u in got] == [("u4", "ANN@example.com")]


def _race_sync(User: Any, round_: int, emails: list[str]) -> list[str]:
    """Insert one document per e-mail address, each from its own thread, all at once."""
    barrier = threading.Barrier(len(emails))
    outcomes: list[str] = []

    def insert(i: int, email: str) -> None:
        barrier.wait()
        try:
            User(id=f"r{round_}-{i}", email=email).save_sync()
            outcomes.append("ok")
        except UniqueViolation:
            outcomes.append("UniqueViolation")

    threads = [threading.Thread(target=insert, args=(i, e)) for i, e in enumerate(emails)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


async def test_concurrent_inserts_differing_in_case_one_wins(folded: SimpleNamespace,
                                                             mode: str) -> None:
    User = folded.User
    for round_ in range(5):
        emails = [f"Race{round_}@X.org", f"race{round_}@x.ORG", f"RACE{round_}@X.ORG"]
        if mode == "async":
            results = await asyncio.gather(
                *(User(id=f"r{round_}-{i}", email=e).save() for i, e in enumerate(emails)),
                return_exceptions=True)
            outcomes = ["ok" if not isinstance(r, BaseException) else type(r).__name__
                        for r in results]
        else:
            outcomes = await asyncio.to_thread(_race_sync, User, round_, emails)
        assert sorted(outcomes) == ["UniqueViolation", "UniqueViolation", "ok"], outcomes
        stored = await run(User.objects.filter(email__iexact=f"race{round_}@x.org"),
                           "count", mode)
        assert stored == 1


async def test_a_folded_index_added_to_existing_data(folded: SimpleNamespace, mode: str,
                                                     store: str) -> None:
    await _words(folded.Word, mode)
    later = type("Later", (Document,), {
        "s": StringField(), "plain": StringField(),
        "contact": EmbeddedDocumentField(Contact), "n": IntField(),
        "Meta": type("Meta", (), {"backend": store, "namespace": "contract",
                                  "collection": "folded_words",
                                  "indexes": [{"fields": ["plain"], "casefold": True}]})})
    query = later.objects.filter(plain__iexact="strasse")
    # before it is built the index is not used (Redis: building until reindex; SQL: rows
    # rewritten at first use), and the answer is right either way
    assert await _ids(query, mode) == ["w01", "w02", "w03"]
    if store == "redis":
        assert (await run(query, "explain", mode)).scanned
        await run(later.objects, "reindex", mode)
    plan = await run(query, "explain", mode)
    assert plan.client_filter is None, plan
    if store != "postgres":
        assert not plan.scanned and "plain__casefold" in plan.indexes, plan
    assert await _ids(query, mode) == ["w01", "w02", "w03"]
    assert await _ids(later.objects.filter(plain__istartswith="İ"), mode) == ["w04"]


def test_folded_index_declarations_are_checked() -> None:
    def declare(indexes: list[Any], **fields: Any) -> type:
        return type("Bad", (Document,), {
            "name": StringField(), "n": IntField(), "tags": ListField(StringField()),
            "contacts": ListField(EmbeddedDocumentField(Contact)), **fields,
            "Meta": type("Meta", (), {"backend": "sqlite", "indexes": indexes})})

    with pytest.raises(ConfigurationError, match="string field"):
        declare([{"fields": ["n"], "casefold": True}])
    with pytest.raises(ConfigurationError, match="string field"):
        declare([{"fields": ["tags"], "casefold": True}])
    with pytest.raises(ConfigurationError, match="string field"):
        declare([{"fields": ["contacts__email"], "casefold": True}])
    with pytest.raises(ConfigurationError, match="one string field"):
        declare([{"fields": ["name", "n"], "casefold": True}])
    with pytest.raises(ConfigurationError, match="casefold must be True or False"):
        declare([{"fields": ["name"], "casefold": "yes"}])
    with pytest.raises(ConfigurationError, match="unknown field"):
        declare([{"fields": ["nope"], "casefold": True}])
    with pytest.raises(ConfigurationError, match="two case-folded"):
        declare([{"fields": ["name"], "casefold": True},
                 {"fields": ["name"], "casefold": True, "unique": True}])
    # casefold=False is an ordinary index
    plain = declare([{"fields": ["name"], "casefold": False}])
    assert [i.fields for i in plain._meta.indexes] == [("name",)]


@pytest.mark.parametrize("store", ["redis"], indirect=True)  # (Redis features)
async def test_redis_verify_and_events_with_a_folded_index(folded: SimpleNamespace, mode: str,
                                                           store: str) -> None:
    W = folded.Word.objects
    feed = W.changes(wait=0)
    assert await run(feed, "read", mode) == []  # (its position: now)
    await _words(folded.Word, mode)
    doc = await run(W, "get", mode, id="w01")
    doc.s = "GROSS"
    await run(doc, "save", mode)
    events = await run(feed, "read", mode)
    # the stored field that changed, not the folded value computed from it
    assert [e.changed for e in events if e.op == "update"] == [("s",)]
    report = await run(W, "verify", mode)
    assert report.ok and report.entries > 0, report
    assert await _ids(W.filter(s__iexact="gross"), mode) == ["w01"]
