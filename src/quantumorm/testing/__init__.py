"""Test helpers for applications built on QuantumORM (``pip install "quantumorm[testing]"``).

* :mod:`quantumorm.testing.plugin`: the pytest plugin (loaded by pytest on its own once the
  package is installed): private Redis and PostgreSQL servers for the session, and the
  ``qorm`` fixture (a connection in a namespace of the test's own, and a factory).
* :class:`Factory` (and :func:`make`, :func:`make_many`...): documents with every required and
  unique field filled from a sequence.
* :mod:`quantumorm.testing.servers` and :mod:`quantumorm.testing.postgres`: the code that
  starts and stops the private servers, for test suites with fixtures of their own.

Nothing here is imported by ``import quantumorm``; pytest is needed by the plugin only.
"""

from __future__ import annotations

from .context import QuantumORMTest
from .factories import Factory, amake, amake_many, build, factory, make, make_many, value_for
from .namespace import IsolatedNamespace, concrete_models
from .servers import ServerFailed, ServerUnavailable

__all__ = ["Factory", "IsolatedNamespace", "QuantumORMTest", "ServerFailed",
           "ServerUnavailable", "amake", "amake_many", "build", "concrete_models", "factory",
           "make", "make_many", "value_for"]
