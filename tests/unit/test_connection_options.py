"""Connection configuration, checked at ``create_connection`` without a server: secrets
never shown, unknown options and malformed URLs refused with a message naming them.

(``create_connection`` contacts no server: redis-py connects at the first request; the
tests that use a connection are in ``tests/integration/test_connection_config.py``.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import quantumorm
from quantumorm import ConfigurationError, create_connection
from quantumorm.backends.redis import options as redis_options
from quantumorm.backends.redis.options import ClientOptions
from quantumorm.backends.redis.topology import parse
from quantumorm.redaction import redact_url


@pytest.fixture(autouse=True)
def _forget_connections() -> Iterator[None]:
    yield
    quantumorm.close_all()


SECRET = "Hunter2-sEcReT"  # a string that appears nowhere else

#: (scheme, rest of a malformed URL): a bad scheme, a Sentinel URL without service, a
#: Cluster URL with a db, a query string, a bad port, no host, a bad db
MALFORMED = [
    ("http://", "127.0.0.1:6379/0"),
    ("redis:/", "127.0.0.1:6379/0"),  # (no "://": not a Redis URL)
    ("redis+sentinel://", "127.0.0.1:26379"),
    ("rediss+sentinel://", "127.0.0.1:26379/"),
    ("redis+sentinel://", "127.0.0.1:26379/svc/0/extra"),
    ("redis+sentinel://", "127.0.0.1:26379/svc/abc"),
    ("redis+cluster://", "127.0.0.1:7000/0"),
    ("rediss+cluster://", "127.0.0.1:7000/1"),
    ("redis+cluster://", "127.0.0.1:7000?ssl=true"),
    ("redis+sentinel://", "127.0.0.1:26379/svc?db=1"),
    ("redis+cluster://", "127.0.0.1:notaport"),
    ("redis+cluster://", "127.0.0.1:99999"),
    ("redis+sentinel://", "127.0.0.1:0/svc"),
    ("redis+cluster://", ""),
    ("redis://", "127.0.0.1:notaport/0"),
    ("rediss://", "127.0.0.1:70000/0"),
    ("redis://", "127.0.0.1:0/0"),
    ("redis://", "127.0.0.1:6379/abc"),
    ("rediss://", "127.0.0.1:6379/1/2"),
    ("redis://", "127.0.0.1:6379/0?db=3"),
    ("redis://", "127.0.0.1:6379/0?max_conections=3"),
    ("redis://", "127.0.0.1:6379/0?max_connections=3"),
    ("unix://", "/tmp/redis.sock?db=abc"),
]

#: how the secret is written into a URL
CREDENTIALS = [f"alice:{SECRET}@", f":{SECRET}@", f"alice:{SECRET}/x@", f":{SECRET}#x@"]


def _leaks(*texts: str) -> bool:
    return any(SECRET in text for text in texts)


def _assert_secret_kept(exc: BaseException) -> None:
    seen = [str(exc), repr(exc)]
    cause = exc.__cause__ or exc.__context__
    while cause is not None:  # nor in what a traceback would show
        seen += [str(cause), repr(cause)]
        cause = cause.__cause__ or cause.__context__
    assert not _leaks(*seen), seen


@pytest.mark.parametrize("credentials", CREDENTIALS)
@pytest.mark.parametrize(("scheme", "rest"), MALFORMED)
def test_a_malformed_url_never_shows_the_password(scheme: str, rest: str,
                                                   credentials: str) -> None:
    url = scheme + credentials + rest
    with pytest.raises(ConfigurationError) as caught:
        create_connection(url=url, name="leak")
    _assert_secret_kept(caught.value)
    assert quantumorm.registry._connections.get("leak") is None


@pytest.mark.parametrize("credentials", CREDENTIALS)
def test_bad_options_never_show_the_password(credentials: str) -> None:
    url = f"redis://{credentials}127.0.0.1:6379/0"
    for options in ({"max_conections": 3}, {"retries": 0}, {"socket_timeout": "5"},
                    {"password": "x"}, {"ssl_certfile": "/x"}, {"retry": None}):
        with pytest.raises(ConfigurationError) as caught:
            create_connection(url=url, name="leak", **options)
        _assert_secret_kept(caught.value)


def test_a_url_that_is_not_a_string_is_not_shown() -> None:
    with pytest.raises(ConfigurationError) as caught:
        create_connection(url=f"redis://:{SECRET}@h:1/0".encode())  # type: ignore[arg-type]
    _assert_secret_kept(caught.value)
    assert "bytes" in str(caught.value)


@pytest.mark.parametrize("url", [
    f"redis://alice:{SECRET}@127.0.0.1:6379/0",
    f"redis://:{SECRET}@127.0.0.1:6379/0",
    f"rediss://alice:{SECRET}@127.0.0.1:6379/0",
    f"rediss://:{SECRET}@127.0.0.1:6379/0",
    f"redis://127.0.0.1:6379/0?password={SECRET}",
    f"unix:///tmp/redis.sock?db=1&password={SECRET}",
    f"redis+cluster://alice:{SECRET}@127.0.0.1:7000,127.0.0.1:7001",
    f"rediss+cluster://:{SECRET}@127.0.0.1:7000",
    f"redis+sentinel://alice:{SECRET}@127.0.0.1:26379/svc/1",
    f"rediss+sentinel://:{SECRET}@127.0.0.1:26379/svc",
])
def test_reprs_never_show_a_password(url: str) -> None:
    options = ClientOptions(url=url, extra=(("ssl_password", SECRET),))
    topology = parse(url)
    texts = [repr(options), str(options), repr(topology), str(topology), redact_url(url)]
    assert not _leaks(*texts), texts
    assert "***" in repr(options) and "***" in repr(topology)
    connection = create_connection(url=url, name="shown", client_name="app")
    try:
        texts = [repr(connection), repr(connection.store.options),
                 repr(connection.store.options.topology)]
        assert not _leaks(*texts), texts
    finally:
        connection.close()
        quantumorm.registry._forget_all()


def test_sentinel_and_keyword_passwords_are_redacted_in_reprs() -> None:
    url = "redis+sentinel://127.0.0.1:26379/svc"
    connection = create_connection(url=url, name="shown", password=SECRET,
                                   sentinel_password=SECRET, sentinel_username="watch")
    try:
        shown = repr(connection.store.options)
        assert not _leaks(shown, repr(connection)), shown
        assert "'sentinel_username', 'watch'" in shown  # what is not secret stays visible
    finally:
        connection.close()
        quantumorm.registry._forget_all()


def test_redact_url_keeps_what_is_not_secret() -> None:
    assert redact_url(f"redis://alice:{SECRET}@h:1/2") == "redis://alice:***@h:1/2"
    assert redact_url(f"redis://:{SECRET}@h:1") == "redis://:***@h:1"
    assert redact_url(f"redis://{SECRET}@h:1") == "redis://***@h:1"
    assert redact_url(f"alice:{SECRET}@h:1") == "alice:***@h:1"
    assert redact_url("redis://h:1/0?db=1") == "redis://h:1/0?db=1"
    assert redact_url(f"redis://h:1/0?db=1&password={SECRET}") == (
        "redis://h:1/0?db=1&password=***")
    assert redact_url(None) == "<NoneType>"


# -- options --------------------------------------------------------------------------------


def _refused(url: str, **options: Any) -> str:
    with pytest.raises(ConfigurationError) as caught:
        create_connection(url=url, name="bad", **options)
    assert quantumorm.registry._connections.get("bad") is None
    return str(caught.value)


def test_an_unknown_option_is_refused_with_the_closest_name() -> None:
    message = _refused("redis://127.0.0.1:6379/0", max_conections=3)
    assert "'max_conections'" in message and "did you mean 'max_connections'" in message
    message = _refused("redis+sentinel://127.0.0.1:26379/svc", sentinel_pasword="x")
    assert "did you mean 'sentinel_password'" in message
    message = _refused("redis://127.0.0.1:6379/0", zzz=1, health_check_intervall=3)
    assert "'zzz'" in message and "did you mean 'health_check_interval'" in message


def test_options_of_another_kind_of_url_say_which() -> None:
    message = _refused("redis://127.0.0.1:6379/0", ssl_ca_certs="/ca.pem")
    assert "rediss://" in message and "'ssl_ca_certs'" in message
    assert "redis+sentinel://" in _refused("redis://127.0.0.1:6379/0", sentinel_password="x")
    assert "'socket_keepalive'" in _refused("unix:///tmp/r.sock", socket_keepalive=True)


@pytest.mark.parametrize(("option", "reason"), [
    ("retry", "retries="), ("retry_on_timeout", "retries="),
    ("socket_connect_timeout", "connect_timeout="), ("decode_responses", "bytes"),
    ("db", "URL"), ("host", "URL"), ("ssl", "rediss://"), ("connection_pool", "sets it"),
])
def test_options_quantumorm_sets_itself_are_refused_with_the_reason(option: str,
                                                                   reason: str) -> None:
    message = _refused("redis://127.0.0.1:6379/0", **{option: 1})
    assert repr(option) in message and reason in message


@pytest.mark.parametrize(("options", "named"), [
    ({"max_connections": 0}, "max_connections"), ({"max_connections": "3"}, "max_connections"),
    ({"pool_timeout": -1}, "pool_timeout"), ({"socket_timeout": "5"}, "socket_timeout"),
    ({"connect_timeout": 0}, "connect_timeout"), ({"retries": True}, "retries"),
    ({"wait_timeout": 0}, "wait_timeout"), ({"max_document_bytes": 0}, "max_document_bytes"),
    ({"read_from_replicas": True}, "read_from_replicas"),
    ({"scripts": "lua"}, "scripts"), ({"scripts": None}, "scripts"),
])
def test_wrong_values_name_the_option(options: dict[str, Any], named: str) -> None:
    message = _refused("redis://127.0.0.1:6379/0", **options)
    assert named in message


def test_credentials_given_twice_are_refused() -> None:
    assert "twice" in _refused("redis://:pw@127.0.0.1:6379/0", password="other")
    assert "twice" in _refused("redis+cluster://u:pw@127.0.0.1:7000", username="v")


@pytest.mark.parametrize(("url", "words"), [
    ("redis://127.0.0.1:6379/abc", "database is a number"),
    ("redis://127.0.0.1:6379/0/1", "database is a number"),
    ("redis://127.0.0.1:port/0", "port"),
    ("redis://127.0.0.1:65536/0", "port"),
    ("redis://127.0.0.1:6379/0?db=1", "twice"),
    ("redis://127.0.0.1:6379?db=x", "database is a number"),
    ("redis://127.0.0.1:6379/0?max_connections=3", "keyword argument"),
    ("redis://127.0.0.1:6379/0?retry_on_timeout=1", "retries="),
    ("redis://127.0.0.1:6379/0?sockettimeout=1", "did you mean 'socket_timeout'"),
    ("unix://?db=1", "names the socket"),
])
def test_a_malformed_single_server_url_is_refused(url: str, words: str) -> None:
    assert words in _refused(url)


def test_redis_py_options_users_pass_through_are_accepted() -> None:
    """The options users legitimately give redis-py keep working (read from redis-py's
    own constructors, so a new redis-py's options are accepted as they come)."""
    plain = {"username": "u", "password": "p", "client_name": "app",
             "health_check_interval": 30, "socket_keepalive": True,
             "socket_keepalive_options": {}, "protocol": 2, "lib_name": "x"}
    tls = {"ssl_ca_certs": "/ca.pem", "ssl_certfile": "/c.pem", "ssl_keyfile": "/k.pem",
           "ssl_cert_reqs": "required", "ssl_check_hostname": False, "ssl_password": "x",
           "ssl_min_version": None}
    for url, options in [
        ("redis://127.0.0.1:6379/0", plain), ("rediss://127.0.0.1:6379/0", {**plain, **tls}),
        ("unix:///tmp/r.sock?db=1&client_name=x", {"username": "u", "password": "p"}),
        ("redis+cluster://127.0.0.1:7000", {  # (redis-py's cluster client has no health
            **{k: v for k, v in plain.items() if k != "health_check_interval"},  # checks)
            "require_full_coverage": False}),
        ("rediss+cluster://127.0.0.1:7000", {"ssl_ca_certs": "/ca.pem"}),
        ("redis+sentinel://127.0.0.1:26379/svc", {**plain, "sentinel_username": "s",
                                                  "sentinel_password": "p",
                                                  "min_other_sentinels": 0}),
        ("rediss+sentinel://127.0.0.1:26379/svc", tls),
    ]:
        connection = create_connection(url=url, name="ok", max_connections=3, retries=2,
                                       **options)
        try:
            assert dict(connection.store.options.extra) == options
        finally:
            connection.close()
            quantumorm.registry._forget_all()
    # every redis-py option of a plain connection is one of a TLS connection too
    assert redis_options.passthrough("single", "plain") < redis_options.passthrough(
        "single", "tls")


def test_sqlite_options_are_checked_with_a_hint() -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'max_document_bytes'"):
        create_connection(backend="sqlite", url="sqlite://", max_document_byte=10)
    with pytest.raises(ConfigurationError, match="max_document_bytes must be"):
        create_connection(backend="sqlite", url="sqlite://", max_document_bytes="10")
    with pytest.raises(ConfigurationError, match="sqlite://") as caught:
        create_connection(backend="sqlite", url=f"redis://:{SECRET}@127.0.0.1:6379/0")
    _assert_secret_kept(caught.value)
    assert not quantumorm.registry._connections


def test_noscript_reloads_are_bounded_and_end_with_the_source() -> None:
    """The policy both executors share: at most SCRIPT_RELOADS loads, each resending only
    the steps answered NOSCRIPT (they did not run), the last one with the script source."""
    import redis

    from quantumorm.backends.redis import reloads
    from quantumorm.backends.redis.commands import Call, script

    policy = reloads.reloads(2)
    todo = next(policy)
    sent = [todo]
    noscript = redis.exceptions.NoScriptError("NOSCRIPT")
    with pytest.raises(StopIteration) as done:
        while True:
            todo = policy.send([noscript if i else "ok" for i in todo.positions])
            sent.append(todo)
    assert [t.positions for t in sent] == [[0, 1]] + [[1]] * reloads.SCRIPT_RELOADS
    assert [t.inline for t in sent] == [False] * reloads.SCRIPT_RELOADS + [True]
    assert [t.load for t in sent] == [False] + [True] * reloads.SCRIPT_RELOADS
    assert done.value.value == ["ok", noscript]
    step = Call("count", ("k",), ())
    assert reloads.step_args(step, inline=True)[:2] == ("EVAL", script("count").source)
    assert reloads.step_args(step, read_only=True, inline=True)[0] == "EVAL_RO"


@pytest.mark.parametrize("mode", ["functions", "eval"])
def test_scripts_chooses_how_they_are_called(mode: str) -> None:
    connection = create_connection(url="redis://127.0.0.1:6379/0", name="scripts-mode",
                                   scripts=mode)
    try:
        assert connection._store.options.scripts == mode  # type: ignore[attr-defined]
    finally:
        connection.close()
