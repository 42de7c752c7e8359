"""What a collection costs the server, read on demand: its change streams (length and each
consumer group's lag) and its memory (``MEMORY USAGE`` of sampled documents, scaled by the
document count, plus each shared key of each partition).

Read-only operations over a model's keys (``keys.py``), each a few round trips of plain
commands sent through the exchange like any plan. They are never part of an operation's
hot path: :mod:`quantumorm.metrics` calls them when asked (``stream_stats``,
``memory_usage``). Replies come back raw (the metrics package types them).
"""

from __future__ import annotations

from typing import Any

from ...engine.drive import Op
from .commands import Command, RedisPlan
from .keys import KeySpace


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _group(entry: Any) -> dict[str, Any]:
    """One XINFO GROUPS entry (a dict from redis-py, or a flat list) with text keys."""
    if not isinstance(entry, dict):
        entry = dict(zip(entry[::2], entry[1::2], strict=False))
    return {_text(key): value for key, value in entry.items()}


def escaped_id(idkey: bytes) -> bytes:
    """The escaped id (what key names hold) of an id set's member: the member is the id's
    order-preserving encoding, one type byte (and a second for numbers) before the escaped
    id (``escaped_id`` in ``lua/_prelude.lua``)."""
    return idkey[2:] if idkey[:1] == b"\x01" else idkey[1:]


def stream_stats(keys: KeySpace) -> Op[list[tuple[str, int, list[dict[str, Any]]]]]:
    """Per partition: the change stream's key, its length (XLEN) and its consumer groups
    (XINFO GROUPS: ``name``, ``consumers``, ``pending``, ``lag``: None when the server
    cannot tell, see the Redis documentation of XINFO GROUPS). Two round trips."""
    streams = [keys.changes(p) for p in range(keys.partitions)]
    replies = yield RedisPlan(tuple(
        Command((name, key)) for key in streams for name in ("EXISTS", "XLEN")),
        read_only=True)
    present = [key for i, key in enumerate(streams) if replies[2 * i]]
    groups = (yield RedisPlan(tuple(Command(("XINFO GROUPS", key)) for key in present),
                              read_only=True)) if present else []
    found = dict(zip(present, groups, strict=True))
    out = []
    for i, key in enumerate(streams):
        rows = [_group(entry) for entry in found.get(key) or ()]
        out.append((key, int(replies[2 * i + 1]), [
            {"name": _text(row.get("name", "")), "consumers": int(row.get("consumers", 0)),
             "pending": int(row.get("pending", 0)),
             "lag": None if row.get("lag") is None else int(row["lag"])}
            for row in rows]))
    return out


def _shares(samples: int, counts: list[int]) -> list[int]:
    """``samples`` spread over partitions in proportion to their ``counts`` (largest
    remainders; never more than a partition holds), so that no partition is left out by
    rounding."""
    total = sum(counts)
    if not total:
        return [0] * len(counts)
    wanted = min(samples, total)
    share = [wanted * n // total for n in counts]
    order = sorted(range(len(counts)), key=lambda p: (wanted * counts[p]) % total, reverse=True)
    for p in order[:wanted - sum(share)]:
        share[p] += 1
    return share


def memory_usage(keys: KeySpace, samples: int) -> Op[dict[str, Any]]:
    """The collection's memory: ``documents`` (ZCARD of every partition's id set),
    ``sampled`` (documents measured: up to ``samples``, spread over the partitions by
    ZRANDMEMBER), ``document_bytes`` (MEMORY USAGE of their document and meta keys, summed)
    and ``structure_bytes`` (MEMORY USAGE of each partition's id set, indexes, expiry
    schedule, state and change stream, each sampled by the server's default of 5 nested
    values). Three round trips."""
    partitions = range(keys.partitions)
    counts = yield RedisPlan(tuple(Command(("ZCARD", keys.ids(p))) for p in partitions),
                             read_only=True)
    total = sum(int(n) for n in counts)
    share = _shares(samples, [int(n) for n in counts])
    picks = [(p, n) for p, n in zip(partitions, share, strict=True) if n > 0]
    chosen = (yield RedisPlan(tuple(Command(("ZRANDMEMBER", keys.ids(p), n)) for p, n in picks),
                              read_only=True)) if picks else []
    measured = [(p, escaped_id(idkey)) for (p, _), ids in zip(picks, chosen, strict=True)
                for idkey in ids or ()]
    structures = [key for p in partitions for key in (
        keys.ids(p), keys.ttl(p), keys.state(p), keys.changes(p), *keys.indexes(p))]
    commands = [Command(("MEMORY USAGE", keys.doc_prefix(p).encode() + escaped))
                for p, escaped in measured]
    commands += [Command(("MEMORY USAGE", keys.meta_prefix(p).encode() + escaped))
                 for p, escaped in measured]
    commands += [Command(("MEMORY USAGE", key)) for key in structures]
    sizes = yield RedisPlan(tuple(commands), read_only=True)
    n = len(measured)
    return {"documents": total, "sampled": n,
            "document_bytes": sum(int(size or 0) for size in sizes[:2 * n]),
            "structure_bytes": sum(int(size or 0) for size in sizes[2 * n:])}


__all__ = ["memory_usage", "stream_stats"]
