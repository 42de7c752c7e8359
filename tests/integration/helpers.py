"""Shared helpers of the Redis integration tests (no fixtures here: those live in conftest.py).

* :func:`call` runs a QuantumORM operation through its async method or its ``_sync`` twin, so
  one test body covers both modes.
* :func:`assert_indexes_consistent` recomputes, from the stored documents, every entry every
  index of a model must hold and compares it with the ZSETs in Redis, exactly.
* :func:`snapshot` dumps every key of the database, for "nothing was written" assertions.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from modes import MODES, call, ids_of  # noqa: F401  (re-exported)
from quantumorm import compression, sortable
from quantumorm.backends.redis import stored
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.backends.redis.writes import index_members


def _raw(client: redis.Redis) -> redis.Redis:
    """A client that returns bytes (index members are binary). Cluster clients are used as
    they are (the tests make them with bytes replies)."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None and pool.connection_kwargs.get("decode_responses"):
        kwargs = dict(client.connection_pool.connection_kwargs)
        kwargs["decode_responses"] = False
        return redis.Redis(**kwargs)
    return client


def _scan(client: redis.Redis, pattern: str) -> set[bytes]:
    return set(client.scan_iter(match=pattern, count=1000))


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]\\" else c for c in text)


def stored_payload(redis_client: redis.Redis, key: str) -> bytes | None:
    """What the document key ``key`` holds after its version: the JSON (or compressed
    bytes) exactly as stored (None: no such key)."""
    raw = _raw(redis_client).get(key)
    return None if raw is None else stored.split(bytes(raw))[1]


def stored_documents(redis_client: redis.Redis,
                     model: Any) -> dict[str, tuple[int, dict[str, Any]]]:
    """``{id: (version, storage data)}`` of every document of ``model``'s collection."""
    client = _raw(redis_client)
    options = model._meta
    keys = KeySpace(options)
    out: dict[str, tuple[int, dict[str, Any]]] = {}
    for partition in range(options.partitions):
        for member in client.zrange(keys.ids(partition), 0, -1):
            id = sortable.id_from_key(bytes(member))
            raw = client.get(keys.doc(partition, id))
            assert raw is not None, f"id {id!r} is in the id index but has no document"
            version = client.hget(keys.meta(partition, id), "v")
            if bytes(raw)[:1] == b"\x01":  # format 3: the version in its header
                header = stored.header(bytes(raw))
                assert header is not None, f"document {id!r}: a damaged format-3 header"
                carried, _, payload = header
                assert version is None or int(version) == carried, (
                    f"document {id!r} carries version {carried}, its sweep record "
                    f"{int(version)}")
            else:
                assert version is not None, f"document {id!r} has no version in its meta hash"
                carried, payload = stored.split(raw, version)
                assert carried == int(version), (
                    f"document {id!r} carries version {carried}, its meta hash {int(version)}")
            out[id] = (carried, json.loads(compression.decompress(payload)))
    return out


def listed_manifests(model: Any) -> frozenset[str]:
    """The meta fields of ``model``'s listed indexes (bench/format3.md, section 1): what a
    format-3 document's meta hash keeps without an expiry."""
    from quantumorm.backends.redis.headed import spec_items

    options = model._meta
    return frozenset(_manifest(options, index) for index, spec in
                     zip(options.indexes, spec_items(options), strict=True) if not spec)


def _manifest(options: Any, index: Any) -> str:
    if index.compound:
        return f"x:{index.name}"
    return f"f:{options.fields[index.fields[0]].db_name}"


def assert_indexes_consistent(redis_client: redis.Redis, model: Any) -> dict[str, Any]:
    """Every index key of ``model`` holds exactly the entries its stored documents imply.

    Also checks that the id index, the document keys and the meta hashes name the same ids,
    and that each meta hash lists the entries the document has (what delete.lua removes).
    Returns the stored documents (``{id: (version, data)}``) for further checks.
    """
    client = _raw(redis_client)
    options = model._meta
    keys = KeySpace(options)
    docs = stored_documents(client, model)
    problems: list[str] = []
    listed = listed_manifests(model)
    for partition in range(options.partitions):
        tag = _glob_escape(keys.tag(partition))
        in_partition = {id for id in docs if keys.partition_of(id) == partition}
        doc_keys = _scan(client, f"{tag}:d:*")
        meta_keys = _scan(client, f"{tag}:m:*")
        want_docs = {keys.doc(partition, id).encode() for id in in_partition}
        # (a meta hash for every format-2 document; for a format-3 one only while it
        # expires (a sweep record) or when the model has listed indexes)
        format3 = {id for id in in_partition
                   if bytes(client.get(keys.doc(partition, id)) or b"")[:1] == b"\x01"}
        want_meta = {keys.meta(partition, id).encode() for id in in_partition
                     if id not in format3 or listed
                     or client.pttl(keys.doc(partition, id)) > 0}
        if doc_keys != want_docs:
            problems.append(f"p{partition}: document keys without id entry "
                            f"{sorted(doc_keys - want_docs)}, ids without document "
                            f"{sorted(want_docs - doc_keys)}")
        # (a format-3 document may keep a meta hash it does not need, written under another
        # declaration: its fields are checked below like any other)
        allowed = {keys.meta(partition, id).encode() for id in in_partition}
        if not want_meta <= meta_keys <= allowed:
            problems.append(f"p{partition}: meta keys {sorted(meta_keys - allowed)} without "
                            f"document, {sorted(want_meta - meta_keys)} missing")
        for index in options.indexes:
            expected: set[bytes] = set()
            for id in in_partition:
                version, data = docs[id]
                doc = model.from_storage(id, version, data)
                values = doc._values()
                members = index_members(options, index, values)
                id_key = sortable.id_key(id)
                expected.update(member + id_key for member in members)
                manifest = _manifest(options, index)
                if id in format3 and manifest not in listed \
                        and client.pttl(keys.doc(partition, id)) <= 0:
                    # (a derived index of a format-3 document without expiry: no field
                    # needed; one kept anyway must be right)
                    if not client.hexists(keys.meta(partition, id), manifest):
                        continue
                kept = client.hget(keys.meta(partition, id), manifest)
                listed_members = sortable.unpack_list(kept or b"")
                if sorted(listed_members) != sorted(members):
                    problems.append(f"{id!r}: meta {manifest} lists {listed_members!r}, "
                                    f"expected {members!r}")
            index_key = keys.index(partition, index.name)
            actual = {bytes(m) for m in client.zrange(index_key, 0, -1)}
            scores = {float(s) for _, s in client.zrange(index_key, 0, -1, withscores=True)}
            if scores - {0.0}:
                problems.append(f"{index_key}: non-zero scores {scores}")
            missing, extra = expected - actual, actual - expected
            if missing or extra:
                problems.append(f"{index_key}: missing {sorted(missing)!r}, "
                                f"extra {sorted(extra)!r}")
    assert not problems, "indexes inconsistent with documents:\n" + "\n".join(problems)
    return docs


def snapshot(redis_client: redis.Redis, exclude_suffixes: tuple[str, ...] = ()) -> dict[bytes, Any]:
    """Every key of the current database with its type and full contents."""
    client = _raw(redis_client)
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(count=1000):
        if any(key.endswith(s.encode()) for s in exclude_suffixes):
            continue
        kind = client.type(key)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "string":
            value: Any = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        else:
            value = kind
        out[key] = (kind, value)
    return out
