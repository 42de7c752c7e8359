"""The public API's types, checked by mypy as a user's type checker would see them.

``tests/typing/user_code.py`` uses the API broadly with ``assert_type`` on every result and
must pass ``mypy --strict``; ``tests/typing/must_fail.py`` must have an error on exactly
the lines marked ``# E: <why>`` and on no other line. Both are checked against the
``quantumorm`` these tests import, on the Python running the tests (so the 3.10 run checks
the ``typing_extensions`` fallbacks).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from mypy import api

import quantumorm

CASES = Path(__file__).resolve().parents[1] / "typing"
USER_CODE = CASES / "user_code.py"
MUST_FAIL = CASES / "must_fail.py"
_ERROR = re.compile(r"^(?P<path>[^:\n]+):(?P<line>\d+): error: (?P<message>.*)$", re.MULTILINE)
_MARKER = re.compile(r"\s# E: \S")


@pytest.fixture(scope="module")
def errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[int, list[str]]]:
    """mypy's errors per file name and line, from one run over both files."""
    work = tmp_path_factory.mktemp("mypy")
    source = Path(quantumorm.__file__).resolve().parents[1]  # the quantumorm under test
    config = work / "mypy.ini"
    config.write_text(
        "[mypy]\n"
        "strict = True\n"
        f"mypy_path = {source}\n"
        f"python_version = {sys.version_info[0]}.{sys.version_info[1]}\n"
        "[mypy-redis.*,rich.*]\n"
        "ignore_missing_imports = True\n"
    )
    stdout, stderr, status = api.run([
        "--config-file", str(config), "--cache-dir", str(work / "cache"),
        "--no-error-summary", "--hide-error-context", "--no-pretty",
        str(USER_CODE), str(MUST_FAIL),
    ])
    assert status in (0, 1) and not stderr, f"mypy did not run ({status}):\n{stderr}{stdout}"
    found: dict[str, dict[int, list[str]]] = {}
    for match in _ERROR.finditer(stdout):
        lines = found.setdefault(Path(match["path"]).name, {})
        lines.setdefault(int(match["line"]), []).append(match["message"])
    return found


def _show(lines: dict[int, list[str]]) -> str:
    return "\n".join(f"  line {n}: {m}" for n in sorted(lines) for m in lines[n])


def test_user_code_type_checks(errors: dict[str, dict[int, list[str]]]) -> None:
    found = errors.get(USER_CODE.name, {})
    assert not found, f"mypy --strict rejects {USER_CODE.name}:\n{_show(found)}"


def test_misuse_is_rejected_on_every_marked_line_only(
        errors: dict[str, dict[int, list[str]]]) -> None:
    text = MUST_FAIL.read_text().splitlines()
    marked = {n for n, line in enumerate(text, 1) if _MARKER.search(line)}
    assert len(marked) >= 30  # the file was read and its markers found
    found = errors.get(MUST_FAIL.name, {})
    missed = sorted(marked - found.keys())
    unexpected = {n: found[n] for n in sorted(found.keys() - marked)}
    assert not missed, "accepted by mypy, but must fail:\n" + "\n".join(
        f"  line {n}: {text[n - 1].strip()}" for n in missed)
    assert not unexpected, f"errors on lines not marked '# E:':\n{_show(unexpected)}"
