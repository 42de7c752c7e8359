#!/usr/bin/env python3
"""QuantumORM in one page: a model, writes, queries, update operators, aggregation, both APIs.

Run it against your Redis server (nothing else is touched: every key lives in the
``quickstart`` namespace, and the collection is dropped at the start of each run, so it runs
any number of times)::

    QUANTUMORM_URL=redis://127.0.0.1:6379/0 python examples/quickstart.py

``QUANTUMORM_URL`` (or else ``REDIS_URL``) names the server; the default is
``redis://localhost:6379/0``.
"""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal

from quantumorm import (
    ArrayField,
    Avg,
    Count,
    DecimalField,
    Document,
    EmailField,
    IntField,
    Q,
    StringField,
    Sum,
    close_all,
    create_connection,
)

URL = os.environ.get("QUANTUMORM_URL") or os.environ.get("REDIS_URL") or "redis://localhost:6379/0"


class Customer(Document):
    email = EmailField(required=True, unique=True)
    name = StringField(required=True, indexed=True)
    age = IntField(min_value=0, indexed=True)
    balance = DecimalField(default=Decimal("0"), indexed=True)
    tags = ArrayField(StringField(), default=list, indexed=True)

    class Meta:
        namespace = "quickstart"
        collection = "customers"


async def tour() -> None:
    dropped = await Customer.objects.drop_collection(confirm=True)  # what a last run left
    print(f"dropped {dropped} customers of an earlier run")

    ada = await Customer(email="ada@example.org", name="Ada", age=36, tags=["math"]).save()
    await Customer.objects.bulk_create([
        Customer(email=f"c{i}@example.org", name=f"customer{i}", age=20 + i % 40,
                 balance=Decimal(i) / 4, tags=["vip"] if i % 10 == 0 else [])
        for i in range(200)
    ])
    print("customers:", await Customer.objects.count())

    oldest = await Customer.objects.filter(age__gte=50).order_by("-age", "name").limit(3).all()
    print("oldest:", [(c.name, c.age) for c in oldest])
    vip_or_ada = await Customer.objects.filter(Q(tags__contains="vip") | Q(name="Ada")).count()
    print("vip or Ada:", vip_or_ada)
    print(await Customer.objects.filter(age__lt=25).explain())

    updated = await Customer.objects.filter(tags__contains="vip").update(inc__balance=Decimal(5))
    print("vip balances raised:", updated)
    stats = await Customer.objects.aggregate(n=Count(), total=Sum("balance"), mean=Avg("age"))
    print("aggregate:", stats)

    ada.balance = Decimal("10.05")
    await ada.save()  # compare-and-set on ada.version


def blocking_tour() -> None:
    """Every operation has a blocking twin (``_sync``)."""
    ada = Customer.objects.get_sync(email="ada@example.org")
    assert ada.balance == Decimal("10.05")
    young = Customer.objects.filter(age__lt=22).values_list("name", flat=True).all_sync()
    print("young:", sorted(young)[:5], "...")
    print("deleted:", Customer.objects.filter(age__gt=55).delete_sync())
    print("left:", Customer.objects.count_sync())


def main() -> None:
    create_connection(backend="redis", url=URL, make_default=True)
    try:
        asyncio.run(tour())
        blocking_tour()
    finally:
        close_all()


if __name__ == "__main__":
    main()
