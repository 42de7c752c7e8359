"""Signals: receivers called around writes, from the sync and the async API alike.

The operations in :mod:`quantumorm.engine.ops` send them, so ``save()`` and ``save_sync()``,
and ``QuerySet.update()``/``delete()`` (once per document they write), fire the same
signals::

    from quantumorm.signals import post_save

    @post_save.connect(sender=User)
    def audit(sender, document, created, **_):
        ...

Receivers are plain functions, called in the order they were connected, with the model
class as ``sender`` and keyword arguments. They run synchronously inside the operation (an
async caller's event loop waits for them), so keep them short; start async work yourself.
An exception from a ``pre_*`` receiver stops the operation before anything is written; one
from a ``post_*`` receiver is raised after the write happened.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any

Receiver = Callable[..., Any]


class Signal:
    def __init__(self, name: str, doc: str) -> None:
        self.name = name
        self.__doc__ = doc
        #: replaced, never changed in place (connect and disconnect make a new tuple under
        #: the lock): a reader in another thread, such as an update by id asking whether
        #: anyone listens, walks a whole snapshot with no copy and no lock
        self._receivers: tuple[tuple[Receiver, type | None], ...] = ()
        self._lock = threading.Lock()

    def connect(self, receiver: Receiver | None = None, *,
                sender: type | None = None) -> Any:
        """Connect ``receiver`` (for one model class with ``sender``); usable as a decorator
        (``@signal.connect`` or ``@signal.connect(sender=Model)``)."""
        if receiver is None:
            return lambda fn: self.connect(fn, sender=sender)
        if inspect.iscoroutinefunction(receiver):
            raise TypeError(f"{self.name} receivers are plain functions (got coroutine "
                            f"function {receiver.__qualname__}); schedule async work from one")
        if not callable(receiver):
            raise TypeError(f"{self.name} receivers must be callable (got {receiver!r})")
        with self._lock:
            if (receiver, sender) not in self._receivers:
                self._receivers = (*self._receivers, (receiver, sender))
        return receiver

    def disconnect(self, receiver: Receiver, *, sender: type | None = None) -> bool:
        with self._lock:
            kept = list(self._receivers)
            try:
                kept.remove((receiver, sender))
            except ValueError:
                return False
            self._receivers = tuple(kept)
            return True

    def send(self, sender: type, **kwargs: Any) -> None:
        for receiver, wanted in self._receivers:  # (a snapshot: see __init__)
            if wanted is None or wanted is sender:
                receiver(sender=sender, signal=self, **kwargs)

    @property
    def receivers(self) -> list[tuple[Receiver, type | None]]:
        return list(self._receivers)

    def __repr__(self) -> str:
        return f"<Signal {self.name} ({len(self._receivers)} receivers)>"


pre_save = Signal("pre_save", "Before a document is validated and written: ``document``.")
post_save = Signal("post_save", "After a document was written: ``document``, ``created``.")
pre_delete = Signal("pre_delete", "Before a document is deleted: ``document``.")
post_delete = Signal("post_delete", "After a document was deleted: ``document``, "
                                    "``deleted`` (False if it was already gone).")
pre_bulk_create = Signal("pre_bulk_create", "Before bulk_create: ``documents``.")
post_bulk_create = Signal("post_bulk_create", "After bulk_create: ``documents`` (written).")

__all__ = ["Signal", "post_bulk_create", "post_delete", "post_save", "pre_bulk_create",
           "pre_delete", "pre_save"]
