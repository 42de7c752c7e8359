"""pydantic v2 interop: ``to_dict(json=True)``, ``Model.pydantic_model()`` and
``Model.from_pydantic()`` (no server: generation, validation and conversion only)."""

from __future__ import annotations

import datetime as dt
import enum
import json
import subprocess
import sys
import uuid
from decimal import Decimal
from typing import Any

import pydantic
import pytest

from quantumorm import (
    DO_NOTHING,
    ArrayField,
    BooleanField,
    ConfigurationError,
    DateField,
    DateTimeField,
    DecimalField,
    DictField,
    Document,
    EmailField,
    EmbeddedDocument,
    EmbeddedDocumentField,
    EnumField,
    Field,
    FloatField,
    IntField,
    InvalidOperation,
    JSONField,
    ListField,
    ReferenceField,
    StringField,
    URLField,
    UUIDField,
    ValidationError,
)
from quantumorm.fields import FieldValueError
from quantumorm.interop import pydantic as interop


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Every(Document):
    """One field of every type."""

    name = StringField(required=True, min_length=2, max_length=8, regex=r"[a-z]+")
    email = EmailField()
    site = URLField()
    n = IntField(min_value=0)
    ratio = FloatField(min_value=0, max_value=1)
    price = DecimalField(min_value=0)
    flag = BooleanField(default=False)
    token = UUIDField()
    day = DateField()
    at = DateTimeField()
    color = EnumField(Color)
    level = EnumField(Level)
    data = JSONField()
    profile = DictField()
    tags = ArrayField(StringField(max_length=3), max_items=3)
    prices = ArrayField(DecimalField())
    times = ArrayField(DateTimeField())
    loose = ArrayField()
    size = StringField(choices=["s", "m", "l"])
    notes = ArrayField(StringField(), default=list)

    class Meta:
        collection = "pyd_every"


BIG = 10**40 + 1  # beyond 64 bits (and beyond a float's exact integers)
PLUS_TWO = dt.timezone(dt.timedelta(hours=2))


def full() -> Every:
    return Every(
        "e1", name="abc", email="a@example.com", site="https://example.com/x", n=BIG,
        ratio=0.25, price=Decimal("0.1000000000000000055511151231257827"), flag=True,
        token=uuid.UUID("12345678-1234-5678-1234-567812345678"), day=dt.date(2024, 1, 31),
        at=dt.datetime(2024, 1, 31, 12, 30, 0, 123456, tzinfo=PLUS_TWO), color=Color.BLUE,
        level=Level.HIGH, data={"deep": [1, {"x": BIG}, "s", None, True, 2.5]},
        profile={"a": 1}, tags=["ab", "c"], prices=[Decimal("1.10"), Decimal("-3E+5")],
        times=[dt.datetime(2020, 5, 1, tzinfo=dt.timezone.utc)], loose=[1, "x", [2]],
        size="m", notes=["n"])


# -- to_dict(json=True) -----------------------------------------------------------------------

def test_to_dict_json_is_json_safe_for_every_field_type() -> None:
    data = full().to_dict(json=True)
    assert json.loads(json.dumps(data)) == data  # json.dumps works, and nothing changes
    assert data["id"] == "e1"
    assert data["price"] == "0.1000000000000000055511151231257827"
    assert data["prices"] == ["1.10", "-3E+5"]
    assert data["n"] == BIG and type(data["n"]) is int  # an exact JSON number
    assert json.dumps(data["n"]) == str(BIG)
    assert data["data"]["deep"][1] == {"x": BIG}
    assert data["at"] == "2024-01-31T12:30:00.123456+02:00"  # the offset is kept
    assert data["times"] == ["2020-05-01T00:00:00+00:00"]
    assert data["day"] == "2024-01-31"
    assert data["token"] == "12345678-1234-5678-1234-567812345678"
    assert (data["color"], data["level"]) == ("blue", 2)
    assert data["flag"] is True and data["ratio"] == 0.25
    assert data["tags"] == ["ab", "c"] and data["loose"] == [1, "x", [2]]


def test_to_dict_json_of_unset_fields_and_of_assigned_raw_values() -> None:
    doc = Every(name="ab")
    data = doc.to_dict(json=True)
    assert data["id"] is None and data["price"] is None and data["notes"] == []
    doc.price = "12.50"  # assigned, not yet cleaned: the JSON form is the field's
    doc.at = "2024-01-31T12:30:00Z"
    data = doc.to_dict(json=True)
    assert (data["price"], data["at"]) == ("12.50", "2024-01-31T12:30:00+00:00")
    assert doc.price == "12.50"  # the document itself is not changed


def test_to_dict_json_refuses_invalid_values() -> None:
    doc = Every(name="ab", n="x", price=0.5)
    with pytest.raises(ValidationError) as caught:
        doc.to_dict(json=True)
    assert set(caught.value.errors) == {"n", "price"}
    with pytest.raises(InvalidOperation):
        full().to_dict(json=True, storage=True)


def test_json_round_trip_through_from_pydantic_gives_equal_documents() -> None:
    original = full()
    text = json.dumps(original.to_dict(json=True))
    back = Every.from_pydantic(json.loads(text))
    assert back.to_dict() == original.to_dict()
    assert back.id == "e1" and back.version == 0 and not back.is_saved
    assert back.n == BIG and back.price == original.price
    assert back.at == original.at and back.at.utcoffset() == dt.timedelta(hours=2)
    assert back.color is Color.BLUE and back.level is Level.HIGH
    # and through the generated model's JSON
    schema = Every.pydantic_model()
    parsed = schema.model_validate_json(text)
    again = Every.from_pydantic(parsed)
    assert again.to_dict() == original.to_dict()
    assert Every.from_pydantic(json.loads(parsed.model_dump_json())).to_dict() == \
        original.to_dict()


# -- from_pydantic ---------------------------------------------------------------------------

def test_from_pydantic_reports_every_invalid_or_unknown_field() -> None:
    with pytest.raises(ValidationError) as caught:
        Every.from_pydantic({"name": "A", "n": -1, "colour": "red"})
    assert caught.value.model == "Every"
    assert set(caught.value.errors) == {"colour"}
    with pytest.raises(ValidationError) as caught:
        Every.from_pydantic({"name": "A", "n": -1, "price": 1.5, "color": "green"})
    assert set(caught.value.errors) == {"name", "n", "price", "color"}
    with pytest.raises(ValidationError) as caught:
        Every.from_pydantic({"id": "", "name": "ab"})
    assert set(caught.value.errors) == {"id"}
    with pytest.raises(TypeError):
        Every.from_pydantic(["name"])  # type: ignore[arg-type]


def test_from_pydantic_with_an_id_and_defaults() -> None:
    doc = Every.from_pydantic({"id": 7, "name": "ab"})
    assert doc.id == "7" and doc.flag is False and doc.notes == []
    partial = Every.pydantic_model(include=["name", "price"], name="EveryPart")
    doc = Every.from_pydantic(partial(name="xy", price="2.5"))
    assert doc.id is None and doc.price == Decimal("2.5") and doc.flag is False


# -- the generated model ----------------------------------------------------------------------

def test_generated_models_are_cached_per_arguments() -> None:
    first = Every.pydantic_model()
    assert Every.pydantic_model() is first
    assert issubclass(first, pydantic.BaseModel) and first.__name__ == "Every"
    part = Every.pydantic_model(include=["name"], name="EveryName")
    assert Every.pydantic_model(include=("name",), name="EveryName") is part
    assert part is not first and part.__name__ == "EveryName"
    assert set(part.model_fields) == {"name"}
    assert set(Every.pydantic_model(exclude=["id", "data"]).model_fields) == \
        {"id", *Every._fields} - {"id", "data"}
    with pytest.raises(ConfigurationError, match="nope"):
        Every.pydantic_model(include=["nope"])
    with pytest.raises(ConfigurationError):
        Every.pydantic_model(exclude="name")
    with pytest.raises(ConfigurationError):
        Every.pydantic_model(name="not a name")


def test_required_defaults_and_id() -> None:
    schema = Every.pydantic_model()
    fields = schema.model_fields
    assert fields["name"].is_required() and not fields["price"].is_required()
    assert fields["flag"].default is False
    one, two = schema(name="ab"), schema(name="cd")
    assert one.notes == [] and one.notes is not two.notes  # type: ignore[attr-defined]
    assert schema(name="ab", id=12).id == "12"  # type: ignore[attr-defined]
    with pytest.raises(pydantic.ValidationError):
        schema()
    with pytest.raises(pydantic.ValidationError):
        schema(name=None)


REFUSED: list[tuple[str, Any]] = [
    ("name", "a"),  # min_length
    ("name", "abcdefghi"),  # max_length
    ("name", "ABC"),  # regex (whole value)
    ("name", "ab1"),
    ("email", "no-at-sign"),
    ("site", "ftp://example.com"),
    ("n", -1),
    ("n", "12"),  # no text for an int
    ("n", 1.0),
    ("n", True),
    ("ratio", 1.5),
    ("price", -1),
    ("price", 0.1),  # a float is not exact
    ("price", "abc"),
    ("flag", 1),
    ("flag", "true"),
    ("token", "not-a-uuid"),
    ("day", "2024-13-01"),
    ("day", dt.datetime(2024, 1, 1)),
    ("at", 1700000000),
    ("at", "yesterday"),
    ("color", "green"),
    ("level", 3),
    ("data", {1: "non-string key"}),
    ("tags", ["abcd"]),  # an element's max_length
    ("tags", ["a", "b", "c", "d"]),  # max_items
    ("tags", "ab"),
    ("prices", [1.5]),
    ("size", "xl"),  # choices
    ("extra", 1),  # no such field
]


@pytest.mark.parametrize(("name", "value"), REFUSED)
def test_constraints_are_enforced_by_the_generated_model(name: str, value: Any) -> None:
    schema = Every.pydantic_model()
    with pytest.raises(pydantic.ValidationError) as caught:
        schema(**{"name": "ab", name: value})
    assert caught.value.errors()[0]["loc"][0] == name


def test_accepted_inputs_are_converted_the_fields_way() -> None:
    schema = Every.pydantic_model()
    model: Any = schema.model_validate_json(json.dumps({
        "name": "abc", "n": BIG, "price": "0.1000000000000000055511151231257827",
        "at": "20240131T123000", "day": "2024-01-31", "color": "red", "level": 1,
        "token": "12345678123456781234567812345678", "prices": ["1.10", 3],
        "email": "Odd@Example", "site": "HTTPS://example.com"}))
    assert model.n == BIG and model.price == Decimal("0.1000000000000000055511151231257827")
    assert model.at == dt.datetime(2024, 1, 31, 12, 30, tzinfo=dt.timezone.utc)
    assert model.at.tzinfo is not None  # a naive input is UTC, as the field's rule says
    assert model.color is Color.RED and model.level is Level.LOW
    assert model.prices == [Decimal("1.10"), Decimal(3)]
    assert model.email == "Odd@Example"  # kept as written, as the field keeps it


def test_json_output_keeps_decimals_and_big_ints_exact() -> None:
    schema = Every.pydantic_model()
    text = schema.model_validate(full().to_dict()).model_dump_json()
    assert f'"n":{BIG},' in text  # an exact JSON number, not a float
    assert '"price":"0.1000000000000000055511151231257827"' in text  # a string
    assert '"prices":["1.10","-3E+5"]' in text
    data = json.loads(text)
    assert data["n"] == BIG and data["data"]["deep"][1]["x"] == BIG
    assert data["at"] == "2024-01-31T12:30:00.123456+02:00"
    assert (data["color"], data["level"], data["token"]) == (
        "blue", 2, "12345678-1234-5678-1234-567812345678")


def test_json_schema_carries_the_constraints() -> None:
    schema = Every.pydantic_model().model_json_schema()
    props = schema["properties"]
    assert schema["required"] == ["name"] and schema["additionalProperties"] is False
    assert props["name"]["minLength"] == 2 and props["name"]["maxLength"] == 8
    assert props["name"]["pattern"] == "^(?:[a-z]+)$"

    def variant(name: str) -> dict[str, Any]:
        first: dict[str, Any] = props[name]["anyOf"][0]
        return first

    assert variant("email")["format"] == "email" and variant("site")["format"] == "uri"
    assert variant("n") == {"type": "integer", "minimum": 0}
    assert variant("ratio")["maximum"] == 1
    assert variant("at")["format"] == "date-time" and variant("day")["format"] == "date"
    assert variant("token")["format"] == "uuid"
    # a decimal is taken as text or an int (no float), and written as text
    assert props["price"]["anyOf"][1:] == [{"type": "integer"}, {"type": "null"}]
    assert variant("price")["type"] == "string"
    written = Every.pydantic_model().model_json_schema(mode="serialization")["properties"]
    assert written["price"]["anyOf"][0] == {"type": "string"}
    assert variant("tags")["maxItems"] == 3 and variant("tags")["items"]["maxLength"] == 3
    assert props["size"]["enum"] == ["s", "m", "l", None]
    assert schema["$defs"]["Color"]["enum"] == ["red", "blue"]


class Odd(Field[str]):
    """A field class the generator has no entry for."""

    def clean(self, value: Any) -> str:
        if not isinstance(value, str) or not value.startswith("odd"):
            raise FieldValueError("must start with 'odd'")
        return value


class Special(StringField):
    """A subclass of a mapped field: maps like its base, keeps its own checks."""

    def _check(self, value: str) -> str:
        if value != value.upper():
            raise FieldValueError("must be upper case")
        return value


class WithOdd(Document):
    odd = Odd()
    special = Special(max_length=4)

    class Meta:
        collection = "pyd_odd"


def test_unknown_field_classes_map_to_any_and_can_be_registered() -> None:
    schema = WithOdd.pydantic_model()
    props = schema.model_json_schema()["properties"]
    assert "no pydantic mapping" in props["odd"]["anyOf"][0]["description"]
    assert schema(odd="odd one").odd == "odd one"  # type: ignore[attr-defined]
    with pytest.raises(pydantic.ValidationError, match="must start with 'odd'"):
        schema(odd="even")  # still checked by the field
    assert props["special"]["anyOf"][0]["maxLength"] == 4
    with pytest.raises(pydantic.ValidationError, match="upper case"):
        schema(special="ab")
    interop.register_field_type(Odd, lambda field: interop.Mapped(str, {"max_length": 9}))
    try:
        again = WithOdd.pydantic_model()
        assert again is not schema  # the cache was emptied
        assert again.model_json_schema()["properties"]["odd"]["anyOf"][0] == {
            "type": "string", "maxLength": 9}
    finally:
        del interop.FIELD_TYPES[Odd]
        interop._cache.clear()
    with pytest.raises(ConfigurationError):
        interop.register_field_type(int, interop.FIELD_TYPES[StringField])  # type: ignore


def test_without_pydantic_the_package_imports_and_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['pydantic'] = None\n"
        "import quantumorm\n"
        "from quantumorm import Document, StringField\n"
        "class A(Document):\n"
        "    s = StringField()\n"
        "    class Meta:\n"
        "        collection = 'a'\n"
        "assert A(s='x').to_dict(json=True) == {'id': None, 's': 'x'}\n"
        "assert 'quantumorm.interop.pydantic' not in sys.modules\n"
        "try:\n"
        "    A.pydantic_model()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert "pip install 'quantumorm[pydantic]'" in result.stdout


def test_importing_quantumorm_does_not_import_pydantic() -> None:
    code = "import sys, quantumorm; print('pydantic' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


class Invoice(Document):
    number = IntField(primary_key=True)
    total = DecimalField()

    class Meta:
        collection = "pyd_invoices"


def test_a_primary_key_model_takes_its_key_by_name_or_as_the_id() -> None:
    assert Invoice.from_pydantic({"number": 12, "total": "1.5"}).id == "12"
    assert Invoice.from_pydantic({"id": "13"}).number == 13  # type: ignore[attr-defined]
    assert set(Invoice.pydantic_model().model_fields) == {"id", "total"}
    assert Invoice(number=14).to_dict(json=True) == {"id": "14", "total": None}
    with pytest.raises(ValidationError):
        Invoice.from_pydantic({"number": -1})
    with pytest.raises(ValidationError):
        Invoice.from_pydantic({"number": 1, "id": "1"})


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


class PointField(Field[Point]):
    """Like an embedded document: a dict in, an object out, a dict stored."""

    def clean(self, value: Any) -> Point:
        if isinstance(value, Point):
            return value
        if isinstance(value, dict) and set(value) == {"x", "y"}:
            return Point(value["x"], value["y"])
        raise FieldValueError("must be a point")

    def to_storage(self, value: Point | None) -> Any:
        return None if value is None else {"x": value.x, "y": value.y}


class PointModel(pydantic.BaseModel):
    x: int
    y: int


class Shape(Document):
    centre = PointField()
    corners = ArrayField(PointField(), max_items=4)

    class Meta:
        collection = "pyd_shapes"


def test_a_mapping_to_a_nested_model_skips_the_fields_check() -> None:
    """The recipe for a field whose pydantic form is a nested model (embedded documents):
    ``Mapped(NestedModel, check=False)``; arrays of such fields follow."""
    interop.register_field_type(PointField, lambda field: interop.Mapped(PointModel,
                                                                         check=False))
    try:
        schema = Shape.pydantic_model()
        parsed: Any = schema.model_validate_json(
            '{"centre": {"x": 1, "y": 2}, "corners": [{"x": 0, "y": 0}]}')
        assert isinstance(parsed.centre, PointModel)
        assert isinstance(parsed.corners[0], PointModel)
        doc = Shape.from_pydantic(parsed)
        assert isinstance(doc.centre, Point) and (doc.centre.x, doc.centre.y) == (1, 2)
        assert doc.to_dict(json=True) == {"id": None, "centre": {"x": 1, "y": 2},
                                          "corners": [{"x": 0, "y": 0}]}
        with pytest.raises(pydantic.ValidationError):
            schema.model_validate({"centre": {"x": "a", "y": 2}})
        with pytest.raises(pydantic.ValidationError):
            schema.model_validate({"corners": [{"x": 0, "y": 0}] * 5})
        assert schema.model_json_schema()["$defs"]["PointModel"]["required"] == ["x", "y"]
    finally:
        del interop.FIELD_TYPES[PointField]
        interop._cache.clear()


class Writer(Document):
    name = StringField()

    class Meta:
        collection = "pyd_writers"


class Article(Document):
    title = StringField()
    writer = ReferenceField(Writer, on_delete=DO_NOTHING)

    class Meta:
        collection = "pyd_articles"


def test_a_reference_is_its_id_in_json_and_in_the_generated_model() -> None:
    article = Article(id="a1", title="t", writer="w1")
    assert json.dumps(article.to_dict(json=True)) == '{"id": "a1", "title": "t", "writer": "w1"}'
    schema = Article.pydantic_model()
    parsed = schema.model_validate_json('{"title": "t", "writer": "w1"}')
    assert parsed.model_dump() == {"id": None, "title": "t", "writer": "w1"}
    with pytest.raises(pydantic.ValidationError):
        schema.model_validate({"title": "t", "writer": 5})  # an id is a string
    with pytest.raises(pydantic.ValidationError):
        schema.model_validate({"title": "t", "writer": ""})
    back = Article.from_pydantic(parsed)
    assert back.writer is not None and back.writer.id == "w1" and back.to_dict()["writer"] == "w1"
    assert "Writer" in schema.model_json_schema()["properties"]["writer"]["anyOf"][0][
        "description"]


class Spot(EmbeddedDocument):
    lat = IntField(db_field="la")


class Place(EmbeddedDocument):
    city = StringField(required=True, db_field="c")
    zip = StringField(max_length=5)
    spot = EmbeddedDocumentField(Spot)


class Resident(Document):
    name = StringField()
    home = EmbeddedDocumentField(Place)
    past = ListField(EmbeddedDocumentField(Place))

    class Meta:
        collection = "pyd_residents"


def test_embedded_documents_are_nested_models_keyed_by_attribute_names() -> None:
    resident = Resident(id="r", name="a", home=Place(city="P", zip="97", spot=Spot(lat=3)),
                        past=[{"city": "S"}])
    data = resident.to_dict(json=True)
    # attribute names inside too (the storage names "c" and "la" stay in storage)
    assert data == {"id": "r", "name": "a", "home": {"city": "P", "zip": "97",
                                                      "spot": {"lat": 3}},
                    "past": [{"city": "S", "zip": None, "spot": None}]}
    schema = Resident.pydantic_model()
    parsed = schema.model_validate_json(json.dumps(data))
    back = Resident.from_pydantic(parsed)
    assert back.home == resident.home and back.past == [Place(city="S")]
    assert back.to_dict(json=True) == data
    with pytest.raises(pydantic.ValidationError, match="at most 5"):
        schema.model_validate({"home": {"city": "P", "zip": "123456"}})
    with pytest.raises(pydantic.ValidationError):
        schema.model_validate({"home": {"zip": "1"}})  # city is required
    with pytest.raises(pydantic.ValidationError):
        schema.model_validate({"home": {"city": "P", "town": "x"}})  # unknown key
    definitions = schema.model_json_schema()["$defs"]
    assert definitions["Place"]["required"] == ["city"] and "Spot" in definitions
