"""Transactions of the SQL backends (SQLite and PostgreSQL): version checks and writes of
documents of several models, run as one all-or-nothing plan of statement groups.

The two backends differ only in their statements, their plan type and how a group's reply
becomes a write result; the order of the groups (each model's checks, then its writes), the
ids allocated first, and the reading of a refusal (the last group's) are the same, and live
here once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..engine.contract import WriteRequest, WriteResult
from ..engine.drive import Op
from ..errors import VersionConflict
from ..options import ModelOptions

#: one model's part of a transaction: the (id, version read) checks and the writes
Part = tuple[ModelOptions, Sequence[tuple[str, int]], Sequence[WriteRequest]]


class SqlStore(Protocol):
    """What this module needs of a SQL backend."""

    max_document_bytes: int

    def _prepare(self, options: ModelOptions) -> Op[Any]: ...

    def allocate_ids(self, options: ModelOptions, count: int) -> Op[list[str]]: ...


def transact_many(store: SqlStore, parts: Sequence[Part],
                  plan: Callable[[tuple[Any, ...]], Any],
                  check: Callable[[Any, str, int], Any],
                  write: Callable[[Any, WriteRequest, int], Any],
                  result: Callable[[ModelOptions, WriteRequest, Any], WriteResult],
                  ) -> Op[list[list[WriteResult]]]:
    """Every part's checks and writes in one atomic plan (``plan(groups)``); the first
    refusal rolls everything back and is raised (a failed check as VersionConflict)."""
    groups: list[Any] = []
    # per group: the model, and (id, version read) for a check or the write request
    rows: list[tuple[ModelOptions, tuple[str, int] | WriteRequest]] = []
    prepared: list[list[WriteRequest]] = []
    for options, checks, requests in parts:
        layout = yield from store._prepare(options)
        requests = list(requests)
        missing = [i for i, r in enumerate(requests) if r.id is None]
        if missing:
            ids = yield from store.allocate_ids(options, len(missing))
            for i, new_id in zip(missing, ids, strict=True):
                requests[i] = requests[i].with_id(new_id)
        for id, version in checks:
            groups.append(check(layout, id, version))
            rows.append((options, (id, version)))
        for request in requests:
            groups.append(write(layout, request, store.max_document_bytes))
            rows.append((options, request))
        prepared.append(requests)
    if not groups:
        return [[] for _ in parts]
    replies = yield plan(tuple(groups))
    refused = replies[-1] if replies[-1].refused is not None else None
    if refused is not None:
        options, row = rows[len(replies) - 1]
        if not isinstance(row, WriteRequest):
            id, expected = row
            actual = int(refused.rows[-1][0][0]) if refused.rows[-1] else None
            raise VersionConflict(options.model_name, id, expected, actual)
        error = result(options, row, refused).error
        raise error or VersionConflict(options.model_name, row.id or "<new>",
                                       row.expected_version, None)
    results: list[list[WriteResult]] = []
    at = 0
    for (options, checks, _), requests in zip(parts, prepared, strict=True):
        at += len(checks)
        results.append([result(options, r, reply) for r, reply in
                        zip(requests, replies[at:at + len(requests)], strict=True)])
        at += len(requests)
    return results
