"""A collection's life on PostgreSQL: its stored schema, the rewrite of its rows when the model
changes, and ``reindex()`` / ``verify()`` / ``repair()`` (operations; see
:mod:`quantumorm.schema` for what a schema is).

PostgreSQL's indexes are SQL indexes over the ``k_`` sort-key columns and the ``e_`` element
arrays, which every write fills; what can go wrong is that those columns no longer say what
the document says: a field added since a row was written (the row reads as the field's
default), a field whose type changed (its old sort keys compare wrongly), a table written by
an older QuantumORM. So at a model's first use on a connection the declaration is compared
with the schema stored in ``qorm#schemas``; when it differs, every row is rewritten from its
document before the model is used: sort keys computed again, and the default of a field a
document lacks stored into it. Rows are rewritten in batches, each a transaction that writes
a row only if it is still at the version read (other processes may write meanwhile), so the
table stays usable throughout. ``reindex()`` does the same on demand.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from ... import logs, sortable
from ...engine.drive import Op
from ...maintenance import Progress, ReindexReport, RepairReport, VerifyReport
from ...options import ModelOptions
from ...schema import HISTORY, Schema, declared, reconcile
from .. import base
from .plans import SqlPlan, Statement
from .schema import SCHEMAS, Layout, jsonb_text, quote, regclass

BATCH = 500
#: rounds of a batch's rows that other writers keep changing before giving up on them
RETRIES = 50


def create_statements() -> list[Statement]:
    return [Statement(f"CREATE TABLE IF NOT EXISTS {quote(SCHEMAS)} "
                      "(name text PRIMARY KEY, body text NOT NULL)")]


def read_schema(layout: Layout) -> Op[Schema | None]:
    (reply,) = yield SqlPlan.read(Statement(
        f"SELECT body FROM {quote(SCHEMAS)} WHERE name = %b", (layout.table_name,)))
    rows = reply.rows[0]
    if not rows:
        return None
    # (the row named as the tools would find it: the schemas table and the table's name)
    return Schema.from_json(rows[0][0], f"{SCHEMAS}[{layout.table_name}]",
                            layout.options.collection)


def _store_schema(layout: Layout, schema: Schema) -> Op[None]:
    yield SqlPlan(((Statement(
        f"INSERT INTO {quote(SCHEMAS)} (name, body) VALUES (%b, %b) "
        "ON CONFLICT (name) DO UPDATE SET body = EXCLUDED.body",
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
    # CREATE INDEX builds an index at once: the rows are rewritten now, and every index is
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
    logs.root.info("schema %s model=%s backend=postgres layout=%d rows_rewritten=%s",
                   logs.schema_change(stored, outcome.upgraded), options.model_name,
                   schema.layout, has_data)
    return schema


def rewrite(options: ModelOptions, layout: Layout, report: ReindexReport,
            batch: int = BATCH, progress: Progress | None = None) -> Op[None]:
    """Rewrite every row's sort keys, element keys and missing defaults from its document."""
    (reply,) = yield SqlPlan.read(Statement(f"SELECT COUNT(*) FROM {layout.table}"))
    total, done = int(reply.rows[0][0][0]), 0
    cursor = b""
    while True:
        (reply,) = yield SqlPlan.read(Statement(
            f"SELECT id_key FROM {layout.table} WHERE id_key > %b ORDER BY id_key "
            "LIMIT %b::bigint", (cursor, batch)))
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
        f"SELECT id_key, version, doc FROM {table} WHERE id_key = ANY(%b::bytea[])", (keys,)))
    groups = []
    sent: list[tuple[bytes, bool]] = []
    sets = ", ".join(["doc = %b", "body = %b::jsonb",
                      *(f"{c} = %b" for c in layout.assignments())])
    for key, version, raw in reply.rows[0]:
        key = bytes(key)
        id = sortable.id_from_key(key)
        try:
            data = json.loads(raw)
            values = _values(options, id, raw)
        except (ValueError, TypeError, ArithmeticError):
            continue  # a corrupt document: left as it is (verify() reports it)
        backfilled = options.with_defaults(data, values)
        text = base.encode_document(backfilled) if backfilled is not None else raw.encode()
        # (no row returned: another writer moved it past the version read; read it again)
        groups.append((Statement(
            f"UPDATE {table} SET {sets} WHERE id_key = %b AND version = %b RETURNING 1",
            (text.decode(), jsonb_text(text), *layout.keys(values), *layout.elements(values),
             key, version), "present", "MOVED"),))
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


def _last_version(layout: Layout) -> Statement:
    return Statement(f"SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END "
                     f"FROM {layout.versions}")


def verify(options: ModelOptions, layout: Layout, batch: int,
           progress: Progress | None) -> Op[VerifyReport]:
    """Compare each row's sort keys and element keys with what its document implies."""
    started = time.monotonic()
    report = VerifyReport(options.model_name, scanned=True)
    columns = layout.assignments()
    (reply,) = yield SqlPlan.read(Statement(f"SELECT COUNT(*) FROM {layout.table}"))
    total, done, newest = int(reply.rows[0][0][0]), 0, 0
    cursor = b""
    arrays = list(layout.arrays)
    while True:
        (reply,) = yield SqlPlan.read(Statement(
            f"SELECT id_key, version, doc{''.join(', ' + c for c in columns)} FROM "
            f"{layout.table} WHERE id_key > %b ORDER BY id_key LIMIT %b::bigint",
            (cursor, batch)))
        rows = reply.rows[0]
        if not rows:
            break
        cursor = bytes(rows[-1][0])
        for row in rows:
            key, version, raw = bytes(row[0]), int(row[1]), row[2]
            stored_keys = row[3:3 + len(layout.columns)]
            stored_elements = row[3 + len(layout.columns):]
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
            if [bytes(v) for v in stored_keys] != expected:
                report.add("stale_entries", id)
            for name, have_list in zip(arrays, stored_elements, strict=True):
                want = set(layout.element_keys(name, values))
                have = {bytes(k) for k in have_list}
                report.entries += len(want)
                if want - have:
                    report.add("missing_entries", f"{name}: {id}", len(want - have))
                if have - want:
                    report.add("stale_entries", f"{name}: {id}", len(have - want))
        done += len(rows)
        if progress is not None:
            progress(done, max(done, total))
    (reply,) = yield SqlPlan.read(_last_version(layout))
    if newest > int(reply.rows[0][0][0]):
        report.add("clock_behind", layout.table_name)
    if progress is not None:
        progress(done, done)
    report.seconds = time.monotonic() - started
    return report


def repair(options: ModelOptions, layout: Layout, batch: int,
           progress: Progress | None) -> Op[RepairReport]:
    """Rewrite every row from its document and move the version sequence past every stored
    version; then verify again."""
    before = yield from verify(options, layout, batch, progress)
    fixed: dict[str, int] = {}
    if not before.ok:
        scratch = ReindexReport(options.model_name)
        yield from rewrite(options, layout, scratch, batch)
        for kind in ("stale_entries", "missing_entries"):
            if kind in before.problems:
                fixed[kind] = before.problems[kind]
        sequence = regclass(layout.versions)
        yield SqlPlan(((Statement(
            f"SELECT setval({sequence}, (SELECT COALESCE(MAX(version), 1) FROM "
            f"{layout.table})) WHERE (SELECT COALESCE(MAX(version), 0) FROM {layout.table})"
            f" > ({_last_version(layout).sql})"),),), write=True)
        if "clock_behind" in before.problems:
            fixed["clock_behind"] = before.problems["clock_behind"]
    after = yield from verify(options, layout, batch, None)
    return RepairReport(before, after, fixed)
