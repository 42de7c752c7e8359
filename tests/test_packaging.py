"""The package's metadata (pyproject.toml) says what the release is: one version (the
package's ``__version__``, the changelog's newest section), the keywords and classifiers
that find it, the plugin's entry point and the files a wheel must carry. (``.ci/wheel``, run by
``.ci/run``, builds the wheel and checks what it holds: ``.ci/wheel_check.py``.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import quantumorm

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        data: dict[str, Any] = tomllib.load(file)
    return data


def test_one_version(project: dict[str, Any]) -> None:
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    attr = project["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "quantumorm.__version__"
    assert re.fullmatch(r"\d+\.\d+\.\d+", quantumorm.__version__)


def test_changelog_top_section_is_the_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## \[([^\]]+)\]", text, re.M)
    assert sections[0] == quantumorm.__version__
    assert "0.1.0" in sections
    for section in sections:  # Keep a Changelog: every version links to its changes
        assert re.search(rf"^\[{re.escape(section)}\]: https://", text, re.M), section
    assert "Keep a Changelog" in text


def test_keywords_classifiers_and_urls(project: dict[str, Any]) -> None:
    meta = project["project"]
    for keyword in ("redis", "cache", "key-value", "orm", "odm", "async"):
        assert keyword in meta["keywords"]
    classifiers = set(meta["classifiers"])
    for version in ("3.10", "3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert {"Typing :: Typed", "Framework :: AsyncIO", "Topic :: Database"} <= classifiers
    assert meta["license"] == "MIT"
    assert meta["requires-python"] == ">=3.10"
    assert set(meta["urls"]) == {"Homepage", "Documentation", "Changelog", "Issues"}


def test_extras_and_entry_points(project: dict[str, Any]) -> None:
    meta = project["project"]
    extras = meta["optional-dependencies"]
    for extra in ("redis", "postgres", "prometheus", "otel", "testing"):
        assert extra in extras
    assert any(dep.startswith("build") for dep in extras["test"])
    plugin = meta["entry-points"]["pytest11"]
    # the entry point's name is the module's: -p and pytest_plugins name the same plugin
    assert plugin == {"quantumorm.testing.plugin": "quantumorm.testing.plugin"}
    assert meta["scripts"]["quantumorm"] == "quantumorm.tools.cli:main"


def test_package_data_covers_the_non_python_files(project: dict[str, Any]) -> None:
    patterns = project["tool"]["setuptools"]["package-data"]["quantumorm"]
    package = ROOT / "src" / "quantumorm"
    others = {path.relative_to(package).as_posix() for path in package.rglob("*")
              if path.is_file() and path.suffix not in (".py", ".pyc")
              and "__pycache__" not in path.parts}
    covered = {path.relative_to(package).as_posix() for pattern in patterns
               for path in package.glob(pattern)}
    assert others and others <= covered, f"not in package-data: {sorted(others - covered)}"
