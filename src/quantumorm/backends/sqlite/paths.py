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
(``unknown path token``), it never answers for another condition.
"""

from __future__ import annotations

import itertools
import json
import threading
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
_condition_tokens: dict[tuple[int, Condition], int] = {}
_paths: dict[int, tuple[ModelOptions, paths.Path]] = {}
_path_tokens: dict[tuple[int, str], int] = {}


def condition_token(options: ModelOptions, cond: Condition) -> int:
    """The token of a path condition (the same token for an equal condition)."""
    with _lock:
        try:
            key = (id(options), cond)
            token = _condition_tokens.get(key)
        except TypeError:  # an unhashable value: a token of its own
            key, token = None, None
        if token is not None and token in _conditions:
            _conditions.move_to_end(token)
            return token
        token = next(_tokens)
        _conditions[token] = (options, cond)
        if key is not None:
            _condition_tokens[key] = token
        while len(_conditions) > CONDITIONS:
            old, (old_options, old_cond) = _conditions.popitem(last=False)
            try:
                _condition_tokens.pop((id(old_options), old_cond), None)
            except TypeError:
                pass
        return token


def path_token(options: ModelOptions, name: str) -> int:
    """The token of a path (one per model and path, kept for the model's lifetime)."""
    with _lock:
        token = _path_tokens.get((id(options), name))
        if token is None or _paths[token][0] is not options:
            token = next(_tokens)
            _paths[token] = (options, paths.resolve(options, name))
            _path_tokens[(id(options), name)] = token
        return token


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
    if found is None:
        raise ValueError(f"unknown path token {token}")
    options, path = found
    value = None if doc is None else path.read(_values(options, path.steps[0], doc))
    return sortable.NULL if value is None else path.field.sort_key(value)
