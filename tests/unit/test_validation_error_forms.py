"""ValidationError's two forms: messages per field, or one message about the document."""

from __future__ import annotations

from quantumorm import ValidationError
from quantumorm.errors import NON_FIELD_ERRORS


def test_a_message_alone_is_about_the_whole_document() -> None:
    error = ValidationError("end must follow start", model="Event")
    assert error.errors == {NON_FIELD_ERRORS: ["end must follow start"]}
    assert str(error) == "Event: end must follow start"


def test_messages_per_field() -> None:
    error = ValidationError({"age": ["too big", "odd"], NON_FIELD_ERRORS: ["both"]})
    assert str(error) == "age: too big; odd | both"
