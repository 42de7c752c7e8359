"""Update operators without a server: what ``update()``'s keywords parse to, how operators
change a document's values, and which queries an upsert can build a document from."""

from __future__ import annotations

from decimal import Decimal

import pytest

import quantumorm
from quantumorm import (
    ArrayField,
    DecimalField,
    Document,
    FloatField,
    IntField,
    InvalidOperation,
    Q,
    QueryError,
    StringField,
)
from quantumorm.engine.updates import Operation, apply, parse, plain_sets, seed


class Post(Document):
    title = StringField(required=True)
    views = IntField()
    score = FloatField()
    price = DecimalField()
    tags = ArrayField(StringField())
    note = StringField()

    class Meta:
        collection = "updops_unit"
        backend = "sqlite"


def test_keywords_parse_to_normalised_operations() -> None:
    assert parse(Post, {"inc__views": 2, "dec__score": 1, "push_all__tags": ["a", "b"]}) == (
        Operation("inc", "views", 2), Operation("inc", "score", -1),
        Operation("push", "tags", ("a", "b")))
    assert parse(Post, {"pull_all__tags": ["b"]}) == (Operation("pull", "tags", ("b",)),)
    assert parse(Post, {"dec__price": Decimal("0.5"), "unset__note": True,
                        "set__title": "t", "views": 3}) == (
        Operation("inc", "price", Decimal("-0.5")), Operation("set", "note", None),
        Operation("set", "title", "t"), Operation("set", "views", 3))
    assert parse(Post, {"add_to_set__tags": "x"}) == (
        Operation("add_to_set", "tags", ("x",)),)


def test_plain_sets_take_the_set_path() -> None:
    assert plain_sets(parse(Post, {"title": "t", "unset__note": True})) == {
        "title": "t", "note": None}
    assert plain_sets(parse(Post, {"title": "t", "inc__views": 1})) is None


def test_apply_counts_from_null_and_reports_a_change() -> None:
    post = Post(title="t", tags=["a", "b", "a"])
    assert apply(post, parse(Post, {"inc__views": 2, "pull__tags": "a", "set__note": "n"}))
    assert (post.views, post.tags, post.note) == (2, ["b"], "n")
    assert not apply(post, parse(Post, {"add_to_set__tags": "b"}))
    assert apply(post, parse(Post, {"push_all__tags": ["b", "c"]}))
    assert post.tags == ["b", "b", "c"]


def test_an_upsert_seeds_from_equality_conditions_only() -> None:
    options = Post._meta
    assert seed(Post, Q(title="t", views=3).resolve(options)) == {"title": "t", "views": 3}
    assert seed(Post, Q(id="x").resolve(options)) == {"id": "x"}
    for query in (Q(views__gt=3), Q(title="t") | Q(title="u"), ~Q(title="t"),
                  Q(tags__contains="a")):
        with pytest.raises(QueryError, match="equality"):
            seed(Post, query.resolve(options))


def test_refusals_come_before_any_io() -> None:
    quantumorm.create_connection(backend="sqlite", url="sqlite://", name="updops-unit")
    try:
        _refusals()
    finally:
        quantumorm.close_all()


def _refusals() -> None:
    with pytest.raises(QueryError, match="equality"):
        Post.objects.filter(views__gt=3).update_sync(upsert=True, inc__views=1)
    with pytest.raises(QueryError, match="True or False"):
        Post.objects.filter(id="x").modify_sync(new=1, inc__views=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidOperation, match="numeric"):
        Post.objects.update_one_sync(inc__title=1)
