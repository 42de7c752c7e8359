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
