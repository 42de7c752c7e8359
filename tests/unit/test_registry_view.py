"""The connection registry's lock-free reads (``get_connection`` reads a view replaced
whole under the lock): every change is seen, and a reader never sees a half-made change.
(``create_connection`` contacts no server: redis-py connects at the first request.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from quantumorm import ConnectionNotFound, create_connection, registry
from quantumorm.connection import Connection

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


def test_readers_see_whole_changes_while_defaults_move(saved: None) -> None:
    """A reader asking for the default, while another thread makes one connection after
    another the default, always gets a registered connection: never none, never one the
    registry has dropped."""
    made = [create_connection(url=URL, name=f"c{i}") for i in range(4)]
    stop = threading.Event()
    seen: list[Connection] = []
    failures: list[BaseException] = []

    def read() -> None:
        try:
            while not stop.is_set():
                seen.append(registry.get_connection())
        except BaseException as exc:  # (reported below)
            failures.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        for turn in range(2000):
            registry.register(made[turn % 4], make_default=True)
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert not failures
    assert seen and set(seen) <= set(made)
    for connection in made:
        connection.close()


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
