"""Driving a cached operation by hand, one plan at a time, to interleave it with others
exactly where a race would (no sleeps, no threads)."""

from __future__ import annotations

from typing import Any

from quantumorm.cache.dispatch import Pause, ToCache


class Stepper:
    """An operation run with a connection's blocking executor, paused before the first
    plan for the primary store that ``stop`` more plans of its own."""

    def __init__(self, op: Any, executor: Any) -> None:
        self.op, self.executor = op, executor
        self.plan: Any = next(op)
        self.done = False
        self.result: Any = None

    def _advance(self, reply: Any) -> None:
        try:
            self.plan = self.op.send(reply)
        except StopIteration as stop:
            self.done, self.result = True, stop.value

    def run_cache_steps(self) -> None:
        """Run plans until the next one is for the primary store (or the end)."""
        while not self.done and isinstance(self.plan, (ToCache, Pause)):
            self._advance(self.executor.execute(self.plan))

    def execute_primary(self) -> Any:
        """Execute the pending primary plan now; return its reply (not yet sent back)."""
        assert not self.done and not isinstance(self.plan, (ToCache, Pause))
        return self.executor.execute(self.plan)

    def resume(self, reply: Any) -> Any:
        """Send ``reply`` back and run to the end; return the operation's result."""
        self._advance(reply)
        while not self.done:
            self._advance(self.executor.execute(self.plan))
        return self.result
