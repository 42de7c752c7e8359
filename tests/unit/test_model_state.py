"""A backend's state per model (``BackendCore._state``, read in line from the options' weak
map): made once per backend and model, the very object ``state_for`` keeps, distinct per
backend, and gone with its backend."""

from __future__ import annotations

import gc

from quantumorm import Document, IntField
from quantumorm.backends.redis.core import BackendCore


class Kept(Document):
    n = IntField(indexed=True)

    class Meta:
        collection = "unit_model_state"


def test_state_is_made_once_per_backend_and_kept_weakly() -> None:
    options = Kept._meta
    first, second = BackendCore(), BackendCore(max_document_bytes=1000)
    state = first._state(options)
    assert first._state(options) is state  # (the second read: the in-line lookup)
    assert options.state_for(first, lambda: None) is state
    other = second._state(options)
    assert other is not state and second._state(options) is other
    assert other.writes.max_document_bytes == 1000
    assert state.writes.max_document_bytes != 1000
    held = options.__dict__["_states"]
    before = len(held)
    del second, other
    gc.collect()
    assert len(held) == before - 1
    assert first._state(options) is state
