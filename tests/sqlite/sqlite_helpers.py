"""Helpers of the SQLite tests: run an operation sync or async, read the raw tables."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from modes import MODES, call, ids_of  # noqa: F401  (re-exported)
from quantumorm import sortable


def raw_rows(path: str, table: str) -> dict[str, tuple[int, dict[str, Any]]]:
    """``{id: (version, document)}`` read straight from a database file."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute(f'SELECT id_key, version, doc FROM "{table}"').fetchall()
    finally:
        db.close()
    return {sortable.id_from_key(key): (version, json.loads(doc)) for key, version, doc in rows}
