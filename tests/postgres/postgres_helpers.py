"""Helpers of the PostgreSQL tests: run an operation sync or async, read the raw tables."""

from __future__ import annotations

from typing import Any

import psycopg

from modes import MODES, call, ids_of  # noqa: F401  (re-exported)


def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of one statement run on a connection of its own (autocommit)."""
    with psycopg.connect(url, autocommit=True) as db:
        cur = db.execute(query, params or None)
        return cur.fetchall() if cur.description is not None else []
