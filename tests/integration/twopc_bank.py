"""The bank of the two-phase commit tests: accounts over every partition (and every master
of a cluster), transfers between random pairs in transactions, and the check that money is
neither made nor lost. Also run as a script: a client doing transfers until it is killed
(``python twopc_bank.py URL SEED``), pausing a little after each round trip so that a kill
lands in every phase."""

from __future__ import annotations

import random
import sys
import time
from typing import Any

import quantumorm
from quantumorm import Document, IntField, StringField
from quantumorm.engine import drive

START = 1000  # each account's opening balance
#: what a transfer of the killed client may meet without anything being wrong, the next
#: transfer tried instead: a conflict or a lock met all 50 attempts; the deadline (0.5 s,
#: with this client's pauses) passed before the decision, nothing written; committed but
#: not all applied (readers, writers and the sweeper finish it); a read that kept meeting
#: transactions applied while it ran. Anything else (a wrong answer among them) is raised.
EXPECTED = (quantumorm.VersionConflict, quantumorm.TransactionCommitted,
            quantumorm.TransactionsUnsettled, quantumorm.TransactionError)


class Account(Document):
    owner = StringField(indexed=True)
    balance = IntField(indexed=True, default=0)

    class Meta:
        collection = "tpc_bank"
        partitions = 6


def account_ids(count: int) -> list[str]:
    return [f"acct-{n}" for n in range(count)]


def open_accounts(count: int) -> int:
    """``count`` accounts at START each; the total."""
    Account.objects.bulk_create_sync([Account(id=id, owner=id, balance=START)
                                      for id in account_ids(count)])
    return START * count


def transfer_body(rng: random.Random, ids: list[str]) -> Any:
    """A function for run_transaction_sync: a random amount between two random accounts."""
    source, target = rng.sample(ids, 2)
    amount = rng.randint(1, 50)

    def body(tx: Any) -> None:
        a, b = tx.get(Account, source), tx.get(Account, target)
        a.balance -= amount
        b.balance += amount
        tx.save(a)
        tx.save(b)
    return body


def abody(rng: random.Random, ids: list[str]) -> Any:
    """The asyncio twin of :func:`transfer_body`."""
    source, target = rng.sample(ids, 2)
    amount = rng.randint(1, 50)

    async def body(tx: Any) -> None:
        a, b = await tx.get(Account, source), await tx.get(Account, target)
        a.balance -= amount
        b.balance += amount
        tx.save(a)
        tx.save(b)
    return body


def summed_in_transaction(conn: Any, ids: list[str]) -> int:
    """The sum of every balance, read in one transaction that commits (its reads checked
    and locked at prepare: a consistent snapshot)."""
    def body(tx: Any) -> int:
        return sum(tx.get(Account, id).balance for id in ids)
    return int(conn.run_transaction_sync(body, attempts=200))


def stored_total(ids: list[str]) -> int:
    return sum(a.balance for a in Account.objects.filter(id__in=ids).all_sync())


def _slow_client() -> None:
    """Every round trip of this process is followed by a short random pause."""
    real = drive.run

    class Slow:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def execute(self, plan: Any) -> Any:
            reply = self.inner.execute(plan)
            time.sleep(random.uniform(0, 0.004))
            return reply

    def run(op: Any, executor: Any) -> Any:
        return real(op, Slow(executor))

    drive.run = run  # type: ignore[assignment]


def main(url: str, seed: int, count: int) -> None:
    conn = quantumorm.create_connection(url=url, name="default", make_default=True)
    _slow_client()
    rng = random.Random(seed)
    ids = account_ids(count)
    done = 0
    while True:
        try:
            conn.run_transaction_sync(transfer_body(rng, ids), attempts=50, timeout=0.5)
            done += 1
            print(done, flush=True)
        except EXPECTED:
            pass  # (any other error ends the client, its traceback on stderr)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
