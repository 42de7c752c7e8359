"""What ``aggregate()``, ``distinct()`` and ``item_frequencies()`` cost on Redis: round trips
and bytes the server sends, per call, for each path.

The model (``Sale``): ``price`` (indexed int), ``amount`` (Decimal, unindexed), ``region``
(indexed string, 10 values), ``tags`` (2 of 8, indexed array), and a 200-byte ``note`` that
makes whole documents cost what they do. Measured for ``--n`` documents, over the whole
collection and over ``region="r3"`` (a tenth):

* **round trips**: calls of redis-py's ``Connection.send_packed_command`` (one per command
  sent alone, one per pipeline) during the call;
* **bytes out**: the delta of the server's ``total_net_output_bytes`` (INFO stats), less
  what the INFO call itself returns (measured around an empty pair of INFO calls).

Usage: bench/bench_aggregate.py [--n 20000]. Starts a private redis-server on a free
127.0.0.1 port (stopped at exit) unless $REDIS_URL is set; deletes only its own keys.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import redis
from bench_redis import redis_server  # (this folder)
from redis.connection import Connection

from quantumorm import (
    ArrayField,
    Avg,
    Count,
    DecimalField,
    Document,
    IntField,
    Max,
    Min,
    StringField,
    Sum,
    close_all,
    create_connection,
)


class Sale(Document):
    price = IntField(indexed=True)
    amount = DecimalField()
    region = StringField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    note = StringField()

    class Meta:
        backend = "redis"
        namespace = "qbench-aggr"
        collection = "sales"


def measure(raw: redis.Redis, call: Callable[[], Any]) -> tuple[int, int]:
    """(round trips, bytes sent by the server) of one call."""
    sent = [0]
    original = Connection.send_packed_command

    def counting(self: Connection, *args: Any, **kwargs: Any) -> None:
        sent[0] += 1
        original(self, *args, **kwargs)

    def out() -> int:
        return int(raw.info("stats")["total_net_output_bytes"])

    baseline = out()
    overhead = out() - baseline  # one INFO reply
    before = out()
    Connection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        call()
    finally:
        Connection.send_packed_command = original  # type: ignore[method-assign]
    after = out()
    return sent[0], after - before - overhead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    with redis_server("qbench-aggr-") as url:
        raw = redis.Redis.from_url(url)
        create_connection(backend="redis", url=url, name="bench", make_default=True)
        try:
            Sale.objects.delete_sync()
            docs = [Sale(price=i % 997, amount=Decimal(i) / 100, region=f"r{i % 10}",
                         tags=[f"t{i % 8}", f"t{(i + 3) % 8}"], note="x" * 200)
                    for i in range(args.n)]
            Sale.objects.bulk_create_sync(docs, batch_size=1000)
            print(f"redis-server {raw.info('server')['redis_version']} | n={args.n}")
            print(f"{'call':<58} | {'round trips':>11} | {'bytes out':>10}")
            for label, qs in (("all", Sale.objects), ("region=r3", Sale.objects.filter(
                    region="r3"))):
                cases: list[tuple[str, Callable[[], Any]]] = [
                    ("count_sync()", qs.count_sync),
                    ("aggregate(n=Count())", lambda qs=qs: qs.aggregate_sync(n=Count())),
                    ("aggregate(lo=Min('price'), hi=Max('price'))",
                     lambda qs=qs: qs.aggregate_sync(lo=Min("price"), hi=Max("price"))),
                    ("aggregate(Count, Count('price'), Min, Max)",
                     lambda qs=qs: qs.aggregate_sync(n=Count(), k=Count("price"),
                                                     lo=Min("price"), hi=Max("price"))),
                    ("aggregate(s=Sum('amount'), a=Avg('price'))",
                     lambda qs=qs: qs.aggregate_sync(s=Sum("amount"), a=Avg("price"))),
                    ("distinct('tags')", lambda qs=qs: qs.distinct_sync("tags")),
                    ("item_frequencies('region')",
                     lambda qs=qs: qs.item_frequencies_sync("region")),
                    ("values_list('price', flat=True).all()",
                     lambda qs=qs: qs.values_list("price", flat=True).all_sync()),
                    ("all_sync() (for scale)", qs.all_sync),
                ]
                for name, call in cases:
                    trips, out = measure(raw, call)
                    print(f"{label + ': ' + name:<58} | {trips:>11} | {out:>10}")
            Sale.objects.delete_sync()
        finally:
            close_all()


if __name__ == "__main__":
    main()
