"""Running the command line as an operator runs it: ``python -m quantumorm ...`` in a separate
process, with this tree's ``src`` first on PYTHONPATH (so the tree is tested, not a copy
installed in the environment) and, when a test gives models, their directory after it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import quantumorm

#: this tree's ``src`` directory
SOURCE = str(Path(quantumorm.__file__).resolve().parents[1])

Run = Callable[..., subprocess.CompletedProcess[str]]


def environment(models: Path | None = None) -> dict[str, str]:
    """The environment of a command: no URL variables; this tree's code first."""
    paths = [SOURCE] + ([str(models)] if models is not None else [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    env.pop("REDIS_URL", None)
    env.pop("QUANTUMORM_URL", None)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "quantumorm", *args]


def runner(models: Path | None, default_url: str | None) -> Run:
    def run(*args: str, url: str | None = default_url,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full = command(*args) + (["--url", url] if url is not None else [])
        return subprocess.run(full, capture_output=True, text=True,
                              env={**environment(models), **(env or {})}, timeout=180)
    return run


