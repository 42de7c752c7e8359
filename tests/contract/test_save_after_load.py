"""``save()`` of a loaded document on every backend, in both modes: what it validates and
what it detects as changed.

A loaded document's fields that still hold the very values they were loaded with were
valid when stored: a save validates only the fields that changed (unless the model has its
own ``clean()`` or ``validate()``, which sees the whole document), and writes only when a
field's stored form changed, whichever way its value was assigned.
"""

from __future__ import annotations

from typing import Any

import pytest
from contract_models import run

from quantumorm import (
    ArrayField,
    Document,
    FloatField,
    IntField,
    StringField,
    ValidationError,
)


def _models(store: str) -> tuple[type[Document], type[Document], type[Document]]:
    def meta() -> type:
        return type("Meta", (), {"backend": store, "namespace": "contract",
                                 "collection": "loaded"})

    lenient = type("Lenient", (Document,), {
        "name": StringField(indexed=True), "age": IntField(indexed=True),
        "score": FloatField(), "tags": ArrayField(StringField()), "Meta": meta()})
    # the same collection with stricter rules: what was stored under the lenient ones
    strict = type("Strict", (Document,), {
        "name": StringField(indexed=True, max_length=3), "age": IntField(indexed=True),
        "score": FloatField(), "tags": ArrayField(StringField()), "Meta": meta()})

    def clean(self: Any) -> dict[str, Any]:
        return Document.clean(self)

    ruled = type("Ruled", (Document,), {
        "name": StringField(indexed=True, max_length=3), "age": IntField(indexed=True),
        "score": FloatField(), "tags": ArrayField(StringField()), "Meta": meta(),
        "clean": clean})
    return lenient, strict, ruled


async def test_only_changed_fields_are_validated(store: str, mode: str) -> None:
    lenient, strict, ruled = _models(store)
    await run(lenient(id="a", name="longer than three", age=1, score=1.5, tags=["x"]),
              "save", mode)
    doc = await run(strict.objects, "get", mode, id="a")
    first = doc.version
    doc.age = 2  # name (unchanged) no longer passes max_length: not checked again
    await run(doc, "save", mode)
    assert doc.version > first
    second = doc.version
    again = await run(strict.objects, "get", mode, id="a")
    assert (again.name, again.age, again.score, again.tags) == ("longer than three", 2, 1.5,
                                                                ["x"])
    # a changed field is checked, with clean()'s error, and nothing is written
    loaded = again.name
    again.name = "also too long"
    with pytest.raises(ValidationError, match="name"):
        await run(again, "save", mode)
    again.name, again.age = loaded, "not a number"  # (the very value it was loaded with)
    with pytest.raises(ValidationError) as raised:
        await run(again, "save", mode)
    assert set(raised.value.errors) == {"age"}
    assert (await run(strict.objects, "get", mode, id="a")).version == second
    # a model with its own clean() sees the whole document, unchanged fields included
    ruled_doc = await run(ruled.objects, "get", mode, id="a")
    ruled_doc.age = 3
    with pytest.raises(ValidationError, match="name"):
        await run(ruled_doc, "save", mode)


async def test_changes_are_found_by_stored_form(store: str, mode: str) -> None:
    lenient, _, _ = _models(store)
    await run(lenient(id="b", name="ab", age=5, score=2.0, tags=["x", "y"]), "save", mode)
    doc = await run(lenient.objects, "get", mode, id="b")
    versions = [doc.version]
    # equal values in other objects (and an int for a float of the same value): no change
    doc.name = "".join(["a", "b"])
    doc.score = 2
    doc.tags = ["x", "y"]
    await run(doc, "save", mode)
    assert doc.version == versions[-1] and doc.score == 2.0 and isinstance(doc.score, float)
    # a list changed in place, then a scalar: each is a change, saved and read back
    doc.tags.append("z")
    await run(doc, "save", mode)
    assert doc.version > versions[-1]
    versions.append(doc.version)
    doc.age += 1
    doc.score = -0.0  # equal to 0.0 but another stored form
    await run(doc, "save", mode)
    assert doc.version > versions[-1]
    versions.append(doc.version)
    doc.score = 0.0
    await run(doc, "save", mode)
    assert doc.version > versions[-1]
    versions.append(doc.version)
    back = await run(lenient.objects, "get", mode, id="b")
    assert (back.name, back.age, back.tags, str(back.score)) == ("ab", 6, ["x", "y", "z"],
                                                                 "0.0")
    # saving again what was just saved writes nothing
    await run(back, "save", mode)
    assert back.version == versions[-1]
    # an invalid value assigned after a save is still refused
    back.age = 1.5
    with pytest.raises(ValidationError, match="age"):
        await run(back, "save", mode)


async def test_a_list_the_same_as_stored_is_not_validated_again(store: str, mode: str) -> None:
    lenient, _, _ = _models(store)
    short_tags = type("ShortTags", (Document,), {
        "name": StringField(indexed=True), "age": IntField(indexed=True),
        "score": FloatField(), "tags": ArrayField(StringField(max_length=2)),
        "Meta": type("Meta", (), {"backend": store, "namespace": "contract",
                                  "collection": "loaded"})})
    await run(lenient(id="c", name="n", age=1, score=1.0, tags=["long", "x"]), "save", mode)
    doc = await run(short_tags.objects, "get", mode, id="c")
    first = doc.version
    doc.age = 2  # the list is as stored (its first tag no longer passes max_length)
    await run(doc, "save", mode)
    assert doc.version > first
    second = doc.version
    doc.tags = ["long", "x"]  # another list, the same JSON: unchanged too
    doc.score = 2.0
    await run(doc, "save", mode)
    assert doc.version > second
    # a list changed in place, or another list with other values, is validated whole,
    # with clean()'s error, and nothing is written
    third = doc.version
    for change in (lambda d: d.tags.append("y"), lambda d: d.tags.__setitem__(1, 5),
                   lambda d: setattr(d, "tags", ["long", "x", None])):
        fresh = await run(short_tags.objects, "get", mode, id="c")
        change(fresh)
        with pytest.raises(ValidationError, match="tags"):
            await run(fresh, "save", mode)
    assert (await run(short_tags.objects, "get", mode, id="c")).version == third
