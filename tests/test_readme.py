"""Every Python example in README.md runs, against the test server, and does what it says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import quantumorm

README = Path(__file__).resolve().parent.parent / "README.md"
EXAMPLE_URL = "redis://localhost:6379/0"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 2
    # every example runs here: on the test Redis server, or on an in-memory SQLite database
    assert all(EXAMPLE_URL in block or 'url="sqlite://"' in block for block in BLOCKS)


@pytest.mark.parametrize("position", range(len(BLOCKS)))
def test_readme_example_runs(position: int, conn: Any, redis_url: str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    code = BLOCKS[position].replace(EXAMPLE_URL, redis_url)
    namespace: dict[str, Any] = {"__name__": f"readme_example_{position}"}
    exec(compile(code, f"README.md:block{position}", "exec"), namespace)
    if "User" in namespace:
        user = namespace["User"]
        assert user.objects.count_sync() == 101
        ada = user.objects.get_sync(email="ada@example.org")
        # ada was created first and saved again after the 100 others: the last write
        others = [u.version for u in user.objects.all_sync() if u.id != ada.id]
        assert str(ada.balance) == "10.05" and ada.version > max(others) > 0
        out = capsys.readouterr().out
        assert "scan:          no" in out  # explain() of an indexed range
    quantumorm.close_all()
