"""A collection's stored schema: what its documents and indexes were written under.

Pure (no I/O). A backend keeps one :class:`Schema` per collection beside the data (Redis:
the hash ``{ns:coll}:schema``) and compares it with the model's declaration the first time
a connection uses the model (:func:`reconcile`). That is how a deployment that adds an index
to a collection with data, changes a field's type, or drops an index is noticed, instead of
silently answering queries from an index that does not hold the old documents.

Every index has a state. ``ready``: it holds every document, the planner may use it.
``building``: writers maintain it, but documents written before it existed are not in it
yet; queries do not use it (they scan and filter, and ``explain()`` says so) until
``reindex()`` has filled it and marked it ready.

What makes two declarations differ is what changes stored bytes: a field's storage name
and value encoding, an index's fields, uniqueness and encodings, the partitioning.
Validation options (``max_length``, ``required``...) and defaults do not.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from .errors import DamagedSchemaError, SchemaMismatchError
from .fields.base import Field
from .fields.embedded import EmbeddedDocumentField
from .fields.structured import ArrayField
from .options import IndexSpec, ModelOptions

#: the version of the stored layout (keys, meta hash, encodings) this code writes. 2: a
#: Redis document key carries its version before the document (backends/redis/stored.py),
#: which code of format 1 would read as a corrupt document; it refuses the collection
#: instead, once a process of format 2 has stored its schema (with a new layout, which
#: stops the older processes already running at their next operation). 3: a new Redis
#: document carries its recent write ids in that header and keeps no meta hash of its index
#: entries (bench/format3.md), which code of format 2 before it learnt to read them would
#: misread; the same upgrade stops those processes
FORMAT = 3
#: how many earlier declarations a schema remembers, to refuse one that comes back
HISTORY = 32


class IndexState(str, Enum):
    READY = "ready"
    BUILDING = "building"


def field_kind(field: Field) -> str:
    """What decides how a field's values are encoded: its type (and an array's element's)."""
    if isinstance(field, ArrayField):
        return f"{type(field).__name__}[{field_kind(field.field)}]"
    if isinstance(field, EmbeddedDocumentField):  # its fields' storage names and kinds
        inner = sorted((f.db_name, field_kind(f)) for f in field.document._fields.values())
        return f"{type(field).__name__}{{{','.join(f'{n}:{k}' for n, k in inner)}}}"
    return type(field).__name__


@dataclass(frozen=True)
class IndexInfo:
    fields: tuple[str, ...]  # storage names
    kinds: tuple[str, ...]
    unique: bool
    state: IndexState = IndexState.READY

    @property
    def signature(self) -> tuple[Any, ...]:
        """What the index's entries depend on (not its state)."""
        return (self.fields, self.kinds, self.unique)


@dataclass(frozen=True)
class Schema:
    """A collection's schema as stored: fields (storage name -> kind), indexes, layout."""

    fields: dict[str, str]
    indexes: dict[str, IndexInfo]
    partitions: int
    partition_by: str
    #: bumped by every change of the stored schema (declaration or index state)
    layout: int = 1
    format: int = FORMAT
    #: fingerprints of the declarations this schema replaced, oldest first
    history: tuple[str, ...] = ()
    #: reindex progress per partition: "<layout>:<last id key done, hex>"
    checkpoints: dict[int, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """A hash of what the declaration decides (fields, index definitions, partitions)."""
        body = json.dumps({
            "fields": sorted(self.fields.items()),
            "indexes": sorted((name, [list(i.fields), list(i.kinds), i.unique])
                              for name, i in self.indexes.items()),
            "partitions": [self.partitions, self.partition_by],
            "format": self.format,
        }, sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()[:32]

    def building(self) -> tuple[str, ...]:
        return tuple(name for name, i in self.indexes.items() if i.state is IndexState.BUILDING)

    def ready(self) -> frozenset[str]:
        return frozenset(name for name, i in self.indexes.items()
                         if i.state is IndexState.READY)

    def with_states(self, states: dict[str, IndexState]) -> Schema:
        """The schema with these index states, at the next layout. Checkpoints are dropped:
        they belong to the build of the layout they were written under."""
        indexes = {name: replace(i, state=states.get(name, i.state))
                   for name, i in self.indexes.items()}
        return replace(self, indexes=indexes, layout=self.layout + 1, checkpoints={})

    def resume_at(self, partition: int) -> bytes | None:
        """Where a build of this layout stopped in ``partition`` (an id key), or None: a
        checkpoint written under another layout is not this build's and is ignored."""
        found = self.checkpoints.get(partition, "")
        layout, _, cursor = found.partition(":")
        return bytes.fromhex(cursor) if cursor and layout == str(self.layout) else None

    # -- stored form -------------------------------------------------------------------

    def dump(self) -> dict[str, str]:
        """The hash fields that store it."""
        out = {
            "format": str(self.format),
            "layout": str(self.layout),
            "partitions": str(self.partitions),
            "partition_by": self.partition_by,
            "fields": json.dumps(self.fields, sort_keys=True),
            "indexes": json.dumps({name: {"fields": list(i.fields), "kinds": list(i.kinds),
                                          "unique": i.unique, "state": i.state.value}
                                   for name, i in self.indexes.items()}, sort_keys=True),
            "history": json.dumps(list(self.history)),
            "fingerprint": self.fingerprint,
        }
        for partition, cursor in self.checkpoints.items():
            out[f"build:{partition}"] = cursor
        return out

    @classmethod
    def from_json(cls, body: str, key: str, model: str) -> Schema:
        """The schema a SQL backend stores as one JSON object of :meth:`dump`'s fields (the
        row ``key``); :class:`DamagedSchemaError` if it does not read, as :meth:`load`."""
        try:
            stored = json.loads(body)
        except ValueError as exc:
            raise DamagedSchemaError(model, key, "body", f"not JSON: {exc}") from None
        if not (type(stored) is dict and all(type(v) is str for v in stored.values())):
            raise DamagedSchemaError(model, key, "body", "not an object of texts")
        return cls.load(stored, key, model)

    @classmethod
    def load(cls, stored: dict[str, str], key: str = "", model: str = "") -> Schema:
        """The schema stored as ``stored`` (its hash fields); :class:`DamagedSchemaError`
        naming ``key`` (where it is stored) and the field, with ``model`` (the collection),
        for a field missing or not as :meth:`dump` writes it (a number not plain digits,
        a JSON text not of its shape, an index state not known)."""
        def damaged(name: str, detail: str) -> DamagedSchemaError:
            return DamagedSchemaError(model, key, name, detail)

        def count(name: str) -> int:
            text = stored.get(name)
            if text is None:
                raise damaged(name, "missing")
            # (plain digits, as dump() writes them: int() would read "+3", " 3" or "3_0")
            if not (text.isascii() and text.isdigit()):
                raise damaged(name, f"{text[:24]!r} is not a count")
            return int(text)

        def parsed(name: str, default: str | None = None) -> Any:
            text = stored.get(name, default)
            if text is None:
                raise damaged(name, "missing")
            try:
                return json.loads(text)
            except ValueError as exc:
                raise damaged(name, f"not JSON: {exc}") from None

        def texts(value: Any) -> bool:
            return isinstance(value, list) and all(isinstance(v, str) for v in value)

        fields = parsed("fields")
        if not (isinstance(fields, dict)
                and all(isinstance(v, str) for v in fields.values())):
            raise damaged("fields", "not an object of field kinds")
        found = parsed("indexes")
        if not isinstance(found, dict):
            raise damaged("indexes", "not an object of indexes")
        indexes = {}
        for name, i in found.items():
            if not (isinstance(i, dict) and texts(i.get("fields")) and texts(i.get("kinds"))
                    and isinstance(i.get("unique"), (bool, int))
                    and i.get("state") in _STATES):
                raise damaged("indexes", f"index {name[:40]!r} is not as stored")
            indexes[name] = IndexInfo(tuple(i["fields"]), tuple(i["kinds"]), bool(i["unique"]),
                                      IndexState(i["state"]))
        history = parsed("history", "[]")
        if not texts(history):
            raise damaged("history", "not a list of fingerprints")
        partition_by = stored.get("partition_by")
        if partition_by is None:
            raise damaged("partition_by", "missing")
        checkpoints = {}
        for name, value in stored.items():
            if name.startswith("build:"):
                if not (name[6:].isascii() and name[6:].isdigit()):
                    raise damaged(name, "not a partition's checkpoint")
                checkpoints[int(name[6:])] = value
        return cls(fields=fields, indexes=indexes, partitions=count("partitions"),
                   partition_by=partition_by, layout=count("layout"), format=count("format"),
                   history=tuple(history), checkpoints=checkpoints)


#: the index states a stored schema may hold
_STATES = frozenset(state.value for state in IndexState)


def declared(options: ModelOptions, state: IndexState = IndexState.READY) -> Schema:
    """The schema the model declares, every index in ``state``."""
    fields = {f.db_name: field_kind(f) for f in options.fields.values()}
    return Schema(
        fields=fields,
        indexes={index.name: _index_info(options, index, state) for index in options.indexes},
        partitions=options.partitions,
        partition_by=options.partition_by,
    )


def _index_info(options: ModelOptions, index: IndexSpec, state: IndexState) -> IndexInfo:
    fields = [options.fields[name] for name in index.fields]
    return IndexInfo(tuple(f.db_name for f in fields), tuple(field_kind(f) for f in fields),
                     index.unique, state)


@dataclass(frozen=True)
class Reconciled:
    """What first use decides: the schema to use, and what changed to get there."""

    schema: Schema
    #: True when ``schema`` must be written (it differs from what is stored)
    changed: bool = False
    #: indexes the declaration no longer has: their keys are to be deleted
    dropped: tuple[str, ...] = ()
    #: indexes kept by name whose signature (fields, kinds, uniqueness) changed: what they
    #: hold is the old signature's entries, to be deleted before they are built again (on
    #: Redis a format-3 document keeps no record of its entries that the build could remove)
    emptied: tuple[str, ...] = ()
    #: True when only the storage format changed (an upgrade of QuantumORM): the schema
    #: is written with a new layout, the data needs nothing
    upgraded: bool = False


def reconcile(model: str, stored: Schema | None, options: ModelOptions,
              has_data: bool) -> Reconciled:
    """Compare the declaration with the stored schema.

    * nothing stored: the declaration is stored; its indexes are ready if the collection is
      empty, building otherwise (data written before schemas were kept, or by a process
      that lost its schema: what its indexes hold is unknown);
    * the same declaration: the stored schema (with its index states) is used as it is;
    * a new declaration: indexes it keeps unchanged keep their state, new or changed ones
      are building, dropped ones go; the layout number grows;
    * a declaration the stored schema replaced earlier (a process still running old code,
      or started from it): refused with :class:`SchemaMismatchError`, so it cannot write
      documents without the indexes the newer declaration added.
    """
    mine = declared(options)
    if stored is None:
        state = IndexState.BUILDING if has_data else IndexState.READY
        return Reconciled(declared(options, state), changed=True)
    refuse_newer(model, stored)
    if stored.partitions != mine.partitions or stored.partition_by != mine.partition_by:
        raise SchemaMismatchError(
            f"{model}: the collection is stored with partitions={stored.partitions} "
            f"(by {stored.partition_by}) but the model declares partitions={mine.partitions} "
            f"(by {mine.partition_by}); run the repartition tool to move it")
    if stored.fingerprint == mine.fingerprint:
        return Reconciled(stored)
    if stored.format < FORMAT and replace(stored, format=FORMAT).fingerprint == mine.fingerprint:
        # the same declaration, stored by an older QuantumORM: the new format and layout
        # are stored (the layout stops the older processes still running)
        history = (*stored.history, stored.fingerprint)[-HISTORY:]
        return Reconciled(replace(stored, format=FORMAT, layout=stored.layout + 1,
                                  history=history), changed=True, upgraded=True)
    if mine.fingerprint in stored.history:
        raise SchemaMismatchError(
            f"{model}: this declaration of the model is older than the stored schema "
            f"(layout {stored.layout}), which a newer deployment wrote; run the current "
            "code, or adopt this declaration explicitly with Model.objects.reindex()")
    return adopt(stored, options)


def refuse_newer(model: str, stored: Schema) -> None:
    """:class:`SchemaMismatchError` if ``stored`` was written in a newer storage format than
    this code's: its documents may be in a form this code cannot read or write right."""
    if stored.format > FORMAT:
        raise SchemaMismatchError(
            f"{model}: the collection was written by a newer QuantumORM (storage format "
            f"{stored.format}; this one writes {FORMAT}): upgrade before using it")


def adopt(stored: Schema, options: ModelOptions) -> Reconciled:
    """The declaration made the stored schema, as :func:`reconcile` describes it. Never
    over a newer storage format (:func:`refuse_newer`): ``reindex()``, which adopts the
    declaration explicitly, would store the schema back at this code's format and let this
    release's processes write the collection."""
    refuse_newer(options.model_name, stored)
    mine = declared(options)
    indexes = {}
    emptied = []
    for name, info in mine.indexes.items():
        before = stored.indexes.get(name)
        same = before is not None and before.signature == info.signature
        indexes[name] = replace(info, state=before.state if same and before else
                                IndexState.BUILDING)
        if before is not None and not same:
            emptied.append(name)
    dropped = tuple(name for name in stored.indexes if name not in indexes)
    history = tuple(h for h in (*stored.history, stored.fingerprint)
                    if h != mine.fingerprint)[-HISTORY:]
    schema = replace(mine, indexes=indexes, layout=stored.layout + 1, history=history,
                     checkpoints={})
    return Reconciled(schema, changed=True, dropped=dropped, emptied=tuple(emptied))
