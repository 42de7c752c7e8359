"""A signal's receivers are a snapshot that connect and disconnect replace, never change in
place: a reader in another thread (an update by id asking whether anyone listens, with no
copy and no lock) walks every receiver that was connected when it began, even while others
are disconnected."""

from __future__ import annotations

from typing import Any

from quantumorm.signals import Signal


class _Model:
    pass


def _receiver(n: int) -> Any:
    def receive(**_: Any) -> None:
        return None
    receive.__name__ = f"r{n}"
    return receive


def test_a_walk_begun_before_a_disconnect_sees_every_receiver() -> None:
    signal = Signal("test", "")
    early, listening = _receiver(0), _receiver(1)
    signal.connect(early)
    signal.connect(listening, sender=_Model)
    walk = iter(signal._receivers)
    assert next(walk) == (early, None)
    signal.disconnect(early)  # (another thread, between two steps of the walk)
    # (a list changed in place would shift the listening receiver under the walk's
    # position, and the walk would end without it)
    assert list(walk) == [(listening, _Model)]
    assert signal.receivers == [(listening, _Model)]


def test_connect_and_disconnect_keep_their_answers() -> None:
    signal = Signal("test", "")
    receiver = _receiver(1)
    assert signal.connect(receiver) is receiver
    signal.connect(receiver)  # (once only)
    assert signal.receivers == [(receiver, None)]
    assert signal.disconnect(receiver) and not signal.disconnect(receiver)
    assert signal.receivers == []
