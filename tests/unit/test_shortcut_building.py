"""The shortcuts' pure parts: Meta.ordering checked at class creation, Q equality and
Q(Q(...)), querysets combined, none(), and what indexing and len() refuse."""

from __future__ import annotations

import operator
from typing import Any

import pytest

from quantumorm import ConfigurationError, Document, IntField, JSONField, Q, QueryError, StringField
from quantumorm.query.nodes import FALSE, Ordering


def _model(**meta: Any) -> type[Document]:
    return type(Document)("Thing", (Document,), {
        "__module__": __name__, "name": StringField(indexed=True), "n": IntField(),
        "blob": JSONField(), "Meta": type("Meta", (), {"backend": "sqlite", **meta})})


def test_meta_ordering_is_checked_and_becomes_the_default_order() -> None:
    Thing = _model(ordering=("-n", "name"))
    assert Thing._meta.ordering == (Ordering("n", True), Ordering("name"))
    assert Thing.objects.spec.order == (Ordering("n", True), Ordering("name"))
    assert Thing.objects.filter(n=1).spec.order == Thing._meta.ordering
    assert Thing.objects.order_by("name").spec.order == (Ordering("name"),)
    assert Thing.objects.order_by().spec.order == ()
    assert _model(ordering=["id"])._meta.ordering == (Ordering("id"),)
    assert _model()._meta.ordering == ()
    for bad, message in (("name", "tuple"), (("nope",), "unknown field 'nope'"),
                         (("blob",), "cannot be ordered"), ((3,), "field names"),
                         (("-",), "field names"), (("n", "-n"), "twice")):
        with pytest.raises(ConfigurationError, match=message):
            _model(ordering=bad)


def test_q_equality_and_q_of_q() -> None:
    assert Q(a=1) == Q(a=1) and Q(a=1, b=2) == Q(b=2, a=1)
    assert Q(a=1) != Q(a=2) and Q(a=1) != Q(b=1) and (Q(a=1) | Q(b=2)) != (Q(a=1) & Q(b=2))
    assert ~Q(a=1) == ~Q(a=1) and Q(a=[1, 2]) == Q(a=[1, 2])
    assert len({Q(a=1), Q(a=1), Q(a=2)}) == 2
    assert hash(Q(a=[1])) == hash(Q(a=[1]))  # unhashable values: hashed by shape
    assert Q(Q(a=1)) == Q(a=1) and Q(Q(a=1) | Q(b=2)) == Q(a=1) | Q(b=2)
    assert Q(Q(), Q()).empty and Q(Q(), a=1) == Q(a=1)
    Thing = _model()
    assert Q(Q(n=1), name="x").resolve(Thing._meta) == Q(n=1, name="x").resolve(Thing._meta)
    with pytest.raises(QueryError, match="Q objects"):
        Q({"a": 1})  # type: ignore[arg-type]
    assert Q(a=1) != {"a": 1}
    # values compare with their types: these select different documents
    assert Q(a=1) != Q(a=True) and Q(a=0) != Q(a=False) and Q(a=1) != Q(a=1.0)
    assert Q(a=[1, 2]) != Q(a=[True, 2]) and Q(a={"k": 1}) != Q(a={"k": True})
    assert (Q(a=1) | Q(b=[1])) == (Q(a=1) | Q(b=[1])) != (Q(a=1) | Q(b=[True]))


def test_querysets_combine_only_when_they_differ_in_filters() -> None:
    Thing = _model()
    both = Thing.objects.filter(n=1) & Thing.objects.filter(name="x")
    assert both.spec.where == Thing.objects.filter(n=1, name="x").spec.where
    either = Thing.objects.filter(n=1) | Thing.objects.filter(name="x")
    assert either.spec.where == Thing.objects.filter(Q(n=1) | Q(name="x")).spec.where
    assert (Thing.objects | Thing.objects.filter(n=1)).spec.where == Thing.objects.spec.where
    for left, right in ((Thing.objects.order_by("n"), Thing.objects),
                        (Thing.objects[:3], Thing.objects[:3]),
                        (Thing.objects.values("n"), Thing.objects)):
        with pytest.raises(QueryError):
            left | right
    with pytest.raises(TypeError, match="combines with a QuerySet"):
        Thing.objects | Q(n=1)  # type: ignore[operator]


def test_none_and_what_indexing_and_len_refuse() -> None:
    Thing = _model()
    assert Thing.objects.none().spec.where == FALSE
    assert Thing.objects.none().filter(n=1).spec.where == FALSE
    assert Thing.objects(n=1).spec == Thing.objects.filter(n=1).spec
    with pytest.raises(TypeError, match=r"at\(0\)"):
        Thing.objects[0]  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="count"):
        len(Thing.objects)
    # list(qs) asks for a length hint first: len()'s TypeError reads as "unknown", so no
    # count runs before the query
    assert operator.length_hint(Thing.objects, 7) == 7
    assert Thing.objects.reverse().spec.order == (Ordering("id", True),)
    assert Thing.objects.order_by("-n", "name").reverse().spec.order == (
        Ordering("n"), Ordering("name", True))
    with pytest.raises(QueryError, match="sliced"):
        Thing.objects[2:].reverse()


def test_a_keyset_positioned_queryset_is_not_reversed() -> None:
    Thing = _model()
    qs = Thing.objects.order_by("n")
    positioned = qs.after(qs.cursor_for(Thing(id="x", n=1)))
    with pytest.raises(QueryError, match="positioned"):
        positioned.reverse()
    with pytest.raises(QueryError):
        positioned | positioned
