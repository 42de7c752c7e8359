"""Driver errors as QuantumORM's typed errors: :func:`translate`, and :class:`NotReplicated`.

Every path that talks to Redis (the exchange of plans, WATCH, Pub/Sub) raises what
:func:`translate` makes of redis-py's exception, with the driver's error as ``__cause__``.
"""

from __future__ import annotations

from redis import exceptions as rx
from redis.exceptions import RedisClusterException

from ... import errors
from ...sortable import unescape_id


class NotReplicated(rx.RedisError):
    """WAIT answered with fewer replicas than asked for (the write itself was applied)."""


_SCRIPT_NOPERM = "The user executing the script can't run this command"


def _damaged(text: str) -> errors.DamagedMetaError:
    """``DAMAGED <meta hash key> <field>`` (then the server's "script: ..." words) as the
    typed error."""
    words = text.split(" ")
    return damaged_meta(words[1] if len(words) > 1 else "", words[2] if len(words) > 2 else None)


def damaged_meta(key: str, field: str | None) -> errors.DamagedMetaError:
    """The error for the field ``field`` of the meta hash ``key`` that does not read. The
    key names the collection ("namespace:collection") and the id; the model's class is not
    known here. A partition's state hash (``{ns:coll:pN}:state``: its ``layout``) is a
    :class:`~quantumorm.errors.DamagedStateError`, a two-phase commit's record
    (``{ns:2pc:txid}:r``: its ``deadline``) or intent (``{ns:coll:pN}:2pc:txid``, field
    "intent") a :class:`~quantumorm.errors.DamagedTransactionError`."""
    if key.endswith("}:state") and field is not None:
        return errors.DamagedStateError(key[1:-7].rpartition(":")[0], key, field)
    if key.endswith("}:r") and ":2pc:" in key and field is not None:  # (twophase.py)
        return errors.DamagedTransactionError(key, field)
    if field == "intent" and "}:2pc:" in key:  # (an intent: tx_apply.lua)
        return errors.DamagedTransactionError(key, field)
    tag, _, escaped = key.rpartition(":m:")
    try:
        id = unescape_id(escaped)
    except (ValueError, UnicodeDecodeError):
        id = escaped
    return errors.DamagedMetaError(tag.strip("{}").rpartition(":")[0] or tag, id, key, field)


#: what query.lua's UNDERIVED reply says of why a value was not read from a document
_UNDERIVED_WHY = {
    "kind": "its field's kind is not one Lua derives index entries for",
    "payload": "its payload is compressed",
    "absent": "its JSON has no such member",
    "text": "its value's JSON text is not in a form the ORM writes for that kind",
    "json": "its JSON does not read",
    "escaped": "its JSON holds a member name written with an escape, which the script does "
               "not decode (the ORM writes none)",
    "header": "its format-3 header does not read",
}


def _underived(text: str) -> errors.QueryError:
    """``UNDERIVED <document key> <meta field> <why>`` (query.lua): a format-3 document
    without the meta hash field a query tests, whose value Lua cannot read from the
    document: the query is refused rather than answered by a guess."""
    words = text.split(" ")
    key = words[1] if len(words) > 1 else ""
    field = words[2] if len(words) > 2 else ""
    why = _UNDERIVED_WHY.get(words[3] if len(words) > 3 else "", "unknown")
    return errors.QueryError(
        f"the query tests {field!r} of the document {key!r}, stored in format 3 without "
        f"that field in a meta hash, and {why}: it cannot be answered exactly on the server "
        "(reindex() or saving the document again stores what the query reads)")


def translate(exc: BaseException) -> BaseException:
    """Map a redis-py exception onto QuantumORM's hierarchy (others pass through)."""
    if isinstance(exc, NotReplicated):
        return errors.ReplicationError(str(exc))
    if isinstance(exc, rx.TimeoutError):
        return errors.BackendTimeoutError(f"Redis timed out: {exc}")
    if isinstance(exc, rx.MaxConnectionsError):
        return errors.PoolExhaustedError(f"Redis connection pool exhausted: {exc}")
    if isinstance(exc, (rx.AuthenticationError, rx.AuthenticationWrongNumberOfArgsError)):
        return errors.AuthenticationError(f"Redis rejected the credentials: {exc}")
    if isinstance(exc, rx.ConnectionError):
        if "No connection available" in str(exc) or "Too many connections" in str(exc):
            # (the blocking pool's signal, and the plain pools' of Cluster and Sentinel)
            return errors.PoolExhaustedError(f"Redis connection pool exhausted: {exc}")
        return errors.BackendConnectionError(f"cannot reach Redis: {exc}")
    if isinstance(exc, rx.NoPermissionError):
        return errors.PermissionDeniedError(f"Redis ACL refused the command: {exc}")
    if isinstance(exc, rx.OutOfMemoryError):
        return errors.OutOfMemoryError(f"Redis is out of memory: {exc}")
    if isinstance(exc, rx.ResponseError):
        code = str(exc).split(" ", 1)[0]
        if code == "WRONGTYPE":
            return errors.WrongTypeError(f"a key holds the wrong kind of value: {exc}")
        if code == "BUSY":  # (a script runs past the busy threshold: this did not run)
            return errors.ServerBusyError(f"Redis is busy running a script and refused the "
                                          f"command without running it: {exc}")
        if code == "DAMAGED":  # (a read met a meta hash that does not read: _prelude.lua)
            return _damaged(str(exc))
        if code == "UNDERIVED":  # (query.lua: a format-3 document's value not read in Lua)
            return _underived(str(exc))
        if code == "NOPERM" or _SCRIPT_NOPERM in str(exc):
            # an ACL refusal of a command a script calls: NOPERM since Redis 7.2; Redis 7.0
            # says ERR with this text (the one reply text that has no code of its own)
            return errors.PermissionDeniedError(f"Redis ACL refused a command: {exc}")
        return errors.BackendError(f"Redis error: {exc}")
    if isinstance(exc, rx.RedisError):
        return errors.BackendError(f"Redis error: {exc}")
    if isinstance(exc, RedisClusterException):  # the cluster could not be discovered
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, rx.AuthenticationError) or "username-password" in str(exc):
            return errors.AuthenticationError(f"Redis rejected the credentials: {exc}")
        return errors.BackendConnectionError(f"cannot reach the Redis Cluster: {exc}")
    return exc


__all__ = ["NotReplicated", "damaged_meta", "translate"]
