"""Schema evolution on a SQLite file: indexes added to a model apply to an existing database,
and no document is lost or changed."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import quantumorm
from quantumorm import Document, IntField, StringField


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
