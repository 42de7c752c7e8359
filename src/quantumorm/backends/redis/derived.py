"""Which fields' index entries Lua derives from the stored JSON (``lua/_derive.lua``).

Format 3's plan (``bench/format3.md``, section 3): a write without a read finds the entries
a document has from its stored JSON, in Lua, instead of a meta hash. That is exact only for
the built-in kinds whose encoder is part of the format (``sortable.py``), so a field
qualifies by its exact class (a subclass may encode otherwise, under its own name), and
:func:`derivation` gives the code ``_derive.lua``'s ``derived_entries`` takes for it. No
script uses it yet (step 3: patch.lua and expire.lua, see :func:`index_kinds`).
"""

from __future__ import annotations

from ... import fields as f
from ... import jsoncodec
from ...fields.base import Field
from ...options import IndexSpec, ModelOptions
from ...query import paths
from .keys import manifest_field

#: the kind code of each built-in field class whose entries Lua derives (a str, an
#: e-mail address, a URL and a reference's id are strings; a float is read from its repr)
KINDS: dict[type[Field], str] = {
    f.StringField: "str", f.EmailField: "str", f.URLField: "str", f.ReferenceField: "str",
    f.IntField: "int", f.BooleanField: "bool", f.FloatField: "number",
    f.DecimalField: "decimal", f.UUIDField: "uuid", f.DateField: "date",
    f.DateTimeField: "datetime",
}

#: the types of an enum's values whose JSON text and ``sort_key`` Lua reads exactly (a
#: subclass of float could have a ``repr`` of its own, which encode_number would use)
_ENUM_VALUES = frozenset((str, int, float, bool))


def derivation(field: Field) -> str | None:
    """The kind code ``derived_entries`` takes for ``field``'s values (``"[" + code`` for an
    array of a derived kind), or None: Lua does not derive its entries."""
    kind = type(field)
    code = KINDS.get(kind)
    if code is not None:
        return code
    if kind is f.EnumField and isinstance(field, f.EnumField):
        values = {type(member.value) for member in field.enum}
        return "enum" if values <= _ENUM_VALUES else None
    if kind is f.ArrayField and isinstance(field, f.ArrayField):
        element = derivation(field.field)
        if element is not None and not element.startswith("["):
            return "[" + element
    return None


def index_kinds(options: ModelOptions, index: IndexSpec) -> tuple[str, ...] | None:
    """The kind code of each of ``index``'s member fields (:func:`derivation`), when Lua
    derives its entries from a document's top-level members: each member a stored field
    (not an indexed path into an embedded document, nor a case-folded index's value,
    which ``paths.derived`` computes in Python) of a derived kind, a compound index's
    members scalars (its entry is their entries joined, as ``writes.index_members`` joins
    their ``sort_key``). None: the index is *listed* (bench/format3.md section 1), its
    entries come from the client; so is every index of a model that compresses its
    documents, as :func:`.headed.spec_items` says (Lua cannot read such a payload)."""
    if options.compress is not None:
        return None
    kinds = []
    for name in index.fields:
        field = options.fields[name]
        code = None if paths.derived(field) is not None else derivation(field)
        if code is None or (index.compound and code.startswith("[")):
            return None
        kinds.append(code)
    return tuple(kinds)


def touch_items(options: ModelOptions) -> tuple[bytes, ...]:
    """What ``expire.lua`` reads of the model for a format-3 document (after the schema
    layout in its ARGV[3]): the number of indexes, then per index its meta field, its
    number of members and per member its key text (the stored name as JSON) and kind code
    (:func:`index_kinds`; empty where the index is not derived). Made once per model."""
    made: tuple[bytes, ...] | None = options.__dict__.get("_qorm_touch_items")
    if made is None:
        items = [b"%d" % len(options.indexes)]
        for index in options.indexes:
            kinds = index_kinds(options, index) or ("",) * len(index.fields)
            items += [manifest_field(options, index).encode(), b"%d" % len(index.fields)]
            for name, kind in zip(index.fields, kinds, strict=True):
                items += [jsoncodec.encode(options.fields[name].db_name), kind.encode()]
        made = options.__dict__["_qorm_touch_items"] = tuple(items)
    return made
