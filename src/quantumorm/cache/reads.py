"""Reads by id through the cache: leases, stampede protection, fills that are never stale.

``get_many`` reads every id's slot with ``cache_read`` (one script call per hash tag, one
round trip). Entries are served as the primary's rows. For each miss the reader takes a
lease (the slot now holds ``L<floor>:<token>``); it loads the ids it holds leases for from
the primary in one call, then fills them with ``cache_fill``, which stores each entry only
while the reader's lease is still in the slot. A write replaces the slot before its
commit (``cache_begin``) and after it (``cache_finish``), so a lease that survived means no
write began or finished after the lease was taken: the row the reader loaded after taking
it is not older than any completed write. Otherwise the fill is refused (counted in
``refused_fills``).

Ids whose lease another reader holds are read again after a short, growing pause, until
that reader's fill lands (a hit) or its lease expires (this reader may take one): many
concurrent misses on one id cause one load from the primary. After ``lease_ms`` the
remaining ids are loaded from the primary without filling. Ids a write is in progress on
are loaded from the primary and not filled; so are ids whose entry does not read (its
version or JSON damaged), whose slots this process then tombstones before it reads the
cache again (the invalidations it owes, :mod:`.state`), so the next read refills them: each
only while it still holds the damaged bytes the read saw (a write's mark, or a fill, that
came since is kept: see the slot rules in :mod:`.entries`).
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from .. import logs
from ..engine.contract import Row
from ..engine.drive import Op
from ..errors import CorruptDocumentError
from ..options import ModelOptions
from .dispatch import FAILED, Pause
from .entries import NEGATIVE, decode_entry, entry_value, new_token, row_bytes
from .stats import counters

if TYPE_CHECKING:
    from .backend import CachedBackend


def backoff(attempt: int) -> float:
    """Seconds a reader waits before reading a leased slot again (attempt 0, 1, ...):
    from 2 ms doubling to 50 ms, jittered so that waiters do not come back together."""
    step = min(0.05, 0.002 * (1 << min(attempt, 10)))
    return step / 2 + random.random() * step / 2


def _primary(cached: CachedBackend, options: ModelOptions, ids: list[str],
             found: dict[str, Row | None]) -> Op[list[Row | None]]:
    rows = yield from cached.primary.get_many(options, ids)
    found.update(zip(ids, rows, strict=True))
    return rows


def get_many(cached: CachedBackend, options: ModelOptions,
             ids: list[str]) -> Op[list[Row | None]]:
    settings = options.cache
    assert settings is not None
    stats = counters(options)
    if not ids:
        return []
    todo = list(dict.fromkeys(ids))
    if not cached.reading or not (yield from cached.settled(options)):
        stats.add(bypassed=len(todo))
        return (yield from cached.primary.get_many(options, ids))
    keys = cached.keys(options)
    found: dict[str, Row | None] = {}
    token = new_token()
    deadline = 0.0
    attempt = 0
    while todo:
        groups = keys.by_partition(todo)
        replies = yield from cached.guarded(options, cached.store.read(
            [[keys.entry(id) for id in group] for group in groups], token, settings.lease_ms))
        if replies is FAILED:
            stats.add(bypassed=len(todo))
            yield from _primary(cached, options, todo, found)
            break
        granted, pending, waiting, damaged = _sort(options, [i for g in groups for i in g],
                                                   replies, found, stats)
        if damaged:
            # an entry that does not read is never served: read from the primary like an id
            # a write is in progress on (nothing filled), and its slot owed a tombstone,
            # paid before this process reads the cache again: the next read misses and
            # fills it afresh
            logs.cache.warning("damaged cache entries read from the primary and invalidated "
                               "model=%s ids=%s", options.model_name, list(damaged)[:10])
            cached.state.owe_damaged(keys.generation, damaged,
                                     can_drop=cached.store.can_drop)
            pending += list(damaged)
        if granted or pending:
            yield from _load(cached, options, granted, pending, token, found)
        if not waiting:
            break
        now = time.monotonic()
        if not deadline:
            deadline = now + settings.lease_ms / 1000
        elif now >= deadline:  # the holder is slow or gone: load, and fill nothing
            stats.add(misses=len(waiting))
            yield from _primary(cached, options, waiting, found)
            break
        stats.add(waits=1)
        yield Pause(backoff(attempt))
        attempt += 1
        todo = waiting
    return [found[id] for id in ids]


def _sort(options: ModelOptions, order: list[str], replies: list[Any],
          found: dict[str, Row | None], stats: Any
          ) -> tuple[list[str], list[str], list[str], dict[str, bytes]]:
    """Serve the hits; return the ids granted a lease, pending a write, waiting, and those
    whose entry does not read (:func:`decode_entry`: never served), with the bytes read."""
    granted: list[str] = []
    pending: list[str] = []
    waiting: list[str] = []
    damaged: dict[str, bytes] = {}
    hits = 0
    for id, reply in zip(order, replies, strict=True):
        if reply == b"G":
            granted.append(id)
        elif reply == b"W":
            waiting.append(id)
        elif reply == b"P":
            pending.append(id)
        elif reply == NEGATIVE:
            found[id] = None
            hits += 1
        else:
            try:
                found[id] = decode_entry(options, id, reply)
            except CorruptDocumentError:
                damaged[id] = bytes(reply)
                continue
            hits += 1
    if hits:
        stats.add(hits=hits)
    return granted, pending, waiting, damaged


def _load(cached: CachedBackend, options: ModelOptions, granted: list[str],
          pending: list[str], token: str, found: dict[str, Row | None]) -> Op[None]:
    """Load the granted and pending ids from the primary in one call; fill the granted."""
    settings = options.cache
    assert settings is not None
    stats = counters(options)
    rows = yield from _primary(cached, options, granted + pending, found)
    stats.add(misses=len(granted), bypassed=len(pending))
    if not granted:
        return
    keys = cached.keys(options)
    negative = settings.negative_ttl_ms
    items: dict[str, tuple[str, int, bytes]] = {}
    for id, row in zip(granted, rows, strict=False):
        if row is not None:
            items[id] = (keys.entry(id), row.version, entry_value(row.version, row_bytes(row)))
        else:  # cached as absent, or the lease released for the next reader
            items[id] = (keys.entry(id), 0, NEGATIVE if negative else b"")
    groups = keys.by_partition(granted)
    filled = yield from cached.guarded(options, cached.store.fill(
        [[items[id] for id in group] for group in groups], token, settings.ttl_ms,
        negative or 1))
    if filled is FAILED:
        return
    wanted = [items[id][2] != b"" for group in groups for id in group]
    done = sum(filled)
    refused = sum(1 for want, ok in zip(wanted, filled, strict=True) if want and not ok)
    stats.add(fills=done, refused_fills=refused)
    if refused:
        logs.cache.warning("cache fill refused: a write began or finished meanwhile "
                           "model=%s refused=%d filled=%d", options.model_name, refused, done)
