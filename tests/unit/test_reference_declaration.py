"""Declaring references, with no store: names resolved through the model registry, the
reverse table, the checks made at class creation, and a Ref's value semantics."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from quantumorm import (
    CASCADE,
    DO_NOTHING,
    ConfigurationError,
    Document,
    NotLoaded,
    Ref,
    ReferenceField,
    StringField,
    ValidationError,
    relations,
)


def _model(model: str, /, **fields: Any) -> Any:
    meta = type("Meta", (), {"backend": "sqlite", "collection": model.lower()})
    return type(model, (Document,), {**fields, "Meta": meta})


def test_a_name_declared_later_is_resolved_when_it_is_declared() -> None:
    Early = _model("EarlyRefUnit", target=ReferenceField("LateRefUnit", related_name="early"))
    field = Early._fields["target"]
    with pytest.raises(ConfigurationError, match="'LateRefUnit', which is not declared"):
        _ = field.target
    Late = _model("LateRefUnit", name=StringField())
    assert field.target is Late
    assert relations.inbound(Late) == [(Early, "target", field)]
    assert relations.reverse(Late, "early") == (Early, "target", field)
    assert relations.has_delete_rules(Late)  # DENY by default


def test_two_models_of_one_name_make_the_name_ambiguous() -> None:
    twins = [_model("TwinRefUnit"), _model("TwinRefUnit")]  # (held: models are held weakly)
    with pytest.raises(ConfigurationError, match="several models are named 'TwinRefUnit'"):
        _model("PointsAtTwin", twin=ReferenceField("TwinRefUnit"))
    assert "PointsAtTwin" not in relations._by_name  # refused: nothing left behind
    Twin = _model("TwinRefUnit")
    Twin.__module__ = "elsewhere"  # (the path tells it from the others)
    Pointer = _model("PointsAtTwin", twin=ReferenceField("elsewhere.TwinRefUnit"))
    assert Pointer._fields["twin"].target is Twin and Twin not in twins


def test_a_refused_related_name_leaves_no_rule_behind() -> None:
    Target = _model("TargetRefUnit", name=StringField())
    with pytest.raises(ConfigurationError, match="related_name 'name' is taken"):
        _model("ClashRefUnit", to=ReferenceField(Target, related_name="name"))
    with pytest.raises(ConfigurationError, match="related_name 'delete' is taken"):
        _model("ClashRefUnit2", to=ReferenceField(Target, related_name="delete"))
    with pytest.raises(ConfigurationError, match="related_name 'refs' is taken"):
        _model("DoubleRefUnit", a=ReferenceField(Target, related_name="ok"),
               b=ReferenceField(Target, related_name="refs"),
               c=ReferenceField(Target, related_name="refs"))
    assert "ok" not in Target.__dict__ and "refs" not in Target.__dict__  # none was set
    assert relations.inbound(Target) == []
    assert not relations.has_delete_rules(Target)
    _model("LooseRefUnit", to=ReferenceField(Target, on_delete=DO_NOTHING))
    assert not relations.has_delete_rules(Target)  # DO_NOTHING: nothing to look at


def test_declaration_errors() -> None:
    with pytest.raises(ConfigurationError, match="takes a Document class or a model name"):
        ReferenceField(3)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="a model name is an identifier"):
        ReferenceField("not a name")
    with pytest.raises(ConfigurationError, match="related_name must be an identifier"):
        ReferenceField("X", related_name="a-b")
    with pytest.raises(ConfigurationError, match="cannot be a primary key"):
        ReferenceField("X", primary_key=True)


def test_a_ref_is_its_id_in_storage_and_in_comparisons() -> None:
    Person = _model("PersonRefUnit", name=StringField())
    Pet = _model("PetRefUnit", owner=ReferenceField(Person, on_delete=CASCADE))
    field = Pet._fields["owner"]
    ref = field.clean("p1")
    assert isinstance(ref, Ref) and ref.id == "p1" and not ref.loaded
    assert field.clean(7).id == "7"
    assert ref == field.clean("p1") and hash(ref) == hash(field.clean("p1"))
    assert ref != field.clean("p2")
    assert field.to_storage(ref) == "p1" and field.from_storage("p1") == ref
    assert field.sort_key(ref) == StringField().sort_key("p1")
    assert repr(ref) == "<Ref PersonRefUnit 'p1', not loaded>"
    with pytest.raises(NotLoaded, match=r"PetRefUnit.owner -> PersonRefUnit 'p1'"):
        _ = ref.value
    with pytest.raises(ValidationError, match="non-empty id"):
        Pet().owner = ""
    with pytest.raises(ValidationError, match="non-empty id"):
        Pet(owner="").validate()
    SubPerson = type("SubPersonRefUnit", (Person,), {})  # its own collection
    with pytest.raises(ValidationError, match=r"instance of PersonRefUnit \(got a SubPerson"):
        Pet().owner = SubPerson(id="s")
    pet = Pet(id="x", owner="p1")
    twin = copy.deepcopy(pet)
    assert twin.owner == pet.owner and twin.owner is not pet.owner
    assert not twin.owner.loaded
    assert pet.to_dict() == {"id": "x", "owner": "p1"}
    someone = Person(id="p2")
    someone._version = 1  # (as if saved)
    assert Pet(owner=someone).to_dict() == {"id": None, "owner": "p2"}  # given as a document
    with pytest.raises(NotLoaded, match=r"prefetch_related\('pets'\)"):
        _model("PetRefUnit2", owner=ReferenceField(Person, related_name="pets"))
        _ = Person(id="p").pets.value
