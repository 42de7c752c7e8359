"""``python -m quantumorm verify|reindex|repair``: run as a separate process, as an operator
would, against the test server; the exit codes are what scripts rely on."""

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
''')


class Shop(Document):  # the same declaration as cli_models.Shop
    city = StringField(indexed=True)

    class Meta:
        collection = "cli_shops"


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
