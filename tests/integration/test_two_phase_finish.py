"""The last step of a two-phase commit on a cluster: the record and its registry entry live
in different slots, so on different nodes, and a client can die with only one of the two
deleted. Whatever it managed to delete, a sweep past the deadline leaves nothing behind
(a committed record without its registry entry would be found by no one)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from test_two_phase_bank import leftovers
from twopc_bank import Account, account_ids, open_accounts, stored_total

from quantumorm.backends.redis.commands import Command, RedisPlan
from quantumorm.backends.redis.keys import KeySpace

TIMEOUT = 0.3


def finishing(plan: Any) -> bool:
    """Whether ``plan`` forgets a record: the DEL of a record or its registry's ZREM."""
    return any(isinstance(step, Command) and (
        step.args[0] == "ZREM" or (step.args[0] == "DEL" and str(step.args[1]).endswith(":r")))
        for step in plan.steps)


def die_in_finish(conn: Any, ids: list[str], keep: Callable[[Any], bool]) -> None:
    """Commit a transfer between ``ids`` and die in its first finishing plan, having sent
    only the steps ``keep`` picks from it (the nodes that got theirs before the client died)."""
    tx = conn.transaction_sync(timeout=TIMEOUT)
    first, second = (tx.get(Account, id) for id in ids)
    first.balance -= 5
    second.balance += 5
    tx.save(first)
    tx.save(second)
    op = tx._work.commit(conn.backend)
    executor = conn._store.sync_executor()
    plan = next(op)
    while not finishing(plan):
        plan = op.send(executor.execute(plan))
    kept = tuple(step for step in plan.steps if keep(step))
    if kept:
        executor.execute(RedisPlan(kept, idempotent=True))
    op.close()


@pytest.mark.parametrize("keep", ["nothing", "the record's DEL", "the registry's ZREM"])
def test_a_client_dying_between_the_records_delete_and_its_registry_entry(
        cluster_conn: Any, redis_cluster: Any, keep: str) -> None:
    ids = account_ids(8)
    total = open_accounts(8)
    keys = KeySpace(Account._meta)
    pair = [ids[0], next(i for i in ids if keys.partition_of(i) != keys.partition_of(ids[0]))]
    picks: dict[str, Callable[[Any], bool]] = {
        "nothing": lambda step: False,
        "the record's DEL": lambda step: step.args[0] == "DEL",
        "the registry's ZREM": lambda step: step.args[0] == "ZREM",
    }
    die_in_finish(cluster_conn, pair, picks[keep])
    assert stored_total(ids) == total  # (applied: the commit had decided)
    time.sleep(TIMEOUT + 0.1)  # past the deadline: the sweeper acts
    Account.objects.sweep_sync()
    assert leftovers(redis_cluster.nodes) == {}
    assert {a.id: a.balance for a in Account.objects.filter(id__in=pair).all_sync()} == {
        pair[0]: 995, pair[1]: 1005}
