"""Server instructions per two-phase transfer (two partitions), two trees, under callgrind.

(``--partitions 1``: the model has one partition, and each transfer is one ``tx.lua`` call
instead of the two-phase commit. ``--op insert``: each transaction inserts two new accounts
instead, in two partitions, with no read: a transaction's inserts.)

As ``bench_instructions.py`` (one private redis-server under ``valgrind --tool=callgrind``,
``hz 1``; the sides alternate, each in a fresh process with its tree's ``src`` first), for
one operation it has not: a transfer between accounts of two partitions of one model
through ``run_transaction_sync`` (two reads by id; begin, prepare, commit, apply,
finish). Each block: FLUSHALL, ``--accounts`` accounts, 50 warm-up transfers, the counters
zeroed, ``--calls`` transfers, the counters dumped: Ir (instructions) of the whole server
per transfer.

Usage: bench/bench_tx_instructions.py --old <tree> [--new <tree>] [--port 6411]
[--calls 200] [--reps 4] [--partitions 2] [--op transfer|insert]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from callgrind_support import callgrind_server, dumped_instructions

WORKER = r"""
import random, subprocess, sys
tree, url, calls, pid, label, accounts, partitions, op = sys.argv[1:9]
sys.path[:0] = [tree + "/src"]
import redis
from quantumorm import Document, IntField, StringField, create_connection
from quantumorm.backends.redis.keys import KeySpace
redis.Redis.from_url(url).flushall()
conn = create_connection("redis", url, name="txi", make_default=True)

class Account(Document):
    owner = StringField(indexed=True)
    balance = IntField(indexed=True, default=0)
    class Meta:
        collection = "txi_accounts"
        partitions = int(sys.argv[7])

ids = [f"a{n}" for n in range(int(accounts))]
Account.objects.bulk_create_sync([Account(id=id, owner=id, balance=1000) for id in ids])
keys = KeySpace(Account._meta)
rng = random.Random(1)
pairs = []
while len(pairs) < int(calls) + 50:
    a, b = rng.sample(ids, 2)
    if keys.partition_of(a) != keys.partition_of(b) or Account._meta.partitions == 1:
        pairs.append((a, b))

def transfer(pair):
    def body(tx):
        a, b = tx.get(Account, pair[0]), tx.get(Account, pair[1])
        a.balance -= 1
        b.balance += 1
        tx.save(a)
        tx.save(b)
    conn.run_transaction_sync(body, attempts=10)

if op == "insert":  # (two new accounts per transaction, in two partitions; no read)
    # (ids of the first two partitions, paired: with one partition, any two)
    found, k = ([], []), 0
    while min(len(found[0]), len(found[1])) < int(calls) + 50:
        id = f"n{k}"
        k += 1
        found[keys.partition_of(id) if Account._meta.partitions > 1 else k % 2].append(id)
    pairs = list(zip(found[0], found[1]))[:int(calls) + 50]

    def transfer(pair):
        def body(tx):
            tx.save(Account(id=pair[0], owner=pair[0], balance=0))
            tx.save(Account(id=pair[1], owner=pair[1], balance=0))
        conn.run_transaction_sync(body, attempts=10)

for pair in pairs[:50]:
    transfer(pair)
subprocess.run(["callgrind_control", "-z", pid], check=True, capture_output=True)
for pair in pairs[50:]:
    transfer(pair)
subprocess.run(["callgrind_control", "--dump=" + label, pid], check=True, capture_output=True)
assert sum(a.balance for a in Account.objects.all_sync()) == 1000 * len(ids)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True)
    parser.add_argument("--new", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--port", type=int, default=6411)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--accounts", type=int, default=64)
    parser.add_argument("--partitions", type=int, default=2,
                        help="1: one tx.lua call per transfer instead of the two-phase commit")
    parser.add_argument("--op", choices=("transfer", "insert"), default="transfer",
                        help="insert: each transaction inserts two new accounts")
    args = parser.parse_args()
    sides = [("old", args.old), ("new", args.new)]
    counts: dict[str, list[float]] = {side: [] for side, _ in sides}
    with tempfile.TemporaryDirectory(prefix="qorm-tx-instructions-") as work:
        with callgrind_server(args.port, work) as (url, pid):
            for rep in range(args.reps):
                for side, tree in (sides if rep % 2 == 0 else sides[::-1]):
                    label = f"{side}{rep}"
                    subprocess.run([sys.executable, "-c", WORKER, tree, url, str(args.calls),
                                    str(pid), label, str(args.accounts),
                                    str(args.partitions), args.op],
                                   check=True, env={**os.environ, "PYTHONPATH": ""})
                    counts[side].append(dumped_instructions(work, label) / args.calls)
                    print(f"{label}: {counts[side][-1]:,.0f} instructions per "
                          f"{'transfer' if args.op == 'transfer' else 'transaction'}",
                          flush=True)
    kind = ("two-phase " if args.partitions > 1 else "one tx.lua call: ") + (
        "transfer" if args.op == "transfer" else "insert of two documents")
    print(f"{kind}, {args.calls} per block, {args.reps} repeats:")
    for side, values in counts.items():
        print(f"  {side:<4} median {statistics.median(values):>11,.0f}  "
              f"[{min(values):,.0f} - {max(values):,.0f}]")
    ratio = statistics.median(counts["new"]) / statistics.median(counts["old"])
    print(f"  new/old {ratio:.4f}")


if __name__ == "__main__":
    main()
