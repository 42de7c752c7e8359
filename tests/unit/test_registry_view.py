"""The connection registry's lock-free reads (``get_connection`` reads a view replaced
whole under the lock): every change is seen, and a reader never sees a half-made change.
(``create_connection`` contacts no server: redis-py connects at the first request.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from quantumorm import ConnectionNotFound, create_connection, registry

URL = "redis://127.0.0.1:1/0"  # (never contacted)


@pytest.fixture
def saved() -> Iterator[None]:
    state = registry.snapshot()
    registry._forget_all()
    try:
        yield
    finally:
        for dropped in registry.restore(state):
            dropped.close()


def test_every_change_of_the_registry_is_read(saved: None) -> None:
    first = create_connection(url=URL, name="first")
    assert registry.get_connection() is first  # (the first of its backend: its default)
    second = create_connection(url=URL, name="second", make_default=True)
    assert registry.get_connection() is second
    assert registry.get_connection("first") is first
    replaced = create_connection(url=URL, name="second")  # (replaces the default by name)
    assert registry.get_connection() is replaced
    assert registry.connections() == [first, replaced]
    assert registry.detach("second") is replaced
    with pytest.raises(ConnectionNotFound):
        registry.get_connection()
    with pytest.raises(ConnectionNotFound, match="open: first"):
        registry.get_connection("second")
    state = registry.snapshot()
    registry.restore(registry.RegistryState({"second": replaced}, {"redis": "second"}))
    assert registry.get_connection() is replaced
    with pytest.raises(ConnectionNotFound):
        registry.get_connection("first")
    registry.restore(state)
    assert registry.get_connection("first") is first
    registry.close_all()
    with pytest.raises(ConnectionNotFound):
        registry.get_connection("first")
    assert registry.connections() == []


def test_a_model_is_checked_once_per_kind_without_a_set_per_call(saved: None) -> None:
    from quantumorm import Document, StringField

    class Checked(Document):
        name = StringField()

        class Meta:
            collection = "registry_view_checked"

    connection = create_connection(url=URL, name="checked")
    assert registry.connection_for(Checked) is connection
    kinds = Checked._meta.__dict__["_checked_kinds"]
    assert kinds == {"redis"}
    assert registry.connection_for(Checked) is connection
    assert Checked._meta.__dict__["_checked_kinds"] is kinds  # (read, not made again)
    connection.close()
