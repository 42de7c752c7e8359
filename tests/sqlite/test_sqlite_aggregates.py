"""SQLite aggregates read only the fields they use (``project``): a damaged stored
document is still reported as query() reports it, never read as one lacking the fields."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import quantumorm
from quantumorm import CorruptDocumentError, Document, IntField, Sum
from quantumorm.backends.sqlite import backend as sqlite_backend


class Tally(Document):
    n = IntField(indexed=True)

    class Meta:
        backend = "sqlite"
        namespace = "agg"
        collection = "tallies"


@pytest.mark.parametrize("damage, message", [('{"n": 2, bad', "invalid JSON"),
                                             ("[2]", "not a JSON object")])
def test_a_damaged_document_is_reported(tmp_path: Path, damage: str, message: str) -> None:
    path = tmp_path / "agg.db"
    quantumorm.create_connection(backend="sqlite", url=f"sqlite:///{path}", name="agg-sqlite",
                                 make_default=True)
    try:
        Tally.objects.bulk_create_sync([Tally(id="a", n=1), Tally(id="b", n=2)])
        assert Tally.objects.aggregate_sync(s=Sum("n")) == {"s": 3}
        db = sqlite3.connect(path)
        try:
            (table,) = [name for (name,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'agg:%'")]
            db.execute(f'UPDATE "{table}" SET doc = ? WHERE id = ?', (damage, "b"))
            db.commit()
        finally:
            db.close()
        for call in (lambda: Tally.objects.all_sync(),
                     lambda: Tally.objects.aggregate_sync(s=Sum("n")),
                     lambda: Tally.objects.distinct_sync("n")):
            with pytest.raises(CorruptDocumentError, match=message) as caught:
                call()
            assert caught.value.id == "b"
    finally:
        quantumorm.close_all()


def test_an_sqlite_without_the_json_arrow_reads_whole_documents(
        monkeypatch: pytest.MonkeyPatch) -> None:
    quantumorm.create_connection(backend="sqlite", url="sqlite://", name="agg-old",
                                 make_default=True)
    try:
        Tally.objects.bulk_create_sync([Tally(id="a", n=1), Tally(id="b", n=2)])
        with_arrow = Tally.objects.aggregate_sync(s=Sum("n"))
        monkeypatch.setattr(sqlite_backend, "JSON_ARROWS", False)  # (SQLite before 3.38)
        assert Tally.objects.aggregate_sync(s=Sum("n")) == with_arrow == {"s": 3}
        assert Tally.objects.distinct_sync("n") == [1, 2]
    finally:
        quantumorm.close_all()
