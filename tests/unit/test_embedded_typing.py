"""Embedded documents' types, checked by mypy as a user's type checker would see them:
``tests/typing/embedded_code.py`` must pass ``mypy --strict`` (its ``assert_type`` calls pin
``doc.address`` to ``Address | None`` and ``doc.address.city`` to ``str | None``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mypy import api

import quantumorm

CODE = Path(__file__).resolve().parents[1] / "typing" / "embedded_code.py"
MUST_FAIL = CODE.with_name("embedded_must_fail.py")


def _mypy(tmp_path: Path, path: Path) -> tuple[str, int]:
    source = Path(quantumorm.__file__).resolve().parents[1]
    config = tmp_path / "mypy.ini"
    config.write_text(f"[mypy]\nstrict = True\nmypy_path = {source}\n"
                      f"python_version = {sys.version_info[0]}.{sys.version_info[1]}\n"
                      "[mypy-redis.*,rich.*]\nignore_missing_imports = True\n")
    stdout, stderr, status = api.run([
        "--config-file", str(config), "--cache-dir", str(tmp_path / "cache"),
        "--no-error-summary", "--hide-error-context", "--no-pretty", str(path)])
    if status not in (0, 1) or stderr:
        pytest.fail(f"mypy did not run ({status}):\n{stderr}{stdout}")
    return stdout, status


def test_embedded_code_type_checks(tmp_path: Path) -> None:
    stdout, status = _mypy(tmp_path, CODE)
    assert stdout == "" and status == 0, stdout


def test_embedded_misuse_is_rejected(tmp_path: Path) -> None:
    stdout, _ = _mypy(tmp_path, MUST_FAIL)
    found = {int(line.split(":")[1]) for line in stdout.splitlines() if ": error:" in line}
    marked = {n for n, line in enumerate(MUST_FAIL.read_text().splitlines(), 1)
              if "# E:" in line}
    assert marked and found == marked, stdout
