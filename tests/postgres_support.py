"""The project's PostgreSQL test server: :mod:`quantumorm.testing.postgres` (the plugin's)
under the project's variables.

:func:`acquire` starts the server on first use (one per test session, shared by every
conftest that asks, and by the plugin's ``quantumorm_postgres_url``) and returns its URL;
:func:`release` stops it (by its pid) when the last user lets go. :func:`reset` empties the
database between tests.

With ``QORM_TEST_POSTGRES_URL`` set, that server is used instead; its ``public`` schema is
dropped and recreated before each test that uses it, so point it at a scratch database.
Without the server binaries (Debian: ``apt-get install postgresql``; ``./run-tests`` installs
them) or psycopg, the PostgreSQL tests are skipped, saying which is missing; with
``QORM_REQUIRE_POSTGRES=1`` (``.ci/run`` sets it) they fail instead.
"""

from __future__ import annotations

import os

import pytest

from quantumorm.testing import postgres
from quantumorm.testing.postgres import binaries, reset
from quantumorm.testing.servers import ServerUnavailable

URL_VARIABLE = "QORM_TEST_POSTGRES_URL"
#: set (to 1) in CI: what would skip the PostgreSQL tests fails them instead
REQUIRE_VARIABLE = "QORM_REQUIRE_POSTGRES"

MARKER = "postgres: needs a real PostgreSQL server (started by the test session)"


def mark(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The ``postgres`` marker on every test that needs the server (``-m 'not postgres'``
    leaves them out): those using ``postgres_url`` and the postgres cases of the
    parametrized contract suite."""
    config.addinivalue_line("markers", MARKER)
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec is not None else ()
        if "postgres_url" in getattr(item, "fixturenames", ()) or "postgres" in params:
            item.add_marker(pytest.mark.postgres)


def skip(reason: str) -> None:
    """Skip the test, or fail it where PostgreSQL is required (CI)."""
    if os.environ.get(REQUIRE_VARIABLE, "").strip() in ("1", "true", "yes"):
        pytest.fail(f"{reason} ({REQUIRE_VARIABLE} is set)", pytrace=False)
    pytest.skip(reason)


def acquire() -> str:
    """The test server's URL (started on first use)."""
    try:
        return postgres.session.acquire(os.environ.get(URL_VARIABLE))
    except ServerUnavailable as error:
        skip(f"{error} (./run-tests installs it; or set {URL_VARIABLE})")
        raise


def release() -> None:
    postgres.session.release(os.environ.get(URL_VARIABLE))


__all__ = ["MARKER", "REQUIRE_VARIABLE", "URL_VARIABLE", "acquire", "binaries", "mark",
           "release", "reset", "skip"]
