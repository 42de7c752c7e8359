"""Least privilege: QuantumORM's published ACL rule (``acl_rule``) is enough for every
feature (the whole contract suite runs under it: tests/contract, store ``redis-acl``),
reaches nothing outside its namespace, and an ACL refusal, even of a command a script
calls, is a typed PermissionDeniedError with nothing written."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from helpers import MODES, call

import quantumorm
from quantumorm import Document, PermissionDeniedError, StringField
from quantumorm.backends.redis.acl import acl_rule


class Mine(Document):
    name = StringField(indexed=True)

    class Meta:
        namespace = "tenant"
        collection = "mine"
        changes_document = True


class Theirs(Document):
    name = StringField(indexed=True)

    class Meta:
        namespace = "other"
        collection = "theirs"


def user(client: redis.Redis, name: str, rule: str) -> dict[str, Any]:
    client.execute_command("ACL", "SETUSER", name, "reset", "on", ">pw", *rule.split())
    return {"username": name, "password": "pw"}


@pytest.mark.parametrize("mode", MODES)
async def test_the_rule_reaches_its_namespace_and_nothing_else(
        conn: Any, redis_client: Any, redis_url: str, mode: str) -> None:
    quantumorm.create_connection(url=redis_url, name="default", make_default=True,
                                 **user(redis_client, "tenant-app", acl_rule("tenant")))
    doc = await call(Mine(name="a"), "save", mode)
    assert await call(Mine.objects.filter(name="a"), "count", mode) == 1
    events = await call(Mine.objects.changes(since="0", wait=0), "read", mode)
    assert [e.id for e in events] == [doc.id]
    assert (await call(Mine.objects, "verify", mode)).ok
    with pytest.raises(PermissionDeniedError):
        await call(Theirs(name="b"), "save", mode)
    assert redis_client.keys("{other:*") == []


def test_a_command_a_script_may_not_run_is_a_permission_error(
        conn: Any, redis_client: Any, redis_url: str) -> None:
    Mine.objects.count_sync()  # the schema, stored as the default user
    rule = acl_rule("tenant").replace(" +xadd", "")  # change events cannot be appended
    quantumorm.create_connection(url=redis_url, name="default", make_default=True,
                                 **user(redis_client, "no-events", rule))
    with pytest.raises(PermissionDeniedError, match=r"may not run XADD .*acl_rule\('tenant'\)"):
        Mine(name="a").save_sync()  # refused at first use, before any script writes
    assert redis_client.keys("{tenant:mine:p0}:d:*") == []


def test_a_refusal_inside_a_script_is_a_permission_error(
        conn: Any, redis_client: Any, redis_url: str) -> None:
    """An ACL narrowed after a model's first use on a connection is only met by the script
    itself: the refusal is still typed (PermissionDeniedError, not BackendError)."""
    quantumorm.create_connection(url=redis_url, name="default", make_default=True,
                                 **user(redis_client, "narrowed", acl_rule("tenant")))
    Mine(name="a").save_sync()
    user(redis_client, "narrowed", acl_rule("tenant").replace(" +zadd", ""))
    with pytest.raises(PermissionDeniedError, match="ACL refused"):
        Mine(name="b").save_sync()


def test_the_docs_publish_the_rule_the_code_gives() -> None:
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "connections.md").read_text(
        encoding="utf-8")
    start = page.index("ACL SETUSER app on >secret ")
    published = page[start:page.index("```", start)].split()
    assert published[5:] == acl_rule("qorm").split()
