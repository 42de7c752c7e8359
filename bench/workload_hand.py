"""The plain hand-written side of issue 12's workload (``bench_workload.py``, whose docstring
describes it): redis-py with one Lua script per operation over a plain layout, keeping no
versions, unique checks, TTLs, change events or schema: what it skips is what the ORM's
guarantees cost (``workload_floor.py`` is the side that keeps them)."""

from __future__ import annotations

import json
from typing import Any

import redis

HAND = "{qbenchwl-hand}:"  # the hand-written side's key prefix
HAND_DOCS_PER_SCRIPT = 100  # documents per EVALSHA in the hand-written side's bulk pipeline

FETCH = """
local function fetch(ids)  -- {id, json, id, json, ...}: one MGET per 1,000 rows
  local out = {}
  for i = 1, #ids, 1000 do
    local keys = {}
    for j = i, math.min(i + 999, #ids) do keys[#keys + 1] = KEYS[1] .. "d:" .. ids[j] end
    local docs = redis.call("MGET", unpack(keys))
    for j = 1, #keys do out[#out + 1] = ids[i + j - 1]; out[#out + 1] = docs[j] end
  end
  return out
end
"""

SCRIPTS = {
    "insert": """
-- KEYS[1]: prefix; ARGV[1]: how many documents, then per document: JSON, name, age,
-- active ("true"/"false"), number of tags, the tags. Returns the new ids, in order.
local p, n = KEYS[1], tonumber(ARGV[1])
local id, i, ids = redis.call("INCRBY", p .. "seq", n) - n, 2, {}
while i <= #ARGV do
  id = id + 1
  redis.call("SET", p .. "d:" .. id, ARGV[i])
  redis.call("SADD", p .. "name:" .. ARGV[i + 1], id)
  redis.call("ZADD", p .. "age", ARGV[i + 2], id)
  redis.call("SADD", p .. "active:" .. ARGV[i + 3], id)
  for t = i + 5, i + 4 + tonumber(ARGV[i + 4]) do redis.call("SADD", p .. "tag:" .. ARGV[t], id) end
  ids[#ids + 1] = id
  i = i + 5 + tonumber(ARGV[i + 4])
end
return ids
""",
    "update": """
-- KEYS[1]: prefix; ARGV: id, field, new value as JSON. 0 if there is no such document.
local p, id, field = KEYS[1], ARGV[1], ARGV[2]
local raw = redis.call("GET", p .. "d:" .. id)
if not raw then return 0 end
local doc, new = cjson.decode(raw), cjson.decode(ARGV[3])
if field == "age" then redis.call("ZADD", p .. "age", new, id)
elseif field == "name" or field == "active" then
  redis.call("SMOVE", p .. field .. ":" .. tostring(doc[field]),
             p .. field .. ":" .. tostring(new), id)
end
doc[field] = new
redis.call("SET", p .. "d:" .. id, cjson.encode(doc))
return 1
""",
    "delete": """
-- KEYS[1]: prefix; ARGV[1]: id. 0 if there is no such document.
local p, id = KEYS[1], ARGV[1]
local raw = redis.call("GET", p .. "d:" .. id)
if not raw then return 0 end
local doc = cjson.decode(raw)
redis.call("SREM", p .. "name:" .. doc.name, id)
redis.call("ZREM", p .. "age", id)
redis.call("SREM", p .. "active:" .. tostring(doc.active), id)
for _, t in ipairs(doc.tags) do redis.call("SREM", p .. "tag:" .. t, id) end
redis.call("DEL", p .. "d:" .. id)
return 1
""",
    "eq": FETCH + """
-- KEYS[1]: prefix; ARGV[1]: the name
return fetch(redis.call("SMEMBERS", KEYS[1] .. "name:" .. ARGV[1]))
""",
    "range": FETCH + """
-- KEYS[1]: prefix; ARGV: min age, max age (exclusive), limit; by age (then id)
return fetch(redis.call("ZRANGEBYSCORE", KEYS[1] .. "age", ARGV[1], "(" .. ARGV[2],
                        "LIMIT", 0, ARGV[3]))
""",
    "compound": FETCH + """
-- KEYS[1]: prefix; ARGV: active ("true"/"false"), tag, age above which. The two sets'
-- intersection, then the candidates' ages by ZMSCORE, 1,000 at a time (measured faster
-- than ZINTER of the sets and the age ZSET, or ZRANGEBYSCORE then SMISMEMBER of the sets)
local p = KEYS[1]
local cand = redis.call("SINTER", p .. "active:" .. ARGV[1], p .. "tag:" .. ARGV[2])
local ids, above = {}, tonumber(ARGV[3])
for i = 1, #cand, 1000 do
  local chunk = {}
  for j = i, math.min(i + 999, #cand) do chunk[#chunk + 1] = cand[j] end
  local ages = redis.call("ZMSCORE", p .. "age", unpack(chunk))
  for j = 1, #chunk do
    if tonumber(ages[j]) > above then ids[#ids + 1] = chunk[j] end
  end
end
return fetch(ids)
""",
}

dumps = lambda doc: json.dumps(doc, separators=(",", ":"))


class HandWritten:
    """The baseline: one redis-py call per operation (a pipeline for the load)."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self.sha = {name: client.script_load(source) for name, source in SCRIPTS.items()}

    @staticmethod
    def _insert_args(docs: list[dict[str, Any]]) -> list[Any]:
        args: list[Any] = [len(docs)]
        for doc in docs:
            stored = {**doc, "created_at": doc["created_at"].isoformat()}
            args += [dumps(stored), doc["name"], doc["age"],
                     "true" if doc["active"] else "false", len(doc["tags"]), *doc["tags"]]
        return args

    @staticmethod
    def _rows(reply: list[bytes]) -> list[dict[str, Any]]:
        return [{"id": reply[i].decode(), **json.loads(reply[i + 1])}
                for i in range(0, len(reply), 2)]

    def bulk(self, docs: list[dict[str, Any]]) -> list[str]:
        pipe = self.r.pipeline(transaction=False)
        for i in range(0, len(docs), HAND_DOCS_PER_SCRIPT):
            chunk = docs[i:i + HAND_DOCS_PER_SCRIPT]
            pipe.evalsha(self.sha["insert"], 1, HAND, *self._insert_args(chunk))
        return [str(id) for ids in pipe.execute() for id in ids]

    def insert(self, doc: dict[str, Any]) -> str:
        return str(self.r.evalsha(self.sha["insert"], 1, HAND, *self._insert_args([doc]))[0])

    def get(self, id: str) -> dict[str, Any] | None:
        raw = self.r.get(HAND + "d:" + id)
        return None if raw is None else {"id": id, **json.loads(raw)}

    def update(self, id: str, age: int) -> bool:
        return self.r.evalsha(self.sha["update"], 1, HAND, id, "age", age) == 1

    def delete(self, id: str) -> bool:
        return self.r.evalsha(self.sha["delete"], 1, HAND, id) == 1

    def eq(self, name: str) -> list[dict[str, Any]]:
        return self._rows(self.r.evalsha(self.sha["eq"], 1, HAND, name))

    def range(self, low: int, high: int, limit: int) -> list[dict[str, Any]]:
        return self._rows(self.r.evalsha(self.sha["range"], 1, HAND, low, high, limit))

    def compound(self, _: object) -> list[dict[str, Any]]:
        return self._rows(self.r.evalsha(self.sha["compound"], 1, HAND, "true", "t7", 60))

    def count(self, low: int, high: int) -> int:
        return int(self.r.zcount(HAND + "age", low, f"({high}"))
