"""Cache key names (built here and nowhere else) and the values a cache key holds.

Keys of a model in namespace ``ns``, collection ``coll``, with ``P`` cache partitions::

    {ns:cache:coll:N}:e:<id>    STRING  one document's cache slot (values below)
    {ns:cache:coll:q}:g         STRING  the collection's query generation (a random token,
                                        "T<token>" after a write: neither expires; or a
                                        write's mark "P:<tokens>" as a slot holds it: no
                                        result is served nor stored then)
    {ns:cache:coll:q}:r:<hash>  STRING  a cached query result: "<generation>:<payload>"

``N = crc32(utf-8 id) % P``. Every key one script call names shares one hash tag: a cached
``get_many`` is one script call per partition, all pipelined in one round trip; the query
keys of a collection share the ``:q`` tag, so a result is stored only if the generation it
was computed at is still current, checked in the same script. Ids are percent-encoded
(:func:`quantumorm.sortable.escape_id`), so no id can change a key's slot or name another
key.

A document's slot holds one of (the Lua scripts ``cache_*.lua`` read the first byte and the
header; a document's JSON is never decoded in Lua)::

    E<version>:<json>   an entry: the document at that version, its JSON as stored
    N                   a cached "does not exist" (negative caching)
    T<floor>            a tombstone: a write finished here; fills below ``floor`` are refused
    L<floor>:<token>    a lease: the reader holding ``token`` loads from the primary, and
                        its fill is accepted only while this lease is still here
    P:<token>           a write in progress (begun before the primary commit) by one
                        writer; its deadline is the key's expiry (``write_guard_ms`` after
                        its ``cache_begin``; flagged by an invalidation: "P:-,<token>")
    P:<token>@<deadline>,...
                        writes in progress by several writers: each token with its deadline
                        (the server's time in milliseconds), first "-" when none of them
                        may write through (another writer finished, a token was dropped
                        past its deadline, or an invalidation came, since)

The slot's state machine (every ``cache_*.lua`` script; absent = expired or never set)::

    cache_read        absent, T<f>      -> L<f>:<reader>        (else unchanged)
    cache_fill        L<f>:<reader>     -> E.. / N / absent     (its own lease only, version
                                                                 >= f; else unchanged)
    cache_begin       P:<list>          -> P:<list>,<writer>    (each token dated; those past
                                                                 their deadline dropped: then
                                                                 "-" first)
                      anything else     -> P:<writer>
    cache_finish      P:<writer>        -> E<v>:.. (write-through) or T<v>
                      P:<list> naming others whose deadline has not passed
                                        -> P:-,<those others>
                      anything else     -> T<v>
    cache_invalidate  P:<list>          -> P:-,<list>           (keeps its expiry)
     (owed)           L<f>:.., T<f>     -> T<f>
                      anything else     -> T0
    cache_invalidate  exactly the bytes -> T0                   (else unchanged)
     (damaged entry)  the read saw
    cache_invalidate  P:<list>          -> P:-,<list>           (keeps its expiry)
     (drop)           anything else     -> absent

**The rule: a write's mark is never replaced by anything a fill can overwrite, except by
the last writer it names (cache_finish) or by its expiry.** Each writer's token counts
until its own deadline (``write_guard_ms`` after its ``cache_begin``, server time): a sole
writer's deadline is the key's expiry; when a second writer joins, ``cache_begin`` writes
each token's deadline into the mark (the sole writer's from the key's expiry) and the key
expires at the latest (``PXAT``); ``cache_begin`` and ``cache_finish`` drop the tokens past
their deadline before anything else. So a writer that died mid-write stops counting after
its own guard however often other writers join the mark. A fill needs a lease, a lease
needs an absent or tombstoned slot, so while a write's mark is there nothing loaded from
the primary before its commit can be filled; and if that writer's ``cache_finish`` fails,
its token counts until its deadline, after which the primary holds the write. A mark
naming several writers (or flagged by an invalidation, or from which a token was dropped:
that writer may still commit) ends in a tombstone, never a write-through: the last to
finish need not be the last to commit. A writer whose token was dropped never writes
through either (a commit slower than ``write_guard_ms``: its ``cache_finish`` makes a
tombstone, or flags the mark it finds), nor does one whose ``cache_begin`` did not run.
Old code reading these slots sees a write in progress (first byte "P") as before; a sole
writer's mark is round 11's ``P:<token>``.
"""

from __future__ import annotations

import secrets
import zlib
from dataclasses import dataclass
from functools import cached_property

from .. import jsoncodec
from ..engine.contract import Row
from ..errors import CorruptDocumentError
from ..options import ModelOptions
from ..sortable import escape_id


def new_token() -> str:
    """A lease or write token: unique across processes (64 random bits)."""
    return secrets.token_hex(8)


@dataclass(frozen=True)
class CacheKeys:
    """The key names of one model's cache."""

    options: ModelOptions

    @cached_property
    def _base(self) -> str:
        return f"{self.options.namespace}:cache:{self.options.collection}"

    @cached_property
    def _prefixes(self) -> tuple[str, ...]:
        assert self.options.cache is not None
        return tuple(f"{{{self._base}:{n}}}:e:"
                     for n in range(self.options.cache.partitions))

    def partition(self, id: str) -> int:
        prefixes = self._prefixes
        if len(prefixes) == 1:
            return 0
        return zlib.crc32(id.encode("utf-8")) % len(prefixes)

    def entry(self, id: str) -> str:
        return self._prefixes[self.partition(id)] + escape_id(id)

    def by_partition(self, ids: list[str]) -> list[list[str]]:
        """``ids`` grouped by partition (each group one script call), in first-seen order."""
        groups: dict[int, list[str]] = {}
        for id in ids:
            groups.setdefault(self.partition(id), []).append(id)
        return list(groups.values())

    @cached_property
    def generation(self) -> str:
        return f"{{{self._base}:q}}:g"

    def result(self, digest: str) -> str:
        return f"{{{self._base}:q}}:r:{digest}"

    @cached_property
    def pattern(self) -> str:
        """A SCAN pattern matching every key of the model's cache (no glob characters can
        come from the namespace or collection: both are ``[A-Za-z0-9_.-]``)."""
        return f"{{{self._base}:*"


# -- slots: what a read finds in a document's key ----------------------------------------------


class Slot:
    """What ``cache_read`` answered for one id (besides an entry)."""

    GRANTED = "G"  # this reader holds the lease: load from the primary and fill
    WAIT = "W"  # another reader holds the lease: wait, then read again
    PENDING = "P"  # a write is in progress: read the primary, fill nothing


#: a cached "does not exist" (negative caching)
NEGATIVE = b"N"


def entry_value(version: int, raw: bytes) -> bytes:
    return b"E%d:" % version + raw


def decode_entry(options: ModelOptions, id: str, value: bytes) -> Row:
    """A cached entry as the row the primary returned (decoded like any stored document,
    not validated again); :class:`CorruptDocumentError` when it does not read (its version
    not plain digits as ``entry_value`` writes them, with no leading zero: ``int`` would
    read "+13", "013"; no header; its JSON not an object)."""
    colon = value.find(b":")
    version = value[1:colon]
    if colon < 0 or not (version[:1] in b"123456789" and version.isdigit()):
        raise CorruptDocumentError(options.model_name, id, "cached entry's version does not "
                                   f"read ({bytes(value[:colon if colon >= 0 else 24])!r})")
    try:
        data = jsoncodec.decode(value[colon + 1:])
    except ValueError as exc:
        raise CorruptDocumentError(options.model_name, id, f"invalid cached JSON ({exc})") \
            from exc
    if not isinstance(data, dict):
        raise CorruptDocumentError(options.model_name, id, "cached value is not a JSON object")
    return Row(id, int(version), data)


def row_bytes(row: Row) -> bytes:
    """A row's JSON as the cache stores it: the primary's decoded document encoded again
    with the codec every backend stores with, so decoding it gives the same values."""
    return jsoncodec.encode(row.data)
