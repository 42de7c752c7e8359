"""Schema evolution on PostgreSQL: indexes and fields added to a model apply to an existing
database (issue 6's lifecycle), and no document is lost or changed."""

from __future__ import annotations

from typing import Any

import pytest
from postgres_helpers import sql

import quantumorm
from quantumorm import Document, IntField, StringField, sortable


def model(version: int) -> Any:
    indexes: list[Any] = [] if version == 1 else [("team", "rank")]
    meta = type("Meta", (), {"backend": "postgres", "collection": "evolve_idx",
                             "indexes": indexes})
    return type("Player", (Document,), {
        "name": StringField(),
        "team": StringField(),
        "rank": IntField(indexed=version > 1),
        "Meta": meta,
    })


def test_added_indexes_apply_to_an_existing_database(pg: Any, postgres_url: str) -> None:
    url = postgres_url
    old, new = model(1), model(2)
    quantumorm.create_connection(backend="postgres", url=url, name="v1")
    try:
        old.objects.bulk_create_sync([old(id=str(i), name=f"p{i}", team=f"t{i % 3}", rank=i)
                                      for i in range(30)])
        before = {d.id: d.to_dict() for d in old.objects.all_sync()}
        plan = old.objects.filter(rank__gt=20).explain_sync()
        assert plan.scanned
    finally:
        quantumorm.close_all()

    # (with 30 rows the planner prefers a sequential scan: make it show the index)
    quantumorm.create_connection(backend="postgres", url=url, name="v2",
                                 options="-c enable_seqscan=off")
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
    indexed = {row[0] for row in sql(url, "SELECT indexdef FROM pg_indexes "
                                          "WHERE tablename = 'qorm:evolve_idx'")}
    assert any("(k_rank)" in text for text in indexed)
    assert any("(k_team, k_rank)" in text for text in indexed)


def test_a_field_added_with_a_default_reads_and_matches_as_that_default(
        pg: Any, postgres_url: str) -> None:
    url = postgres_url

    def declare(with_color: bool) -> Any:
        fields: dict[str, Any] = {"name": StringField()}
        if with_color:
            fields["color"] = StringField(default="red", indexed=True)
        meta = type("Meta", (), {"backend": "postgres", "collection": "evolve_default"})
        return type("Shop", (Document,), {**fields, "Meta": meta})

    old = declare(False)
    quantumorm.create_connection(backend="postgres", url=url, name="v1")
    try:
        old.objects.bulk_create_sync([old(name=f"s{i}") for i in range(5)])
    finally:
        quantumorm.close_all()
    new = declare(True)
    quantumorm.create_connection(backend="postgres", url=url, name="v2")
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
    meta = type("Meta", (), {"backend": "postgres", "collection": collection})
    return type("Item", (Document,), {**fields, "Meta": meta})


def _session(url: str, name: str) -> Any:
    return quantumorm.create_connection(backend="postgres", url=url, name=name,
                                        make_default=True)


def test_a_changed_field_type_re_encodes_the_rows(pg: Any, postgres_url: str) -> None:
    from decimal import Decimal

    from quantumorm import DecimalField

    url = postgres_url
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


def test_a_callable_default_is_stored_once_into_old_rows(pg: Any, postgres_url: str) -> None:
    import uuid

    url = postgres_url
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


def test_an_older_declaration_is_refused(pg: Any, postgres_url: str) -> None:
    url = postgres_url
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


def test_verify_finds_and_repair_fixes_wrong_sort_keys_elements_and_clock(
        pg: Any, postgres_url: str) -> None:
    from quantumorm import ArrayField

    url = postgres_url
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
    table = '"qorm:evolve_damage"'
    sql(url, f"UPDATE {table} SET k_n = '\\x0100'::bytea WHERE id_key = %s",
        sortable.id_key("3"))
    sql(url, f"UPDATE {table} SET e_tags = '{{}}' WHERE id_key = %s", sortable.id_key("5"))
    sql(url, f"UPDATE {table} SET e_tags = e_tags || '\\x00'::bytea WHERE id_key = %s",
        sortable.id_key("7"))
    sql(url, "SELECT setval('\"qorm:evolve_damage!versions\"', 1)")
    _session(url, "v2")
    try:
        assert model.objects.filter(n=2).count_sync() == 0  # "3" (n=2) lost its sort key
        report = model.objects.verify_sync()
        assert not report.ok
        assert set(report.problems) >= {"stale_entries", "missing_entries", "clock_behind"}
        assert "3" in report.samples["stale_entries"]
        repaired = model.objects.repair_sync()
        assert repaired.ok, str(repaired)
        assert model.objects.filter(n=2).count_sync() == 1
        assert model.objects.filter(tags__contains="a").count_sync() == 20
    finally:
        quantumorm.close_all()


def test_an_index_dropped_from_the_model_is_dropped_from_the_database(
        pg: Any, postgres_url: str) -> None:
    url = postgres_url
    first = _declare("evolve_drop", name=StringField(indexed=True), n=IntField(indexed=True))
    _session(url, "a")
    try:
        first(name="x", n=1).save_sync()
    finally:
        quantumorm.close_all()

    def indexes() -> set[str]:
        return {row[0] for row in sql(url, "SELECT indexname FROM pg_indexes "
                                           "WHERE tablename = 'qorm:evolve_drop'")} - {
            "qorm:evolve_drop!pkey"}

    assert indexes() == {"qorm:evolve_drop!i!name", "qorm:evolve_drop!i!n"}
    second = _declare("evolve_drop", name=StringField(), n=IntField(indexed=True))
    _session(url, "b")
    try:
        assert second.objects.filter(name="x").count_sync() == 1
        assert indexes() == {"qorm:evolve_drop!i!n"}
        assert second.objects.verify_sync().ok
    finally:
        quantumorm.close_all()
