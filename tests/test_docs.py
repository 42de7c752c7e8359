"""Every Python example of the documentation site (``docs/**/*.md``) runs and does what it says.

The blocks of one page run in order in one namespace, so a page builds on its earlier blocks,
on a flushed database, with the examples' ``redis://localhost:6379/0`` replaced by the test
server's URL (as :mod:`tests.test_readme` does) and ``redis+cluster://localhost:7000`` by the
test cluster's (started, and flushed, only for a page that names it). A block may ``await``
at top level, as in ``python -m asyncio``: it runs on the page's event loop (so a block that
awaits cannot call a ``_sync`` method, exactly as in an application). A block that must not
run is preceded by the line ``<!-- not run: REASON -->``; the reason is required and such
blocks stay few.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import inspect
import logging
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import quantumorm

DOCS = Path(__file__).resolve().parent.parent / "docs"
EXAMPLE_URL = "redis://localhost:6379/0"
CLUSTER_URL = "redis+cluster://localhost:7000"
#: how many blocks of the whole site may be marked ``not run`` (each with its reason)
MAX_SKIPPED = 8

# A fenced block, possibly indented (in an admonition or a list), with attributes after the
# language (```python title="app.py"```, ```python { .annotate }```); the closing fence has
# the same indent.
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```[ \t]*(?P<lang>[\w+-]*)(?P<attrs>[^\n]*)\n"
    r"(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.M | re.S,
)
NOT_RUN = re.compile(r"<!--\s*not run:(?P<reason>.*?)-->")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    code: str
    skip_reason: str | None


def page_blocks(path: Path) -> list[Block]:
    """The ``python`` blocks of one page, each with the reason it is not run, if any."""
    return blocks_of(path.read_text(encoding="utf-8"), path.relative_to(DOCS).as_posix())


def blocks_of(text: str, page: str) -> list[Block]:
    blocks = []
    markers_used = set()
    for match in FENCE.finditer(text):
        if match["lang"] not in ("python", "py"):
            continue
        line = text.count("\n", 0, match.start()) + 1
        preceding = text[: match.start()].rstrip()
        before_start = preceding.rfind("\n") + 1
        marker = NOT_RUN.fullmatch(preceding[before_start:].strip())
        reason = None
        if marker is not None:
            reason = marker["reason"].strip()
            assert reason, f"{page}:{line}: '<!-- not run: -->' needs a reason"
            markers_used.add(text.count("\n", 0, before_start))
        code = textwrap.dedent(match["body"]) if match["indent"] else match["body"]
        blocks.append(Block(page, line, code, reason))
    # a marker that precedes no Python block is a mistake (it would silence nothing)
    for marker in NOT_RUN.finditer(text):
        marker_line = text.count("\n", 0, marker.start())
        assert marker_line in markers_used, (
            f"{page}:{marker_line + 1}: a 'not run' marker must be the line before a python block"
        )
    return blocks


PAGES = sorted(DOCS.rglob("*.md"))


def _page_param(page: Path) -> Any:
    uses_cluster = any(CLUSTER_URL in block.code for block in page_blocks(page)
                       if block.skip_reason is None)
    return pytest.param(page, id=page.relative_to(DOCS).as_posix(),
                        marks=[pytest.mark.cluster] if uses_cluster else [])


def test_site_has_examples() -> None:
    blocks = [block for page in PAGES for block in page_blocks(page)]
    skipped = [block for block in blocks if block.skip_reason is not None]
    print(f"docs: {len(blocks)} python blocks in {len(PAGES)} pages, {len(skipped)} not run:")
    for block in skipped:
        print(f"  {block.page}:{block.line}: {block.skip_reason}")
    assert len(blocks) >= 20
    assert len(skipped) <= MAX_SKIPPED, "too many examples are not run: make them run"


def test_fence_parsing() -> None:
    text = ('```python title="a.py"\nx = 1\n```\n\n<!-- not run: needs a cluster -->\n'
            "```python\ny = 2\n```\n\n!!! note\n    ```python\n    z = 3\n    ```\n"
            "```bash\nls\n```\n")
    blocks = blocks_of(text, "probe.md")
    assert [(b.line, b.code, b.skip_reason) for b in blocks] == [
        (1, "x = 1\n", None), (6, "y = 2\n", "needs a cluster"), (11, "z = 3\n", None)]
    # a marker must say why, and must sit right before a python block
    with pytest.raises(AssertionError, match="needs a reason"):
        blocks_of("<!-- not run: -->\n```python\nx = 1\n```\n", "probe.md")
    with pytest.raises(AssertionError, match="the line before a python block"):
        blocks_of("<!-- not run: later -->\n\ntext\n\n```python\nx = 1\n```\n", "probe.md")


class _LoggingState:
    """Logging as it was: a page may configure logging, as its reader would."""

    def __init__(self) -> None:
        manager = logging.root.manager
        self.handlers = list(logging.root.handlers)
        self.root_level = logging.root.level
        self.levels = {
            name: logger.level for name, logger in manager.loggerDict.items()
            if isinstance(logger, logging.Logger)
        }

    def restore(self) -> None:
        for handler in logging.root.handlers:
            if handler not in self.handlers:
                logging.root.removeHandler(handler)
        logging.root.setLevel(self.root_level)
        for name, logger in logging.root.manager.loggerDict.items():
            if isinstance(logger, logging.Logger):
                logger.setLevel(self.levels.get(name, logging.NOTSET))


@pytest.mark.parametrize("page", [_page_param(page) for page in PAGES
                                  if any(b.skip_reason is None for b in page_blocks(page))])
def test_page_examples_run(page: Path, conn: Any, redis_url: str,
                           request: pytest.FixtureRequest) -> None:
    blocks = [block for block in page_blocks(page) if block.skip_reason is None]
    urls = {EXAMPLE_URL: redis_url}
    if any(CLUSTER_URL in block.code for block in blocks):
        cluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        urls[CLUSTER_URL] = cluster.url
    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    loop = asyncio.new_event_loop()
    logs = _LoggingState()
    try:
        for block in blocks:
            # compiled at its line of the page, so that a traceback shows the page's line
            source = block.code
            for example, real in urls.items():
                source = source.replace(example, real)
            source = "\n" * block.line + source
            code = compile(source, str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            result = eval(code, namespace)  # noqa: S307 (the documentation's own examples)
            if code.co_flags & inspect.CO_COROUTINE:
                loop.run_until_complete(result)
    finally:
        logs.restore()
        loop.run_until_complete(quantumorm.aclose_all())
        loop.close()
        quantumorm.close_all()


def test_reference_docstrings_become_markdown() -> None:
    """The API reference's griffe extension (docs/hooks/griffe_rst.py) turns the docstrings'
    reStructuredText into Markdown: roles into code, ``::`` blocks and ``>>>`` examples into
    fenced blocks."""
    pytest.importorskip("griffe")  # the docs extra
    spec = importlib.util.spec_from_file_location("griffe_rst", DOCS / "hooks" / "griffe_rst.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = ("See :class:`~quantumorm.errors.VersionConflict` and :meth:`save`. For example::\n"
            "\n    a = 1\n    if a:\n        b = 2\n\nThen:\n\n>>> 1 + 1\n2\n")
    assert module.to_markdown(text) == (
        "See `VersionConflict` and `save`. For example:\n\n```\na = 1\nif a:\n    b = 2\n```\n"
        "\nThen:\n\n```pycon\n>>> 1 + 1\n2\n```\n")
