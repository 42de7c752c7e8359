"""``python -m quantumorm verify|reindex|repair`` on a PostgreSQL collection, run as a
separate process as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from postgres_helpers import sql

import quantumorm
from quantumorm import Document, StringField, sortable

MODELS = textwrap.dedent('''
    from quantumorm import Document, StringField

    class Shop(Document):
        city = StringField(indexed=True)

        class Meta:
            backend = "postgres"
            collection = "cli_shops"
''')


class Shop(Document):  # the same declaration as cli_models.Shop
    city = StringField(indexed=True)

    class Meta:
        backend = "postgres"
        collection = "cli_shops"


def _cli(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "cli_models.py").write_text(MODELS)
    # this tree's quantumorm, whatever the environment has installed
    source = str(Path(quantumorm.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), source])}
    env.pop("QUANTUMORM_URL", None)
    return subprocess.run([sys.executable, "-m", "quantumorm", *args, "--url", url],
                          capture_output=True, text=True, env=env, timeout=120)


def test_verify_reindex_repair_on_postgres(pg: Any, postgres_url: str, tmp_path: Path) -> None:
    Shop.objects.bulk_create_sync([Shop(id=str(i), city=("paris", "rome")[i % 2])
                                   for i in range(300)])
    clean = _cli(tmp_path, postgres_url, "verify", "cli_models:Shop")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "Shop: OK: 300 documents" in clean.stdout
    # damage one row's sort key behind the library's back
    sql(postgres_url, "UPDATE \"qorm:cli_shops\" SET k_city = '\\x0100'::bytea "
                      "WHERE id_key = %s", sortable.id_key("7"))
    assert Shop.objects.filter(city="rome").count_sync() == 149
    damaged = _cli(tmp_path, postgres_url, "verify", "cli_models:Shop")
    assert damaged.returncode == 1, damaged.stdout + damaged.stderr
    repaired = _cli(tmp_path, postgres_url, "repair", "cli_models:Shop")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert Shop.objects.filter(city="rome").count_sync() == 150
    rebuilt = _cli(tmp_path, postgres_url, "reindex", "cli_models:Shop")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert _cli(tmp_path, postgres_url, "verify", "cli_models:Shop", "--quiet").returncode == 0
