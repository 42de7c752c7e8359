"""``python -m quantumorm verify|reindex|repair|repartition``: run as a separate process, as
an operator would, against the test server; the exit codes are what scripts rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from quantumorm import Document, StringField
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
def cli(tmp_path: Path, redis_url: str) -> Any:
    (tmp_path / "cli_models.py").write_text(MODELS)

    def run(*args: str, url: str | None = redis_url) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        env.pop("REDIS_URL", None)
        env.pop("QUANTUMORM_URL", None)
        command = [sys.executable, "-m", "quantumorm", *args]
        if url is not None:
            command += ["--url", url]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    return run


def test_verify_reindex_repair_and_their_exit_codes(conn: Any, redis_client: Any,
                                                    cli: Any) -> None:
    Shop.objects.bulk_create_sync([Shop(city=("paris", "rome")[i % 2]) for i in range(1200)])

    clean = cli("verify", "cli_models:Shop")
    assert clean.returncode == 0, clean.stderr
    assert "Shop: OK: 1200 documents" in clean.stdout
    # the fallback progress (not a terminal): a line per tenth, the last one complete
    assert clean.stderr.splitlines()[-1].startswith("verify Shop: 1200/1200 documents")

    redis_client.delete(KeySpace(Shop._meta).meta(0, "7"))
    damaged = cli("verify", "cli_models:Shop", "--json", "--quiet")
    assert damaged.returncode == 1 and damaged.stderr == ""
    report = json.loads(damaged.stdout)
    assert report["ok"] is False and report["problems"]["missing_meta"] == 1
    assert report["samples"]["missing_meta"] == ["7"]

    repaired = cli("repair", "cli_models:Shop", "--quiet")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "repaired: missing_meta: 1" in repaired.stdout
    assert cli("verify", "cli_models:Shop", "--quiet").returncode == 0

    # a new release adds an index and a defaulted field: reindex builds them
    built = cli("reindex", "cli_models:NewShop", "--batch", "100")
    assert built.returncode == 0, built.stdout + built.stderr
    assert built.stdout.startswith("NewShop: reindexed color: ready"), built.stdout
    assert cli("verify", "cli_models:NewShop", "--quiet").returncode == 0


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
    assert misplaced.returncode == 2 and "belong to repartition" in misplaced.stderr
    bad = cli("repartition", "cli_models:Parcel", "--from", "0")
    assert bad.returncode == 2 and "from_partitions" in bad.stderr
