"""docs/testing.md's Python examples run, against the test server (the page's URL replaced
by the test server's), and the test file it shows passes under pytest."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import quantumorm
from quantumorm.testing import servers

PAGE = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
EXAMPLE_URL = "redis://localhost:6379/0"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)


def test_the_page_has_its_examples() -> None:
    assert len(BLOCKS) == 2 and "def test_" in BLOCKS[0] and EXAMPLE_URL in BLOCKS[1]


def test_the_factory_example_runs(redis_url: str) -> None:
    namespace: dict[str, Any] = {"__name__": "docs_testing_factory"}
    try:
        exec(compile(BLOCKS[1].replace(EXAMPLE_URL, redis_url), "docs/testing.md", "exec"),
             namespace)
    finally:
        quantumorm.close_all()
    assert namespace["Member"].__name__ == "Member"


def test_the_test_file_passes(pytester: pytest.Pytester, redis_url: str,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(servers.URL_VARIABLE, redis_url)
    pytester.makeini("[pytest]\nasyncio_mode = auto\n"
                     "asyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_docs_example=BLOCKS[0])
    pytester.runpytest("-p", "quantumorm.testing.plugin").assert_outcomes(passed=3)
