"""The backend registry: backends register by name and are imported only when first used.

Third parties register their own::

    from quantumorm.backends import register_backend
    register_backend("mystore", "mypackage.store:open_connection")

The target is ``"module:callable"`` (imported lazily) or a callable; it receives the URL and
the connection options and returns an object with ``backend``, ``sync_executor()``,
``async_executor()``, ``close()`` and ``aclose()`` (see :mod:`quantumorm.engine.contract`).
What a backend supports is data: a :class:`~quantumorm.engine.contract.Capabilities`, given
to ``register_backend(..., capabilities=...)`` or exported as ``CAPABILITIES`` by the
target's module. :func:`backend_capabilities` reads it without opening a connection.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from ..engine.contract import BackendConnection, Capabilities
from ..errors import ConfigurationError

#: what a backend registers: called with the URL and the connection options, it opens the
#: store (the contract's :class:`~quantumorm.engine.contract.BackendConnection`)
Opener = Callable[..., BackendConnection]
_registry: dict[str, str | Opener] = {
    "redis": "quantumorm.backends.redis:open_connection",
    "sqlite": "quantumorm.backends.sqlite:open_connection",
    "postgres": "quantumorm.backends.postgres:open_connection",
}
#: the extra that installs a built-in backend's driver (named in the error when it is missing)
_EXTRAS = {"redis": "redis", "postgres": "postgres"}


_capabilities: dict[str, Capabilities] = {}


def register_backend(name: str, target: str | Opener,
                     capabilities: Capabilities | None = None) -> None:
    """Register (or replace) a backend under ``name``; see the module docstring."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a backend name is a non-empty string (got {name!r})")
    if not (callable(target) or (isinstance(target, str) and ":" in target)):
        raise ConfigurationError(f"a backend target is 'module:callable' or a callable "
                                 f"(got {target!r})")
    if capabilities is not None and not isinstance(capabilities, Capabilities):
        raise ConfigurationError(f"capabilities must be a Capabilities (got {capabilities!r})")
    _registry[name] = target
    _capabilities.pop(name, None)
    if capabilities is not None:
        _capabilities[name] = capabilities


def backend_capabilities(name: str) -> Capabilities:
    """What the backend called ``name`` supports (imports it if needed; opens nothing)."""
    found = _capabilities.get(name)
    if found is not None:
        return found
    target = opener(name)
    module = importlib.import_module(target.__module__)
    found = getattr(module, "CAPABILITIES", None) or getattr(target, "capabilities", None)
    if not isinstance(found, Capabilities):
        raise ConfigurationError(f"backend {name!r} declares no capabilities (export "
                                 "CAPABILITIES or pass capabilities= to register_backend)")
    _capabilities[name] = found
    return found


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
        extra = _EXTRAS.get(name)
        hint = f" (pip install 'quantumorm[{extra}]')" if extra else ""
        raise ConfigurationError(f"backend {name!r} cannot be loaded: {exc}{hint}") from exc
    loaded: Opener = getattr(module, attr)
    _registry[name] = loaded
    return loaded
