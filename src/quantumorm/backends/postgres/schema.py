"""The SQL layout of one model on PostgreSQL: names, DDL, and the column values of a write.

One table per collection, named ``<namespace>:<collection>`` (quoted; ``:`` occurs in
neither name, so no two collections share a table)::

    id_key  bytea PRIMARY KEY  -- sortable.id_key(id): unique, and natural id order
    id      text               -- the id as given, for ad-hoc SQL (NULL for an id holding
                               -- NUL, which text cannot; rows are read by id_key)
    version bigint NOT NULL    -- from the collection's version sequence: never repeats
    doc     text NOT NULL      -- the document JSON, the exact bytes the Redis backend stores
    body    jsonb              -- the same document as jsonb, for ad-hoc SQL (NULL when the
                               -- document holds a NUL character, which jsonb cannot)
    "k_<db_name>" bytea NOT NULL       -- per field: field.sort_key(value), or sortable.NULL
    "e_<db_name>" bytea[] NOT NULL     -- per array field: its distinct element keys

Why ``bytea`` sort keys rather than typed columns: PostgreSQL compares ``bytea`` byte by
byte (memcmp, then length), and the sort-key bytes of :mod:`quantumorm.sortable` are built
so that this order IS the project's value order. So equality and order in SQL agree with
:mod:`quantumorm.query.evaluate` exactly, with nothing left to a collation or a numeric
type: strings by code point (no locale), Decimals and ints of any size exactly, datetimes
by UTC instant, nulls as the documented NULL encoding (never SQL NULL, so three-valued
logic never comes in). The ``doc`` text is what reads return; ``body`` loses key order and
is never read back.

Array membership (``tags__contains``): a GIN index over the ``e_`` array column, chosen
over a side table because a write then touches one row (no delete-and-insert of side rows)
and ``@>`` / ``&&`` are served by the index (the benchmark measures it).

Unique indexes are partial (``WHERE k <> NULL encoding``): a null never conflicts, as in
Redis. Conflicts are detected by guard statements before writing, which name the index and
the other document; the UNIQUE index is the safety net (and SERIALIZABLE turns a race
between two guards into a retried serialization failure).

Versions come from a sequence per collection that starts at the time of its creation in
microseconds: no id is ever given a version it had before, even after its document was
deleted and created again (or the table emptied), so a stale compare-and-set fails.

Schema evolution: tables, columns and indexes are created with ``IF NOT EXISTS`` under an
advisory lock (two processes starting at once do not race on the catalog); a column missing
from an existing table (a field added to the model since) is added with the sort key of the
field's constant default. Rewriting rows when the declaration changes is ``lifecycle.py``.

PostgreSQL truncates identifiers to 63 bytes; :func:`ident` shortens longer names with a
digest instead, so two long names never fold into one.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from ... import sortable
from ...errors import ConfigurationError
from ...fields.base import MISSING
from ...fields.structured import ArrayField
from ...options import IndexSpec, ModelOptions
from .plans import Statement

#: sortable.NULL as an SQL literal (a constant, not a value)
NULL_SQL = "'\\x0100'::bytea"
assert NULL_SQL == "'\\x" + sortable.NULL.hex() + "'::bytea"
#: the stored schemas, one row per collection table (see quantumorm.schema). Collection
#: tables are named ``<namespace>:<collection>``, so a name with "#" never collides.
SCHEMAS = "qorm#schemas"
#: the advisory lock key under which DDL runs (any constant; "qorm" in ASCII)
DDL_LOCK = 0x71_6F_72_6D
#: the longest identifier PostgreSQL keeps whole (NAMEDATALEN - 1)
MAX_IDENTIFIER = 63


def ident(name: str) -> str:
    """``name``, or if longer than PostgreSQL keeps, a prefix of it and a digest of all."""
    if "\x00" in name:
        raise ConfigurationError(f"SQL identifiers cannot contain NUL (got {name!r})")
    raw = name.encode()
    if len(raw) <= MAX_IDENTIFIER:
        return name
    digest = hashlib.sha1(raw).hexdigest()[:12]
    return raw[:MAX_IDENTIFIER - 13].decode(errors="ignore") + "~" + digest


def index_name(table: str, index: str) -> str:
    """The name of a model's index ``index`` on ``table``."""
    return f"{table}!i!{index}"


def quote(name: str) -> str:
    """A quoted SQL identifier (shortened by :func:`ident`, embedded quotes doubled)."""
    return '"' + ident(name).replace('"', '""') + '"'


def regclass(quoted: str) -> str:
    """A quoted relation name as the string literal ``nextval()``/``setval()`` take."""
    return "'" + quoted.replace("'", "''") + "'"


def bytea_literal(value: bytes) -> str:
    """A constant ``bytea`` in SQL text (DDL defaults only: hex digits, nothing to escape)."""
    return f"'\\x{value.hex()}'::bytea"


def id_text(id: str) -> str | None:
    """The ``id`` column's value: the id, or None when it holds NUL (text cannot)."""
    return None if "\x00" in id else id


def jsonb_text(raw: bytes) -> str | None:
    """The text to cast to ``jsonb`` for the ``body`` column, or None when the document
    holds a ``\\u0000`` escape (which jsonb refuses; the exact text in ``doc`` keeps it)."""
    return None if b"\\u0000" in raw else raw.decode()


class Layout:
    """Names and DDL of one model, worked out once."""

    def __init__(self, options: ModelOptions) -> None:
        self.options = options
        self.ready = False  # set by the backend once the tables exist
        # ":" cannot occur in a namespace or a collection name: no two collections share a
        # table ("a_b" + "c" and "a" + "b_c" would, joined by "_")
        self.table_name = ident(f"{options.namespace}:{options.collection}")
        self.table = quote(self.table_name)
        self.columns = {name: quote("k_" + field.db_name)
                        for name, field in options.fields.items()}
        self.arrays = {name: quote("e_" + field.db_name)
                       for name, field in options.fields.items()
                       if isinstance(field, ArrayField)}
        # "<table>!i!<index>", "<table>!versions", "<table>!ids", "<table>!pkey": "!" cannot
        # occur in a table name, so no collection's table or index can take these names,
        # and an index (named after its field: "versions", "ids"...) has a namespace of its
        # own, apart from the sequences and the key
        self.index_names = {index.name: quote(index_name(self.table_name, index.name))
                            for index in options.indexes}
        self.versions = quote(f"{self.table_name}!versions")
        self.ids = quote(f"{self.table_name}!ids")

    def column(self, name: str) -> str:
        """The qualified sort-key column of an attribute (``id`` -> the id key)."""
        return "t.id_key" if name == "id" else "t." + self.columns[name]

    def next_version(self) -> str:
        """The SQL expression of a write's new version."""
        return f"nextval({regclass(self.versions)})"

    # -- DDL ---------------------------------------------------------------------------

    def create(self) -> list[Statement]:
        columns = [f"{c} bytea NOT NULL" for c in self.columns.values()]
        columns += [f"{c} bytea[] NOT NULL DEFAULT '{{}}'" for c in self.arrays.values()]
        start = time.time_ns() // 1000
        out = [
            # (the key's index named with "!", which no table name holds: PostgreSQL's own
            # "<table>_pkey" could be another collection's table)
            Statement(f"CREATE TABLE IF NOT EXISTS {self.table} (id_key bytea CONSTRAINT "
                      f"{quote(self.table_name + '!pkey')} PRIMARY KEY, "
                      "id text, version bigint NOT NULL, doc text NOT NULL, body jsonb"
                      + "".join(", " + c for c in columns) + ")"),
            Statement(f"CREATE SEQUENCE IF NOT EXISTS {self.versions} START WITH {start}"),
            Statement(f"CREATE SEQUENCE IF NOT EXISTS {self.ids}"),
        ]
        out += [Statement(self._index_ddl(index)) for index in self.options.indexes]
        return out

    def _index_ddl(self, index: IndexSpec) -> str:
        name = self.index_names[index.name]
        first = index.fields[0]
        if first in self.arrays:
            # membership: GIN over the element keys (uniqueness is the guards' job)
            return (f"CREATE INDEX IF NOT EXISTS {name} ON {self.table} "
                    f"USING gin ({self.arrays[first]})")
        unique = "UNIQUE " if index.unique else ""
        cols = [self.columns[f] for f in index.fields]
        where = ""
        if index.unique:
            where = " WHERE " + " AND ".join(f"{c} <> {NULL_SQL}" for c in cols)
        return (f"CREATE {unique}INDEX IF NOT EXISTS {name} ON {self.table} "
                f"({', '.join(cols)}){where}")

    def drop_index(self, name: str) -> Statement:
        """DROP INDEX of an index the model no longer declares (by its stored name)."""
        return Statement(f"DROP INDEX IF EXISTS {quote(index_name(self.table_name, name))}")

    def table_info(self) -> Statement:
        return Statement("SELECT column_name FROM information_schema.columns "
                         "WHERE table_schema = current_schema() AND table_name = %b",
                         (self.table_name,))

    def missing_columns(self, present: set[str]) -> list[Statement]:
        """ALTER TABLE for columns a table created by an older model lacks. Rows written
        before the field existed read as its default (``ModelOptions.read_value``), so their
        column holds the default's sort key: SQL filters match what reads show."""
        out = []
        for name, col in self.columns.items():
            if col[1:-1].replace('""', '"') in present:
                continue
            field = self.options.fields[name]
            default = NULL_SQL
            if field.default is not MISSING and field.default is not None \
                    and not callable(field.default) and name not in self.arrays:
                default = bytea_literal(field.sort_key(field.default))
            out.append(Statement(f"ALTER TABLE {self.table} ADD COLUMN IF NOT EXISTS {col} "
                                 f"bytea NOT NULL DEFAULT {default}"))
        for col in self.arrays.values():
            if col[1:-1].replace('""', '"') not in present:
                out.append(Statement(f"ALTER TABLE {self.table} ADD COLUMN IF NOT EXISTS "
                                     f"{col} bytea[] NOT NULL DEFAULT '{{}}'"))
        return out

    # -- values of a write -------------------------------------------------------------

    def keys(self, values: dict[str, Any]) -> list[bytes]:
        """The ``k_`` column values, in column order."""
        out = []
        for name, field in self.options.fields.items():
            value = values.get(name)
            out.append(sortable.NULL if value is None else field.sort_key(value))
        return out

    def element_keys(self, name: str, values: dict[str, Any]) -> list[bytes]:
        value = values.get(name)
        field = self.options.fields[name]
        return [] if value is None else field.index_keys(value)

    def elements(self, values: dict[str, Any]) -> list[list[bytes]]:
        """The ``e_`` column values, in column order."""
        return [self.element_keys(name, values) for name in self.arrays]

    def assignments(self) -> list[str]:
        """The column list of a write: every ``k_`` then every ``e_`` column."""
        return [*self.columns.values(), *self.arrays.values()]
