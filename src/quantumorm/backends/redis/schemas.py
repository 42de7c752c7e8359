"""The stored schema of a collection on Redis: reading it, reconciling it with the model at
first use, and changing index states (operations; see :mod:`quantumorm.schema` for what a
schema is and :mod:`.reindex` for the builder that uses these).

The schema is the hash ``{ns:coll}:schema``; every change goes through ``schema.lua``, a
compare-and-set on its ``layout`` number, so processes reconciling at once never undo each
other's change: the loser reads again and reconciles with what won. Before a change is
stored, the caller's ``settle`` (the backend's ``before_schema_change``) settles the
transactions across partitions holding locks in the collection's partitions, so that their
applies do not meet a changed schema (see twophase.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from ... import logs
from ...engine.drive import Op
from ...errors import SchemaMismatchError, WrongTypeError, WrongTypeSchemaError
from ...options import ModelOptions
from ...schema import IndexState, Schema, adopt, declared, reconcile
from . import wire
from .calls import NowCall, SchemaCall, StampCall
from .commands import Command, RedisPlan
from .keys import KeySpace
from .replies import schema_reply

#: compare-and-set attempts before giving up (each loses only to another process's change)
ATTEMPTS = 10
#: what runs before a change is stored (see the module doc); None: nothing
Settle = Callable[[], Op[None]] | None


def _decode(reply: Any) -> dict[str, str]:
    """HGETALL's reply (a dict or a flat list, by client) as text."""
    if isinstance(reply, Mapping):
        return {wire.text(k): wire.text(v) for k, v in reply.items()}
    items = list(reply or [])
    return {wire.text(items[i]): wire.text(items[i + 1]) for i in range(0, len(items), 2)}


def read(keys: KeySpace) -> Op[Schema | None]:
    """The stored schema, or None; :class:`DamagedSchemaError` if it does not read."""
    # (every schema read is the master's: a replica's older schema would be written
    # against and refused, or an intent made again from it refused, until it caught up)
    try:
        (stored,) = yield RedisPlan((Command(("HGETALL", keys.schema)),), read_only=True,
                                    primary=True)
    except WrongTypeError:
        raise WrongTypeSchemaError(keys.collection, keys.schema) from None
    return loaded(keys, _decode(stored))


def loaded(keys: KeySpace, fields: dict[str, str]) -> Schema | None:
    """The schema stored as the hash fields ``fields`` (None if there are none), or
    :class:`DamagedSchemaError` naming the key and the field that does not read."""
    return Schema.load(fields, keys.schema, keys.collection) if fields else None


def _not_a_hash(keys: KeySpace, refused: WrongTypeError) -> Op[BaseException]:
    """A WRONGTYPE met by a round trip reading the schema hash with other keys: the
    schema's :class:`DamagedSchemaError` if its key holds another type, else ``refused``."""
    (kind,) = yield RedisPlan((Command(("TYPE", keys.schema)),), read_only=True,
                              primary=True)
    if wire.text(kind) not in ("hash", "none"):
        return WrongTypeSchemaError(keys.collection, keys.schema)
    return refused


def _replace(keys: KeySpace, expected: Schema | None, schema: Schema,
             settle: Settle = None) -> Op[bool]:
    """Store ``schema`` if the stored layout is still ``expected``'s; whether it was.
    ``settle`` runs first (a schema that changed meanwhile then refuses: read it again)."""
    if settle is not None and expected is not None:  # (none stored: nothing can be locked)
        yield from settle()
    pairs = [item for pair in schema.dump().items() for item in pair]
    layout = "" if expected is None else str(expected.layout)
    (reply,) = yield RedisPlan((SchemaCall(keys.schema, layout, tuple(pairs)).call(),),
                               idempotent=True)
    return schema_reply(reply).stored


def register(options: ModelOptions, keys: KeySpace, settle: Settle = None) -> Op[Schema]:
    """First use of a model on a connection: the schema to work with, stored if it changed
    (indexes the declaration dropped lose their keys). See :func:`quantumorm.schema.reconcile`.

    One round trip reads the schema, and each partition's size and layout stamp: a stamp
    above the stored layout (the schema hash was lost, or restored from an older copy, while
    processes kept writing) would make every script refuse this layout, so the schema is
    stored again above it."""
    for _attempt in range(ATTEMPTS):
        try:
            found = yield RedisPlan((Command(("HGETALL", keys.schema)),
                                     NowCall(keys.state(0)).call(), *(
                step for p in range(options.partitions) for step in (
                    Command(("ZCARD", keys.ids(p))),
                    Command(("HGET", keys.state(p), "layout"))))), read_only=True,
                                    primary=True)
        except WrongTypeError as refused:
            raise (yield from _not_a_hash(keys, refused)) from None
        stored = loaded(keys, _decode(found[0]))
        has_data = any(int(n) for n in found[2::2])
        # (a stamp that does not read is left out: every script refuses its partition
        # with a DamagedStateError until repair() writes it again from this schema)
        stamps = [int(s) if s is not None else 0 for s in found[3::2]
                  if s is None or bytes(s).isdigit()]
        stamped = max(stamps, default=0)
        outcome = reconcile(options.model_name, stored, options, has_data)
        schema, changed = outcome.schema, outcome.changed
        if stored is None:
            # A schema stored anew (a new collection, or after FLUSHALL) starts at the
            # server's time in microseconds, as versions do: above any layout a process may
            # still hold from before, which its scripts must refuse.
            schema = replace(schema, layout=int(found[1]))
        if stamped > schema.layout or (changed and stamped == schema.layout):
            schema, changed = replace(schema, layout=stamped + 1), True
        if not changed:
            if min(stamps, default=schema.layout) < schema.layout:
                # (a stamp lost: its writer died before stamping, or a partition was
                # restored) stamped again, so that older writers are refused there too
                yield from _stamp(options, keys, schema)
            return schema
        if (yield from _replace(keys, stored, schema, settle)):
            logs.root.info("schema %s model=%s backend=redis layout=%d dropped=%s",
                           logs.schema_change(stored, outcome.upgraded), options.model_name,
                           schema.layout, ",".join(outcome.dropped) or "-")
            yield from _stamp(options, keys, schema)
            yield from _drop(options, keys, outcome.dropped + outcome.emptied)
            return schema
    raise SchemaMismatchError(f"{options.model_name}: the stored schema kept changing while "
                              f"it was being reconciled ({ATTEMPTS} attempts)")


def take_over(options: ModelOptions, keys: KeySpace, settle: Settle = None) -> Op[Schema]:
    """Make the model's declaration the stored schema even if the stored one is newer (an
    explicit decision: ``reindex()`` does it), with the same index states rules."""
    for _attempt in range(ATTEMPTS):
        stored = yield from read(keys)
        if stored is None or stored.fingerprint == declared(options).fingerprint:
            return (yield from register(options, keys, settle))
        outcome = adopt(stored, options)
        if (yield from _replace(keys, stored, outcome.schema, settle)):
            logs.root.info("schema taken over model=%s backend=redis layout=%d",
                           options.model_name, outcome.schema.layout)
            yield from _stamp(options, keys, outcome.schema)
            yield from _drop(options, keys, outcome.dropped + outcome.emptied)
            return outcome.schema
    raise SchemaMismatchError(f"{options.model_name}: the stored schema kept changing")


def set_states(options: ModelOptions, keys: KeySpace, schema: Schema,
               states: dict[str, IndexState], settle: Settle = None) -> Op[Schema]:
    """Store ``schema`` with some index states changed; SchemaMismatchError if the stored
    schema moved on meanwhile (another process changed the declaration)."""
    new = schema.with_states(states)
    if not (yield from _replace(keys, schema, new, settle)):
        raise SchemaMismatchError(f"{options.model_name}: the stored schema changed while the "
                                  "index states were being updated; run it again")
    yield from _stamp(options, keys, new)
    return new


def repartitioned(keys: KeySpace, partitions: int, partition_by: str) -> Op[None]:
    """Record in the stored schema (if there is one) that the collection now has
    ``partitions`` partitions by ``partition_by``: the repartition tool moved it."""
    for _attempt in range(ATTEMPTS):
        stored = yield from read(keys)
        if stored is None:
            return
        moved = replace(stored, partitions=partitions, partition_by=partition_by,
                        layout=stored.layout + 1, checkpoints={})
        if (yield from _replace(keys, stored, moved)):
            yield RedisPlan(tuple(StampCall(keys.state(p), str(moved.layout)).call()
                                  for p in range(partitions)), idempotent=True)
            return
    raise SchemaMismatchError("the stored schema kept changing during the repartition")


def checkpoint(keys: KeySpace, schema: Schema, partition: int, cursor: bytes) -> Op[None]:
    """Record that the build of ``schema``'s layout is done up to id key ``cursor`` in
    ``partition`` (see :meth:`Schema.resume_at`: another layout's build ignores it)."""
    yield RedisPlan((Command(("HSET", keys.schema, f"build:{partition}",
                              f"{schema.layout}:{cursor.hex()}")),), idempotent=True)


def clear_checkpoints(keys: KeySpace, partitions: int) -> Op[None]:
    yield RedisPlan((Command(("HDEL", keys.schema, *(f"build:{p}" for p in range(partitions)))),),
                    idempotent=True)


def stamp(options: ModelOptions, keys: KeySpace, schema: Schema) -> Op[None]:
    """Stamp every partition with ``schema``'s layout (see :func:`_stamp`)."""
    yield from _stamp(options, keys, schema)


def _stamp(options: ModelOptions, keys: KeySpace, schema: Schema) -> Op[None]:
    """Tell every partition that the schema is at ``schema.layout`` now: scripts called
    with an older layout refuse from then on, so every connection reads the schema again
    at its next operation (and a process still running an older declaration stops)."""
    yield RedisPlan(tuple(StampCall(keys.state(p), str(schema.layout)).call()
                          for p in range(options.partitions)), idempotent=True)


def _drop(options: ModelOptions, keys: KeySpace, names: tuple[str, ...]) -> Op[None]:
    """Delete the keys of indexes the declaration no longer has, or changed (their entries
    are of the old signature: a format-3 document keeps no record of them that the build
    could remove), after the stamps (UNLINK: freed in the background, so a large index
    does not stall the server)."""
    if names:
        yield RedisPlan(tuple(Command(("UNLINK", keys.index(p, name))) for name in names
                              for p in range(options.partitions)), idempotent=True)
