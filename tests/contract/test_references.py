"""References on every backend and in both modes: storing and querying a reference,
lazy-only-on-request reads, ``select_related`` / ``prefetch_related`` (one round trip per
referenced collection, counted by the metrics), delete rules, and a pair of models on two
backends (posts on SQLite referring to authors on Redis)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from contract_models import run

import quantumorm
from quantumorm import (
    CASCADE,
    DENY,
    DO_NOTHING,
    NULLIFY,
    ConfigurationError,
    DeleteDenied,
    Document,
    IntField,
    InvalidOperation,
    NotLoaded,
    QueryError,
    Ref,
    ReferenceField,
    StringField,
    ValidationError,
    VersionConflict,
    metrics,
    signals,
)


def _declare(backend: str, author_backend: str | None = None) -> SimpleNamespace:
    def meta(collection: str, on: str = backend) -> type:
        return type("Meta", (), {"backend": on, "namespace": "contract",
                                     "collection": "ref_" + collection})

    class Author(Document):
        name = StringField()
        Meta = meta("authors", author_backend or backend)

    class Post(Document):
        title = StringField()
        n = IntField()
        author = ReferenceField(Author, related_name="posts", on_delete=CASCADE)
        editor = ReferenceField(Author, related_name="edited", on_delete=NULLIFY)
        Meta = meta("posts")

    class Comment(Document):
        text = StringField()
        post = ReferenceField(Post, related_name="comments", on_delete=CASCADE)
        Meta = meta("comments")

    class Pin(Document):  # DENY: a pinned comment cannot be deleted
        comment = ReferenceField(Comment, on_delete=DENY)
        Meta = meta("pins")

    class Node(Document):  # a self-reference by name, with cascades
        label = StringField()
        parent = ReferenceField("Node", related_name="children", on_delete=CASCADE)
        Meta = meta("nodes")

    class Tag(Document):  # a reference that may dangle
        author = ReferenceField(Author, on_delete=DO_NOTHING)
        Meta = meta("tags")

    return SimpleNamespace(Author=Author, Post=Post, Comment=Comment, Pin=Pin, Node=Node,
                           Tag=Tag)


MODELS = {backend: _declare(backend) for backend in ("redis", "sqlite", "postgres")}


@pytest.fixture
def refs(store: str) -> SimpleNamespace:
    return MODELS[store]


async def _authors(m: Any, mode: str, count: int = 3) -> list[Any]:
    return [await run(m.Author(id=f"a{i}", name=f"author {i}"), "save", mode)
            for i in range(count)]


async def _posts(m: Any, mode: str, authors: list[Any], count: int = 9) -> list[Any]:
    posts = []
    for i in range(count):
        post = m.Post(id=f"p{i:02}", title=f"t{i}", n=i, author=authors[i % len(authors)],
                      editor=authors[(i + 1) % len(authors)].id if i % 2 else None)
        posts.append(await run(post, "save", mode))
    return posts


def _ids(docs: Any) -> list[str]:
    return sorted(doc.id for doc in docs)


def _counted(stats: Any) -> dict[tuple[str, str], tuple[int, int]]:
    return {(s.model, s.operation): (s.count, s.round_trips) for s in stats}


# -- storing, assigning, querying -----------------------------------------------------------


async def test_a_reference_stores_the_id_and_queries_by_document_or_id(
        refs: Any, mode: str) -> None:
    a0, a1, a2 = await _authors(refs, mode)
    await _posts(refs, mode, [a0, a1, a2])
    Post = refs.Post
    post = await run(Post.objects, "get", mode, id="p01")
    assert isinstance(post.author, Ref) and post.author.id == "a1"
    assert post.author == Ref(Post._fields["author"], "a1")
    assert post.to_dict()["author"] == "a1" and post.to_dict()["editor"] == "a2"
    assert post.to_dict(storage=True)["author"] == "a1"
    by_doc = await run(Post.objects.filter(author=a1).order_by("id"), "all", mode)
    by_id = await run(Post.objects.filter(author="a1").order_by("id"), "all", mode)
    assert _ids(by_doc) == _ids(by_id) == ["p01", "p04", "p07"]
    assert _ids(await run(Post.objects.filter(author__in=[a0, "a2"]), "all", mode)) == [
        "p00", "p02", "p03", "p05", "p06", "p08"]
    assert await run(Post.objects.filter(author__ne=a0), "count", mode) == 6
    assert await run(Post.objects.filter(author__nin=["a0", a1]), "count", mode) == 3
    assert _ids(await run(Post.objects.filter(editor__isnull=True), "all", mode)) == [
        "p00", "p02", "p04", "p06", "p08"]
    assert await run(Post.objects.filter(editor__isnull=False), "count", mode) == 4
    assert await run(Post.objects.filter(author=post.author), "count", mode) == 3  # a Ref
    assert await run(Post.objects.filter(author="nobody"), "count", mode) == 0


async def test_reassigning_a_reference_moves_the_index_entry(refs: Any, mode: str) -> None:
    a0, a1, _ = await _authors(refs, mode)
    post = await run(refs.Post(id="p", author=a0), "save", mode)
    post.author = a1.id
    await run(post, "save", mode)
    assert await run(refs.Post.objects.filter(author=a0), "count", mode) == 0
    assert _ids(await run(refs.Post.objects.filter(author=a1), "all", mode)) == ["p"]
    post.author = None
    await run(post, "save", mode)
    assert await run(refs.Post.objects.filter(author__isnull=True), "count", mode) == 1


async def test_values_give_ids_and_updates_take_documents(refs: Any, mode: str) -> None:
    a0, a1 = await _authors(refs, mode, 2)
    await _posts(refs, mode, [a0, a1], count=4)
    Post = refs.Post
    assert await run(Post.objects.order_by("id").values("author", "editor"), "all", mode) == [
        {"id": "p00", "author": "a0", "editor": None},
        {"id": "p01", "author": "a1", "editor": "a0"},
        {"id": "p02", "author": "a0", "editor": None},
        {"id": "p03", "author": "a1", "editor": "a0"}]
    assert await run(Post.objects.order_by("id").values_list("author", flat=True), "all",
                     mode) == ["a0", "a1", "a0", "a1"]
    assert await run(Post.objects.filter(author=a0), "update", mode, author=a1) == 2
    assert await run(Post.objects.filter(author=a1), "count", mode) == 4
    post = await run(Post.objects, "get", mode, id="p00")
    await run(post, "update", mode, author=a0)
    assert _ids(await run(Post.objects.filter(author="a0"), "all", mode)) == ["p00"]
    # by id: in place with no read on Redis (a reference is one text per value)
    assert await run(Post.objects.filter(id__in=["p01", "p02"]), "update", mode,
                     author=a0, editor=a1) == 2
    assert _ids(await run(Post.objects.filter(author=a0), "all", mode)) == ["p00", "p01", "p02"]
    assert _ids(await run(Post.objects.filter(editor="a1"), "all", mode)) == ["p01", "p02"]
    moved = await run(Post.objects, "get", mode, id="p02")
    assert moved.author is not None and (moved.author.id, moved.editor.id) == ("a0", "a1")


async def test_an_unsaved_or_foreign_document_is_refused(refs: Any, mode: str) -> None:
    (a0,) = await _authors(refs, mode, 1)
    post = refs.Post(id="p")
    with pytest.raises(ValidationError, match="must be a saved Author.*save it first"):
        post.author = refs.Author(name="new")
    with pytest.raises(ValidationError, match="must be an instance of Author .got a Post"):
        post.author = refs.Post(id="other")
    with pytest.raises(ValidationError, match="must be a saved Author"):
        await run(refs.Post(id="q", author=refs.Author(name="new")), "save", mode)
    with pytest.raises(ValidationError, match="must be an instance of Author, a Ref or an id"):
        post.author = 1.5  # type: ignore[assignment]
    assert await run(refs.Post.objects, "count", mode) == 0
    post.author = a0
    assert post.author is not None and post.author.value is a0  # assigned: loaded
    await run(post, "save", mode)


async def test_reading_a_reference_never_does_io(refs: Any, mode: str) -> None:
    (a0,) = await _authors(refs, mode, 1)
    await run(refs.Post(id="p", author=a0), "save", mode)
    post = await run(refs.Post.objects, "get", mode, id="p")
    metrics.enable()
    try:
        metrics.reset()
        ref = post.author
        assert ref.id == "a0" and not ref.loaded
        with pytest.raises(NotLoaded, match=r"select_related\('author'\).*fetch\(\)"):
            _ = ref.value
        assert metrics.snapshot().operations == ()
        fetched = await run(ref, "fetch", mode)
        assert fetched.name == "author 0" and ref.value is fetched
    finally:
        metrics.disable()
        metrics.reset()
    await run(a0, "delete", mode)  # (the post goes with it: CASCADE)
    with pytest.raises(refs.Author.DoesNotExist):
        await run(refs.Post(id="x", author="a0").author, "fetch", mode)


# -- select_related / prefetch_related ---------------------------------------------------------


async def test_select_related_reads_each_referenced_field_once(refs: Any, mode: str) -> None:
    authors = await _authors(refs, mode)
    await _posts(refs, mode, authors, count=30)
    qs = refs.Post.objects.select_related("author", "editor").order_by("n")
    metrics.enable()
    try:
        metrics.reset()
        posts = await run(qs, "all", mode)
        counted = _counted(metrics.snapshot().operations)
    finally:
        metrics.disable()
        metrics.reset()
    assert len(posts) == 30
    # the page, then one get_many per reference field, whatever the number of posts
    assert counted[("Post", "all")][0] == 1
    assert counted[("Author", "get_many")][0] == 2
    assert set(counted) == {("Post", "all"), ("Author", "get_many")}
    # one round trip each (Redis: one partition; SQL: one statement)
    assert counted[("Author", "get_many")][1] == 2
    for post in posts:
        assert post.author.value.id == post.author.id
        assert post.author.value.name == f"author {post.author.id[1:]}"
        if post.editor is not None:
            assert post.editor.value.id == post.editor.id
    assert posts[0].author.value is posts[3].author.value  # one instance per document


async def test_iteration_loads_each_chunk(refs: Any, mode: str) -> None:
    authors = await _authors(refs, mode)
    await _posts(refs, mode, authors, count=10)
    chunks = refs.Post.objects.select_related("author").order_by("n").iterator(4)
    metrics.enable()
    try:
        metrics.reset()
        if mode == "sync":
            posts = await asyncio.to_thread(list, chunks)
        else:
            posts = [post async for post in chunks]
        counted = _counted(metrics.snapshot().operations)
    finally:
        metrics.disable()
        metrics.reset()
    assert [p.n for p in posts] == list(range(10))
    assert all(p.author.value.id == p.author.id for p in posts)
    assert counted[("Post", "all")][0] == counted[("Author", "get_many")][0] == 3  # 4+4+2


async def test_select_related_follows_a_path(refs: Any, mode: str) -> None:
    authors = await _authors(refs, mode)
    await _posts(refs, mode, authors, count=6)
    for i in range(6):
        await run(refs.Comment(id=f"c{i}", post=f"p{i % 4:02}"), "save", mode)
    await run(refs.Comment(id="orphan", post="p99"), "save", mode)  # dangling
    qs = refs.Comment.objects.select_related("post", "post__author").order_by("id")
    metrics.enable()
    try:
        metrics.reset()
        comments = await run(qs, "all", mode)
        counted = _counted(metrics.snapshot().operations)
    finally:
        metrics.disable()
        metrics.reset()
    assert counted[("Post", "get_many")][0] == counted[("Author", "get_many")][0] == 1
    assert [c.post.value.author.value.name for c in comments[:6]] == [
        "author 0", "author 1", "author 2", "author 0", "author 0", "author 1"]
    assert comments[6].id == "orphan" and comments[6].post.value is None
    with pytest.raises(QueryError, match="Author.nope is not a reference field"):
        refs.Comment.objects.select_related("post__author__nope")


async def test_select_related_on_first_get_and_a_dangling_id(refs: Any, mode: str) -> None:
    a0, a1 = await _authors(refs, mode, 2)
    await run(refs.Tag(id="t0", author=a0), "save", mode)
    await run(refs.Tag(id="t1", author=a1), "save", mode)
    await run(a1, "delete", mode)  # DO_NOTHING: t1 now dangles
    tags = await run(refs.Tag.objects.select_related("author").order_by("id"), "all", mode)
    assert tags[0].author.value == a0
    assert tags[1].author.id == "a1" and tags[1].author.value is None  # gone: None
    got = await run(refs.Tag.objects.select_related("author"), "get", mode, id="t0")
    assert got.author.value.name == "author 0"
    first = await run(refs.Tag.objects.select_related("author").order_by("-id"), "first",
                      mode)
    assert first.id == "t1" and first.author.loaded and first.author.value is None
    assert await run(refs.Tag.objects.filter(id="zz").select_related("author"), "first",
                     mode) is None


async def test_prefetch_related_loads_the_reverse_side_in_one_query(
        refs: Any, mode: str) -> None:
    authors = await _authors(refs, mode, 4)  # a3 has no post
    await _posts(refs, mode, authors[:3], count=12)
    metrics.enable()
    try:
        metrics.reset()
        found = await run(refs.Author.objects.prefetch_related("posts").order_by("id"),
                          "all", mode)
        counted = _counted(metrics.snapshot().operations)
    finally:
        metrics.disable()
        metrics.reset()
    assert counted == {("Author", "all"): (1, counted[("Author", "all")][1]),
                       ("Post", "all"): (1, counted[("Post", "all")][1])}
    assert [len(a.posts.value) for a in found] == [4, 4, 4, 0]
    assert _ids(found[1].posts.value) == ["p01", "p04", "p07", "p10"]
    assert all(p.author.value is found[1] for p in found[1].posts.value)
    with pytest.raises(NotLoaded, match=r"prefetch_related\('edited'\)"):
        _ = found[0].edited.value
    assert _ids(await run(found[0].edited, "fetch", mode)) == ["p05", "p11"]


async def test_unknown_related_names_fail_when_the_query_is_built(refs: Any) -> None:
    with pytest.raises(QueryError, match="Post.title is not a reference field"):
        refs.Post.objects.select_related("title")
    with pytest.raises(QueryError, match="no reverse reference 'nope'.*edited, posts"):
        refs.Author.objects.prefetch_related("nope")


async def test_a_self_reference_by_name(refs: Any, mode: str) -> None:
    Node = refs.Node
    root = await run(Node(id="root", label="r"), "save", mode)
    for i in range(3):
        await run(Node(id=f"c{i}", label=f"c{i}", parent=root), "save", mode)
    children = await run(Node.objects.filter(parent=root).select_related("parent"), "all",
                         mode)
    assert _ids(children) == ["c0", "c1", "c2"]
    assert all(c.parent.value == root for c in children)
    (top,) = await run(Node.objects.filter(parent__isnull=True).prefetch_related("children"),
                       "all", mode)
    assert _ids(top.children.value) == ["c0", "c1", "c2"]


# -- delete rules -------------------------------------------------------------------------------


async def test_cascade_is_recursive_and_nullify_clears(refs: Any, mode: str) -> None:
    a0, a1, a2 = await _authors(refs, mode)
    await _posts(refs, mode, [a0, a1, a2])
    for post_id in ("p00", "p03", "p01"):
        await run(refs.Comment(id=f"c-{post_id}", post=post_id), "save", mode)
    metrics.enable()
    try:
        metrics.reset()
        assert await run(a0, "delete", mode) is True
        counted = _counted(metrics.snapshot().operations)
    finally:
        metrics.disable()
        metrics.reset()
    # each step is an operation of its own, named for what it does
    assert {key: count for key, (count, _) in counted.items()} == {
        ("Post", "delete_read"): 1, ("Comment", "delete_read"): 1,
        ("Pin", "delete_check"): 1, ("Post", "delete_nullify"): 1,
        ("Comment", "delete_cascade"): 1, ("Post", "delete_cascade"): 1,
        ("Author", "delete_read"): 1, ("Author", "delete"): 1}
    assert _ids(await run(refs.Post.objects, "all", mode)) == [
        "p01", "p02", "p04", "p05", "p07", "p08"]
    assert _ids(await run(refs.Comment.objects, "all", mode)) == ["c-p01"]
    # a0 edited p05 (odd posts name the next author as editor): nullified
    p05 = await run(refs.Post.objects, "get", mode, id="p05")
    assert p05.editor is None
    assert await run(refs.Post.objects.filter(editor="a0"), "count", mode) == 0


async def test_children_go_first_and_the_parent_last(refs: Any, mode: str) -> None:
    """The order that makes an interrupted delete leave no dangling reference: nullify,
    then the deepest cascade, then the document asked for."""
    a0, a1 = await _authors(refs, mode, 2)
    await run(refs.Post(id="p", author=a0, editor=a0), "save", mode)  # (deleted, not saved)
    await run(refs.Post(id="q", author=a1, editor=a0), "save", mode)
    await run(refs.Comment(id="c", post="p"), "save", mode)
    seen: list[str] = []

    def saved(sender: Any, document: Any, **_: Any) -> None:
        seen.append(f"save {sender.__name__} {document.id}")

    def deleted(sender: Any, document: Any, **_: Any) -> None:
        seen.append(f"delete {sender.__name__} {document.id}")

    signals.post_save.connect(saved)
    signals.post_delete.connect(deleted)
    try:
        assert await run(a0, "delete", mode) is True
    finally:
        signals.post_save.disconnect(saved)
        signals.post_delete.disconnect(deleted)
    assert seen == ["save Post q", "delete Comment c", "delete Post p", "delete Author a0"]


async def test_deny_refuses_before_anything_is_deleted(refs: Any, mode: str) -> None:
    a0, a1, a2 = await _authors(refs, mode)
    await _posts(refs, mode, [a0, a1, a2])
    await run(refs.Comment(id="c0", post="p00"), "save", mode)
    await run(refs.Comment(id="c3", post="p03"), "save", mode)
    await run(refs.Pin(id="pin", comment="c3"), "save", mode)  # two levels down
    before = await _everything(refs, mode)
    with pytest.raises(DeleteDenied, match=r"1 Pin document\(s\).*Pin.comment") as denied:
        await run(a0, "delete", mode)
    assert (denied.value.model, denied.value.referencing, denied.value.count) == (
        "Comment", "Pin", 1)
    with pytest.raises(DeleteDenied):
        await run(refs.Author.objects.filter(name="author 0"), "delete", mode)
    with pytest.raises(DeleteDenied):
        await run(refs.Author.objects.filter(id="a0"), "delete", mode)
    assert await _everything(refs, mode) == before  # nothing deleted, nothing nullified
    await run(refs.Pin.objects.filter(id="pin"), "delete", mode)
    assert await run(refs.Author.objects.filter(id="a0"), "delete", mode) == 1
    assert await run(refs.Comment.objects, "count", mode) == 0


async def _everything(refs: Any, mode: str) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for name in ("Author", "Post", "Comment", "Pin"):
        docs = await run(getattr(refs, name).objects.order_by("id"), "all", mode)
        out[name] = [doc.to_dict() for doc in docs]
    return out


async def test_queryset_deletes_apply_the_rules(refs: Any, mode: str) -> None:
    authors = await _authors(refs, mode)
    await _posts(refs, mode, authors)
    assert await run(refs.Author.objects.filter(name__in=["author 1", "author 2"]),
                     "delete", mode) == 2
    assert _ids(await run(refs.Post.objects, "all", mode)) == ["p00", "p03", "p06"]
    assert await run(refs.Author.objects.filter(id__in=["a0", "zz"]), "delete", mode) == 1
    assert await run(refs.Post.objects, "count", mode) == 0
    assert await run(refs.Author.objects.filter(id="zz"), "delete", mode) == 0


async def test_cascade_stops_at_a_cycle(refs: Any, mode: str) -> None:
    Node = refs.Node
    await run(Node(id="x", label="x", parent="y"), "save", mode)
    await run(Node(id="y", label="y", parent="x"), "save", mode)
    await run(Node(id="z", label="z", parent="y"), "save", mode)
    await run(Node(id="free", label="free"), "save", mode)
    x = await run(Node.objects, "get", mode, id="x")
    assert await run(x, "delete", mode) is True
    assert _ids(await run(Node.objects, "all", mode)) == ["free"]


async def test_do_nothing_leaves_the_reference_dangling(refs: Any, mode: str) -> None:
    (a0,) = await _authors(refs, mode, 1)
    await run(refs.Tag(id="t", author=a0), "save", mode)
    await run(a0, "delete", mode)
    tag = await run(refs.Tag.objects, "get", mode, id="t")
    assert tag.author.id == "a0"


def test_nullify_on_a_required_field_is_refused_at_declaration() -> None:
    with pytest.raises(ConfigurationError, match="NULLIFY.*cannot be required"):
        ReferenceField("Author", on_delete=NULLIFY, required=True)
    with pytest.raises(ConfigurationError, match="on_delete must be"):
        ReferenceField("Author", on_delete="cascade")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="related_name 'name' is taken"):
        class Bad(Document):
            owner = ReferenceField(MODELS["sqlite"].Author, related_name="name")

            class Meta:
                backend = "sqlite"
                collection = "bad"


# -- delete rules: cycles through NULLIFY, stale instances, soft deletes, DENY after cascades --


def _declare_cycles(backend: str) -> SimpleNamespace:
    def meta(collection: str) -> type:
        return type("Meta", (), {"backend": backend, "namespace": "contract",
                                 "collection": "ref_" + collection})

    suffix = backend.capitalize()  # (a name of its own per backend: named references)

    class Writer(Document):  # the pinned article CASCADEs from the writer: a cycle
        name = StringField()
        pinned = ReferenceField(f"Article{suffix}", on_delete=NULLIFY)
        Meta = meta("writers")

    article_model: Any = type(f"Article{suffix}", (Document,), {
        "__module__": __name__, "title": StringField(),
        "writer": ReferenceField(Writer, on_delete=CASCADE), "Meta": meta("articles")})

    class Review(Document):  # by a writer (DENY), of an article (CASCADE)
        writer = ReferenceField(Writer, on_delete=DENY)
        article = ReferenceField(article_model, on_delete=CASCADE)
        Meta = meta("reviews")

    class Person(Document):  # a NULLIFY reference to the model itself
        name = StringField()
        manager = ReferenceField("Person", on_delete=NULLIFY)
        Meta = meta("people")

    return SimpleNamespace(Writer=Writer, Article=article_model, Review=Review, Person=Person)


CYCLES = {backend: _declare_cycles(backend) for backend in ("redis", "sqlite", "postgres")}


@pytest.fixture
def cycles(store: str) -> SimpleNamespace:
    return CYCLES[store]


async def test_a_nullify_leading_back_to_the_deleted_document(cycles: Any, mode: str) -> None:
    """The writer's pinned article is deleted by the cascade from the writer: neither the
    writer nor the article is nullified first (which would bump the writer's version under
    its compare-and-set delete)."""
    Writer, Article = cycles.Writer, cycles.Article
    writer = await run(Writer(id="w", name="w"), "save", mode)
    other = await run(Writer(id="o", name="o"), "save", mode)
    await run(Article(id="a1", title="pinned", writer=writer), "save", mode)
    await run(Article(id="a2", title="other", writer=writer), "save", mode)
    await run(Article(id="a3", title="theirs", writer=other), "save", mode)
    writer.pinned = "a1"
    await run(writer, "save", mode)
    other.pinned = "a2"  # another writer pinning an article that goes: nullified
    await run(other, "save", mode)
    assert await run(writer, "delete", mode) is True
    assert _ids(await run(Writer.objects, "all", mode)) == ["o"]
    assert _ids(await run(Article.objects, "all", mode)) == ["a3"]
    assert (await run(Writer.objects, "get", mode, id="o")).pinned is None


async def test_a_document_referring_to_itself_with_nullify(cycles: Any, mode: str) -> None:
    Person = cycles.Person
    ceo = await run(Person(id="ceo", name="ceo"), "save", mode)
    ceo.manager = ceo
    await run(ceo, "save", mode)
    await run(Person(id="w", name="w", manager="ceo"), "save", mode)
    assert await run(ceo, "delete", mode) is True
    (left,) = await run(Person.objects, "all", mode)
    assert (left.id, left.manager) == ("w", None)
    boss = await run(Person(id="boss", name="boss"), "save", mode)
    boss.manager = boss
    await run(boss, "save", mode)
    assert await run(Person.objects.filter(name="boss"), "delete", mode) == 1
    assert _ids(await run(Person.objects, "all", mode)) == ["w"]


async def test_a_stale_instance_is_refused_before_anything_is_written(
        refs: Any, mode: str) -> None:
    a0, a1 = await _authors(refs, mode, 2)
    await _posts(refs, mode, [a0, a1], count=4)
    stale = await run(refs.Author.objects, "get", mode, id="a0")
    a0.name = "renamed"
    await run(a0, "save", mode)  # another writer
    before = await _everything(refs, mode)
    with pytest.raises(VersionConflict, match="'a0'"):
        await run(stale, "delete", mode)
    assert await _everything(refs, mode) == before  # no cascade, no nullify
    assert await run(a0, "delete", mode) is True  # the current version deletes
    assert _ids(await run(refs.Post.objects, "all", mode)) == ["p01", "p03"]
    assert await run(stale, "delete", mode) is False  # gone: nothing to apply rules for


async def test_a_soft_delete_is_refused_where_rules_would_write(refs: Any, mode: str) -> None:
    (a0,) = await _authors(refs, mode, 1)
    await _posts(refs, mode, [a0], count=2)
    before = await _everything(refs, mode)
    with pytest.raises(InvalidOperation, match=r"Author.delete\(soft=True\) is refused.*"
                                               r"Post.author \(CASCADE\), Post.editor"):
        await run(a0, "delete", mode, soft=True, ttl=60)
    assert await _everything(refs, mode) == before


async def test_deny_counts_only_what_the_cascade_leaves(cycles: Any, mode: str) -> None:
    """A review of the writer's own article goes with the article (CASCADE) even though its
    ``writer`` says DENY; a review of someone else's article refuses the delete."""
    Writer, Article, Review = cycles.Writer, cycles.Article, cycles.Review
    writer = await run(Writer(id="w", name="w"), "save", mode)
    other = await run(Writer(id="o", name="o"), "save", mode)
    await run(Article(id="mine", title="m", writer=writer), "save", mode)
    await run(Article(id="theirs", title="t", writer=other), "save", mode)
    await run(Review(id="r1", writer=writer, article="mine"), "save", mode)
    await run(Review(id="r2", writer=writer, article="mine"), "save", mode)
    await run(Review(id="r3", writer=writer, article="theirs"), "save", mode)
    with pytest.raises(DeleteDenied, match="1 Review document") as denied:
        await run(writer, "delete", mode)
    assert (denied.value.model, denied.value.field, denied.value.count) == (
        "Writer", "writer", 1)
    assert await run(Review.objects, "count", mode) == 3
    await run(Review.objects.filter(id="r3"), "delete", mode)
    assert await run(writer, "delete", mode) is True
    assert _ids(await run(Article.objects, "all", mode)) == ["theirs"]
    assert await run(Review.objects, "count", mode) == 0


# -- a document not stored, a Ref to a same-named model ------------------------------------


async def test_a_deleted_document_as_a_reference_value(refs: Any, mode: str) -> None:
    (a0,) = await _authors(refs, mode, 1)
    await run(a0, "delete", mode)
    with pytest.raises(QueryError, match="id 'a0' that is not stored: deleted, or never saved"):
        refs.Post.objects.filter(author=a0)
    with pytest.raises(ValidationError, match="not stored: deleted"):
        refs.Post(id="p").author = a0
    assert a0.id is not None
    assert await run(refs.Post.objects.filter(author=a0.id), "count", mode) == 0


def _other_author() -> type[Document]:
    class Author(Document):  # another model of the class name Author
        name = StringField()

        class Meta:
            backend = "sqlite"
            collection = "ref_other_authors"

    return Author


_TO_OTHER: ReferenceField[Any] = ReferenceField(_other_author())


async def test_a_ref_to_a_same_named_model_is_refused(refs: Any) -> None:
    post = refs.Post(id="p")
    with pytest.raises(ValidationError, match=r"must refer to a .*_declare.*Author .got a "
                                              r"reference to a .*_other_author.*Author"):
        post.author = Ref(_TO_OTHER, "a0")
    with pytest.raises(QueryError, match="must refer to a"):
        refs.Post.objects.filter(author=Ref(_TO_OTHER, "a0"))
    with pytest.raises(ValidationError, match="must refer to a"):
        _ = refs.Post(id="q", author=Ref(_TO_OTHER, "a0")).author
    assert Ref(_TO_OTHER, "a0") != Ref(refs.Post._fields["author"], "a0")
    post.author = Ref(refs.Tag._fields["author"], "a0")  # the same model, another field
    assert post.author is not None and post.author.id == "a0"


# -- across backends: posts on SQLite, authors on Redis -----------------------------------------

CROSS = _declare("sqlite", author_backend="redis")


@pytest.fixture
async def cross(redis_url: str, redis_client: Any) -> Any:
    redis_client.flushdb()
    quantumorm.create_connection(backend="redis", url=redis_url, name="refs-redis",
                                 make_default=True)
    quantumorm.create_connection(backend="sqlite", url="sqlite://", name="refs-sqlite",
                                 make_default=True)
    try:
        yield CROSS
    finally:
        try:
            await quantumorm.aclose_all()
        finally:
            quantumorm.close_all()


async def test_across_backends(cross: Any, mode: str) -> None:
    authors = await _authors(cross, mode)
    await _posts(cross, mode, authors, count=6)
    metrics.enable()
    try:
        metrics.reset()
        posts = await run(cross.Post.objects.select_related("author").order_by("n"), "all",
                          mode)
        stats = {(s.model, s.operation): s for s in metrics.snapshot().operations}
    finally:
        metrics.disable()
        metrics.reset()
    assert stats[("Post", "all")].backend == "sqlite"
    assert stats[("Author", "get_many")].backend == "redis"
    assert stats[("Author", "get_many")].count == 1
    assert [p.author.value.name for p in posts[:3]] == ["author 0", "author 1", "author 2"]
    found = await run(cross.Author.objects.prefetch_related("posts").order_by("id"), "all",
                      mode)
    assert [_ids(a.posts.value) for a in found] == [["p00", "p03"], ["p01", "p04"],
                                                   ["p02", "p05"]]
    await run(cross.Comment(id="c", post="p01"), "save", mode)
    await run(cross.Pin(id="pin", comment="c"), "save", mode)
    with pytest.raises(DeleteDenied):
        await run(authors[1], "delete", mode)
    assert await run(cross.Post.objects, "count", mode) == 6
    assert await run(authors[0], "delete", mode) is True  # cascades into SQLite
    assert _ids(await run(cross.Post.objects, "all", mode)) == ["p01", "p02", "p04", "p05"]
    assert (await run(cross.Post.objects, "get", mode, id="p05")).editor is None  # NULLIFY
