"""Progress of long work on standard error: rich's bar when rich is installed
(``pip install 'quantumorm[cli]'``) and standard error is a terminal; otherwise a line per
tenth of the way, so that logs stay readable. Written by hand only for that fallback: rich
draws the real bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

try:  # (optional: the ``cli`` extra)
    import rich.console as rich_console
    import rich.progress as rich_progress
except ImportError:
    rich_console = rich_progress = None  # type: ignore[assignment, unused-ignore]

#: ``progress(done, total)``: what the maintenance operations call
Progress = Callable[[int, int], None]


@contextmanager
def progress_bar(label: str, stream: TextIO | None, unit: str = "documents"
                 ) -> Iterator[Progress | None]:
    """A ``progress(done, total)`` callback drawing on ``stream`` (None: no progress)."""
    if stream is None:
        yield None
        return
    if rich_progress is None or not stream.isatty():
        yield lines(label, stream, unit)
        return
    # (on ``stream``: rich's default console is standard output, where --json goes)
    console = rich_console.Console(file=stream)
    with rich_progress.Progress(console=console, transient=False) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
        yield update


def lines(label: str, stream: TextIO, unit: str = "documents") -> Progress:
    """The plain fallback: one line per tenth of the way."""
    started, shown = time.monotonic(), [-1]

    def update(done: int, total: int) -> None:
        tenth = 10 if total == 0 else min(10, done * 10 // total)
        if tenth > shown[0]:
            shown[0] = tenth
            print(f"{label}: {done}/{total} {unit} ({time.monotonic() - started:.1f} s)",
                  file=stream, flush=True)
    return update


__all__ = ["Progress", "lines", "progress_bar"]
