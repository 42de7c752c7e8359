"""Update operators on Redis, across partitions: the indexes hold exactly what the stored
documents imply, each written document has its change event (as a save's), and a unique
value refused for one document leaves the others written."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import MODES, assert_indexes_consistent, call

from quantumorm import (
    ArrayField,
    BulkWriteError,
    Document,
    IntField,
    StringField,
    UniqueViolation,
)


class Post(Document):
    title = StringField(indexed=True)
    views = IntField(indexed=True)
    tags = ArrayField(StringField(), indexed=True)
    note = StringField(indexed=True)

    class Meta:
        collection = "updops_posts"
        partitions = 4


class Page(Document):
    title = StringField(indexed=True)
    views = IntField(indexed=True)
    slug = StringField(unique=True)

    class Meta:
        collection = "updops_pages"


@pytest.mark.parametrize("mode", MODES)
async def test_operators_keep_indexes_and_events(conn: Any, redis_client: Any,
                                                 mode: str) -> None:
    await call(Post.objects, "bulk_create", mode,
               [Post(id=f"p{i}", title="t", views=i, tags=["a"], note="n") for i in range(8)])
    feed = Post.objects.changes(wait=0)
    await call(feed, "read", mode)
    assert await call(Post.objects.filter(views__gte=4), "update", mode, inc__views=10,
                      push__tags="hot", unset__note=True) == 4
    assert_indexes_consistent(redis_client, Post)
    stored = {p.id: p for p in await call(Post.objects, "all", mode)}
    events = await call(feed, "read", mode)
    assert sorted((e.op, e.id, e.version, tuple(sorted(e.changed))) for e in events) == [
        ("update", f"p{i}", stored[f"p{i}"].version, ("note", "tags", "views"))
        for i in range(4, 8)]
    first = await call(Post.objects.filter(title="t").order_by("views"), "modify", mode,
                       new=True, pull__tags="a")
    assert (first.id, first.tags, first.views) == ("p0", [], 0)
    assert first.version > stored["p0"].version
    assert [(e.id, e.changed) for e in await call(feed, "read", mode)] == [("p0", ("tags",))]
    assert_indexes_consistent(redis_client, Post)


@pytest.mark.parametrize("mode", MODES)
async def test_a_refused_document_leaves_the_others_written(conn: Any, redis_client: Any,
                                                           mode: str) -> None:
    await call(Page.objects, "bulk_create", mode,
               [Page(id="a", title="x", slug="taken"), Page(id="b", title="y"),
                Page(id="c", title="y")])
    with pytest.raises(BulkWriteError) as caught:
        await call(Page.objects.filter(title="y"), "update", mode, set__slug="taken",
                   inc__views=1)
    assert all(isinstance(error, UniqueViolation) for _, error in caught.value.errors)
    assert_indexes_consistent(redis_client, Page)
    with pytest.raises(UniqueViolation):
        await call(Page.objects.filter(id="b"), "update_one", mode, set__slug="taken")
    assert (await call(Page.objects, "get", mode, id="b")).slug is None
