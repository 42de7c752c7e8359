"""A whole-document rule (``clean``/``validate``) set on a model class after its first
writes still runs: the shortcuts worked out once per model (an update by id that does not
read the document, a save that validates only the replaced fields) ask for the rule every
time."""

from __future__ import annotations

from typing import Any

import pytest

from quantumorm import Document, IntField, ValidationError


class Late(Document):
    age = IntField(default=0)

    class Meta:
        collection = "rules_set_later"


def test_a_rule_set_after_first_use_is_applied(conn: Any, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    doc = Late(id="a", age=1).save_sync()
    assert Late.objects.filter(id="a").update_sync(age=2) == 1  # (the shortcuts, cached)
    doc = Late.objects.get_sync(id="a")
    doc.age = 3
    doc.save_sync()

    def clean(self: Late) -> None:
        Document.clean(self)
        if self.age > 100:
            raise ValidationError("age must be <= 100")

    monkeypatch.setattr(Late, "clean", clean, raising=False)
    with pytest.raises(ValidationError, match="<= 100"):
        Late.objects.filter(id="a").update_sync(age=500)
    doc = Late.objects.get_sync(id="a")
    doc.age = 600
    with pytest.raises(ValidationError, match="<= 100"):
        doc.save_sync()
    assert Late.objects.get_sync(id="a").age == 3
