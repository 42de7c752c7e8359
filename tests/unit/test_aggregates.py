"""The reference semantics of the aggregates (no server): exactness, nulls, empty sets,
order, and the checks made when ``aggregate()`` is called."""

from __future__ import annotations

import decimal
import math
from decimal import Decimal
from typing import Any

import pytest

import quantumorm
from quantumorm import (
    ArrayField,
    Avg,
    Count,
    DecimalField,
    Document,
    FloatField,
    IntField,
    JSONField,
    Max,
    Min,
    QueryError,
    StringField,
    Sum,
    UnknownFieldError,
)
from quantumorm.query import aggregates


class Row(Document):
    i = IntField()
    f = FloatField()
    d = DecimalField()
    s = StringField()
    tags = ArrayField(StringField())
    j = JSONField()

    class Meta:
        backend = "sqlite"
        collection = "agg_rows"


OPTIONS = Row._meta


def docs(**columns: list[Any]) -> list[dict[str, Any]]:
    size = max(len(v) for v in columns.values())
    return [{"id": str(k), **{name: values[k] for name, values in columns.items()}}
            for k in range(size)]


def test_sum_of_ints_is_an_unbounded_int() -> None:
    rows = docs(i=[2**63, 2**63, None, -1])
    assert Sum("i").compute(OPTIONS, rows) == 2**64 - 1
    assert Avg("i").compute(OPTIONS, rows) == (2**64 - 1) / 3
    assert type(Avg("i").compute(OPTIONS, rows)) is float


def test_sum_of_decimals_is_exact_whatever_the_context() -> None:
    rows = docs(d=[Decimal("1e30"), Decimal("0.01"), Decimal("-1e30"), Decimal("0.10")])
    with decimal.localcontext() as narrow:
        narrow.prec = 5
        assert Sum("d").compute(OPTIONS, rows) == Decimal("0.11")
        big = docs(d=[Decimal("1e30"), Decimal("0.01")])
        assert Sum("d").compute(OPTIONS, big) == Decimal("1000000000000000000000000000000.01")
        # the mean is rounded once, in the caller's context
        assert Avg("d").compute(OPTIONS, big) == Decimal("5.0000E+29")


def test_sum_of_floats_is_correctly_rounded() -> None:
    rows = docs(f=[1e16, 1.0, -1e16, 0.1])
    assert Sum("f").compute(OPTIONS, rows) == 1.1
    assert Avg("f").compute(OPTIONS, rows) == 1.1 / 4


def test_float_sums_and_means_never_overflow_midway_and_round_once() -> None:
    # a partial sum beyond the largest float: math.fsum raises, the exact sum does not
    assert Sum("f").compute(OPTIONS, docs(f=[1e308, 1e308, -1e308])) == 1e308
    assert Sum("f").compute(OPTIONS, docs(f=[1e308, 1e308])) == math.inf
    assert Sum("f").compute(OPTIONS, docs(f=[-1e308, -1e308])) == -math.inf
    assert Avg("f").compute(OPTIONS, docs(f=[1e308, 1e308])) == 1e308
    # the exact mean rounded once (fsum then / n rounds twice: -4000000000000000.0)
    rows = docs(f=[0.6666666666666666, -3e16, -1e-05, 1e16, 1.0])
    assert Avg("f").compute(OPTIONS, rows) == -3999999999999999.5
    assert Avg("i").compute(OPTIONS, docs(i=[10**400, 10**400])) == math.inf


def test_nulls_and_empty_sets() -> None:
    rows = docs(i=[None, None], s=["a", None])
    assert Count().compute(OPTIONS, rows) == 2
    assert Count("i").compute(OPTIONS, rows) == 0
    assert Count("s").compute(OPTIONS, rows) == 1
    for aggregate in (Sum("i"), Avg("i"), Min("i"), Max("i")):
        assert aggregate.compute(OPTIONS, rows) is None
        assert aggregate.compute(OPTIONS, []) is None
    assert Count().compute(OPTIONS, []) == 0


def test_min_and_max_follow_the_sort_keys() -> None:
    rows = docs(s=["b", "a\x00", "é", "a"], d=[Decimal("2"), Decimal("-1"), Decimal("10"),
                                               None])
    assert (Min("s").compute(OPTIONS, rows), Max("s").compute(OPTIONS, rows)) == ("a", "é")
    assert (Min("d").compute(OPTIONS, rows), Max("d").compute(OPTIONS, rows)) == (
        Decimal("-1"), Decimal("10"))


def test_frequencies_and_distinct() -> None:
    rows = docs(tags=[["x", "y"], None, [], ["y"]], d=[Decimal("0.1"), Decimal("0.10"), None,
                                                      Decimal("-3")])
    assert aggregates.frequencies(OPTIONS, "tags", rows) == {None: 1, "x": 1, "y": 2}
    assert list(aggregates.frequencies(OPTIONS, "tags", rows)) == [None, "x", "y"]
    assert aggregates.distinct(OPTIONS, "tags", rows) == ["x", "y"]
    # equal by sort key: one entry, keyed by the first value seen
    counted = aggregates.frequencies(OPTIONS, "d", rows)
    assert counted == {None: 1, Decimal("-3"): 1, Decimal("0.1"): 2}
    assert str(list(counted)[2]) == "0.1"
    assert aggregates.distinct(OPTIONS, "id", rows) == ["0", "1", "2", "3"]


@pytest.mark.parametrize("aggregate, error", [
    (Sum("s"), QueryError), (Avg("tags"), QueryError), (Min("j"), QueryError),
    (Max("tags"), QueryError), (Sum(), QueryError), (Sum("id"), QueryError),
    (Count("nope"), UnknownFieldError), (Min(3), QueryError),  # type: ignore[arg-type]
])
def test_checks(aggregate: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        aggregate.check("Row", OPTIONS)


def test_what_passes_the_checks() -> None:
    for aggregate in (Count(), Count("j"), Count("tags"), Count("id"), Sum("d"), Avg("f"),
                      Min("s"), Max("id")):
        aggregate.check("Row", OPTIONS)
    with pytest.raises(QueryError):
        aggregates.check_spread("Row", OPTIONS, "j", "distinct")
    with pytest.raises(UnknownFieldError):
        aggregates.check_spread("Row", OPTIONS, "nope", "distinct")
    aggregates.check_spread("Row", OPTIONS, "tags", "distinct")


def test_querysets_check_when_called() -> None:
    quantumorm.create_connection(backend="sqlite", url="sqlite://", name="agg-unit",
                                 make_default=True)
    try:
        qs = Row.objects
        with pytest.raises(QueryError):
            qs.aggregate_sync()
        with pytest.raises(QueryError):
            qs.aggregate_sync(total=Sum("s"))
        with pytest.raises(QueryError):
            qs.item_frequencies_sync("tags", normalize="yes")  # type: ignore[arg-type]
        with pytest.raises(QueryError):
            qs.values_list("i", "s", flat=True)
        assert qs.aggregate_sync(n=Count(), total=Sum("i")) == {"n": 0, "total": None}
    finally:
        quantumorm.close_all()
