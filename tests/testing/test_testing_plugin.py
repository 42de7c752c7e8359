"""The pytest plugin (quantumorm.testing.plugin) as a user meets it: a user's test files run
by pytester against the session's Redis server, and the plugin's behaviour where the server
is missing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from quantumorm import registry
from quantumorm.testing import servers
from quantumorm.testing.plugin import put_back

PLUGIN = ("-p", "quantumorm.testing.plugin")


@pytest.fixture(autouse=True)
def _user_ini(pytester: pytest.Pytester) -> Iterator[None]:
    """The user's project: pytest-asyncio's loop scope set, as its warning asks. (The user's
    tests run in this process: the connections they open at module level are closed after.)"""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    before = registry.snapshot()
    yield
    put_back(before, None)

USER_TESTS = '''
import pytest
import quantumorm
from quantumorm import Document, EmailField, IntField, StringField


class User(Document):
    email = EmailField(required=True, unique=True)
    name = StringField(required=True, indexed=True)
    age = IntField(min_value=0, max_value=150, indexed=True)


def test_make_saves_a_valid_user(qorm):
    user = qorm.make(User, name="ada")
    assert User.objects.get_sync(email=user.email).name == "ada"
    assert qorm.connection is quantumorm.get_connection("default")
    assert User._meta.namespace == qorm.namespace != "qorm"


def test_make_many_gives_unique_values(qorm):
    users = qorm.make_many(User, 5, age=lambda n: n * 10)
    assert len({u.email for u in users}) == 5
    assert User.objects.filter(age__gte=30).count_sync() == 3


def test_each_test_starts_empty(qorm):
    assert User.objects.count_sync() == 0
    qorm.make(User, email="same@example.org")


def test_same_unique_value_in_another_test(qorm):
    # the user of the test above is in another namespace: no UniqueViolation
    qorm.make(User, email="same@example.org")
    assert User.objects.count_sync() == 1


@pytest.mark.asyncio
async def test_async(qorm):
    user = await qorm.amake(User)
    assert (await User.objects.get(id=user.id)).email == user.email
    await qorm.connection.aclose()


def test_model_defined_in_the_test(qorm):
    class Note(Document):
        text = StringField(required=True)

    qorm.isolate(Note)
    qorm.make(Note)
    assert Note._meta.namespace == qorm.namespace
'''


def test_user_tests_pass_against_a_shared_server(pytester: pytest.Pytester, redis_url: str,
                                                 redis_client: redis.Redis,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(servers.URL_VARIABLE, redis_url)
    redis_client.set("someone-elses-key", "kept")  # the plugin must never delete it
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest(*PLUGIN)
    result.assert_outcomes(passed=6)
    assert redis_client.get("someone-elses-key") == b"kept"
    # every test's namespace was deleted after it: nothing of theirs is left
    left = [k for k in redis_client.scan_iter(match="*qorm.t*") if k != b"someone-elses-key"]
    assert left == []
    redis_client.delete("someone-elses-key")


def test_models_get_their_namespace_back(pytester: pytest.Pytester, redis_url: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(servers.URL_VARIABLE, redis_url)
    pytester.makepyfile(test_restore='''
from quantumorm import Document, StringField


class Item(Document):
    name = StringField()

    class Meta:
        namespace = "shop"


def test_inside(qorm):
    assert Item._meta.namespace == f"shop.{qorm.isolation.token}"


def test_after():
    assert Item._meta.namespace == "shop"
''')
    pytester.runpytest(*PLUGIN, "-p", "no:randomly").assert_outcomes(passed=2)


def test_the_plugin_starts_and_stops_its_own_server(pytester: pytest.Pytester,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.delenv(servers.URL_VARIABLE, raising=False)
    monkeypatch.setattr(servers, "session", servers.SessionRedis())  # not the outer one
    where = tmp_path / "url.txt"
    pytester.makepyfile(test_own=f'''
from quantumorm import registry
from quantumorm.testing import servers
from quantumorm.testing.plugin import put_back


def test_server(quantumorm_redis_url):
    assert quantumorm_redis_url.startswith("redis://127.0.0.1:")
    assert servers.ping(quantumorm_redis_url)
    open({str(where)!r}, "w").write(quantumorm_redis_url)
''')
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=1)
    url = where.read_text()
    assert not servers.ping(url)  # stopped at the end of the session


@pytest.mark.parametrize("require", [False, True])
def test_missing_redis_server_skips_or_fails(pytester: pytest.Pytester,
                                             monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path, require: bool) -> None:
    monkeypatch.delenv(servers.URL_VARIABLE, raising=False)
    monkeypatch.setattr(servers, "session", servers.SessionRedis())
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on it
    if require:
        monkeypatch.setenv(servers.REQUIRE_VARIABLE, "1")
    else:
        monkeypatch.delenv(servers.REQUIRE_VARIABLE, raising=False)
    pytester.makepyfile(test_needs_redis='''
def test_with_server(qorm):
    raise AssertionError("must not run")


def test_without_server():
    pass
''')
    result = pytester.runpytest(*PLUGIN, "-rs")
    if require:
        result.assert_outcomes(passed=1, errors=1)
    else:
        result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*redis-server is not on PATH*apt-get install redis-server*"])


def test_postgres_fixture(pytester: pytest.Pytester, postgres_url: str) -> None:
    # (the outer postgres_url keeps the session's server up: the inner run shares it)
    pytester.makepyfile(test_pg='''
import quantumorm
from quantumorm import Document, StringField


class Row(Document):
    name = StringField(required=True)

    class Meta:
        backend = "postgres"


def test_row(quantumorm_postgres_url, qorm):
    quantumorm.create_connection(backend="postgres", url=quantumorm_postgres_url,
                                 make_default=True)
    row = qorm.make(Row)
    assert Row.objects.get_sync(id=row.id).name == row.name
    Row.objects.drop_collection_sync(confirm=True)
''')
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=1)


def test_connections_of_the_user_survive_the_fixture(pytester: pytest.Pytester, redis_url: str,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    # a "default" connection and another one opened at module level: the fixture sets the
    # first aside during each test and closes neither; what a test opens, it closes
    monkeypatch.setenv(servers.URL_VARIABLE, redis_url)
    pytester.makepyfile(test_kept=f"""
import quantumorm
from quantumorm import Document, StringField

mine = quantumorm.create_connection(backend="redis", url={redis_url!r}, name="default",
                                    make_default=True)
side = quantumorm.create_connection(backend="sqlite", url="sqlite:///{tmp_path}/side.db",
                                    name="side")
opened = []


class Note(Document):
    text = StringField()

    class Meta:
        backend = "sqlite"
        connection = "side"


def test_first(qorm):
    assert quantumorm.get_connection("default") is qorm.connection is not mine
    assert quantumorm.get_connection() is qorm.connection
    opened.append(quantumorm.create_connection(backend="sqlite", url="sqlite://",
                                               name="in-test"))
    Note(text="one").save_sync()


def test_second(qorm):
    assert "in-test" not in [c.name for c in quantumorm.registry.connections()]
    Note(text="two").save_sync()
    assert Note.objects.count_sync() == 2


def test_after():
    assert quantumorm.get_connection("default") is mine
    assert quantumorm.get_connection() is mine
    assert quantumorm.get_connection("side", backend="sqlite") is side
    assert mine.ping_sync() >= 0
    assert Note.objects.count_sync() == 2
    assert opened and "in-test" not in [c.name for c in quantumorm.registry.connections()]
""")
    pytester.runpytest(*PLUGIN, "-p", "no:randomly").assert_outcomes(passed=3)


def test_sql_models_keep_their_tables(pytester: pytest.Pytester, redis_url: str,
                                      monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # only Redis models get a test namespace: a SQLite model's would be a table left in the
    # user's database after every test
    monkeypatch.setenv(servers.URL_VARIABLE, redis_url)
    database = tmp_path / "app.db"
    pytester.makepyfile(test_sql=f"""
import pytest
import quantumorm
from quantumorm import Document, StringField
from quantumorm.errors import UnsupportedOperation

quantumorm.create_connection(backend="sqlite", url="sqlite:///{database}", make_default=True)


class Note(Document):
    text = StringField()

    class Meta:
        backend = "sqlite"
        collection = "notes"


class Tag(Document):
    name = StringField()


def test_write(qorm):
    assert Note._meta.namespace == "qorm" and Tag._meta.namespace == qorm.namespace
    Note(text="x").save_sync()
    Tag(name="t").save_sync()


def test_isolate_refuses_a_sql_model(qorm):
    class Row(Document):
        class Meta:
            backend = "sqlite"

    with pytest.raises(UnsupportedOperation, match="Row keeps its table"):
        qorm.isolate(Row)
""")
    pytester.runpytest(*PLUGIN).assert_outcomes(passed=2)
    with sqlite3.connect(database) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master "
                                                 "WHERE type = 'table'")]
        assert not [name for name in tables if "qorm.t" in name], tables
        (count,) = db.execute(f"SELECT COUNT(*) FROM {next(t for t in tables if 'notes' in t)!r}"
                              ).fetchone()
    assert count == 1
