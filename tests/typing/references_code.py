"""References as a user's type checker sees them (tests/unit/test_reference_typing.py).

Lines marked ``# E: <why>`` must have a mypy --strict error; no other line may have one.
Never run.
"""
# ruff: noqa: B018, F841  (bare expressions and unused names are the point here)

from __future__ import annotations

import sys
from typing import Any, ClassVar

from quantumorm import (
    CASCADE,
    NULLIFY,
    Document,
    OnDelete,
    Ref,
    ReferenceField,
    Reverse,
    StringField,
)
from quantumorm.query.expressions import FieldRef

if sys.version_info >= (3, 11):
    from typing import assert_type
else:
    from typing_extensions import assert_type


class Author(Document):
    name: StringField = StringField()
    #: the reverse side Post.author's related_name adds, declared for type checkers
    posts: ClassVar[Reverse[Post]]


class Post(Document):
    title: StringField = StringField()
    author: ReferenceField[Author] = ReferenceField(Author, related_name="posts",
                                                    on_delete=CASCADE)
    parent = ReferenceField("Post", on_delete=NULLIFY)


async def use(author: Author, post: Post) -> None:
    assert_type(post.author, Ref[Author] | None)
    assert_type(Post.author, FieldRef[Author | Ref[Author] | str])
    assert_type(post.parent, Ref[Any] | None)
    ref = post.author
    assert ref is not None
    assert_type(ref.id, str)
    assert_type(ref.value, Author | None)
    assert_type(ref.loaded, bool)
    assert_type(await ref.fetch(), Author)
    assert_type(ref.fetch_sync(), Author)
    assert_type(ref.model, type[Author])
    post.author = author
    post.author = "a1"
    post.author = 7
    post.author = ref
    post.author = None
    Post(title="t", author=author)
    Post(author="a1")
    posts = await Post.objects.select_related("author").prefetch_related().all()
    assert_type(posts, list[Post])
    assert_type(Post.objects.select_related("author").first_sync(), Post | None)
    assert_type(await Post.objects.select_related("author").get(id="p"), Post)
    assert_type(await Post.objects.filter(author=author).delete(), int)
    assert_type(Post.objects.filter(author__in=[author, "a2"]).delete_sync(), int)
    assert_type(await post.delete(), bool)
    assert_type(post.delete_sync(), bool)
    reverse = author.posts
    assert_type(reverse, Reverse[Post])
    assert_type(reverse.value, list[Post])
    assert_type(await reverse.fetch(), list[Post])
    rule: OnDelete = OnDelete.DENY


def misuse(author: Author, post: Post) -> None:
    post.author = 1.5  # E: not a document, Ref or id
    post.author = post  # E: a Post is not an Author
    ReferenceField(Author, on_delete="cascade")  # E: on_delete is an OnDelete
    ReferenceField(3)  # E: a model or a model's name
    ref = post.author
    assert ref is not None
    ref.id = 3  # E: an id is a str
    Post(author=1.5)  # E: not a document, Ref or id
