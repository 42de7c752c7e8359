"""``explain()`` on Redis: the planner's plan, and which of its drivers ``query.lua`` chose
(named by position in the program: :class:`.replies.QueryPlanReply`), as an
:class:`~quantumorm.engine.contract.Explanation`. Nothing is parsed from text."""

from __future__ import annotations

from typing import Any

from ...engine.contract import Explanation
from ...options import ModelOptions
from ...query.nodes import QuerySpec
from .core import ModelState
from .planner import Plan
from .reader import two_phase_pays
from .replies import query_plan_reply

#: what a driver kind is called in explain()'s "strategy"
STRATEGIES = {"WALK": "index walk (in order)", "RANGE": "index range", "IDS": "id lookup",
              "ALL": "scan", "UNION": "union of index ranges"}


def explanation(options: ModelOptions, state: ModelState, spec: QuerySpec, plan: Plan,
                replies: list[Any]) -> Explanation:
    """``replies``: the "plan" replies of every partition (the first one's choice is shown;
    the estimates are summed)."""
    chosen_by = query_plan_reply(replies[0])
    estimate = sum(query_plan_reply(reply).estimate for reply in replies)
    drivers = plan.driver.preorder()
    chosen = drivers[chosen_by.chosen - 1]
    read = {name for n in chosen_by.used for name in drivers[n - 1].indexes}
    indexes = tuple(name for name in options.indexes_by_name() if name in read)
    walks_ids = chosen.kind == "WALK" and not chosen.indexes
    strategy = "scan (in id order)" if walks_ids else STRATEGIES[chosen.kind]
    if plan.server_order:
        ordering = "server, by index walk" if chosen.kind == "WALK" else "server, sorted"
    else:
        ordering = "client, Python sort"
    return Explanation(
        backend="redis",
        strategy=strategy,
        indexes=indexes,
        scanned=chosen.kind == "ALL" or walks_ids,
        server_filter="none" if plan.server_filter == "TRUE"
        else "none (the driver yields exactly the matches)" if chosen_by.exact
        else plan.server_filter,
        client_filter=None if plan.residual is None else repr(plan.residual),
        ordering=ordering,
        details={"candidates considered": plan.driver.label,
                 "estimated candidates": estimate,
                 "partitions": options.partitions,
                 **({} if chosen_by.exact else _tests(plan)),
                 **_merging(options, spec, plan),
                 **_building(state)},
    )


def _tests(plan: Plan) -> dict[str, str]:
    """explain()'s note on how each condition the script checks is tested (when the chosen
    driver does not yield exactly the matches; a condition it already satisfies is skipped
    at run time)."""
    if not plan.tests:
        return {}
    return {"condition tests": "; ".join(f"{cond}: {how}" for cond, how in plan.tests)}


def _merging(options: ModelOptions, spec: QuerySpec, plan: Plan) -> dict[str, str]:
    """explain()'s note on how the partitions' ordered windows are merged."""
    if options.partitions == 1 or not plan.server_order:
        return {}
    if two_phase_pays(options.partitions, spec.window):
        return {"merge": f"two phases: each partition's first {spec.window} ids and sort "
                         f"keys, then the documents of the {spec.limit} kept"}
    return {"merge": "one phase: each partition's first rows with their sort keys"}


def _building(state: ModelState) -> dict[str, str]:
    """explain()'s note on indexes queries may not use yet."""
    building = state.schema.building() if state.schema is not None else ()
    if not building:
        return {}
    return {"indexes building": f"{', '.join(building)} (not used until built: run "
                                f"{state.options.model_name}.objects.reindex())"}
