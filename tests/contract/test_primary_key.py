"""``IntField(primary_key=True)``: the id under a name of its own, as an int, on every
backend in both modes: saved and read back, queried with ranges, ordered numerically."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from contract_models import STORES, run

from quantumorm import (
    Avg,
    ConfigurationError,
    Count,
    Document,
    IntField,
    Max,
    Min,
    QueryError,
    StringField,
    Sum,
    ValidationError,
)
from quantumorm.query.nodes import ID, Ordering


def _declare(backend: str) -> SimpleNamespace:
    class Invoice(Document):
        number = IntField(primary_key=True)
        label = StringField(indexed=True)
        Meta = type("Meta", (), {"backend": backend, "namespace": "contract",
                                 "collection": "invoices"})

    return SimpleNamespace(Invoice=Invoice)


MODELS = {backend: _declare(backend) for backend in STORES}


@pytest.fixture
def invoice(store: str) -> Any:
    return MODELS[store].Invoice


async def numbers(qs: Any, mode: str) -> list[int]:
    return [d.number for d in await run(qs, "all", mode)]


async def test_the_key_is_the_id_as_an_int(invoice: Any, mode: str) -> None:
    for n in (100, 9, 10, 2, 11):
        doc = await run(invoice(number=n, label=f"n{n}"), "save", mode)
        assert doc.id == str(n) and doc.number == n
    allocated = await run(invoice(label="auto"), "save", mode)
    assert isinstance(allocated.number, int) and allocated.id == str(allocated.number)
    await run(allocated, "delete", mode)
    found = await run(invoice.objects, "get", mode, number=10)
    assert found.number == 10 and found.label == "n10" and "number" not in found.to_dict()
    assert await numbers(invoice.objects.order_by("number"), mode) == [2, 9, 10, 11, 100]
    assert await numbers(invoice.objects.order_by("-number"), mode) == [100, 11, 10, 9, 2]
    ranged = invoice.objects.filter(number__gte=10, number__lt=100).order_by("number")
    assert await numbers(ranged, mode) == [10, 11]
    assert await numbers(invoice.objects.filter(invoice.number > 9).order_by("id"),
                         mode) == [10, 11, 100]
    assert await numbers(invoice.objects.filter(number__in=[2, 100, 5]).order_by("number"),
                         mode) == [2, 100]
    assert await run(invoice.objects.filter(id__gte=10), "count", mode) == 3
    stored = await run(invoice.objects.filter(label="n9"), "first", mode)
    assert stored.number == 9


async def test_the_key_by_its_name_in_projections_and_aggregates(invoice: Any,
                                                                   mode: str) -> None:
    for n in (100, 9, 10, 2, 11):
        await run(invoice(number=n, label=f"n{n % 2}"), "save", mode)
    ordered = invoice.objects.order_by("number")
    assert await run(ordered.values_list("number", flat=True), "all", mode) == [
        2, 9, 10, 11, 100]
    assert await run(ordered.values("number", "label")[:2], "all", mode) == [
        {"id": "2", "number": 2, "label": "n0"}, {"id": "9", "number": 9, "label": "n1"}]
    only = await run(ordered.only("number"), "all", mode)
    assert [d.number for d in only] == [2, 9, 10, 11, 100] and only[0].label is None
    # numbers in number order, not the ids' text order ("100" < "9")
    assert await run(invoice.objects, "aggregate", mode, lo=Min("number"), hi=Max("number"),
                     n=Count("number"), total=Sum("number"), mean=Avg("number")) == {
        "lo": 2, "hi": 100, "n": 5, "total": 132, "mean": 26.4}
    odd = invoice.objects.filter(label="n1")
    assert await run(odd, "aggregate", mode, hi=Max("number")) == {"hi": 11}
    assert await run(odd[:1], "aggregate", mode, total=Sum("number")) == {"total": 9}
    assert await run(invoice.objects, "distinct", mode, "number") == [2, 9, 10, 11, 100]
    assert await run(odd, "item_frequencies", mode, "number") == {9: 1, 11: 1}
    for update in ({"number": 5}, {"inc__number": 1}):
        with pytest.raises(QueryError, match="is the primary key"):
            await run(invoice.objects.filter(number=2), "update", mode, **update)


async def test_invalid_keys_are_refused(invoice: Any, mode: str) -> None:
    assert invoice(number="abc").number == "abc"  # kept as assigned until save checks it
    for bad in (-1, 10**39, "abc"):
        with pytest.raises(ValidationError):
            await run(invoice(number=bad, label="x"), "save", mode)
    with pytest.raises(ValidationError):
        await run(invoice(id="abc", label="x"), "save", mode)
    with pytest.raises(ValidationError):
        invoice(id="1", number=1)
    with pytest.raises(QueryError):
        invoice.objects.filter(number="10")
    with pytest.raises(QueryError):
        invoice.objects.filter(number__gt=-1)
    with pytest.raises(QueryError):
        invoice.objects.filter(number__isnull=True)
    assert await run(invoice.objects, "count", mode) == 0


def test_declaration_rules() -> None:
    with pytest.raises(ConfigurationError):
        StringField(primary_key=True)
    with pytest.raises(ConfigurationError):
        IntField(primary_key=True, indexed=True)
    with pytest.raises(ConfigurationError, match="another name"):
        class Named(Document):
            id = IntField(primary_key=True)
    with pytest.raises(ConfigurationError):
        class Two(Document):
            a = IntField(primary_key=True)
            b = IntField(primary_key=True)

    class Latest(Document):  # Meta.ordering by the key's name is by the id, as order_by
        number = IntField(primary_key=True)
        Meta = type("Meta", (), {"ordering": ["-number"], "backend": "sqlite"})

    assert Latest._meta.ordering == (Ordering(ID, True),)
    assert Latest.objects.spec.order == invoice_order("-number")


def invoice_order(*names: str) -> tuple[Ordering, ...]:
    return MODELS["sqlite"].Invoice.objects.order_by(*names).spec.order
