"""The types of references (``tests/typing/references_code.py``), checked by mypy --strict
as a user's type checker would: every line marked ``# E:`` has an error, no other line."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mypy import api

import quantumorm

CASE = Path(__file__).resolve().parents[1] / "typing" / "references_code.py"
_ERROR = re.compile(r"^(?P<path>[^:\n]+):(?P<line>\d+): error: (?P<message>.*)$", re.MULTILINE)
_MARKER = re.compile(r"\s# E: \S")


def test_reference_types(tmp_path: Path) -> None:
    source = Path(quantumorm.__file__).resolve().parents[1]
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nstrict = True\n"
                      f"mypy_path = {source}\n"
                      f"python_version = {sys.version_info[0]}.{sys.version_info[1]}\n"
                      "[mypy-redis.*,rich.*]\nignore_missing_imports = True\n")
    stdout, stderr, status = api.run([
        "--config-file", str(config), "--cache-dir", str(tmp_path / "cache"),
        "--no-error-summary", "--hide-error-context", "--no-pretty", str(CASE)])
    assert status in (0, 1) and not stderr, f"mypy did not run ({status}):\n{stderr}{stdout}"
    found: dict[int, list[str]] = {}
    for match in _ERROR.finditer(stdout):
        found.setdefault(int(match["line"]), []).append(match["message"])
    text = CASE.read_text().splitlines()
    marked = {n for n, line in enumerate(text, 1) if _MARKER.search(line)}
    assert len(marked) >= 6  # the file was read and its markers found
    missed = sorted(marked - found.keys())
    unexpected = {n: found[n] for n in sorted(found.keys() - marked)}
    assert not missed, "accepted by mypy, but must fail:\n" + "\n".join(
        f"  line {n}: {text[n - 1].strip()}" for n in missed)
    assert not unexpected, "errors on lines not marked '# E:':\n" + "\n".join(
        f"  line {n}: {m}" for n, ms in unexpected.items() for m in ms)
