"""The backend registry: backends register by name and are imported only when first used.

Third parties register their own::

    from quantumorm.backends import register_backend
    register_backend("mystore", "mypackage.store:open_connection")

The target is ``"module:callable"`` (imported lazily) or a callable; it receives the URL and
the connection options and returns an object with ``backend``, ``sync_executor()``,
``async_executor()``, ``close()`` and ``aclose()`` (see :mod:`quantumorm.backends.base`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..errors import ConfigurationError

Opener = Callable[..., Any]
_registry: dict[str, str | Opener] = {
    "redis": "quantumorm.backends.redis:open_connection",
    "sqlite": "quantumorm.backends.sqlite:open_connection",
}


def register_backend(name: str, target: str | Opener) -> None:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a backend name is a non-empty string (got {name!r})")
    _registry[name] = target


def available_backends() -> list[str]:
    return sorted(_registry)


def opener(name: str) -> Opener:
    target = _registry.get(name)
    if target is None:
        raise ConfigurationError(
            f"unknown backend {name!r} (registered: {', '.join(available_backends())})"
        )
    if callable(target):
        return target
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = " (pip install 'quantumorm[redis]')" if name == "redis" else ""
        raise ConfigurationError(f"backend {name!r} cannot be loaded: {exc}{hint}") from exc
    loaded: Opener = getattr(module, attr)
    _registry[name] = loaded
    return loaded
