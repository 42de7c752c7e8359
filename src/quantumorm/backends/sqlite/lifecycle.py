"""A collection's life on SQLite: its stored schema, the rewrite of its rows when the model
changes, and ``reindex()`` / ``verify()`` / ``repair()`` (operations; see
:mod:`quantumorm.schema` for what a schema is).

SQLite's indexes are SQL indexes over the ``k_`` sort-key columns and the array side tables,
which every write fills; what can go wrong is that those columns no longer say what the
document says: a field added since a row was written (the row reads as the field's default),
a field whose type changed (its old sort keys compare wrongly), a database written by an
older QuantumORM. So at a model's first use on a connection the declaration is compared with
the schema stored in ``qorm#schemas``; when it differs, every row is rewritten from its
document before the model is used: sort keys and side rows computed again, and the default of
a field a document lacks stored into it. Rows are rewritten in batches, each a transaction
that writes a row only if it is still at the version read (another process may write the
file meanwhile), so the file stays usable throughout. ``reindex()`` does the same on demand.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from ... import logs, sortable
from ...engine.drive import Op
from ...errors import BackendError, SchemaMismatchError
from ...maintenance import Progress, ReindexReport, RepairReport, VerifyReport
from ...options import ModelOptions
from ...schema import FORMAT, HISTORY, Schema, declared, reconcile
from .plans import SqlPlan, Statement
from .schema import CLOCKS, SEQUENCES, Layout, encode_document, quote

#: the stored schemas, one row per collection table (see quantumorm.schema)
SCHEMAS = "qorm#schemas"
BATCH = 500
#: rounds of a batch's rows that other writers keep changing before giving up on them
RETRIES = 50


def create_statements() -> list[Statement]:
    return [Statement(f"CREATE TABLE IF NOT EXISTS {quote(SCHEMAS)} "
                      "(name TEXT PRIMARY KEY, body TEXT NOT NULL)")]


def adopt_legacy(options: ModelOptions, layout: Layout) -> Op[bool]:
    """Rename a collection's tables from their legacy name (see
    :func:`.schema.legacy_table_name`) when its table does not exist yet: the table, its
    array side tables and its rows in the sequence, clock and schema tables move in one
    transaction; the indexes are dropped, for :meth:`Layout.create` to build them again
    under their new names (SQLite cannot rename an index). True if the legacy tables
    existed (renamed now, or by another connection meanwhile): look at the table again.

    A legacy name can belong to more than one (namespace, collection) pair when either holds
    ``_`` (``a_b`` + ``c`` and ``a`` + ``b_c``). Such a table is taken only by a model whose
    declaration is the one stored with it; otherwise :class:`SchemaMismatchError`, so that
    a newcomer never takes (and rewrites) another collection's rows."""
    old, new = layout.legacy_name, layout.table_name
    (reply,) = yield SqlPlan.read(Statement(
        "SELECT type, name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
    found = reply.rows[0]
    objects = [(kind, name, table) for kind, name, table in found
               if table == old or table.startswith(old + "#")]
    if not any(kind == "table" and name == old for kind, name, _ in objects):
        return False
    if "_" in options.namespace or "_" in options.collection:
        stored = None
        if any(kind == "table" and name == SCHEMAS for kind, name, _ in found):
            stored = yield from read_schema(layout, old)
        if not _declares(options, stored):
            raise SchemaMismatchError(
                f"{options.model_name}: the SQLite table {old!r} was named by an earlier "
                f"version from namespace and collection joined by '_', so it may belong to "
                f"another pair than ({options.namespace!r}, {options.collection!r}), and its "
                f"stored schema is not this model's declaration. Use it first with the "
                f"declaration that wrote it (it is then renamed to {new!r}), or rename it by "
                f"hand (ALTER TABLE, and the name in {SEQUENCES!r}, {CLOCKS!r}, {SCHEMAS!r})")
    names = (SEQUENCES, CLOCKS)
    statements = [Statement(f"CREATE TABLE IF NOT EXISTS {quote(table)} "
                            "(name TEXT PRIMARY KEY, value INTEGER NOT NULL)") for table in names]
    statements += create_statements()
    dropped = [name for kind, name, _ in objects if kind == "index" and name.startswith(old + "!")]
    statements += [Statement(f"DROP INDEX {quote(name)}") for name in dropped]
    tables = [name for kind, name, _ in objects if kind == "table"]
    statements += [Statement(f"ALTER TABLE {quote(name)} RENAME TO {quote(new + name[len(old):])}")
                   for name in tables]
    statements += [Statement(f"UPDATE {quote(table)} SET name = ? WHERE name = ?", (new, old))
                   for table in (*names, SCHEMAS)]
    try:
        yield SqlPlan((tuple(statements),), write=True)
    except BackendError as exc:
        # another connection renamed them between our look and our write (the whole
        # transaction rolled back): the tables now have their new names
        if "no such table" not in str(exc) and "no such index" not in str(exc):
            raise
        return True
    logs.root.info("sqlite tables renamed from their legacy name model=%s from=%s to=%s "
                   "tables=%d indexes_rebuilt=%d", options.model_name, old, new, len(tables),
                   len(dropped))
    return True


def _declares(options: ModelOptions, stored: Schema | None) -> bool:
    """Whether ``stored`` is this model's declaration (or one it replaced)."""
    if stored is None:
        return False
    mine = declared(options).fingerprint
    return mine in (stored.fingerprint, replace(stored, format=FORMAT).fingerprint) \
        or mine in stored.history


def read_schema(layout: Layout, name: str | None = None) -> Op[Schema | None]:
    """The schema stored for the layout's table (or for the table ``name``)."""
    (reply,) = yield SqlPlan.read(Statement(
        f"SELECT body FROM {quote(SCHEMAS)} WHERE name = ?", (name or layout.table_name,)))
    rows = reply.rows[0]
    if not rows:
        return None
    # (the row named as the tools would find it: the schemas table and the table's name)
    return Schema.from_json(rows[0][0], f"{SCHEMAS}[{name or layout.table_name}]",
                            layout.options.collection)


def _store_schema(layout: Layout, schema: Schema) -> Op[None]:
    yield SqlPlan(((Statement(
        f"INSERT OR REPLACE INTO {quote(SCHEMAS)} (name, body) VALUES (?, ?)",
        (layout.table_name, json.dumps(schema.dump()))),),), write=True)


def _values(options: ModelOptions, id: str, raw: str) -> dict[str, Any]:
    """A stored document's values (defaults for fields it lacks); ValueError if corrupt."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    values = {name: options.read_value(name, data) for name in options.fields}
    values["id"] = id
    return values


def settle(options: ModelOptions, layout: Layout) -> Op[Schema]:
    """First use: compare the declaration with the stored schema, rewrite the rows if it
    changed (or nothing was stored and the table has rows), store it."""
    stored = yield from read_schema(layout)
    (reply,) = yield SqlPlan.read(Statement(f"SELECT EXISTS (SELECT 1 FROM {layout.table})"))
    has_data = bool(reply.rows[0][0][0])
    outcome = reconcile(options.model_name, stored, options, has_data)
    if not outcome.changed:
        return outcome.schema
    if outcome.upgraded:  # a newer storage format only: the rows need nothing
        yield from _store_schema(layout, outcome.schema)
        logs.root.info("schema upgraded model=%s backend=sqlite layout=%d",
                       options.model_name, outcome.schema.layout)
        return outcome.schema
    # SQLite builds its indexes at once: the rows are rewritten now, and every index is
    # ready when the model is first used
    if has_data:
        yield from rewrite(options, layout, ReindexReport(options.model_name))
    if outcome.dropped:
        yield SqlPlan((tuple(layout.drop_index(name) for name in outcome.dropped),), write=True)
    schema = declared(options)  # (every index ready: the rows were just rewritten)
    if stored is not None:
        schema = replace(schema, layout=stored.layout + 1,
                         history=(*stored.history, stored.fingerprint)[-HISTORY:])
    yield from _store_schema(layout, schema)
    logs.root.info("schema %s model=%s backend=sqlite layout=%d rows_rewritten=%s",
                   logs.schema_change(stored, outcome.upgraded), options.model_name,
                   schema.layout, has_data)
    return schema


def rewrite(options: ModelOptions, layout: Layout, report: ReindexReport,
            batch: int = BATCH, progress: Progress | None = None) -> Op[None]:
    """Rewrite every row's sort keys, side rows and missing defaults from its document."""
    (reply,) = yield SqlPlan.read(Statement(f"SELECT COUNT(*) FROM {layout.table}"))
    total, done = int(reply.rows[0][0][0]), 0
    cursor = b""
    while True:
        (reply,) = yield SqlPlan.read(Statement(
            f"SELECT id_key FROM {layout.table} WHERE id_key > ? ORDER BY id_key LIMIT ?",
            (cursor, batch)))
        keys = [bytes(row[0]) for row in reply.rows[0]]
        if not keys:
            break
        cursor, done = keys[-1], done + len(keys)
        for _round in range(RETRIES):
            keys = yield from _rewrite_batch(options, layout, keys, report)
            if not keys:
                break
        report.unsettled += len(keys)
        if progress is not None:
            progress(done, max(done, total))
    if progress is not None:
        progress(done, done)


def _rewrite_batch(options: ModelOptions, layout: Layout, keys: list[bytes],
                   report: ReindexReport) -> Op[list[bytes]]:
    """One round: the rows of ``keys`` rewritten if still at the version read; returns the
    keys of those written meanwhile (to read again)."""
    table = layout.table
    (reply,) = yield SqlPlan.read(Statement(
        f"SELECT id_key, version, doc FROM {table} WHERE id_key IN "
        f"({', '.join('?' * len(keys))})", tuple(keys)))
    groups = []
    sent: list[tuple[bytes, bool]] = []
    for key, version, raw in reply.rows[0]:
        key = bytes(key)
        id = sortable.id_from_key(key)
        try:
            data = json.loads(raw)
            values = _values(options, id, raw)
        except (ValueError, TypeError, ArithmeticError):
            continue  # a corrupt document: left as it is (verify() reports it)
        backfilled = options.with_defaults(data, values)
        statements = [Statement(
            f"UPDATE {table} SET doc = ?, "
            + ", ".join(f"{c} = ?" for c in layout.columns.values())
            + " WHERE id_key = ? AND version = ?",
            (encode_document(backfilled or data), *layout.keys(values), key, version))]
        # (no row changed: another writer moved it past the version read; read it again)
        statements.append(Statement("SELECT 1 WHERE changes() > 0", (), "present", "MOVED"))
        for name, side in layout.arrays.items():
            statements.append(Statement(f"DELETE FROM {side} WHERE id = ?", (key,)))
            statements += [Statement(f"INSERT INTO {side} (id, k) VALUES (?, ?)", (key, k))
                           for k in layout.element_keys(name, values)]
        groups.append(tuple(statements))
        sent.append((key, backfilled is not None))
    if not groups:
        return []
    replies = yield SqlPlan(tuple(groups), write=True)
    again = []
    for (key, filled), group in zip(sent, replies, strict=True):
        if group.refused is not None:
            again.append(key)
            continue
        report.documents += 1
        report.backfilled += filled
    present = {bytes(row[0]) for row in reply.rows[0]}
    report.gone += len(set(keys) - present)
    return again


def reindex(options: ModelOptions, layout: Layout, batch: int,
            progress: Progress | None) -> Op[ReindexReport]:
    started = time.monotonic()
    report = ReindexReport(options.model_name, tuple(index.name for index in options.indexes))
    yield from rewrite(options, layout, report, batch, progress)
    report.ready = not report.unsettled
    report.seconds = time.monotonic() - started
    return report


def verify(options: ModelOptions, layout: Layout, batch: int,
           progress: Progress | None) -> Op[VerifyReport]:
    """Compare each row's sort keys and side rows with what its document implies."""
    started = time.monotonic()
    report = VerifyReport(options.model_name, scanned=True)
    columns = list(layout.columns.values())
    (reply,) = yield SqlPlan.read(Statement(f"SELECT COUNT(*) FROM {layout.table}"))
    total, done, newest = int(reply.rows[0][0][0]), 0, 0
    cursor = b""
    while True:
        # the rows and their side rows in one read transaction: one snapshot, so a writer
        # between two reads cannot make them disagree
        page = f"SELECT id_key FROM {layout.table} WHERE id_key > ? ORDER BY id_key LIMIT ?"
        (reply,) = yield SqlPlan.read(
            Statement(f"SELECT id_key, version, doc{''.join(', ' + c for c in columns)} FROM "
                      f"{layout.table} WHERE id_key > ? ORDER BY id_key LIMIT ?",
                      (cursor, batch)),
            *(Statement(f"SELECT id, k FROM {side} WHERE id IN ({page})", (cursor, batch))
              for side in layout.arrays.values()))
        rows = reply.rows[0]
        if not rows:
            break
        cursor = bytes(rows[-1][0])
        sides = {}
        for name, found in zip(layout.arrays, reply.rows[1:], strict=True):
            held: dict[bytes, set[bytes]] = {}
            for owner, k in found:
                held.setdefault(bytes(owner), set()).add(bytes(k))
            sides[name] = held
        for row in rows:
            key, version, raw, stored = bytes(row[0]), int(row[1]), row[2], row[3:]
            id = sortable.id_from_key(key)
            newest = max(newest, version)
            report.documents += 1
            try:
                values = _values(options, id, raw)
            except (ValueError, TypeError, ArithmeticError):
                report.add("corrupt_documents", id)
                continue
            expected = layout.keys(values)
            report.entries += len(expected)
            if [bytes(v) for v in stored] != expected:
                report.add("stale_entries", id)
            for name in layout.arrays:
                want = set(layout.element_keys(name, values))
                have = sides[name].get(key, set())
                report.entries += len(want)
                if want - have:
                    report.add("missing_entries", f"{name}: {id}", len(want - have))
                if have - want:
                    report.add("stale_entries", f"{name}: {id}", len(have - want))
        done += len(rows)
        if progress is not None:
            progress(done, max(done, total))
    for name, side in layout.arrays.items():
        (found,) = yield SqlPlan.read(Statement(
            f"SELECT s.id FROM {side} s LEFT JOIN {layout.table} t ON t.id_key = s.id "
            "WHERE t.id_key IS NULL"))
        for (owner,) in found.rows[0]:
            report.add("orphan_entries", f"{name}: {sortable.id_from_key(bytes(owner))}")
    (reply,) = yield SqlPlan.read(Statement(
        f"SELECT value FROM {quote(CLOCKS)} WHERE name = ?", (layout.table_name,)))
    clock = int(reply.rows[0][0][0]) if reply.rows[0] else 0
    if newest > clock:
        report.add("clock_behind", layout.table_name)
    if progress is not None:
        progress(done, done)
    report.seconds = time.monotonic() - started
    return report


def repair(options: ModelOptions, layout: Layout, batch: int,
           progress: Progress | None) -> Op[RepairReport]:
    """Rewrite every row from its document, drop side rows of rows that are gone, raise
    the clock; then verify again."""
    before = yield from verify(options, layout, batch, progress)
    fixed: dict[str, int] = {}
    if not before.ok:
        scratch = ReindexReport(options.model_name)
        yield from rewrite(options, layout, scratch, batch)
        for kind in ("stale_entries", "missing_entries"):
            if kind in before.problems:
                fixed[kind] = before.problems[kind]
        statements = [Statement(f"DELETE FROM {side} WHERE id NOT IN "
                                f"(SELECT id_key FROM {layout.table})")
                      for side in layout.arrays.values()]
        statements.append(Statement(
            f"UPDATE {quote(CLOCKS)} SET value = max(value, "
            f"(SELECT COALESCE(MAX(version), 0) FROM {layout.table})) WHERE name = ?",
            (layout.table_name,)))
        yield SqlPlan((tuple(statements),), write=True)
        for kind in ("orphan_entries", "clock_behind"):
            if kind in before.problems:
                fixed[kind] = before.problems[kind]
    after = yield from verify(options, layout, batch, None)
    return RepairReport(before, after, fixed)
