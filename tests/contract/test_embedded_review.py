"""Embedded documents, review fixes, on every backend, sync and async: update() refuses
paths (an indexed path's derived field is not a stored field), only() with an ordering on
a path pages and iterates right, conditions whose values are equal in Python but not in
JSON (``1``, ``True``, ``1.0``) are told apart, get_or_create() refuses to create from a
path, nested validation messages of update() are filed by path."""

from __future__ import annotations

import asyncio
import itertools
from types import SimpleNamespace
from typing import Any

import pytest
from contract_models import run

from quantumorm import (
    Document,
    EmbeddedDocument,
    EmbeddedDocumentField,
    IntField,
    JSONField,
    ListField,
    QueryError,
    StringField,
    UnknownFieldError,
    ValidationError,
)


class Place(EmbeddedDocument):
    city = StringField()
    zip = IntField()
    extra = JSONField()


def _declare(backend: str) -> SimpleNamespace:
    class Plain(Document):
        name = StringField()
        address = EmbeddedDocumentField(Place)
        addresses = ListField(EmbeddedDocumentField(Place))
        Meta = type("Meta", (), {"backend": backend, "namespace": "contract",
                                 "collection": "embedded_review_plain"})

    class Indexed(Document):
        name = StringField()
        address = EmbeddedDocumentField(Place)
        addresses = ListField(EmbeddedDocumentField(Place))
        Meta = type("Meta", (), {"backend": backend, "namespace": "contract",
                                 "collection": "embedded_review_indexed",
                                 "indexes": ["address__city", "addresses__zip"]})

    return SimpleNamespace(Plain=Plain, Indexed=Indexed)


_MODELS: dict[str, SimpleNamespace] = {}


@pytest.fixture(params=["Plain", "Indexed"])
def model(store: str, request: Any) -> Any:
    if store not in _MODELS:
        _MODELS[store] = _declare(store)
    return getattr(_MODELS[store], request.param)


async def _ids(qs: Any, mode: str) -> list[str]:
    return [doc.id for doc in await run(qs, "all", mode)]


async def _iterate(qs: Any, mode: str, chunk: int, most: int) -> list[str]:
    """The ids ``qs.iterator(chunk)`` gives, at most ``most`` of them (a loop that never
    ends is cut, and then the list is longer than the documents)."""
    if mode == "sync":
        return await asyncio.to_thread(
            lambda: [d.id for d in itertools.islice(qs.iterator(chunk), most)])
    out: list[str] = []
    async for doc in qs.iterator(chunk):
        out.append(doc.id)
        if len(out) == most:
            break
    return out


async def _five(M: Any, mode: str) -> None:
    for i, city in enumerate(["d", "b", "a", "c", "e"]):
        await run(M(id=f"d{i}", name=f"n{i}", address=Place(city=city, zip=i),
                    addresses=[Place(city=city, zip=i)]), "save", mode)


@pytest.mark.parametrize("key, value", [
    ("set__address__city", "RR"), ("address__city", "RR"), ("unset__address__city", True),
    ("push__addresses__zip__each", 7), ("push__addresses__zip", 7),
    ("inc__address__zip", 1)])
async def test_update_refuses_a_path(model: Any, mode: str, key: str, value: Any) -> None:
    await _five(model, mode)
    for qs in (model.objects.filter(id="d0"), model.objects.filter(name="n0")):
        with pytest.raises(QueryError, match="set the whole embedded value"):
            await run(qs, "update", mode, **{key: value})
    doc = await run(model.objects, "get", mode, id="d0")
    assert doc.address == Place(city="d", zip=0)
    assert doc.addresses == [Place(city="d", zip=0)]
    assert await _ids(model.objects.filter(address__city="d"), mode) == ["d0"]
    assert await _ids(model.objects.filter(addresses__zip=7), mode) == []


async def test_derived_fields_are_not_named_as_fields(model: Any, mode: str) -> None:
    with pytest.raises(UnknownFieldError) as info:
        await run(model.objects, "update", mode, set__nothing=1)
    assert "address__city" not in str(info.value) and "__each" not in str(info.value)
    with pytest.raises(UnknownFieldError) as info:
        await run(model.objects, "get_or_create", mode, name="x",
                  defaults={"address__city": "x"})
    assert "__each" not in str(info.value)


async def test_update_files_nested_messages_by_path(model: Any, mode: str) -> None:
    with pytest.raises(ValidationError) as info:
        await run(model.objects.filter(name="n0"), "update", mode, address={"city": 5})
    assert list(info.value.errors) == ["address.city"]
    assert "'address' 'address.city'" not in str(info.value)
    with pytest.raises(ValidationError) as info:
        await run(model.objects.filter(name="n0"), "update", mode,
                  push__addresses={"zip": "x"})
    assert "'addresses' 'addresses" not in str(info.value)
    with pytest.raises(ValidationError) as info:
        await run(model.objects, "update_or_create", mode, name="n0",
                  defaults={"address": {"city": 5}})
    assert list(info.value.errors) == ["address.city"]


async def test_get_or_create_refuses_to_create_from_a_path(model: Any, mode: str) -> None:
    await _five(model, mode)
    with pytest.raises(QueryError, match="whole embedded value"):
        await run(model.objects, "get_or_create", mode, address__city="z")
    with pytest.raises(QueryError, match="whole embedded value"):
        await run(model.objects, "update_or_create", mode, address__city="z",
                  defaults={"name": "z"})
    # with the whole value given, the document created has the path: found the next time
    for created in (True, False):
        doc, was = await run(model.objects, "get_or_create", mode, address__city="z",
                             defaults={"address": Place(city="z")})
        assert was is created and doc.address == Place(city="z")
    # refused before any read (whether a document matches or not): the same answer always
    with pytest.raises(QueryError, match="whole embedded value"):
        await run(model.objects, "get_or_create", mode, address__city="a")


@pytest.mark.parametrize("desc", [False, True])
async def test_only_with_an_ordering_on_a_path(model: Any, mode: str, desc: bool) -> None:
    await _five(model, mode)
    order = "-address__city" if desc else "address__city"
    expected = ["d4", "d0", "d3", "d1", "d2"] if desc else ["d2", "d1", "d3", "d0", "d4"]
    qs = model.objects.only("name").order_by(order)
    assert await _ids(qs, mode) == expected
    assert await _iterate(qs, mode, 2, 12) == expected
    assert await _iterate(qs, mode, 1, 12) == expected
    docs = await run(qs, "all", mode)
    assert all(d.address is not None for d in docs)  # (the ordering's top field: loaded)
    after = qs.after(qs.cursor_for(docs[1]))
    assert await _ids(after, mode) == expected[2:]
    page = await run(qs, "paginate", mode, per_page=2, after=None)
    assert [d.id for d in page.items] == expected[:2]
    second = await run(qs, "paginate", mode, per_page=2, after=page.next_cursor)
    assert [d.id for d in second.items] == expected[2:4]


async def test_conditions_equal_in_python_are_told_apart(model: Any, mode: str) -> None:
    for id, extra in (("i", 1), ("b", True), ("f", 1.5)):
        await run(model(id=id, address=Place(extra=extra)), "save", mode)
    for _ in range(2):  # (either order, and again: nothing answers for another)
        assert await _ids(model.objects.filter(address__extra=1), mode) == ["i"]
        assert await _ids(model.objects.filter(address__extra=True), mode) == ["b"]
        assert await _ids(model.objects.filter(address__extra=1), mode) == ["i"]
        assert await _ids(model.objects.filter(address__extra__ne=True).order_by("id"),
                          mode) == ["f", "i"]
        assert await _ids(model.objects.filter(address__extra__ne=1).order_by("id"),
                          mode) == ["b", "f"]


async def test_none_in_an_in_list_through_a_list_asks_as_exact_none(model: Any,
                                                                     mode: str) -> None:
    for id, addresses in (("n0", None), ("n1", []), ("n2", [Place(city=None)]),
                          ("n3", [Place(city=None), Place(city="b")]),
                          ("n4", [Place(city="a")])):
        await run(model(id=id, addresses=addresses), "save", mode)
    P = model.objects.order_by("id")
    no_value = ["n0", "n1", "n2"]  # no element has a city
    assert await _ids(P.filter(addresses__city=None), mode) == no_value
    assert await _ids(P.filter(addresses__city__in=[None]), mode) == no_value
    assert await _ids(P.filter(addresses__city__in=["a", None]), mode) == [*no_value, "n4"]
    assert await _ids(P.filter(addresses__city__nin=["a", None]), mode) == ["n3"]
    assert await _ids(P.filter(addresses__city__nin=[None]), mode) == ["n3", "n4"]
    assert await _ids(P.filter(addresses__city__nin=["a"]), mode) == [*no_value, "n3"]
    # a long list (more values than are served as membership tests): the same answers
    many = [f"c{i}" for i in range(300)]
    assert await _ids(P.filter(addresses__city__in=[*many, "a"]), mode) == ["n4"]
    assert await _ids(P.filter(addresses__city__in=[*many, "b", None]), mode) == [
        *no_value, "n3"]
    assert await _ids(P.filter(addresses__city__nin=[*many, "b"]), mode) == [
        *no_value, "n4"]


async def test_messages_name_the_path_not_the_derived_field(model: Any, mode: str) -> None:
    await _five(model, mode)
    await run(model(id="x", addresses=[Place(zip=1)]), "save", mode)
    with pytest.raises(model.MultipleObjectsReturned) as many:
        await run(model.objects, "get", mode, addresses__zip=1)
    with pytest.raises(model.DoesNotExist) as none:
        await run(model.objects, "get", mode, addresses__zip__in=[8, 9])
    with pytest.raises(model.DoesNotExist) as ne:
        await run(model.objects, "get", mode, addresses__zip__ne=4, name="n4")
    for info in (many, none, ne):
        assert "__each" not in str(info.value) and "addresses__zip" in str(info.value)
    with pytest.raises(UnknownFieldError) as info:
        model.objects.order_by("addresses__zip__each")
    with pytest.raises(QueryError) as other:
        model.objects.filter(nothing=1)
    for message in (str(info.value), str(other.value)):
        assert "__each" not in message.replace("'addresses__zip__each'", "")
        assert "address__city" not in message


async def test_cursor_for_a_document_loaded_without_the_ordering(model: Any,
                                                                  mode: str) -> None:
    await _five(model, mode)
    bare = (await run(model.objects.only("name").order_by("name"), "all", mode))[0]
    with pytest.raises(QueryError, match="address__city"):
        model.objects.order_by("address__city").cursor_for(bare)
    with pytest.raises(QueryError, match="name"):
        model.objects.order_by("name").cursor_for(
            (await run(model.objects.only("address").order_by("address__city"), "all",
                       mode))[0])
    full = await run(model.objects, "get", mode, id="d1")
    qs = model.objects.order_by("address__city")
    assert await _ids(qs.after(qs.cursor_for(full)), mode) == ["d3", "d0", "d4"]
