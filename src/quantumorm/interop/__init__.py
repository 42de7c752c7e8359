"""Interoperation with other libraries, each loaded only when first used.

``quantumorm.interop.pydantic`` imports pydantic at its top: nothing imports it when
``quantumorm`` is imported, and :func:`pydantic_support` loads it on the first call of
``Model.pydantic_model()`` / ``Model.from_pydantic()`` (as the backend registry loads a
backend's driver), so the package works without pydantic installed.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: the module that holds the pydantic generator, and the extra that installs pydantic
PYDANTIC_MODULE = "quantumorm.interop.pydantic"
PYDANTIC_EXTRA = "pydantic"

_loaded: dict[str, ModuleType] = {}


def pydantic_support() -> ModuleType:
    """:mod:`quantumorm.interop.pydantic`, imported on first use; an ImportError naming the
    extra to install if pydantic (v2) is missing."""
    found = _loaded.get(PYDANTIC_MODULE)
    if found is not None:
        return found
    try:
        module = importlib.import_module(PYDANTIC_MODULE)
    except ImportError as exc:
        raise ImportError(f"pydantic interop needs pydantic 2: pip install "
                          f"'quantumorm[{PYDANTIC_EXTRA}]' ({exc})", name=exc.name) from exc
    _loaded[PYDANTIC_MODULE] = module
    return module
