"""Query-result caching: ``Model.objects.filter(...).cache(ttl=60)``.

A result is kept under a key derived from the query (its where, ordering, offset, limit and
keyset position, and what is asked: rows, count or existence) together with the
collection's *generation*: a random token that every write through the ORM marks as its
documents' slots in ``cache_begin`` ("P:<tokens>": while a write is in progress no result
is served nor stored) and renews in ``cache_finish`` ("T<fresh token>", once the last
write in progress finishes; the slot rules of :mod:`.entries`), so a result computed before
a write's commit is never current after it, even when that write's last step fails.
A reader reads the generation and
the result in one script (``cache_query_get``); the result is used only if it was computed
at the current generation. On a miss the query runs on the primary and the result is stored
only if the generation read *before* it ran is still current (``cache_query_put``): a
result that may predate a finished write is never stored, and one stored before a write
finished is never used after it. The generation is a random token rather than a counter,
so a generation key lost to eviction or a restart can never make an old result current.

Writers outside the ORM do not renew the generation: results are then stale up to their
``ttl``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from .. import jsoncodec, logs
from ..engine.contract import Backend, Row
from ..engine.drive import Op
from ..options import ModelOptions
from ..query.nodes import Condition, Node, Not, QuerySpec
from .backend import CachedBackend
from .dispatch import FAILED
from .entries import new_token
from .stats import counters

T = TypeVar("T")

#: the kinds of value a query's condition may hold whose ``repr`` names the value itself
#: (anything else, e.g. an object with an address in its repr, is not cached)
_PLAIN = (str, int, float, bool, type(None), Decimal, datetime, date, time, UUID, bytes)


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_text(v) for v in value) + "]"
    if isinstance(value, (set, frozenset)):
        return "{" + ",".join(sorted(_text(v) for v in value)) + "}"
    if not isinstance(value, _PLAIN):
        raise TypeError(type(value).__name__)
    return f"{type(value).__name__}:{value!r}"


def _node(node: Node) -> str:
    if isinstance(node, Condition):
        return f"({node.field} {node.lookup.value} {_text(node.value)})"
    if isinstance(node, Not):
        return f"(not {_node(node.child)})"
    return f"({node.op.value} {' '.join(_node(child) for child in node.children)})"


def digest(kind: str, spec: QuerySpec) -> str | None:
    """The key of a query's result: a hash of its canonical text (None: not cacheable)."""
    try:
        text = (f"{kind}|{_node(spec.where)}|{spec.order!r}|{spec.offset}|{spec.limit}|"
                f"{_text(spec.after)}")
    except TypeError:
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _rows_out(rows: list[Row]) -> bytes:
    return jsoncodec.encode([[row.id, row.version, row.data] for row in rows])


def _rows_in(payload: bytes) -> list[Row]:
    return [Row(id, version, data) for id, version, data in jsoncodec.decode(payload)]


def _value_out(value: Any) -> bytes:
    return jsoncodec.encode(value)


def cached_result(backend: Backend, options: ModelOptions, spec: QuerySpec, ttl: float,
                  kind: str, run: Callable[[Backend], Op[T]]) -> Op[T]:
    """``run(backend)``'s result for this query, from the cache when it is current."""
    key = digest(kind, spec)
    if not isinstance(backend, CachedBackend) or not backend.reading or key is None:
        return (yield from run(backend))
    stats = counters(options)
    if not (yield from backend.settled(options)):
        stats.add(bypassed=1)
        return (yield from run(backend))
    keys = backend.keys(options)
    result_key = keys.result(key)
    got = yield from backend.guarded(options, backend.store.query_get(
        keys.generation, result_key, new_token()))
    if got is FAILED:
        stats.add(bypassed=1)
        return (yield from run(backend))
    generation, payload = got
    if generation.startswith("P:"):  # a write is in progress: the primary's, not stored
        stats.add(bypassed=1)
        return (yield from run(backend))
    rows = kind == "rows"
    if payload is not None:
        stats.add(query_hits=1)
        value: Any = _rows_in(payload) if rows else jsoncodec.decode(payload)
        return value  # type: ignore[no-any-return]
    stats.add(query_misses=1)
    value = yield from run(backend)
    out = _rows_out(value) if rows else _value_out(value)
    stored = yield from backend.guarded(options, backend.store.query_put(
        keys.generation, result_key, generation, max(1, round(ttl * 1000)), out))
    if stored is not FAILED:
        stats.add(query_fills=1) if stored else stats.add(query_refused=1)
        if not stored:
            logs.cache.warning("cache query fill refused: the collection changed meanwhile "
                               "model=%s", options.model_name)
    return value  # type: ignore[no-any-return]


def fetch(backend: Backend, options: ModelOptions, spec: QuerySpec,
          ttl: float) -> Op[list[Row]]:
    return (yield from cached_result(backend, options, spec, ttl, "rows",
                                     lambda b: b.query(options, spec)))


def count(backend: Backend, options: ModelOptions, spec: QuerySpec, ttl: float) -> Op[int]:
    return (yield from cached_result(backend, options, spec, ttl, "count",
                                     lambda b: b.count(options, spec)))


def exists(backend: Backend, options: ModelOptions, spec: QuerySpec,
           ttl: float) -> Op[bool]:
    return (yield from cached_result(backend, options, spec, ttl, "exists",
                                     lambda b: b.exists(options, spec)))
