"""Paths into embedded documents in SQLite's SQL: two functions registered on the connection.

``qorm_path_match(doc, token)`` is 1 when the stored document ``doc`` (JSON text) matches
the path condition registered under ``token`` (the reference evaluator decides, so SQLite
and :mod:`quantumorm.query.evaluate` cannot disagree, also through lists of embedded
documents); ``qorm_path_key(doc, token)`` is the sort key of the path registered under
``token`` (the NULL encoding for a null or absent value), which ``ORDER BY`` and a keyset
position compare as they compare the ``k_`` columns.

Tokens are small ints handed out here and passed as parameters (conditions) or written into
the SQL (paths: digits only). The registry of conditions is bounded: a statement uses its
tokens right after it is compiled; a token evicted meanwhile fails the statement loudly
(``unknown path token``), it never answers for another condition. The paths are kept while
their model's options live.
"""

from __future__ import annotations

import itertools
import json
import threading
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from ... import sortable
from ...query import evaluate, paths
from ...query.nodes import Condition

if TYPE_CHECKING:
    from ...options import ModelOptions

MATCH_FUNCTION = "qorm_path_match"
KEY_FUNCTION = "qorm_path_key"
#: how many conditions the registry keeps (the oldest go first)
CONDITIONS = 4096

_lock = threading.Lock()
_tokens = itertools.count(1)
_conditions: OrderedDict[int, tuple[ModelOptions, Condition]] = OrderedDict()
#: the registered paths by token, and each live model's tokens by path (by ``id`` of its
#: options: dropped with the options, see :func:`_forget`)
_paths: dict[int, tuple[weakref.ref[ModelOptions], paths.Path]] = {}
_path_tokens: dict[int, dict[str, int]] = {}


def condition_token(options: ModelOptions, cond: Condition) -> int:
    """A fresh token for a path condition, each time one is compiled: tokens are not shared
    between equal conditions, since Python's equality is not the condition's meaning
    (``1 == True == 1.0``: ``address__extra=True`` would answer with the token of
    ``address__extra=1``). The registry keeps the last :data:`CONDITIONS`."""
    with _lock:
        token = next(_tokens)
        _conditions[token] = (options, cond)
        while len(_conditions) > CONDITIONS:
            _conditions.popitem(last=False)
        return token


def path_token(options: ModelOptions, name: str) -> int:
    """The token of a path (one per model and path, kept while the model's options live)."""
    with _lock:
        tokens = _path_tokens.get(id(options))
        if tokens is None:
            tokens = _path_tokens[id(options)] = {}
            weakref.finalize(options, _forget, id(options), tokens)
        token = tokens.get(name)
        if token is None or _paths[token][0]() is not options:
            token = tokens[name] = next(_tokens)
            _paths[token] = (weakref.ref(options), paths.resolve(options, name))
        return token


def _forget(key: int, tokens: dict[str, int]) -> None:
    with _lock:
        if _path_tokens.get(key) is tokens:
            del _path_tokens[key]
        for token in tokens.values():
            _paths.pop(token, None)


def _values(options: ModelOptions, top: str, doc: str) -> dict[str, Any]:
    data = json.loads(doc)
    return {top: options.read_value(top, data) if isinstance(data, dict) else None}


def match(doc: str | None, token: int) -> int:
    found = _conditions.get(token)
    if found is None:
        raise ValueError(f"unknown path token {token}")
    options, cond = found
    if doc is None:
        return 0
    values = _values(options, cond.field.partition(paths.SEP)[0], doc)
    return int(evaluate.matches(options, cond, values))


def key(doc: str | None, token: int) -> bytes:
    found = _paths.get(token)
    options = None if found is None else found[0]()
    if found is None or options is None:
        raise ValueError(f"unknown path token {token}")
    path = found[1]
    value = None if doc is None else path.read(_values(options, path.steps[0], doc))
    return sortable.NULL if value is None else path.field.sort_key(value)
