"""Schema evolution on a SQLite file: indexes added to a model apply to an existing database,
and no document is lost or changed."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import quantumorm
from quantumorm import DamagedSchemaError, Document, IntField, StringField


def model(version: int) -> Any:
    indexes: list[Any] = [] if version == 1 else [("team", "rank")]
    meta = type("Meta", (), {"backend": "sqlite", "collection": "evolve_idx",
                             "indexes": indexes})
    return type("Player", (Document,), {
        "name": StringField(),
        "team": StringField(),
        "rank": IntField(indexed=version > 1),
        "Meta": meta,
    })


def test_added_indexes_apply_to_an_existing_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/league.db"
    old, new = model(1), model(2)
    quantumorm.create_connection(backend="sqlite", url=url, name="v1")
    try:
        old.objects.bulk_create_sync([old(id=str(i), name=f"p{i}", team=f"t{i % 3}", rank=i)
                                      for i in range(30)])
        before = {d.id: d.to_dict() for d in old.objects.all_sync()}
        plan = old.objects.filter(rank__gt=20).explain_sync()
        assert plan.scanned
    finally:
        quantumorm.close_all()

    quantumorm.create_connection(backend="sqlite", url=url, name="v2")
    try:
        after = {d.id: d.to_dict() for d in new.objects.all_sync()}
        assert after == before  # nothing lost or changed
        by_rank = new.objects.filter(rank__gt=20)
        assert sorted(int(d.id) for d in by_rank.all_sync()) == list(range(21, 30))
        assert not new.objects.filter(rank=25).explain_sync().scanned  # the new index is used
        compound = new.objects.filter(team="t1", rank__lt=10)
        assert sorted(int(d.id) for d in compound.all_sync()) == [1, 4, 7]
        assert not compound.explain_sync().scanned
        new(id="new", name="x", team="t1", rank=99).save_sync()
        assert new.objects.filter(rank=99).count_sync() == 1
    finally:
        quantumorm.close_all()
    with sqlite3.connect(tmp_path / "league.db") as raw:
        indexed = {row[0] for row in raw.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    assert any('("k_rank")' in sql for sql in indexed)
    assert any('("k_team", "k_rank")' in sql for sql in indexed)


def test_a_field_added_with_a_default_reads_and_matches_as_that_default(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/colors.db"

    def declare(with_color: bool) -> Any:
        fields: dict[str, Any] = {"name": StringField()}
        if with_color:
            fields["color"] = StringField(default="red", indexed=True)
        meta = type("Meta", (), {"backend": "sqlite", "collection": "evolve_default"})
        return type("Shop", (Document,), {**fields, "Meta": meta})

    old = declare(False)
    quantumorm.create_connection(backend="sqlite", url=url, name="v1")
    try:
        old.objects.bulk_create_sync([old(name=f"s{i}") for i in range(5)])
    finally:
        quantumorm.close_all()
    new = declare(True)
    quantumorm.create_connection(backend="sqlite", url=url, name="v2")
    try:
        assert {d.color for d in new.objects.all_sync()} == {"red"}
        assert new.objects.filter(color="red").count_sync() == 5
        assert new.objects.filter(color__isnull=True).count_sync() == 0
        new(name="blue one", color="blue").save_sync()
        assert new.objects.filter(color="red").count_sync() == 5
        assert [d.name for d in new.objects.filter(color="blue").all_sync()] == ["blue one"]
    finally:
        quantumorm.close_all()


def _declare(collection: str, **fields: Any) -> Any:
    meta = type("Meta", (), {"backend": "sqlite", "collection": collection})
    return type("Item", (Document,), {**fields, "Meta": meta})


def _session(url: str, name: str) -> Any:
    return quantumorm.create_connection(backend="sqlite", url=url, name=name,
                                        make_default=True)


def test_a_changed_field_type_re_encodes_the_rows(tmp_path: Path) -> None:
    from decimal import Decimal

    from quantumorm import DecimalField

    url = f"sqlite:///{tmp_path}/prices.db"
    old = _declare("evolve_type", price=StringField(indexed=True))
    _session(url, "v1")
    try:
        old.objects.bulk_create_sync([old(id=p, price=p) for p in ("10", "9", "100", "9.5")])
        # as strings, "10" < "100" < "9" < "9.5"
        assert [d.id for d in old.objects.order_by("price").all_sync()] == [
            "10", "100", "9", "9.5"]
    finally:
        quantumorm.close_all()
    new = _declare("evolve_type", price=DecimalField(indexed=True))
    _session(url, "v2")
    try:
        assert [d.id for d in new.objects.order_by("price").all_sync()] == [
            "9", "9.5", "10", "100"]
        assert {d.id for d in new.objects.filter(price__gt=Decimal("9.2")).all_sync()} == {
            "9.5", "10", "100"}
        assert new.objects.verify_sync().ok
    finally:
        quantumorm.close_all()


def test_a_callable_default_is_stored_once_into_old_rows(tmp_path: Path) -> None:
    import uuid

    url = f"sqlite:///{tmp_path}/tokens.db"
    old = _declare("evolve_token", name=StringField())
    _session(url, "v1")
    try:
        old.objects.bulk_create_sync([old(name=f"n{i}") for i in range(3)])
    finally:
        quantumorm.close_all()
    new = _declare("evolve_token", name=StringField(),
                   token=StringField(default=lambda: uuid.uuid4().hex, indexed=True))
    _session(url, "v2")
    try:
        first = {d.id: d.token for d in new.objects.all_sync()}
        again = {d.id: d.token for d in new.objects.all_sync()}
        assert first == again and len(set(first.values())) == 3  # stored, not drawn per read
        for id, token in first.items():
            assert [d.id for d in new.objects.filter(token=token).all_sync()] == [id]
    finally:
        quantumorm.close_all()


def test_an_older_declaration_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    first = _declare("evolve_old", name=StringField())
    second = _declare("evolve_old", name=StringField(), n=IntField(indexed=True))
    _session(url, "a")
    try:
        first(name="x").save_sync()
        second.objects.count_sync()
    finally:
        quantumorm.close_all()
    _session(url, "b")
    try:
        with pytest.raises(quantumorm.SchemaMismatchError, match="older"):
            first(name="y").save_sync()
        assert second.objects.count_sync() == 1
    finally:
        quantumorm.close_all()


def test_verify_finds_and_repair_fixes_wrong_sort_keys_and_side_rows(tmp_path: Path) -> None:
    from quantumorm import ArrayField

    url = f"sqlite:///{tmp_path}/damaged.db"
    model = _declare("evolve_damage", n=IntField(indexed=True),
                     tags=ArrayField(StringField(), indexed=True))
    _session(url, "v1")
    try:
        model.objects.bulk_create_sync([model(n=i, tags=["a", f"t{i}"]) for i in range(20)])
        assert model.objects.verify_sync().ok
        report = model.objects.reindex_sync()
        assert report.ready and report.documents == 20
    finally:
        quantumorm.close_all()
    db = sqlite3.connect(tmp_path / "damaged.db")
    db.execute('UPDATE "qorm:evolve_damage" SET "k_n" = x\'0100\' WHERE id = \'3\'')
    db.execute('DELETE FROM "qorm:evolve_damage#tags" WHERE id = '
               '(SELECT id_key FROM "qorm:evolve_damage" WHERE id = \'5\')')
    db.execute('INSERT INTO "qorm:evolve_damage#tags" (id, k) VALUES (x\'02676f6e65\', x\'00\')')
    db.commit()
    db.close()
    _session(url, "v2")
    try:
        assert model.objects.filter(n=2).count_sync() == 0  # "3" (n=2) lost its sort key
        report = model.objects.verify_sync()
        assert not report.ok
        assert set(report.problems) >= {"stale_entries", "missing_entries", "orphan_entries"}
        assert "3" in report.samples["stale_entries"]
        repaired = model.objects.repair_sync()
        assert repaired.ok, str(repaired)
        assert model.objects.filter(n=2).count_sync() == 1
        assert model.objects.filter(tags__contains="a").count_sync() == 20
    finally:
        quantumorm.close_all()


def test_an_index_dropped_from_the_model_is_dropped_from_the_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/dropped.db"
    first = _declare("evolve_drop", name=StringField(indexed=True), n=IntField(indexed=True))
    _session(url, "a")
    try:
        first(name="x", n=1).save_sync()
    finally:
        quantumorm.close_all()

    def indexes() -> set[str]:
        db = sqlite3.connect(tmp_path / "dropped.db")
        try:
            return {row[0] for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
        finally:
            db.close()

    assert indexes() == {"qorm:evolve_drop!name", "qorm:evolve_drop!n"}
    second = _declare("evolve_drop", name=StringField(), n=IntField(indexed=True))
    _session(url, "b")
    try:
        assert second.objects.filter(name="x").count_sync() == 1
        assert indexes() == {"qorm:evolve_drop!n"}
        assert second.objects.verify_sync().ok
    finally:
        quantumorm.close_all()


@pytest.mark.parametrize(("body", "field"), [
    ("{not json", "body"), ('["a list"]', "body"), ('{"layout": 3}', "body"),
    ('{"format": "2"}', "fields"), (None, "layout")])
def test_a_damaged_schema_row_is_refused_typed(tmp_path: Path, body: str | None,
                                               field: str) -> None:
    url = f"sqlite:///{tmp_path}/damaged.db"
    quantumorm.create_connection(backend="sqlite", url=url, name="d1")
    try:
        model(1)(id="a", name="x", team="t", rank=1).save_sync()
    finally:
        quantumorm.close_all()
    with sqlite3.connect(tmp_path / "damaged.db") as raw:
        (name, stored), = raw.execute('SELECT name, body FROM "qorm#schemas"').fetchall()
        if body is None:  # a valid object whose layout is not a count
            damaged = json.loads(stored)
            damaged["layout"] = "+3"
            body = json.dumps(damaged)
        raw.execute('UPDATE "qorm#schemas" SET body = ?', (body,))
    quantumorm.create_connection(backend="sqlite", url=url, name="d2")
    try:
        with pytest.raises(DamagedSchemaError) as raised:
            model(1).objects.all_sync()
        assert (raised.value.key, raised.value.field) == (f"qorm#schemas[{name}]", field)
        assert "evolve_idx" in str(raised.value)
    finally:
        quantumorm.close_all()
