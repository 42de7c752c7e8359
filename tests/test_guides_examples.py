"""Every Python example of the guides in docs/ runs, in order, one namespace per page.

Each page starts from a flushed database; ``redis://localhost:6379/0`` becomes the test
server's URL and ``redis+cluster://localhost:7000`` the test cluster's. A block preceded by
``<!-- not run: REASON -->`` is skipped.
"""

from __future__ import annotations

import linecache
import re
from pathlib import Path
from typing import Any

import pytest

import quantumorm

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = tuple(p for p in ("redis.md", "cluster.md", "caching.md", "best-practices.md")
              if (DOCS / p).exists())
EXAMPLE_URL = "redis://localhost:6379/0"
CLUSTER_URL = "redis+cluster://localhost:7000"
BLOCK = re.compile(r"(<!-- not run: [^>]+ -->\n)?```python\n(.*?)```", re.S)


def blocks(page: str) -> list[str]:
    text = (DOCS / page).read_text(encoding="utf-8")
    return [code for skip, code in BLOCK.findall(text) if not skip]


@pytest.mark.parametrize("page", PAGES)
def test_guide_examples_run(page: str, request: pytest.FixtureRequest, conn: Any,
                            redis_url: str) -> None:
    code = blocks(page)
    assert code, f"{page} has no runnable example"
    cluster_url = None
    if any(CLUSTER_URL in block for block in code):
        cluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        cluster_url = cluster.url
    namespace: dict[str, Any] = {"__name__": f"guide_{page.removesuffix('.md')}"}
    try:
        for position, block in enumerate(code):
            block = block.replace(EXAMPLE_URL, redis_url)
            if cluster_url is not None:
                block = block.replace(CLUSTER_URL, cluster_url)
            name = f"docs/{page}:block{position}"
            # (registered so that a failing example's traceback shows its line)
            linecache.cache[name] = (len(block), None, block.splitlines(True), name)
            exec(compile(block, name, "exec"), namespace)
    finally:
        quantumorm.close_all()
