"""Writes of a cached model: begin on the cache, commit on the primary, finish on the cache.

1. ``cache_begin``: each written document's slot becomes ``P:<token>`` (this write's mark;
   added to the list if other writes' marks are there, each with its deadline): the entry, a
   cached absence or a reader's lease is gone before the primary commits, so no reader can
   fill what it loaded before the commit, and readers go to the primary until the write
   finishes. The collection's query generation is marked alike, in the same round trip.
2. The primary's own write (or transaction), unchanged.
3. ``cache_finish``, with the collection's query generation settled in the same round
   trip (renewed unless other writes are still in progress there): where the slot still
   holds this write's mark, write-through stores the written document (the JSON the primary stored, at the version it gave); anywhere else, and in
   cache-aside mode, the slot becomes a tombstone ``T<version>`` (``T0`` for deletes and
   refused writes), unless other writers' marks are still there: then the mark stays
   (without this write's token) until the last of them finishes. A tombstone refuses every
   lease and fill that began before it. (The slot rules: :mod:`.entries`.)

New documents get their ids from the primary first (``allocate_ids``), so that their slots
(which may hold a cached absence) are named in step 1. If step 1 or 3 cannot reach the
cache, the write still succeeds; its ids (and the generation) are owed to the cache
(:mod:`.state`), paid before this process's next read or write of the model's cache. If
the process dies between 1 and 3, its token stops counting ``write_guard_ms`` after step 1
(server time; whatever other writers do meanwhile), and readers fill from the primary,
which holds the committed write: nothing stale is left either way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..engine.contract import WriteRequest, WriteResult
from ..engine.drive import Op
from ..options import ModelOptions
from .dispatch import FAILED
from .entries import entry_value, new_token
from .settings import CacheMode
from .stats import counters

if TYPE_CHECKING:
    from .backend import CachedBackend

Commit = Callable[[list[WriteRequest]], Op[list[WriteResult]]]


def written(cached: CachedBackend, options: ModelOptions, requests: Sequence[WriteRequest],
            commit: Commit) -> Op[list[WriteResult]]:
    settings = options.cache
    assert settings is not None
    requests = list(requests)
    auto = [i for i, r in enumerate(requests) if r.kind == "insert" and r.id is None]
    if auto:
        new_ids = yield from cached.primary.allocate_ids(options, len(auto))
        for i, new_id in zip(auto, new_ids, strict=True):
            requests[i] = requests[i].with_id(new_id)
    ids = list(dict.fromkeys(r.id for r in requests if r.id is not None))
    if not ids:
        return (yield from commit(requests))
    # what this process owes the cache from earlier writes is paid first: a process that
    # only writes would otherwise never pay it (reads pay it too), and other processes would
    # read those entries until their ttl
    yield from cached.settled(options)
    keys = cached.keys(options)
    token = new_token()
    begun = yield from cached.guarded(options, cached.store.begin(
        [[keys.entry(id) for id in group] for group in keys.by_partition(ids)], token,
        settings.write_guard_ms, keys.generation))
    mark = "" if begun is FAILED else token
    try:
        results = yield from commit(requests)
    except Exception:
        # refused or unknown: whatever the primary now holds, the slots become tombstones
        yield from _finish(cached, options, {id: (0, b"") for id in ids}, mark)
        raise
    except BaseException:  # cancelled, interrupted: no more I/O; owe it
        cached.owe(options, ids)
        raise
    outcomes: dict[str, tuple[int, bytes]] = {id: (0, b"") for id in ids}
    through = settings.mode is CacheMode.WRITE_THROUGH
    for request, result in zip(requests, results, strict=True):
        if result.id is None:
            continue
        version = result.version or 0
        if through and result.error is None and request.kind != "delete" and version:
            outcomes[result.id] = (version, entry_value(version, request.encoded()))
        else:
            outcomes[result.id] = (version if result.error is None else 0, b"")
    yield from _finish(cached, options, outcomes, mark)
    return results


def _finish(cached: CachedBackend, options: ModelOptions,
            outcomes: dict[str, tuple[int, bytes]], mark: str) -> Op[None]:
    settings = options.cache
    assert settings is not None
    keys = cached.keys(options)
    groups = keys.by_partition(list(outcomes))
    try:
        stored = yield from cached.guarded(options, cached.store.finish(
            [[(keys.entry(id), *outcomes[id]) for id in group] for group in groups], mark,
            settings.ttl_ms, settings.ttl_ms, keys.generation, new_token()))
    except BaseException:  # cancelled while finishing: the generation may be the old one
        _owe(cached, options, outcomes, mark)
        raise
    if stored is FAILED:
        _owe(cached, options, outcomes, mark)
        return
    through = sum(stored)
    counters(options).add(write_through=through, invalidations=len(stored) - through)


def _owe(cached: CachedBackend, options: ModelOptions,
         outcomes: dict[str, tuple[int, bytes]], mark: str) -> None:
    """The write completed but its finish did not: owed with its token, so paying takes
    its mark out of the slots and the generation at once (not at the mark's deadline)."""
    cached.owe(options, list(outcomes), token=mark,
               versions={id: version for id, (version, _) in outcomes.items()})
