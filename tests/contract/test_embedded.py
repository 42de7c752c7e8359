"""Embedded documents on every backend, sync and async: stored as nested JSON objects,
validated with nested paths, queried and ordered by paths (``address__city``), lists of
them with any-element lookups, change detection of nested changes, whole-value updates."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from contract_models import run

from quantumorm import (
    ConfigurationError,
    Document,
    EmbeddedDocument,
    EmbeddedDocumentField,
    FloatField,
    IntField,
    ListField,
    Q,
    QueryError,
    StringField,
    UniqueViolation,
    UnknownFieldError,
    ValidationError,
)


class Geo(EmbeddedDocument):
    lat = FloatField()
    lon = FloatField()


class Address(EmbeddedDocument):
    city = StringField(required=True)
    zip = StringField(max_length=5, db_field="z")
    geo = EmbeddedDocumentField(Geo)


def _declare(backend: str) -> SimpleNamespace:
    class Person(Document):
        name = StringField(indexed=True)
        age = IntField()
        address = EmbeddedDocumentField(Address)
        addresses = ListField(EmbeddedDocumentField(Address))
        Meta = type("Meta", (), {"backend": backend, "namespace": "contract",
                                 "collection": "embedded_people"})

    class Indexed(Document):  # the same, with indexes on paths
        name = StringField()
        address = EmbeddedDocumentField(Address)
        addresses = ListField(EmbeddedDocumentField(Address))
        Meta = type("Meta", (), {
            "backend": backend, "namespace": "contract", "collection": "embedded_indexed",
            "indexes": ["address__city", ("name", "address__geo__lat"),
                        {"fields": ["address__zip"], "unique": True}, "addresses__city"]})

    return SimpleNamespace(Person=Person, Indexed=Indexed)


_MODELS: dict[str, SimpleNamespace] = {}


@pytest.fixture
def people(store: str) -> Any:
    if store not in _MODELS:
        _MODELS[store] = _declare(store)
    return _MODELS[store].Person


@pytest.fixture
def indexed(store: str) -> Any:
    if store not in _MODELS:
        _MODELS[store] = _declare(store)
    return _MODELS[store].Indexed


PEOPLE = [
    ("p1", "Ann", Address(city="Portland", zip="97201", geo=Geo(lat=45.5, lon=-122.6)),
     [Address(city="Portland", zip="97201"), Address(city="Salem", zip="97301")]),
    ("p2", "Bob", Address(city="Seattle", zip="98101"), [Address(city="Seattle")]),
    ("p3", "Cid", Address(city="Portland", zip="04101"), []),
    ("p4", "Dee", None, None),
]


async def _people(Person: Any, mode: str) -> None:
    for id, name, address, addresses in PEOPLE:
        await run(Person(id=id, name=name, address=address, addresses=addresses), "save", mode)


async def _ids(qs: Any, mode: str) -> list[str]:
    return [doc.id for doc in await run(qs, "all", mode)]


async def test_round_trip_nested_json(people: Any, mode: str) -> None:
    await _people(people, mode)
    ann = await run(people.objects, "get", mode, id="p1")
    assert isinstance(ann.address, Address)
    assert ann.address == Address(city="Portland", zip="97201", geo=Geo(lat=45.5, lon=-122.6))
    assert ann.address.geo.lat == 45.5
    assert ann.addresses == [Address(city="Portland", zip="97201"),
                             Address(city="Salem", zip="97301")]
    # stored as a nested object, db_field applied inside
    assert ann.to_dict(storage=True)["address"] == {
        "city": "Portland", "z": "97201", "geo": {"lat": 45.5, "lon": -122.6}}
    assert ann.to_dict()["address"]["zip"] == "97201"
    dee = await run(people.objects, "get", mode, id="p4")
    assert dee.address is None and dee.addresses is None


async def test_dict_is_converted_and_validated(people: Any, mode: str) -> None:
    doc = people(id="d", address={"city": "Bend", "zip": "97701"})
    await run(doc, "save", mode)
    assert isinstance(doc.address, Address)
    assert (await run(people.objects, "get", mode, id="d")).address.city == "Bend"
    bad = people(id="e", address={"zip": "123456"})
    with pytest.raises(ValidationError) as info:
        await run(bad, "save", mode)
    assert set(info.value.errors) == {"address.city", "address.zip"}
    assert "address.zip: 'address.zip' must be at most 5" in str(info.value)
    with pytest.raises(ValidationError, match="has no field 'town'"):
        await run(people(id="f", address={"town": "X"}), "save", mode)
    assert await run(people.objects, "count", mode) == 1


async def test_nested_change_is_detected_and_saved(people: Any, mode: str) -> None:
    await _people(people, mode)
    ann = await run(people.objects, "get", mode, id="p1")
    assert ann.changed_fields() == []
    ann.address.city = "Eugene"
    ann.addresses[1].zip = "97302"
    assert ann.changed_fields() == ["address", "addresses"]
    await run(ann, "save", mode)
    again = await run(people.objects, "get", mode, id="p1")
    assert again.address.city == "Eugene" and again.addresses[1].zip == "97302"
    assert await _ids(people.objects.filter(address__city="Eugene"), mode) == ["p1"]


async def test_nested_lookups(people: Any, mode: str) -> None:
    await _people(people, mode)
    P = people.objects
    assert await _ids(P.filter(address__city="Portland").order_by("id"), mode) == ["p1", "p3"]
    assert await _ids(P.filter(address__zip__gte="97").order_by("id"), mode) == ["p1", "p2"]
    assert await _ids(P.filter(address__city__in=["Seattle", "Bend"]), mode) == ["p2"]
    assert await _ids(P.filter(address__city__startswith="Sea"), mode) == ["p2"]
    assert await _ids(P.filter(address__isnull=True), mode) == ["p4"]
    # a path under a null embedded document is null
    assert await _ids(P.filter(address__city__isnull=True), mode) == ["p4"]
    assert await _ids(P.filter(address__city__ne="Portland").order_by("id"), mode) == [
        "p2", "p4"]
    assert await _ids(P.filter(address__geo__lat__gt=40), mode) == ["p1"]
    assert await _ids(P.filter(Q(address__city="Seattle") | Q(name="Cid")).order_by("id"),
                      mode) == ["p2", "p3"]
    assert await _ids(P.filter(name="Ann", address__city="Portland"), mode) == ["p1"]
    assert await _ids(P.exclude(address__city="Portland").order_by("id"), mode) == [
        "p2", "p4"]
    assert await run(P.filter(address__city="Portland"), "count", mode) == 2
    assert await run(P.filter(address__city="Nowhere"), "exists", mode) is False
    # the same with expressions
    assert await _ids(P.filter(people.address.geo.lat > 40), mode) == ["p1"]
    assert await _ids(P.filter(people.address.city == "Portland").order_by(
        -people.address.zip), mode) == ["p1", "p3"]
    # no index on the path: a scan, which explain() reports
    assert (await run(P.filter(address__city="Portland"), "explain", mode)).scanned
    # whole-value equality on the field itself
    assert await _ids(P.filter(address=Address(city="Seattle", zip="98101")), mode) == ["p2"]


async def test_nested_ordering(people: Any, mode: str) -> None:
    await _people(people, mode)
    P = people.objects
    assert await _ids(P.order_by("address__zip"), mode) == ["p4", "p3", "p1", "p2"]
    assert await _ids(P.order_by("-address__zip"), mode) == ["p2", "p1", "p3", "p4"]
    assert await _ids(P.filter(address__city="Portland").order_by("-address__zip")[:1],
                      mode) == ["p1"]
    assert await _ids(P.order_by("address__city", "-name")[1:3], mode) == ["p3", "p1"]


async def test_list_element_paths(people: Any, mode: str) -> None:
    await _people(people, mode)
    P = people.objects
    assert await _ids(P.filter(addresses__city="Salem"), mode) == ["p1"]
    assert await _ids(P.filter(addresses__city__in=["Salem", "Seattle"]).order_by("id"),
                      mode) == ["p1", "p2"]
    assert await _ids(P.filter(addresses__zip__startswith="97").order_by("id"), mode) == ["p1"]
    # ne: no element has the value
    assert await _ids(P.filter(addresses__city__ne="Salem").order_by("id"), mode) == [
        "p2", "p3", "p4"]
    # isnull: no element has a value
    assert await _ids(P.filter(addresses__zip__isnull=True).order_by("id"), mode) == [
        "p2", "p3", "p4"]
    assert await _ids(P.filter(addresses__contains=Address(city="Seattle")), mode) == ["p2"]


async def test_update_whole_embedded_value(people: Any, mode: str) -> None:
    await _people(people, mode)
    n = await run(people.objects.filter(address__city="Portland"), "update", mode,
                  address=Address(city="Bend", zip="97701"))
    assert n == 2
    assert await _ids(people.objects.filter(address__city="Bend").order_by("id"), mode) == [
        "p1", "p3"]
    await run(people.objects.filter(id="p2"), "update", mode, address={"city": "Tacoma"})
    assert (await run(people.objects, "get", mode, id="p2")).address == Address(city="Tacoma")


async def test_unknown_paths_are_refused(people: Any, mode: str) -> None:
    with pytest.raises(UnknownFieldError, match="address__town"):
        people.objects.filter(address__town="X")
    with pytest.raises(UnknownFieldError, match="address__geo__alt"):
        people.objects.filter(address__geo__alt__gt=1)
    with pytest.raises(UnknownFieldError, match="address__city__first"):
        people.objects.filter(address__city__first="X")
    with pytest.raises(QueryError, match="not supported"):
        people.objects.filter(address__geo__lat__startswith="4")
    with pytest.raises(QueryError, match="cannot be ordered"):
        people.objects.order_by("addresses__city")
    with pytest.raises(QueryError, match="expects"):
        people.objects.filter(address__zip__in="97")


async def test_indexed_paths_are_served_by_their_index(indexed: Any, mode: str,
                                                      store: str) -> None:
    await _people(indexed, mode)
    P = indexed.objects
    plan = await run(P.filter(address__city="Portland"), "explain", mode)
    assert not plan.scanned and "address__city" in plan.indexes, plan
    assert plan.client_filter is None
    assert await _ids(P.filter(address__city="Portland").order_by("id"), mode) == ["p1", "p3"]
    assert await _ids(P.filter(address__city__in=["Seattle", "Salem"]), mode) == ["p2"]
    assert await _ids(P.filter(address__city__isnull=True), mode) == ["p4"]
    assert await _ids(P.filter(address__city__startswith="Port").order_by("-id"), mode) == [
        "p3", "p1"]
    assert await _ids(P.order_by("-address__city", "id"), mode) == ["p2", "p1", "p3", "p4"]
    compound = await run(P.filter(name="Ann", address__geo__lat__gt=40), "explain", mode)
    assert not compound.scanned, compound
    assert await _ids(P.filter(name="Ann", address__geo__lat__gt=40), mode) == ["p1"]
    # a path not indexed is still answered (a scan)
    assert await _ids(P.filter(addresses__zip__startswith="973"), mode) == ["p1"]


async def test_indexed_list_paths_are_served_by_membership(indexed: Any, mode: str,
                                                           store: str) -> None:
    await _people(indexed, mode)
    P = indexed.objects
    plan = await run(P.filter(addresses__city="Salem"), "explain", mode)
    if store == "redis":
        assert not plan.scanned and "addresses__city" in plan.indexes, plan
    else:  # membership of the elements' keys (as for an array field's ``contains``)
        assert plan.client_filter is None and "qorm_path" not in (plan.server_filter or "")
    assert await _ids(P.filter(addresses__city="Salem"), mode) == ["p1"]
    assert await _ids(P.filter(addresses__city__in=["Salem", "Seattle"]).order_by("id"),
                      mode) == ["p1", "p2"]
    assert await _ids(P.filter(addresses__city__ne="Salem").order_by("id"), mode) == [
        "p2", "p3", "p4"]
    assert await _ids(P.filter(addresses__city__nin=["Salem", "Seattle"]).order_by("id"),
                      mode) == ["p3", "p4"]
    assert await _ids(P.filter(addresses__city__isnull=True).order_by("id"), mode) == [
        "p3", "p4"]
    # (None asks as ``exact None`` does: no element has a city)
    assert await _ids(P.filter(addresses__city__in=["Salem", None]).order_by("id"),
                      mode) == ["p1", "p3", "p4"]
    # the index follows writes
    bob = await run(P, "get", mode, id="p2")
    bob.addresses.append(Address(city="Tacoma"))
    await run(bob, "save", mode)
    assert await _ids(P.filter(addresses__city="Tacoma"), mode) == ["p2"]
    await run(P.filter(id="p2"), "update", mode, addresses=[])
    assert await _ids(P.filter(addresses__city__in=["Tacoma", "Seattle"]), mode) == []
    assert await _ids(P.filter(addresses__city__isnull=True).order_by("id"), mode) == [
        "p2", "p3", "p4"]


async def test_indexed_paths_follow_writes(indexed: Any, mode: str) -> None:
    await _people(indexed, mode)
    P = indexed.objects
    ann = await run(P, "get", mode, id="p1")
    ann.address.city = "Eugene"  # changed in place: the index entry moves
    await run(ann, "save", mode)
    assert await _ids(P.filter(address__city="Eugene"), mode) == ["p1"]
    assert await _ids(P.filter(address__city="Portland"), mode) == ["p3"]
    await run(P.filter(id="p3"), "update", mode, address=Address(city="Bend", zip="97701"))
    assert await _ids(P.filter(address__city="Bend"), mode) == ["p3"]
    assert await _ids(P.filter(address__city="Portland"), mode) == []
    await run(P.filter(address__city="Bend"), "delete", mode)
    assert await _ids(P.filter(address__city__in=["Bend", "Eugene"]), mode) == ["p1"]
    assert await run(P.filter(address__city__isnull=False), "count", mode) == 2


async def test_unique_path(indexed: Any, mode: str) -> None:
    await _people(indexed, mode)
    with pytest.raises(UniqueViolation):
        await run(indexed(id="p9", address=Address(city="X", zip="98101")), "save", mode)
    dee = await run(indexed.objects, "get", mode, id="p4")
    dee.address = Address(city="Y", zip="11111")
    await run(dee, "save", mode)
    assert await _ids(indexed.objects.filter(address__zip="11111"), mode) == ["p4"]


def test_index_declarations_on_paths_are_checked() -> None:
    def declare(indexes: list[Any]) -> None:
        type("Bad", (Document,), {
            "address": EmbeddedDocumentField(Address),
            "addresses": ListField(EmbeddedDocumentField(Address)),
            "Meta": type("Meta", (), {"collection": "bad", "indexes": indexes})})

    with pytest.raises(ConfigurationError, match="address__town"):
        declare(["address__town"])
    with pytest.raises(ConfigurationError, match="cannot be part of a compound index"):
        declare([("addresses__city", "address__city")])
    with pytest.raises(UnknownFieldError, match="addresses__city__each"):
        # (a derived field's name is no path a query can name)
        type("Each", (Document,), {
            "addresses": ListField(EmbeddedDocumentField(Address)),
            "Meta": type("Meta", (), {"collection": "each", "indexes": ["addresses__city"]}),
        }).objects.filter(addresses__city__each="x")
    with pytest.raises(ConfigurationError, match="cannot be indexed"):
        declare(["address__geo"])


async def test_an_index_on_a_path_added_to_existing_data(people: Any, mode: str,
                                                         store: str) -> None:
    await _people(people, mode)
    later = type("Later", (Document,), {
        "name": StringField(indexed=True), "age": IntField(),
        "address": EmbeddedDocumentField(Address),
        "addresses": ListField(EmbeddedDocumentField(Address)),
        "Meta": type("Meta", (), {"backend": store, "namespace": "contract",
                                  "collection": "embedded_people",
                                  "indexes": ["address__city"]})})
    query = later.objects.filter(address__city="Portland").order_by("id")
    # before the index is built it is not used (Redis: building; SQL: rows rewritten at
    # first use), and the answer is right either way
    assert await _ids(query, mode) == ["p1", "p3"]
    if store == "redis":
        assert (await run(query, "explain", mode)).scanned
        await run(later.objects, "reindex", mode)
    plan = await run(query, "explain", mode)
    assert plan.client_filter is None and "k_address__city" in (plan.server_filter or "") \
        if store != "redis" else "address__city" in plan.indexes
    if store != "postgres":  # (PostgreSQL may prefer a scan of four rows it has analysed)
        assert not plan.scanned and "address__city" in plan.indexes
    assert await _ids(query, mode) == ["p1", "p3"]
    assert await _ids(later.objects.filter(address__city__isnull=True), mode) == ["p4"]


async def test_values_of_paths(people: Any, indexed: Any, mode: str) -> None:
    for model in (people, indexed):
        await _people(model, mode)
        qs = model.objects.order_by("id")
        assert await run(qs.values_list("address__city", flat=True), "all", mode) == [
            "Portland", "Seattle", "Portland", None]
        assert await run(qs.filter(id="p1").values("name", "address__geo__lat"), "all",
                         mode) == [{"id": "p1", "name": "Ann", "address__geo__lat": 45.5}]
        assert (await run(qs.values(), "all", mode))[1]["address"] == Address(
            city="Seattle", zip="98101")
        with pytest.raises(UnknownFieldError, match="address__town"):
            qs.values_list("address__town")
        with pytest.raises(UnknownFieldError):
            qs.only("address__city")


async def test_atomic_list_operations_on_embedded_lists(people: Any, mode: str) -> None:
    await _people(people, mode)
    bob = await run(people.objects, "get", mode, id="p2")
    after = await run(bob, "push", mode, "addresses", Address(city="Tacoma"))
    assert after == [Address(city="Seattle"), Address(city="Tacoma")]
    assert await _ids(people.objects.filter(addresses__city="Tacoma"), mode) == ["p2"]
    assert await run(bob, "pull", mode, "addresses", Address(city="Seattle")) == [
        Address(city="Tacoma")]
    with pytest.raises(ValidationError, match="city"):
        await run(bob, "push", mode, "addresses", {"zip": "1"})


@pytest.mark.parametrize("store", ["redis"], indirect=True)  # (Redis features)
async def test_redis_events_and_verify_with_indexed_paths(indexed: Any, mode: str,
                                                          store: str) -> None:
    feed = indexed.objects.changes(wait=0)
    assert await run(feed, "read", mode) == []  # (its position: now)
    await _people(indexed, mode)
    ann = await run(indexed.objects, "get", mode, id="p1")
    ann.address.city = "Eugene"
    await run(ann, "save", mode)
    events = await run(feed, "read", mode)
    # the stored fields that changed: not the indexed path computed from them
    assert [e.changed for e in events if e.op == "update"] == [("address",)]
    report = await run(indexed.objects, "verify", mode)
    assert report.ok and report.entries > 0, report


def test_an_indexed_path_cannot_take_a_fields_storage_name() -> None:
    with pytest.raises(ConfigurationError, match="storage name 'address__city'"):
        type("Clash", (Document,), {
            "address": EmbeddedDocumentField(Address),
            "other": StringField(db_field="address__city"),
            "Meta": type("Meta", (), {"collection": "clash", "indexes": ["address__city"]})})
