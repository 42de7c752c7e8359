"""SQLite table names: one table per (namespace, collection) pair, and files written with the
legacy names (``<namespace>_<collection>`` folded) adopted at first use."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import quantumorm
from quantumorm import ArrayField, Document, IntField, StringField
from quantumorm.errors import SchemaMismatchError


def _declare(namespace: str, collection: str, **fields: Any) -> Any:
    meta = type("Meta", (), {"backend": "sqlite", "namespace": namespace,
                             "collection": collection})
    return type("Item", (Document,), {**fields, "Meta": meta})


def _objects(path: Path) -> set[tuple[str, str]]:
    db = sqlite3.connect(path)
    try:
        return {(kind, name) for kind, name in db.execute(
            "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'index') "
            "AND sql IS NOT NULL")}
    finally:
        db.close()


def test_namespace_and_collection_pairs_never_share_a_table(tmp_path: Path) -> None:
    # "a_b" + "c" and "a" + "b_c" once folded to the same table: each saw the other's rows
    first = _declare("a_b", "c", name=StringField(indexed=True))
    second = _declare("a", "b_c", name=StringField(indexed=True))
    quantumorm.create_connection(backend="sqlite", url=f"sqlite:///{tmp_path}/pairs.db",
                                 name="pairs", make_default=True)
    try:
        first(id="1", name="first").save_sync()
        second(id="1", name="second").save_sync()
        second(id="2", name="second").save_sync()
        assert first.objects.get_sync(id="1").name == "first"
        assert second.objects.get_sync(id="1").name == "second"
        assert first.objects.count_sync() == 1
        assert second.objects.filter(name="second").count_sync() == 2
        assert first.objects.filter(name="second").count_sync() == 0
    finally:
        quantumorm.close_all()
    assert {"a_b:c", "a:b_c"} <= {name for kind, name in _objects(tmp_path / "pairs.db")
                                  if kind == "table"}


def _to_legacy(path: Path, new: str, old: str) -> None:
    """Give a file written by this version the names an older version wrote."""
    db = sqlite3.connect(path)
    try:
        tables = [name for (name,) in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND (name = ? OR name LIKE ?)",
            (new, new + "#%"))]
        indexes = list(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                  "AND sql IS NOT NULL AND name LIKE ?", (new + "!%",)))
        for name, _ in indexes:
            db.execute(f'DROP INDEX "{name}"')
        for name in tables:
            db.execute(f'ALTER TABLE "{name}" RENAME TO "{old + name[len(new):]}"')
        for _, sql in indexes:
            db.execute(sql.replace(new, old))
        for table in ("qorm#sequences", "qorm#clocks", "qorm#schemas"):
            db.execute(f'UPDATE "{table}" SET name = ? WHERE name = ?', (old, new))
        db.commit()
    finally:
        db.close()


def test_a_file_with_legacy_table_names_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    url = f"sqlite:///{path}"
    model = _declare("qorm", "old_items", name=StringField(indexed=True),
                     tags=ArrayField(StringField(), indexed=True), n=IntField(indexed=True))
    quantumorm.create_connection(backend="sqlite", url=url, name="v1", make_default=True)
    try:
        saved = [model(name=f"n{i % 3}", tags=[f"t{i % 2}"], n=i).save_sync() for i in range(6)]
    finally:
        quantumorm.close_all()
    _to_legacy(path, "qorm:old_items", "qorm_old_items")
    assert ("table", "qorm_old_items") in _objects(path)
    assert ("index", "qorm_old_items!name") in _objects(path)

    quantumorm.create_connection(backend="sqlite", url=url, name="v2", make_default=True)
    try:
        assert model.objects.count_sync() == 6
        assert model.objects.filter(name="n1").count_sync() == 2
        assert sorted(d.n for d in model.objects.filter(tags__contains="t0")) == [0, 2, 4]
        assert "qorm:old_items!name" in str(model.objects.filter(name="n1").explain_sync())
        # the auto-id sequence and the version clock carried over: no id or version repeats
        fresh = model(name="n9", n=9).save_sync()
        assert fresh.id not in {d.id for d in saved}
        again = model.objects.get_sync(id=saved[0].id)
        assert again.version == saved[0].version
        again.n = 100
        assert again.save_sync().version > max(d.version for d in saved)
        assert model.objects.verify_sync().ok
    finally:
        quantumorm.close_all()
    names = {name for _, name in _objects(path)}
    assert not any(name.startswith("qorm_old_items") for name in names)
    assert {"qorm:old_items", "qorm:old_items#tags", "qorm:old_items!name"} <= names


def test_a_legacy_table_another_pair_may_own_is_refused(tmp_path: Path) -> None:
    # (a, b_c) wrote "a_b_c"; a newcomer (a_b, c) folds to the same legacy name
    path = tmp_path / "shared.db"
    url = f"sqlite:///{path}"
    owner = _declare("a", "b_c", name=StringField(indexed=True))
    newcomer = _declare("a_b", "c", title=StringField())
    quantumorm.create_connection(backend="sqlite", url=url, name="v1", make_default=True)
    try:
        owner(id="1", name="mine").save_sync()
    finally:
        quantumorm.close_all()
    _to_legacy(path, "a:b_c", "a_b_c")

    quantumorm.create_connection(backend="sqlite", url=url, name="v2", make_default=True)
    try:
        with pytest.raises(SchemaMismatchError, match="'a_b_c'"):
            newcomer.objects.count_sync()
        assert ("table", "a_b_c") in _objects(path)  # nothing renamed, nothing rewritten
        assert owner.objects.get_sync(id="1").name == "mine"  # the owner takes it
    finally:
        quantumorm.close_all()
    quantumorm.create_connection(backend="sqlite", url=url, name="v3", make_default=True)
    try:
        assert newcomer.objects.count_sync() == 0  # a table of its own now
        assert owner.objects.count_sync() == 1
    finally:
        quantumorm.close_all()


def test_an_unambiguous_legacy_table_is_adopted_and_evolved(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "plain.db"
    url = f"sqlite:///{path}"
    before = _declare("qorm", "things", name=StringField(indexed=True))
    after = _declare("qorm", "things", name=StringField(indexed=True),
                     n=IntField(default=7, indexed=True))
    quantumorm.create_connection(backend="sqlite", url=url, name="v1", make_default=True)
    try:
        before(id="1", name="x").save_sync()
    finally:
        quantumorm.close_all()
    _to_legacy(path, "qorm:things", "qorm_things")

    caplog.set_level(logging.INFO, logger="quantumorm")
    quantumorm.create_connection(backend="sqlite", url=url, name="v2", make_default=True)
    try:
        assert after.objects.filter(n=7).count_sync() == 1
        assert after.objects.verify_sync().ok
    finally:
        quantumorm.close_all()
    assert ("sqlite tables renamed from their legacy name model=Item from=qorm_things "
            "to=qorm:things tables=1 indexes_rebuilt=1") in caplog.messages
