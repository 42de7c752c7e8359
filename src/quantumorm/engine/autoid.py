"""The auto-id retry loop every backend's ``write`` runs, written once.

Ids of new documents come from the store's counter (``allocate``); a user may already have
taken one of its values as an id, so that insert fails with "exists": it gets the next free
value and is sent again, up to :data:`AUTO_ID_ATTEMPTS` rounds. A backend's ``send`` may also
ask for a request to be sent again as it is (it returns None for it: e.g. the Redis backend
when a script refused an outdated schema layout, having read the schema again).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import DuplicateIdError
from .contract import WriteRequest, WriteResult
from .drive import Op

#: rounds of fresh auto ids for inserts whose allocated id a user had already taken
AUTO_ID_ATTEMPTS = 5

#: sends the requests at the given positions; returns (position, its result), in any
#: order, with None for a request to send again as it is in the next round
Send = Callable[[list[WriteRequest], list[int]], Op[list[tuple[int, WriteResult | None]]]]


def write(model_name: str, requests: Sequence[WriteRequest],
          allocate: Callable[[int], Op[list[str]]], send: Send,
          allocate_here: bool = True, extra_rounds: int = 0) -> Op[list[WriteResult]]:
    """The results of ``requests``, in order. ``allocate(n)``: n fresh ids from the store.
    ``allocate_here`` False: the store allocates the id itself when the batch is one insert
    (the Redis backend with one partition: one round trip); None ids are then sent as they
    are. ``extra_rounds``: rounds a backend may spend on its own resends."""
    requests = list(requests)
    results: list[WriteResult | None] = [None] * len(requests)
    auto = {i for i, r in enumerate(requests) if r.kind == "insert" and r.id is None}
    pending = list(range(len(requests)))
    for _round in range(AUTO_ID_ATTEMPTS + extra_rounds):
        if auto:
            missing = [i for i in pending if i in auto and requests[i].id is None]
            if missing and (allocate_here or len(requests) > 1):
                ids = yield from allocate(len(missing))
                for position, new_id in zip(missing, ids, strict=True):
                    requests[position] = requests[position].with_id(new_id)
        outcomes = yield from send(requests, pending)
        again = []
        for i, outcome in outcomes:
            if outcome is None:
                again.append(i)  # the backend sends it again as it is
            elif i in auto and isinstance(outcome.error, DuplicateIdError):
                again.append(i)  # a user took that id: the next free value
                requests[i] = requests[i].with_id(None)
            else:
                results[i] = outcome
        if not again:
            break
        pending = sorted(again)
    return [r if r is not None else WriteResult(None, None, DuplicateIdError(
        model_name, "<new>")) for r in results]
