"""``IntField(primary_key=True)``: the id under a name of its own, as an int, on every
backend in both modes: saved and read back, queried with ranges, ordered numerically."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from contract_models import STORES, run

from quantumorm import (
    ConfigurationError,
    Document,
    IntField,
    QueryError,
    StringField,
    ValidationError,
)


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
