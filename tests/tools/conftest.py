"""Fixtures of the command line tests (see ``cli_support``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import runner

from quantumorm import registry


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """A directory for the test's model modules (on the command's PYTHONPATH)."""
    path = tmp_path / "models"
    path.mkdir()
    return path


@pytest.fixture
def run_cli(models_dir: Path, redis_url: str) -> Any:
    """``run_cli(*args, url=...)``: the command against the test server, models importable."""
    return runner(models_dir, redis_url)


@pytest.fixture
def bare_cli(redis_url: str) -> Any:
    """The command with no model module importable (only this tree's ``src``)."""
    return runner(None, redis_url)


@pytest.fixture(autouse=True)
def registry_put_back() -> Iterator[None]:
    """The health tests register named connections (several backends) and close them: put
    the registry back as it was, so that a closed one is not left as a backend's default
    for the tests that follow (a later ``create_connection(backend="sqlite")`` would not
    replace it)."""
    before = registry.snapshot()
    yield
    for connection in registry.restore(before):
        with contextlib.suppress(Exception):  # (most are closed already)
            connection.close()
