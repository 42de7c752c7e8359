"""``quantumorm verify|reindex|repair|repartition|sweep``: run as a separate process, as an
operator would, against the test server; the exit codes are what scripts rely on."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from quantumorm import Document, StringField, sortable
from quantumorm.backends.redis.keys import KeySpace

MODELS = textwrap.dedent('''
    from quantumorm import Document, StringField

    class Shop(Document):
        city = StringField(indexed=True)

        class Meta:
            collection = "cli_shops"

    class NewShop(Document):
        city = StringField(indexed=True)
        color = StringField(default="red", indexed=True)

        class Meta:
            collection = "cli_shops"

    class Parcel(Document):
        kind = StringField(indexed=True)

        class Meta:
            collection = "cli_parcels"
            partitions = 4
''')


class Shop(Document):  # the same declaration as cli_models.Shop
    city = StringField(indexed=True)

    class Meta:
        collection = "cli_shops"


def parcel_model(partitions: int) -> Any:
    """``cli_models.Parcel`` as declared with ``partitions``."""
    meta = type("Meta", (), {"collection": "cli_parcels", "partitions": partitions})
    return type(f"Parcel{partitions}", (Document,), {
        "__module__": __name__, "kind": StringField(indexed=True), "Meta": meta})


@pytest.fixture
def cli(models_dir: Path, run_cli: Any) -> Any:
    (models_dir / "cli_models.py").write_text(MODELS)
    return run_cli


def test_verify_reindex_repair_and_their_exit_codes(conn: Any, redis_client: Any,
                                                    cli: Any) -> None:
    Shop.objects.bulk_create_sync([Shop(city=("paris", "rome")[i % 2]) for i in range(1200)])

    clean = cli("verify", "cli_models:Shop")
    assert clean.returncode == 0, clean.stderr
    assert "Shop: OK: 1200 documents" in clean.stdout
    # the fallback progress (not a terminal): a line per tenth, the last one complete
    assert clean.stderr.splitlines()[-1].startswith("verify Shop: 1200/1200 documents")

    # (damage of either format: the id left out of the id index; the documents are format
    # 3's, which keep no meta hash to damage)
    redis_client.zrem(KeySpace(Shop._meta).ids(0), sortable.id_key("7"))
    damaged = cli("verify", "cli_models:Shop", "--json", "--quiet")
    assert damaged.returncode == 1 and damaged.stderr == ""
    report = json.loads(damaged.stdout)
    assert report["ok"] is False and report["problems"] == {"unlisted_documents": 1}
    assert report["samples"]["unlisted_documents"] == ["7"]

    repaired = cli("repair", "cli_models:Shop", "--quiet")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "repaired: unlisted_documents: 1" in repaired.stdout
    assert cli("verify", "cli_models:Shop", "--quiet").returncode == 0

    # a new release adds an index and a defaulted field: reindex builds them
    built = cli("reindex", "cli_models:NewShop", "--batch", "100")
    assert built.returncode == 0, built.stdout + built.stderr
    assert built.stdout.startswith("NewShop: reindexed color: ready"), built.stdout
    assert cli("verify", "cli_models:NewShop", "--quiet").returncode == 0


def test_an_index_entry_deleted_by_hand_is_found_and_repaired(
        conn: Any, redis_client: Any, cli: Any, bare_cli: Any) -> None:
    Shop.objects.bulk_create_sync([Shop(id=str(i), city=("paris", "rome")[i % 2])
                                   for i in range(50)])
    index = KeySpace(Shop._meta).index(0, "city")
    (victim,) = redis_client.zrange(index, 0, 0)
    assert redis_client.zrem(index, victim) == 1

    found = cli("verify", "cli_models:Shop", "--json", "--quiet")
    assert found.returncode == 1, found.stdout + found.stderr
    report = json.loads(found.stdout)
    assert report["ok"] is False and sum(report["problems"].values()) == 1
    # the same, by the stored schema: no model module on the path at all
    by_name = bare_cli("verify", "--collection", "cli_shops", "--json", "--quiet")
    assert by_name.returncode == 1, by_name.stdout + by_name.stderr
    assert json.loads(by_name.stdout)["problems"] == report["problems"]

    fixed = cli("repair", "cli_models:Shop", "--json", "--quiet")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert json.loads(fixed.stdout)["after"]["problems"] == {}
    assert redis_client.zscore(index, victim) is not None
    assert cli("verify", "cli_models:Shop", "--quiet").returncode == 0
    assert bare_cli("verify", "--collection", "cli_shops", "--quiet").returncode == 0


def test_sweep_purges_what_expired_documents_left(conn: Any, redis_client: Any,
                                                 cli: Any) -> None:
    docs = Shop.objects.bulk_create_sync([Shop(id=str(i), city="oslo") for i in range(12)])
    for doc in docs[:5]:
        assert doc.touch_sync(0.001)
    keys = KeySpace(Shop._meta)
    while redis_client.exists(*(keys.doc(0, str(i)) for i in range(5))):
        time.sleep(0.01)  # (Redis expires them within milliseconds)
    assert redis_client.zcard(keys.ids(0)) == 12  # their ids wait for the sweep

    swept = cli("sweep", "cli_models:Shop", "--json", "--quiet")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert json.loads(swept.stdout)["purged"] == 5
    assert redis_client.zcard(keys.ids(0)) == 7
    assert redis_client.zcard(keys.index(0, "city")) == 7
    again = cli("sweep", "cli_models:Shop")
    assert again.returncode == 0 and "purged 0" in again.stdout


def test_usage_errors_exit_with_2(conn: Any, cli: Any) -> None:
    missing = cli("verify", "cli_models:Nothing")
    assert missing.returncode == 2 and "cannot load the model" in missing.stderr
    no_module = cli("verify", "no_such_module:Shop")
    assert no_module.returncode == 2
    no_url = cli("verify", "cli_models:Shop", url=None)
    assert no_url.returncode == 2 and "--url" in no_url.stderr
    unknown = cli("rebuild", "cli_models:Shop")
    assert unknown.returncode == 2
    unreachable = cli("verify", "cli_models:Shop", url="redis://127.0.0.1:1/0")
    assert unreachable.returncode == 2 and "error:" in unreachable.stderr
    nothing = cli("verify")
    assert nothing.returncode == 2 and "--collection" in nothing.stderr
    no_such = cli("verify", "--collection", "no_such_collection")
    assert no_such.returncode == 2 and "no collection qorm:no_such_collection" in no_such.stderr


def test_repartition_moves_the_collection_and_reports_progress(conn: Any, cli: Any) -> None:
    one, four = parcel_model(1), parcel_model(4)
    one.objects.bulk_create_sync([one(kind=("box", "bag")[i % 2]) for i in range(90)])
    ids = {doc.id for doc in one.objects.all_sync()}

    moved = cli("repartition", "cli_models:Parcel", "--from", "1", "--batch", "20")
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert moved.stdout.startswith("repartition: done; scanned 90"), moved.stdout
    assert "partition 1/1" in moved.stderr  # the progress, one line per batch
    assert {doc.id for doc in four.objects.all_sync()} == ids
    assert four.objects.filter(kind="box").count_sync() == 45
    again = cli("repartition", "cli_models:Parcel", "--from", "4", "--json", "--quiet")
    assert again.returncode == 0 and json.loads(again.stdout)["moved"] == 0


def test_repartition_usage_errors_exit_with_2(conn: Any, cli: Any) -> None:
    no_from = cli("repartition", "cli_models:Parcel")
    assert no_from.returncode == 2 and "--from" in no_from.stderr
    misplaced = cli("verify", "cli_models:Shop", "--from", "2")
    assert misplaced.returncode == 2 and "unrecognized arguments: --from" in misplaced.stderr
    bad = cli("repartition", "cli_models:Parcel", "--from", "0")
    assert bad.returncode == 2 and "from_partitions" in bad.stderr
