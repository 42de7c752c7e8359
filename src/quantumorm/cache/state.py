"""What this process knows about each cache server: its circuit breaker, and the
invalidations it owes.

**The breaker.** After ``THRESHOLD`` consecutive failed cache operations the breaker opens:
for ``COOLDOWN`` seconds nothing is sent to that server (reads go to the primary and fill
nothing, writes commit on the primary and owe their invalidations). Then one operation is
let through (half-open): its success closes the breaker, its failure opens it again.

**What is owed.** A write whose cache step failed (or was skipped) records its ids here
before it returns; before this process reads the model's cache again, those slots are
made tombstones and the query generation is renewed (:meth:`ServerState.owed`). So this
process never reads an entry older than a write it completed. A write whose ``cache_begin``
ran is owed with its token and versions: it is paid by ``cache_finish`` with that token, so
its mark leaves the slots and the generation at once (the write has completed), instead of
keeping the query cache off until the mark's deadline. An entry a read found
damaged is owed too, with the bytes the read saw (:meth:`ServerState.owe_damaged`): its
tombstone replaces only those bytes (a compare-and-set in ``cache_invalidate``), never what
a writer or a reader put there since. Past ``MAX_OWED_IDS`` ids for one collection, every
key of its cache is dropped instead. The state is kept per cache server URL, so it outlives
a connection re-created with the same URL.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from .. import logs
from ..redaction import redact_url

#: consecutive failures that open the breaker
THRESHOLD = 2
#: seconds the breaker stays open before one operation may try again
COOLDOWN = 1.0
#: ids owed per collection before the whole collection's cache is dropped instead
MAX_OWED_IDS = 10_000


class Breaker:
    def __init__(self, threshold: int = THRESHOLD, cooldown: float = COOLDOWN,
                 server: str = "-") -> None:
        self.threshold, self.cooldown = threshold, cooldown
        self.server = server  # (its URL redacted: what the log lines name)
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until = 0.0
        self._probing = False

    @property
    def is_open(self) -> bool:
        return self._failures >= self.threshold

    def allow(self) -> bool:
        """May an operation go to the server now? (At most one while half-open.)"""
        if self._failures < self.threshold:
            return True
        with self._lock:
            if self._failures < self.threshold:
                return True
            if self._probing or time.monotonic() < self._open_until:
                return False
            self._probing = True
            return True

    def success(self) -> None:
        if self._failures or self._probing:
            with self._lock:
                closed = self._failures >= self.threshold
                self._failures, self._probing = 0, False
            if closed:  # (logged outside the lock: a handler may be slow)
                logs.cache.warning("cache circuit breaker closed server=%s", self.server)

    def abandon(self) -> None:
        """The operation ``allow()`` let through ended neither in success nor in failure
        (cancelled, or an error that says nothing of the server's health): a half-open
        probe is over, and the next operation may probe again."""
        if self._probing:
            with self._lock:
                self._probing = False

    def failure(self) -> None:
        with self._lock:
            self._failures = max(self._failures + 1, self.threshold if self._probing else 0)
            failures, probed, self._probing = self._failures, self._probing, False
            if failures >= self.threshold:
                self._open_until = time.monotonic() + self.cooldown
        if probed or failures == self.threshold:  # it opened (again) just now
            logs.cache.warning("cache circuit breaker opened server=%s failures=%d "
                               "cooldown_s=%s probe_failed=%s", self.server, failures,
                               self.cooldown, probed)


@dataclass
class Owed:
    """Invalidations one collection's cache is owed. Each ``owe`` takes the next number of
    ``seq``; an id, the generation and the drop remember the number of their latest
    ``owe``, so paying a snapshot never clears what was owed again after it was taken."""

    seq: int = 0
    ids: dict[str, int] = field(default_factory=dict)
    #: damaged entries: id -> (seq, the bytes the read saw)
    damaged: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    generation: int = 0  # 0: not owed
    everything: int = 0
    #: writes that marked the cache (their token), then failed to finish: (token, id) ->
    #: (seq, the version written, 0 for a delete or a failed write)
    finished: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    #: those writes' tokens, each still in the generation's mark: token -> seq
    tokens: dict[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return (not self.ids and not self.damaged and not self.generation
                and not self.everything and not self.finished and not self.tokens)


@dataclass(frozen=True)
class OwedSnapshot:
    ids: dict[str, int]
    generation: int
    everything: int
    damaged: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    finished: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)

    def by_token(self) -> dict[str, dict[str, int]]:
        """Per token owed (the generation's mark), the ids that write marked and their
        versions (none for a token whose slots were dropped)."""
        out: dict[str, dict[str, int]] = {token: {} for token in self.tokens}
        for (token, id), (_, version) in self.finished.items():
            out.setdefault(token, {})[id] = version
        return out

    def expected(self) -> dict[str, bytes]:
        """Per id, what its tombstone may replace: ``b""`` whatever the slot holds (a
        write's invalidation), else the damaged bytes a read saw there."""
        out = {id: value for id, (_, value) in self.damaged.items()}
        out.update(dict.fromkeys(self.ids, b""))
        return out


class ServerState:
    def __init__(self, url: str = "") -> None:
        self.breaker = Breaker(server=redact_url(url) if url else "-")
        self._lock = threading.Lock()
        self._owed: dict[str, Owed] = {}

    def owe(self, collection: str, ids: list[str], everything: bool = False,
            can_drop: bool = True, token: str = "",
            versions: dict[str, int] | None = None) -> None:
        """Record invalidations owed (the query generation's always); ``token``: the mark
        of the write whose ``cache_begin`` ran (``versions``: what it wrote per id), paid by
        ``cache_finish`` with that token; ``can_drop`` False (the server cannot drop a whole
        collection's keys, see :attr:`CacheStore.can_drop`): every id is kept, however
        many."""
        with self._lock:
            owed = self._owed.setdefault(collection, Owed())
            owed.seq += 1
            if token:
                owed.tokens[token] = owed.seq
            else:
                owed.generation = owed.seq
            if owed.everything or everything:
                owed.everything, owed.ids, owed.damaged = owed.seq, {}, {}
                owed.finished = {}
                return
            if token:
                for id in ids:
                    owed.finished[token, id] = (owed.seq, (versions or {}).get(id, 0))
            else:
                for id in ids:
                    owed.ids[id] = owed.seq
            self._overflow(owed, can_drop)

    def owe_damaged(self, collection: str, entries: dict[str, bytes],
                    can_drop: bool = True) -> None:
        """Record damaged entries (id -> the bytes a read found in its slot), each owed a
        tombstone that replaces only those bytes; the query generation is not owed. (When
        a drop is owed they are recorded too, so a drop already under way, whose SCAN may
        have passed them, does not clear them: no second drop.)"""
        with self._lock:
            owed = self._owed.setdefault(collection, Owed())
            owed.seq += 1
            for id, value in entries.items():
                owed.damaged[id] = (owed.seq, value)
            self._overflow(owed, can_drop)

    @staticmethod
    def _overflow(owed: Owed, can_drop: bool) -> None:
        if (can_drop and len(owed.ids) + len(owed.damaged) + len(owed.finished)
                > MAX_OWED_IDS):
            owed.everything, owed.ids, owed.damaged = owed.seq, {}, {}
            owed.finished = {}

    def owed(self, collection: str) -> OwedSnapshot | None:
        if not self._owed:  # (the common case, without the lock)
            return None
        with self._lock:
            owed = self._owed.get(collection)
            if owed is None:
                return None
            return OwedSnapshot(dict(owed.ids), owed.generation, owed.everything,
                                dict(owed.damaged), dict(owed.finished), dict(owed.tokens))

    def paid(self, collection: str, snapshot: OwedSnapshot) -> None:
        """``snapshot``'s invalidations were applied (what was owed since stays owed)."""
        with self._lock:
            owed = self._owed.get(collection)
            if owed is None:
                return
            for id, seq in snapshot.ids.items():
                if owed.ids.get(id) == seq:
                    del owed.ids[id]
            for id, entry in snapshot.damaged.items():
                if owed.damaged.get(id) == entry:
                    del owed.damaged[id]
            for key, done in snapshot.finished.items():
                if owed.finished.get(key) == done:
                    del owed.finished[key]
            for token, seq in snapshot.tokens.items():
                if owed.tokens.get(token) == seq:
                    del owed.tokens[token]
            if owed.generation == snapshot.generation:
                owed.generation = 0
            if owed.everything == snapshot.everything:
                owed.everything = 0
            if owed.empty:
                del self._owed[collection]


_servers: dict[str, ServerState] = {}
_servers_lock = threading.Lock()


def server_state(url: str) -> ServerState:
    """The state of the cache server at ``url`` (one per URL in this process)."""
    found = _servers.get(url)
    if found is None:
        with _servers_lock:
            found = _servers.setdefault(url, ServerState(url))
    return found
