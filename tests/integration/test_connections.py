"""Connections: URL forms, named connections, credentials, and the errors a server can give.

Every server here is real: the session's server, or extra ones started for one test with
their own options (password, ACL users, unix socket, memory limit).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import MODES, call, snapshot

import quantumorm
from quantumorm import (
    AuthenticationError,
    ConfigurationError,
    ConnectionNotFound,
    Document,
    IntField,
    OutOfMemoryError,
    PermissionDeniedError,
    StringField,
    create_connection,
    get_connection,
)


class Note(Document):
    text = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        collection = "c_notes"


class Archived(Document):
    text = StringField(indexed=True)

    class Meta:
        collection = "c_notes"  # the same collection name, on another connection
        connection = "archive"


class Elsewhere(Document):
    text = StringField()

    class Meta:
        collection = "c_elsewhere"
        backend = "mystore"


def _db(url: str, db: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{db}"


@pytest.mark.parametrize("mode", MODES)
async def test_models_use_their_named_connection(conn: Any, redis_url: str, mode: str) -> None:
    archive = create_connection(url=_db(redis_url, 1), name="archive")
    raw1 = redis.Redis.from_url(_db(redis_url, 1))
    try:
        raw1.flushdb()
        await call(Note(text="live", n=1), "save", mode)
        await call(Archived(text="old"), "save", mode)
        assert get_connection() is conn and get_connection("archive") is archive
        assert [d.text for d in await call(Note.objects, "all", mode)] == ["live"]
        assert [d.text for d in await call(Archived.objects, "all", mode)] == ["old"]
        assert raw1.exists("{qorm:c_notes:p0}:d:1") and raw1.dbsize() > 0
        moved = Note.objects.using("archive").filter(text="old")
        assert [d.text for d in await call(moved, "all", mode)] == ["old"]
    finally:
        raw1.flushdb()
        raw1.close()


def test_connection_lookup_errors(conn: Any) -> None:
    with pytest.raises(ConnectionNotFound, match="archive"):
        Archived.objects.count_sync()
    with pytest.raises(ConnectionNotFound, match="mystore"):
        Elsewhere.objects.count_sync()
    with pytest.raises(ConfigurationError, match="unknown backend"):
        create_connection(backend="nosuch", url="x://y")
    with pytest.raises(ConfigurationError, match="redis://"):
        create_connection(url="http://127.0.0.1:6379")
    with pytest.raises(ConfigurationError, match="needs a url"):
        create_connection()


def test_model_on_a_connection_of_another_kind_is_refused(conn: Any, redis_url: str) -> None:
    quantumorm.register_backend("mystore", lambda url, **options: get_connection().store)
    try:
        create_connection(backend="mystore", url="mystore://", name="other")
        with pytest.raises(ConfigurationError, match="mystore"):
            Note.objects.using("other").count_sync()
    finally:
        from quantumorm import backends

        backends._registry.pop("mystore", None)


@pytest.mark.parametrize("mode", MODES)
async def test_unix_socket_url(start_redis: Any, mode: str, tmp_path: Path) -> None:
    socket_path = tmp_path / "redis.sock"
    start_redis("--unixsocket", str(socket_path), "--unixsocketperm", "700")
    create_connection(url=f"unix://{socket_path}?db=2", name="default", make_default=True)
    try:
        doc = await call(Note(text="via socket", n=7), "save", mode)
        raw = redis.Redis(unix_socket_path=str(socket_path), db=2)
        assert raw.exists(f"{{qorm:c_notes:p0}}:d:{doc.id}") == 1
        raw.close()
        assert (await call(Note.objects, "get", mode, n=7)).text == "via socket"
    finally:
        await quantumorm.aclose_all()


@pytest.mark.parametrize("mode", MODES)
async def test_password_and_acl_user(start_redis: Any, mode: str) -> None:
    url, _ = start_redis("--requirepass", "s3cret", password="s3cret")
    host = url.split("://", 1)[1]
    admin = redis.Redis.from_url(url, password="s3cret")
    admin.acl_setuser("app", enabled=True, passwords=["+apppw"], keys=["*"],
                      commands=["+@all"])
    admin.close()
    try:
        create_connection(url=f"redis://:wrong@{host}", name="bad", make_default=True)
        with pytest.raises(AuthenticationError) as caught:
            await call(Note.objects, "count", mode)
        assert isinstance(caught.value.__cause__, redis.AuthenticationError)
        create_connection(url=f"redis://:s3cret@{host}", name="good", make_default=True)
        assert (await call(Note(text="a", n=1), "save", mode)).version > 0
        create_connection(url=f"redis://app:apppw@{host}", name="acl", make_default=True)
        assert await call(Note.objects, "count", mode) == 1
        assert "***" in repr(get_connection("acl")) and "apppw" not in repr(get_connection("acl"))
    finally:
        await quantumorm.aclose_all()


@pytest.mark.parametrize("mode", MODES)
async def test_acl_permission_errors_are_typed_and_write_nothing(start_redis: Any,
                                                                 mode: str) -> None:
    url, _ = start_redis()
    host = url.split("://", 1)[1]
    admin = redis.Redis.from_url(url)
    # may run scripts, but only on another namespace's keys
    admin.acl_setuser("narrow", enabled=True, passwords=["+pw"], keys=["{other:*"],
                      commands=["+@all"])
    # may not run scripts at all
    admin.acl_setuser("noscript", enabled=True, passwords=["+pw"], keys=["*"],
                      commands=["+@all", "-@scripting"])
    try:
        for user in ("narrow", "noscript"):
            create_connection(url=f"redis://{user}:pw@{host}", name=user, make_default=True)
            before = snapshot(admin)
            with pytest.raises(PermissionDeniedError) as caught:
                await call(Note(text="x", n=1), "save", mode)
            assert isinstance(caught.value.__cause__, redis.exceptions.NoPermissionError)
            assert snapshot(admin) == before
    finally:
        admin.close()
        await quantumorm.aclose_all()


@pytest.mark.parametrize("mode", MODES)
async def test_out_of_memory_is_typed_and_writes_nothing(start_redis: Any, mode: str) -> None:
    url, _ = start_redis("--maxmemory-policy", "noeviction")
    admin = redis.Redis.from_url(url)
    create_connection(url=url, name="default", make_default=True)
    try:
        await call(Note(text="before", n=1), "save", mode)
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", str(max(1, used // 2)))
        before = snapshot(admin)
        with pytest.raises(OutOfMemoryError) as caught:
            await call(Note(text="after", n=2), "save", mode)
        assert isinstance(caught.value.__cause__, redis.exceptions.OutOfMemoryError)
        admin.config_set("maxmemory", "0")
        assert snapshot(admin) == before
        assert [d.text for d in await call(Note.objects, "all", mode)] == ["before"]
    finally:
        admin.close()
        await quantumorm.aclose_all()


def test_tls_and_pool_options_reach_redis_py(tmp_path: Path) -> None:
    """rediss:// makes TLS connections with the given CA; options reach the pool as given
    (no server is contacted: redis-py connects lazily)."""
    ca = tmp_path / "ca.pem"
    ca.write_text("unused")
    connection = create_connection(
        url="rediss://user:pw@127.0.0.1:1/3", name="tls", ssl_ca_certs=str(ca),
        max_connections=7, pool_timeout=0.5, socket_timeout=1.5, connect_timeout=0.25)
    try:
        pool = connection.store.sync_executor().client.connection_pool
        assert pool.connection_class is redis.SSLConnection
        kwargs = pool.connection_kwargs
        assert (kwargs["ssl_ca_certs"], kwargs["db"], kwargs["username"]) == (str(ca), 3, "user")
        assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (1.5, 0.25)
        assert pool.max_connections == 7 and pool.timeout == 0.5
        assert kwargs["retry"].get_retries() == 0  # redis-py never resends on its own
    finally:
        quantumorm.close_all()


@pytest.mark.parametrize("mode", MODES)
async def test_update_under_out_of_memory_leaves_document_and_indexes_intact(
        start_redis: Any, mode: str) -> None:
    """An update's first write frees memory (it removes old index entries), so Redis would
    not stop the script there and would fail it half-way; the scripts declare themselves
    writers so the server refuses them before they start. A delete still runs (it frees)."""
    url, _ = start_redis("--maxmemory-policy", "noeviction")
    admin = redis.Redis.from_url(url)
    create_connection(url=url, name="default", make_default=True)
    try:
        doc = await call(Note(text="v1", n=1), "save", mode)
        other = await call(Note(text="other", n=2), "save", mode)
        admin.config_set("maxmemory", str(max(1, int(admin.info("memory")["used_memory"]) // 2)))
        before = snapshot(admin)
        doc.text, doc.n = "v2", 5
        with pytest.raises(OutOfMemoryError):
            await call(doc, "save", mode)
        assert snapshot(admin) == before
        assert await call(other, "delete", mode) is True
        admin.config_set("maxmemory", "0")
        assert [(d.text, d.n) for d in await call(Note.objects, "all", mode)] == [("v1", 1)]
        assert await call(Note.objects.filter(text="v1"), "count", mode) == 1
    finally:
        admin.close()
        await quantumorm.aclose_all()


@pytest.mark.parametrize("mode", MODES)
async def test_documents_above_the_size_limit_are_refused_before_sending(
        conn: Any, redis_url: str, redis_client: Any, mode: str) -> None:
    from quantumorm import DocumentTooLargeError

    create_connection(url=redis_url, name="default", make_default=True, max_document_bytes=200)
    small = await call(Note(text="x" * 50, n=1), "save", mode)
    before = snapshot(redis_client)
    with pytest.raises(DocumentTooLargeError) as caught:
        await call(Note(text="x" * 500, n=2), "save", mode)
    assert caught.value.limit == 200 and caught.value.size > 500
    small.text = "y" * 300
    with pytest.raises(DocumentTooLargeError):
        await call(small, "save", mode)
    with pytest.raises(DocumentTooLargeError):
        await call(Note.objects, "bulk_create", mode, [Note(text="z", n=3), Note(text="z" * 400)])
    assert snapshot(redis_client, exclude_suffixes=(":seq",)) == {
        k: v for k, v in before.items() if not k.endswith(b":seq")}
    with pytest.raises(ConfigurationError):
        create_connection(url=redis_url, name="bad", max_document_bytes=0)
