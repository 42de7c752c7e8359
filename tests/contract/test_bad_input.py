"""Bad input gets a typed error and nothing is written, on every backend, sync and async.

Values that validation used to let through and that then failed untyped (RecursionError,
UnicodeEncodeError, ValueError) or half-way through a bulk_create, and datetimes whose
offset is not a whole number of minutes.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest
from contract_models import STORES, open_store, run

from quantumorm import (
    DateTimeField,
    DictField,
    Document,
    DocumentTooLargeError,
    IntField,
    InvalidOperation,
    JSONField,
    ListField,
    StringField,
    ValidationError,
)
from quantumorm.fields.structured import MAX_JSON_DEPTH

UTC = dt.timezone.utc


def _models(backend: str) -> SimpleNamespace:
    meta = type("Meta", (), {"backend": backend, "namespace": "contract",
                             "collection": "blobs"})
    namespace = {
        "name": StringField(indexed=True),
        "n": IntField(indexed=True),
        "payload": JSONField(),
        "extra": DictField(),
        "items": ListField(JSONField()),
        "words": ListField(StringField(), indexed=True),
        "at": DateTimeField(indexed=True),
        "Meta": meta,
        "__module__": __name__,
    }
    return SimpleNamespace(Blob=type(Document)("Blob", (Document,), namespace))


MODELS = {backend: _models(backend) for backend in STORES}


@pytest.fixture
def blob(store: str) -> Any:
    return MODELS[store].Blob


def nested(depth: int) -> Any:
    """A JSON value ``depth`` levels deep: ``[[...[0]...]]``."""
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


async def nothing_stored(model: Any, mode: str) -> None:
    assert await run(model.objects, "count", mode) == 0
    assert await run(model.objects, "all", mode) == []


# -- depth and self-reference ---------------------------------------------------------------


async def test_json_at_the_depth_limit_saves_and_reads_back(blob: Any, mode: str) -> None:
    deep = nested(MAX_JSON_DEPTH)
    doc = await run(blob(name="deep", payload=deep, extra={"a": nested(MAX_JSON_DEPTH - 1)},
                         items=[nested(MAX_JSON_DEPTH)]), "save", mode)
    again = await run(blob.objects, "get", mode, id=doc.id)
    assert again.payload == deep and again.items == [deep]
    assert [d.payload for d in await run(blob.objects, "all", mode)] == [deep]


@pytest.mark.parametrize("field", ["payload", "extra", "items"])
async def test_json_deeper_than_the_limit_is_a_validation_error(
        blob: Any, mode: str, field: str) -> None:
    for depth in (MAX_JSON_DEPTH + 1, 995, 5000):
        value = {"a": nested(depth - 1)} if field == "extra" else nested(depth)
        if field == "items":
            value = [value]
        with pytest.raises(ValidationError) as caught:
            await run(blob(name="x", **{field: value}), "save", mode)
        assert list(caught.value.errors) == [field]
        assert f"nested deeper than {MAX_JSON_DEPTH} levels" in str(caught.value)
        assert f"'{field}'" in str(caught.value)
    await nothing_stored(blob, mode)


async def test_a_container_holding_itself_is_a_validation_error(blob: Any, mode: str) -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    cycle: dict[str, Any] = {"a": {}}
    cycle["a"]["b"] = cycle
    shared = [1, 2]  # the same list twice, side by side, is not a cycle
    for field, value in (("payload", loop), ("extra", cycle), ("items", [loop])):
        with pytest.raises(ValidationError) as caught:
            await run(blob(name="x", **{field: value}), "save", mode)
        assert list(caught.value.errors) == [field]
        assert "contains itself" in str(caught.value)
    await nothing_stored(blob, mode)
    doc = await run(blob(payload=[shared, shared]), "save", mode)
    assert (await run(blob.objects, "get", mode, id=doc.id)).payload == [[1, 2], [1, 2]]


# -- values that cannot be encoded ----------------------------------------------------------


@pytest.mark.parametrize(("field", "value"), [
    ("payload", "a\ud800b"),
    ("payload", {"k": ["ok", "\udfff"]}),
    ("payload", {"\ud800": 1}),
    ("extra", {"a": {"\udc80key": "v"}}),
    ("items", [{"x": "\ud83d"}]),
    ("name", "lone \ud800"),
    ("words", ["fine", "\ud800"]),
    ("payload", 10**5000),
    ("payload", {"big": [-(10**4300)]}),
    ("items", [10**4301]),
    ("payload", float("nan")),
    ("payload", {"x": [1.0, float("inf")]}),
    ("extra", {"x": -float("inf")}),
], ids=["surrogate", "nested-surrogate", "surrogate-key", "dict-field-key", "list-of-json",
        "string-field", "list-of-strings", "huge-int", "nested-huge-int", "list-huge-int",
        "nan", "nested-inf", "dict-field-inf"])
async def test_unencodable_values_are_validation_errors(
        blob: Any, mode: str, field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        await run(blob(**{"name": "x", field: value}), "save", mode)
    assert list(caught.value.errors) == [field]
    await nothing_stored(blob, mode)
    # the same in an update of a stored document
    doc = await run(blob(name="ok", payload={"fine": 1}), "save", mode)
    setattr(doc, field, value)
    with pytest.raises(ValidationError):
        await run(doc, "save", mode)
    stored = await run(blob.objects, "get", mode, id=doc.id)
    assert stored.name == "ok" and stored.payload == {"fine": 1}


async def test_the_largest_int_json_can_hold_is_stored_exactly(blob: Any, mode: str) -> None:
    big = 10**4300 - 1
    doc = await run(blob(payload={"n": [big, -big]}), "save", mode)
    assert (await run(blob.objects, "get", mode, id=doc.id)).payload == {"n": [big, -big]}


# -- bulk_create: everything checked before the first batch ---------------------------------


@pytest.fixture
async def small_limit(store: str, request: Any) -> Any:
    """The store's default connection again, with max_document_bytes=2000."""
    open_store(store, request, max_document_bytes=2000)
    return MODELS[store].Blob


async def test_bulk_create_size_checks_every_document_before_the_first_batch(
        small_limit: Any, mode: str) -> None:
    blob = small_limit
    docs = [blob(name=f"d{i}", n=i) for i in range(7)]
    docs[4].payload = "x" * 3000
    docs[6].payload = "y" * 5000
    with pytest.raises(DocumentTooLargeError) as caught:
        await run(blob.objects, "bulk_create", mode, docs, batch_size=2)
    error = caught.value
    assert set(error.positions) == {4, 6}
    assert error.positions[4] > 3000 and error.positions[6] > 5000
    assert error.size == error.positions[4] and error.limit == 2000
    assert "nothing was written" in str(error)
    await nothing_stored(blob, mode)
    assert all(not d.is_saved and d.id is None for d in docs)
    # fixed, the same documents go in
    docs[4].payload = docs[6].payload = None
    written = await run(blob.objects, "bulk_create", mode, docs, batch_size=2)
    assert len(written) == 7 and await run(blob.objects, "count", mode) == 7


async def test_bulk_create_with_an_invalid_document_late_writes_nothing(
        blob: Any, mode: str) -> None:
    docs = [blob(id=f"d{i}", name=f"d{i}", n=i) for i in range(6)]
    docs[3].payload = {"k": "\ud800"}
    docs[5].payload = nested(MAX_JSON_DEPTH + 1)
    with pytest.raises(ValidationError) as caught:
        await run(blob.objects, "bulk_create", mode, docs, batch_size=1)
    assert set(caught.value.errors) == {"[3].payload", "[5].payload"}
    await nothing_stored(blob, mode)


async def test_bulk_create_refuses_the_same_instance_twice(blob: Any, mode: str) -> None:
    """One instance given twice would be stored twice (two auto ids), and the instance would
    keep only the last: a copy nobody holds. Refused before anything is written."""
    first, other = blob(name="a", n=1), blob(name="b", n=2)
    with pytest.raises(InvalidOperation, match=r"positions 0 and 2"):
        await run(blob.objects, "bulk_create", mode, [first, other, first])
    await nothing_stored(blob, mode)
    assert first.id is None and not first.is_saved
    written = await run(blob.objects, "bulk_create", mode, [first, other])
    assert [d.id for d in written] == [first.id, other.id] and first.id != other.id
    assert await run(blob.objects, "count", mode) == 2


# -- datetimes ------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [
    dt.timedelta(seconds=1, microseconds=500),
    -dt.timedelta(seconds=1, microseconds=500),
    dt.timedelta(hours=5, minutes=30, seconds=7),
    -dt.timedelta(hours=23, minutes=59, seconds=59, microseconds=999999),
    dt.timedelta(microseconds=1),
])
async def test_a_sub_minute_offset_is_converted_to_utc(
        blob: Any, mode: str, offset: dt.timedelta) -> None:
    value = dt.datetime(2024, 1, 1, 12, 0, 0, 123457, tzinfo=dt.timezone(offset))
    doc = await run(blob(name="t", at=value), "save", mode)
    assert doc.at == value and doc.at.utcoffset() == dt.timedelta(0)
    await run(blob(name="before", at=value - dt.timedelta(microseconds=1)), "save", mode)
    await run(blob(name="after", at=value + dt.timedelta(microseconds=1)), "save", mode)
    back = await run(blob.objects, "get", mode, id=doc.id)
    assert back.at == value and back.at.utcoffset() == dt.timedelta(0)
    assert back.at.astimezone(UTC) == value.astimezone(UTC)
    assert [d.name for d in await run(blob.objects.filter(at=value), "all", mode)] == ["t"]
    assert await run(blob.objects.filter(at__gte=value), "count", mode) == 2
    assert await run(blob.objects.filter(at__lt=value), "count", mode) == 1
    ordered = await run(blob.objects.order_by("at"), "all", mode)
    assert [d.name for d in ordered] == ["before", "t", "after"]
    iso = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert [d.name for d in await run(blob.objects.filter(at=iso), "all", mode)] == ["t"]


async def test_whole_minute_offsets_are_kept(blob: Any, mode: str) -> None:
    value = dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3,
                                                                           minutes=-30)))
    doc = await run(blob(at=value), "save", mode)
    back = await run(blob.objects, "get", mode, id=doc.id)
    assert back.at == value and back.at.utcoffset() == value.utcoffset()


async def test_iso_strings_with_z_are_accepted_as_values_and_query_values(
        blob: Any, mode: str) -> None:
    doc = await run(blob(name="z", at="2024-01-01T00:00:00Z"), "save", mode)
    assert doc.at == dt.datetime(2024, 1, 1, tzinfo=UTC)
    await run(blob(name="lower", at="2024-01-01t00:00:01.5z"), "save", mode)
    assert await run(blob.objects.filter(at="2024-01-01T00:00:00Z"), "count", mode) == 1
    assert await run(blob.objects.filter(at__gt="2024-01-01T00:00:00z"), "count", mode) == 1
