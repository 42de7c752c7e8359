"""Change a collection's partition count: move every document to the partition its id maps
to under the new count, with its version, index entries and expiry.

This module is the move itself, as one operation (:func:`moves`); the tool that runs it on
a connection, and its command line, are :mod:`quantumorm.tools.repartition` and
``python -m quantumorm repartition``.

Every read goes to the master (a lagging replica must not hide a document from the move).
The collection must not be written while it runs (readers may see a document missing for
the moment of its move). Each document moves in two atomic steps, each one script: a
``restore.lua`` into its new partition (version kept, no change event: it did not change),
then a version-checked delete from the old one. Progress is recorded per old partition in
``{ns:coll}:repartition`` after every batch, so an interrupted run resumes where it stopped
(a document restored but not yet deleted is recognised and finished). When the count
shrinks, the emptied partitions' id and index sets and schedules are removed (their change
streams stay, for consumers still reading them). ``from_partition_by`` moves a collection to
another ``Meta.partition_by`` rule the same way.

A format-3 document (``\x01`` header, bench/format3.md) moves at its header's version (it
has no meta hash version); its old copy is removed by ``repair.lua``'s "moved3" (checked at
that version, its entries computed here), not ``delete.lua``, which finds a document's
entries in its meta hash. ``restore.lua`` stores it at its new partition with its header as
it was (version and recent write ids), and a meta hash only where format 3 keeps one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ... import sortable
from ...engine.contract import WriteRequest
from ...engine.drive import Op
from ...errors import CorruptDocumentError, DamagedMetaError, QuantumORMError, WrongTypeError
from ...options import ModelOptions
from . import schemas, stored, wire
from .calls import FetchCall, RepairCall, RepairFix
from .commands import Command, RedisPlan
from .keys import KeySpace, manifest_field
from .replies import restore_reply, write_reply, wrong_type
from .twophase import locks_key
from .writeids import version_in_header
from .writer import id_counter
from .writes import WriteLayout

DEFAULT_BATCH = 500


class RepartitionError(QuantumORMError):
    """The collection is not in a state the tool can move (another run's state, a document
    changed while it ran, a unique value taken twice)."""


@dataclasses.dataclass
class Progress:
    """Reported after every batch."""

    partition: int  # the old partition being emptied
    partitions: int  # how many old partitions there are
    scanned: int = 0  # documents looked at so far (all partitions)
    moved: int = 0  # documents moved to another partition
    stayed: int = 0  # documents whose partition did not change
    done: bool = False

    def __str__(self) -> str:
        state = "done" if self.done else f"partition {self.partition + 1}/{self.partitions}"
        return (f"repartition: {state}; scanned {self.scanned}, moved {self.moved}, "
                f"stayed {self.stayed}")


def moves(model: Any, from_partitions: int, *, from_partition_by: str | None = None,
          batch: int = DEFAULT_BATCH,
          progress: Callable[[Progress], Any] | None = None) -> Op[Progress]:
    """The operation moving ``model``'s documents from ``from_partitions`` partitions (and
    the ``partition_by`` rule ``from_partition_by``, by default the model's) to the layout
    its ``Meta`` declares now; it returns the final :class:`Progress`. Arguments are checked
    here, before anything is sent."""
    new = model._meta
    if from_partition_by not in (None, "id", "tag"):
        raise ValueError(f"from_partition_by must be 'id' or 'tag' (got {from_partition_by!r})")
    if isinstance(from_partitions, bool) or not isinstance(from_partitions, int) or not (
            1 <= from_partitions <= 4096):
        raise ValueError(f"from_partitions must be an int in 1..4096 (got {from_partitions!r})")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int (got {batch!r})")
    return _repartition(model, new, from_partitions, from_partition_by or new.partition_by,
                        batch, progress or (lambda _: None))


def _quiet(options: ModelOptions, partitions: int, partition_by: str) -> ModelOptions:
    """The options of the layout with ``partitions``, without change events (a move is
    not a change)."""
    return dataclasses.replace(options, partitions=partitions, partition_by=partition_by,
                               changes=False, publish=False)


def _refuse_locked(options: ModelOptions, keys: KeySpace, count: int) -> Op[None]:
    """Refuse to move documents that transactions across partitions still lock: a
    committed transaction's intent would then be applied to the partition a document left
    (and an undecided one's prepare checked against it)."""
    held = yield RedisPlan(tuple(Command(("HVALS", locks_key(keys.tag(p))))
                                 for p in range(count)), read_only=True, primary=True)
    holders = sorted({wire.text(h) for values in held for h in values or ()})
    if holders:
        raise RepartitionError(
            f"{options.collection}: transactions across partitions hold locks on its "
            f"documents ({', '.join(holders[:5])}{', ...' if len(holders) > 5 else ''}); "
            "let them finish, or settle those of dead clients with sweep(), then run the "
            "move again (nothing was moved)")


def _repartition(model: Any, new_options: ModelOptions, old_count: int, old_rule: str,
                 batch: int, report: Callable[[Progress], Any]) -> Op[Progress]:
    old = _quiet(new_options, old_count, old_rule)
    new = _quiet(new_options, new_options.partitions, new_options.partition_by)
    old_keys, new_keys = KeySpace(old), KeySpace(new)
    old_layout, new_layout = WriteLayout(old, old_keys), WriteLayout(new, new_keys)
    state = f"{{{new.namespace}:{new.collection}}}:repartition"
    status = Progress(0, old_count)
    if old_count == new.partitions and old_rule == new.partition_by:
        status.done = True
        return status
    (saved,) = yield RedisPlan((Command(("HGETALL", state)),), idempotent=True)
    saved = {wire.text(k): wire.text(v) for k, v in (saved or {}).items()}
    plan = {"from": f"{old_count}/{old_rule}", "to": f"{new.partitions}/{new.partition_by}"}
    if saved and {k: saved.get(k) for k in plan} != plan:
        raise RepartitionError(
            f"{state} records a move from {saved.get('from')} to {saved.get('to')} "
            f"partitions; finish that one (or delete the key) first")
    yield from _refuse_locked(new_options, old_keys, old_count)
    yield RedisPlan((Command(("HSET", state, *[x for kv in plan.items() for x in kv])),),
                    idempotent=True)
    yield from _carry_sequence(old_keys, new_keys)
    for p in range(old_count):
        status.partition = p
        cursor = saved.get(f"p{p}")
        while cursor != "done":
            low = "-" if cursor is None else b"(" + bytes.fromhex(cursor)
            (members,) = yield RedisPlan((Command(
                ("ZRANGE", old_keys.ids(p), low, "+", "BYLEX", "LIMIT", 0, batch)),),
                idempotent=True)
            if not members:
                cursor = "done"
            else:
                yield from _move_batch(model, p, [bytes(m) for m in members], old_keys,
                                       new_keys, old_layout, new_layout, status)
                cursor = bytes(members[-1]).hex()
            yield RedisPlan((Command(("HSET", state, f"p{p}", cursor)),), idempotent=True)
            report(status)
    yield from _drop_emptied(old_keys, new_keys)
    yield from schemas.repartitioned(new_keys, new.partitions, new.partition_by)
    yield RedisPlan((Command(("DEL", state)),), idempotent=True)
    status.done = True
    report(status)
    return status


def _move_batch(model: Any, p: int, members: list[bytes], old_keys: KeySpace,
                new_keys: KeySpace, old_layout: WriteLayout, new_layout: WriteLayout,
                status: Progress) -> Op[None]:
    ids = [sortable.id_from_key(m) for m in members]
    status.scanned += len(ids)
    moving = [id for id in ids if new_keys.partition_of(id) != p]
    status.stayed += len(ids) - len(moving)
    if not moving:
        return
    key_list: list[str] = []
    for id in moving:
        key_list += [old_keys.doc(p, id), old_keys.meta(p, id)]
    replies = yield RedisPlan((FetchCall(key_list).call(),
                               *(Command(("PTTL", old_keys.doc(p, id))) for id in moving)),
                              idempotent=True)
    found, ttls = replies[0], replies[1:]
    restores, deletes = [], []
    headed: dict[str, bytes] = {}  # format-3 documents: the fix that removes the old copy
    for n, id in enumerate(moving):
        raw = found[2 * n]
        is_headed = raw is not None and bytes(raw[:1]) == stored.HEADED
        if raw is None or (found[2 * n + 1] is None and not is_headed):
            continue  # expired meanwhile: nothing to move (the sweep takes its leftovers)
        if is_headed:
            # (format 3: its header's version, which its writers compare; fetch.lua returns
            # none beside it)
            version = _header_version(bytes(raw), model.__name__, id)
        else:
            # (the meta hash's version, which compare-and-set reads: fetch.lua returns it)
            version = int(found[2 * n + 1])
        # decoded for its index values; moved as stored (compressed or not, the same bytes;
        # restore.lua stores its version with it; a format-3 value whole, header included)
        data = stored.document(bytes(raw), model.__name__, id)
        payload = bytes(raw) if is_headed else stored.payload(bytes(raw))
        doc = model.from_storage(id, version, data)
        ttl = int(ttls[n])
        values = doc._values()
        restores.append(new_layout.restore_call(id, payload, version, values,
                                                ttl if ttl > 0 else None))
        deletes.append((id, version))
        if is_headed:
            pairs, _lenient = old_layout.all_entries(values)
            headed[id] = wire.array_header(2) + wire.pack(pairs) + wire.pack([])
    if not restores:
        return
    replies = yield RedisPlan(tuple(restores), idempotent=True)
    for (id, version), raw_reply in zip(deletes, replies, strict=True):
        restored = restore_reply(raw_reply)
        if restored.status == "DAMAGED":  # (the meta hash at the target does not read)
            raise DamagedMetaError(model.__name__, id, restored.name or "", restored.field)
        if restored.status == "WRONGTYPE":  # (a key of the target holds foreign data)
            raise WrongTypeError(f"{model.__name__} {id!r} could not move: the key "
                                 f"{restored.name!r} of its new partition holds data of "
                                 "another type (written by someone else)", restored.name)
        if restored.status == "EXISTS" and restored.version != version:
            raise RepartitionError(f"{model.__name__} {id!r} exists in its new partition at "
                                   f"version {restored.version}, not {version}: was the "
                                   "collection written during the move?")
        if restored.status not in ("OK", "EXISTS"):
            raise RepartitionError(f"{model.__name__} {id!r} could not move: {raw_reply!r}")
    plain = [(id, version) for id, version in deletes if id not in headed]
    yield from _remove_headed(model, p, old_layout, [(id, version, headed[id])
                                                   for id, version in deletes if id in headed])
    replies = []
    if plain:
        replies = yield RedisPlan(tuple(old_layout.delete(WriteRequest("delete", id,
                                                                       version)).call()
                                        for id, version in plain), idempotent=True)
    for (id, version), reply in zip(plain, replies, strict=True):
        if write_reply(reply).status not in ("OK", "MISSING"):  # MISSING: a resumed run took it
            raise RepartitionError(f"{model.__name__} {id!r}: the old copy (version {version})"
                                   f" could not be removed: {reply!r}; was the collection "
                                   "written during the move?")
    status.moved += len(deletes)


def _header_version(raw: bytes, model: str, id: str) -> int:
    """A format-3 document's version, from its header (bench/format3.md), its recent
    write ids checked: :class:`CorruptDocumentError` naming it when they do not read (its
    writers refuse it too), never a move of a document whose version is not known."""
    try:
        head = stored.header(raw)
        assert head is not None
        version_in_header(head[1], head[0], b"")
    except ValueError as exc:
        raise CorruptDocumentError(model, id, f"its format-3 header does not read ({exc})") \
            from exc
    return head[0]


def _remove_headed(model: Any, p: int, layout: WriteLayout,
                   moved: list[tuple[str, int, bytes]]) -> Op[None]:
    """Remove the old copies of format-3 documents restored in their new partition: each
    (id, version, its entries as ``repair.lua`` reads them) with its entries, its meta hash
    (a sweep record: what it lists goes too), its id and its schedule entry, in one
    ``repair.lua`` call ("moved3") that checks that it is still at that version (its
    header's): no meta hash records a format-3 document's entries, so ``delete.lua`` is not
    the tool here, and no event is emitted (a move is not a change)."""
    if not moved:
        return
    keys, options = layout.keys, layout.options
    call = RepairCall(
        keys.ids(p), keys.ttl(p), keys.state(p), keys.indexes(p),
        [RepairFix(keys.doc(p, id), keys.meta(p, id), "moved3", sortable.id_key(id),
                   str(version), b"", spec) for id, version, spec in moved],
        wire.pack([manifest_field(options, index).encode() for index in options.indexes]),
        b"", keys.doc_prefix(p),
        keys.meta_prefix(p))
    (replies,) = yield RedisPlan((call.call(),), idempotent=True)
    key = wrong_type(replies)
    if key is not None:
        raise WrongTypeError(f"{model.__name__}: key {key!r} holds another type", key)
    kept = [(id, version) for (id, version, _), done in zip(moved, replies, strict=True)
            if not int(done)]
    if not kept:
        return
    # (not removed: gone already, as a resumed run finds it, or changed since it was read)
    there = yield RedisPlan(tuple(Command(("EXISTS", keys.doc(p, id))) for id, _ in kept),
                            idempotent=True)
    for (id, version), exists in zip(kept, there, strict=True):
        if int(exists):
            raise RepartitionError(f"{model.__name__} {id!r}: the old copy (version {version})"
                                   " could not be removed: it changed; was the collection "
                                   "written during the move?")


def _carry_sequence(old: KeySpace, new: KeySpace) -> Op[None]:
    """Auto ids continue after the highest one given (the counter's key depends on P)."""
    if old.sequence == new.sequence:
        return
    (value,) = yield RedisPlan((Command(("GET", old.sequence)),), idempotent=True)
    if value is not None:
        highest = id_counter(value, old.sequence)
        (current,) = yield RedisPlan((Command(("GET", new.sequence)),), idempotent=True)
        if current is None or id_counter(current, new.sequence) < highest:
            yield RedisPlan((Command(("SET", new.sequence, highest)),), idempotent=True)


def _drop_emptied(old: KeySpace, new: KeySpace) -> Op[None]:
    """Remove the (empty) id and index sets and schedules of the partitions beyond the new
    count. Their change streams stay: consumer groups may not have read them yet."""
    for p in range(new.partitions, old.partitions):
        yield RedisPlan(tuple(Command(("UNLINK", key)) for key in
                              (old.ids(p), old.ttl(p), *old.indexes(p))), idempotent=True)
