"""The SQL layout of one model: table and column names, DDL, and the column values of a write.

One table per collection, named ``<namespace>:<collection>`` (see :func:`fold` for names
with capitals, :func:`legacy_table_name` for files written before)::

    id_key BLOB PRIMARY KEY   -- sortable.id_key(id): unique, and natural id order
    id     TEXT NOT NULL      -- the id as given (informative; rows are read by id_key)
    version INTEGER NOT NULL -- from the collection's clock (CLOCKS): never repeats for an id
    doc    TEXT NOT NULL      -- the document JSON, encoded exactly as the Redis backend does
    "k_<db_name>" BLOB NOT NULL  -- per field: field.sort_key(value), or sortable.NULL

Comparing the ``k_`` BLOBs with SQLite's memcmp order IS the project's value order (see
:mod:`quantumorm.sortable`), so every comparison and ORDER BY in SQL agrees with
:mod:`quantumorm.query.evaluate` to the byte. Rows are keyed by ``id_key`` rather than the id
text because ids may contain NUL characters, which SQLite text functions do not handle well;
``id_key`` is an injective encoding without them.

An array field's ``k_`` column holds the whole-list sort key (``\\x40 ... \\x00``, non-null even
for ``[]``), which answers exact/ne/isnull; ``contains`` reads the side table
``<table>#<db_name>`` with one row per distinct element key (none for ``[]`` or null).

Unique indexes are partial (``WHERE k != x'0100'``): a null never conflicts, as in Redis.
Conflicts are detected by guard statements before writing, which name the index and the
other document; the UNIQUE index is the safety net.

Schema evolution: tables and indexes are created with CREATE ... IF NOT EXISTS, and a
sort-key column missing from an existing table (a field added to the model since) is added
with ALTER TABLE ... DEFAULT (the sort key of the field's constant default, or null). When
the model's declaration differs from the schema stored for the table, every row is then
rewritten from its document (see ``lifecycle.py``) and the SQL indexes of indexes the model
dropped are dropped. The columns of dropped fields stay (SQLite before 3.35 cannot drop a
column; they are no longer read or written).
"""

from __future__ import annotations

from typing import Any

from ... import sortable
from ...errors import ConfigurationError
from ...fields.base import MISSING
from ...fields.structured import ArrayField
from ...options import IndexSpec, ModelOptions
from ...query import paths
from .. import base
from . import paths as path_sql
from .plans import Statement

NULL_SQL = "x'0100'"  # sortable.NULL as an SQL literal (a constant, not a value)
assert bytes.fromhex(NULL_SQL[2:-1]) == sortable.NULL
#: the auto-id counters, one row per collection. Collection tables are named from
#: [A-Za-z0-9_.^:-] only, so a name with "#" or "!" never collides with one of them.
SEQUENCES = "qorm#sequences"
#: the version clocks, one row per collection: every write takes max(last + 1, the time in
#: microseconds), so no id is ever given a version it had before, even after its document
#: was deleted and created again (or the table emptied): a stale compare-and-set fails
CLOCKS = "qorm#clocks"


def fold(name: str) -> str:
    """``name`` made safe for SQLite's ASCII case-insensitive identifiers, injectively.

    Redis keys are case-sensitive, so collections ``Users`` and ``users`` (or fields ``Name``
    and ``name``) are distinct there; SQLite would take them for one table (column). An
    uppercase ASCII letter becomes ``^`` + its lowercase form and ``^`` becomes ``^^``, so
    lowercase names (the default collection is the lowercased model name) are unchanged.
    """
    return "".join("^" + c.lower() if "A" <= c <= "Z" else "^^" if c == "^" else c
                   for c in name)


def table_name(namespace: str, collection: str) -> str:
    """The table of a collection: ``<namespace>:<collection>``, each part folded. Neither
    part can hold ``:`` (names are ``[A-Za-z0-9_.-]``), so distinct pairs get distinct
    tables."""
    return f"{fold(namespace)}:{fold(collection)}"


def legacy_table_name(namespace: str, collection: str) -> str:
    """The table name of earlier versions: ``<namespace>_<collection>`` folded, which gave namespace
    ``a_b`` with collection ``c`` and namespace ``a`` with collection ``b_c`` one table. A
    table of that name is renamed at first use (:meth:`Layout.adopt_legacy`)."""
    return fold(f"{namespace}_{collection}")


def quote(name: str) -> str:
    """A quoted SQL identifier (embedded double quotes doubled)."""
    if "\x00" in name:
        raise ConfigurationError(f"SQL identifiers cannot contain NUL (got {name!r})")
    return '"' + name.replace('"', '""') + '"'


def encode_document(data: dict[str, Any]) -> str:
    """The stored text of a document (the ``doc`` column is TEXT, read by SQL's JSON
    functions): the common encoding of :func:`..base.encode_document`, decoded."""
    return base.encode_document(data).decode()


class Layout:
    """Names and DDL of one model, worked out once."""

    def __init__(self, options: ModelOptions) -> None:
        self.options = options
        self.ready = False  # set by the backend once the tables exist
        self.table_name = table_name(options.namespace, options.collection)
        self.table = quote(self.table_name)
        self.legacy_name = legacy_table_name(options.namespace, options.collection)
        self.columns = {name: quote("k_" + fold(field.db_name))
                        for name, field in options.fields.items()}
        # side tables "<table>#<field>" and indexes "<table>!<index>": the separators cannot
        # occur in a table name, so no collection's table or index can take these names
        self.arrays = {name: quote(f"{self.table_name}#{fold(field.db_name)}")
                       for name, field in options.fields.items()
                       if isinstance(field, ArrayField)}
        self.index_names = {index.name: quote(f"{self.table_name}!{fold(index.name)}")
                            for index in options.indexes}

    def column(self, name: str) -> str:
        """The qualified sort-key column of an attribute (``id`` -> the id key; a path into
        an embedded document -> its key computed from the document, see .paths)."""
        if name not in self.columns and paths.is_path(name):
            return f"{path_sql.KEY_FUNCTION}(t.doc, {path_sql.path_token(self.options, name)})"
        return "t.id_key" if name == "id" else "t." + self.columns[name]

    # -- DDL ---------------------------------------------------------------------------

    def create(self) -> list[Statement]:
        columns = ", ".join(f"{c} BLOB NOT NULL" for c in self.columns.values())
        out = [Statement(
            f"CREATE TABLE IF NOT EXISTS {self.table} (id_key BLOB PRIMARY KEY, "
            f"id TEXT NOT NULL, version INTEGER NOT NULL, doc TEXT NOT NULL"
            + (f", {columns}" if columns else "") + ")")]
        for side in self.arrays.values():
            out.append(Statement(f"CREATE TABLE IF NOT EXISTS {side} (id BLOB NOT NULL, "
                                 "k BLOB NOT NULL, PRIMARY KEY (id, k)) WITHOUT ROWID"))
        for index in self.options.indexes:
            out.append(Statement(self._index_ddl(index)))
        return out

    def _index_ddl(self, index: IndexSpec) -> str:
        name = self.index_names[index.name]
        unique = "UNIQUE " if index.unique else ""
        first = index.fields[0]
        if first in self.arrays:
            return f"CREATE {unique}INDEX IF NOT EXISTS {name} ON {self.arrays[first]} (k)"
        cols = [self.columns[f] for f in index.fields]
        where = ""
        if index.unique:
            where = " WHERE " + " AND ".join(f"{c} != {NULL_SQL}" for c in cols)
        return (f"CREATE {unique}INDEX IF NOT EXISTS {name} ON {self.table} "
                f"({', '.join(cols)}){where}")

    def drop_index(self, name: str) -> Statement:
        """DROP INDEX of an index the model no longer declares (by its stored name)."""
        return Statement(f"DROP INDEX IF EXISTS {quote(f'{self.table_name}!{fold(name)}')}")

    def table_info(self) -> Statement:
        return Statement("SELECT name FROM pragma_table_info(?)", (self.table_name,))

    def missing_columns(self, present: set[str]) -> list[Statement]:
        """ALTER TABLE for sort-key columns a table created by an older model lacks. Rows
        written before the field existed read as its default (``ModelOptions.read_value``),
        so their column holds the default's sort key: SQL filters match what reads show."""
        out = []
        for name, col in self.columns.items():
            if col[1:-1].replace('""', '"') in present:
                continue
            field = self.options.fields[name]
            default = NULL_SQL
            if field.default is not MISSING and field.default is not None \
                    and not callable(field.default) and name not in self.arrays:
                default = f"x'{field.sort_key(field.default).hex()}'"
            out.append(Statement(f"ALTER TABLE {self.table} ADD COLUMN {col} BLOB NOT NULL "
                                 f"DEFAULT {default}"))
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
