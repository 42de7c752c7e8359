#!lua flags=allow-oom
-- delete.lua: delete one document and every index entry it has, if its version matches.
--
-- allow-oom: a delete only frees memory, and must work when the server is full.
-- The entries to remove are read from the meta hash (what save.lua wrote), never recomputed
-- from the document, so a delete is exact even if the model's code changed since.
--
-- KEYS[1]   document key
-- KEYS[2]   meta hash key
-- KEYS[3]   the partition's id index
-- KEYS[4]   the partition's TTL schedule
-- KEYS[5]   where a soft delete keeps the document JSON until it expires
-- KEYS[6]   the partition's state hash (schema layout, see _prelude.lua)
-- KEYS[7..] index keys of the model
-- ARGV[1]   expected version, or "" to delete whatever version is stored
-- ARGV[2]   id key
-- ARGV[3]   MessagePack array: the meta field of every index, in KEYS[7..] order
-- ARGV[4]   "" to delete now; milliseconds to soft-delete: the document leaves every index
--           at once (so no read finds it) and its JSON stays at KEYS[5] that long
-- ARGV[5]   change events: "" (none), the spec events_on() reads, or the stream's MAXLEN
--           alone (digits: a stream entry without the document, no Pub/Sub, the usual
--           events, read with no MessagePack to unpack); the stream is KEYS[#KEYS]
-- ARGV[6]   the caller's schema layout ("" for none)
-- Returns   {"OK", deleted version} | {"MISSING"} | {"VERSION", actual} | {"WRONGTYPE", key}
--           | {"LAYOUT", stored layout} (the caller's schema is outdated: nothing deleted)
--           | {"LOCKED", record key} (a prepared transaction holds the document)
--           | {"DAMAGED", meta hash key, field} (a field of the meta hash does not read:
--             nothing deleted; repair() rebuilds it from the document)
--           (an expired document is "MISSING", and its leftovers are purged)
-- luacheck: globals redis KEYS ARGV cmsgpack
-- uses: _write
-- The shared definitions only the rare paths use are made when one is taken (cold_paths(),
-- luachunks.py), not on every call, and read as fields of ``rare``: a lock, an expired
-- document's purge, another version, a damaged meta hash.
-- cold: lock_holder stream_refusal index_records bad_index purge_listed bad_version damaged
-- cold: bulk type_ok

-- What each command serves (commands per write are the server's main cost; see typed() in
-- _write.lua): HGET of the state hash's layout: the layout refusal and its type (a delete
-- takes no version: the clock is not read); TYPE of the document: its type and whether it
-- is alive; HMGET of the meta hash: the version and every
-- index's entries, and its type; one EXISTS of the schedule and the lock hash, usually
-- both absent: no lock, and the id is in no schedule; else the schedule's ZCARD (its type,
-- and whether the id can be in it at all: its refusal is returned where it always was, after
-- the meta hash's) and the lock hash's HGET (schedule_and_locks); then the writes, the
-- first of them (ZREM of the id) proving the id index's type, the first ZREM in each index
-- that index's, the XADD of the event the stream's: a refusal of any puts back what was
-- removed before it.
do
  local refused = layout_refusal(KEYS[6], ARGV[6], false)
  if refused then return refused end
  events_unchecked(ARGV[5], KEYS[#KEYS])  -- (digits: the stream's MAXLEN alone)
end
local idkey, soft = ARGV[2], ARGV[4] ~= ""
local scheduled, locked, ttl_refused = schedule_and_locks(KEYS[4], KEYS[6])
local rare  -- (cold_paths(), made on the first rare path taken)
if locked > 0 then  -- (a document of a prepared transaction: see lock_holder())
  rare = cold_paths()
  local holder = rare.lock_holder(KEYS[6], idkey, true)
  if holder then return {"LOCKED", holder} end
end
local doc_type = redis.call("TYPE", KEYS[1]).ok
if doc_type ~= "none" and doc_type ~= "string" then return {"WRONGTYPE", KEYS[1]} end
local alive = doc_type == "string"
if soft then  -- (type_ok() in line: the common path names no function it does not call)
  local t = redis.call("TYPE", KEYS[5]).ok
  if t ~= "none" and t ~= "string" then return {"WRONGTYPE", KEYS[5]} end
end
-- every index's meta field, in KEYS[7..] order (index i is KEYS[6 + i]: no record per index
-- is built on the common path, only for a purge)
local manifests = cmsgpack.unpack(ARGV[3])
local got, refused = typed(KEYS[2], "HMGET", KEYS[2], "v", unpack(manifests))
if refused then return refused end
if ttl_refused then return ttl_refused end
local stored = got[1] or nil
if not stored then return {"MISSING"} end
if not alive then  -- it expired: clean up what it left
  rare = rare or cold_paths()
  if not rare.type_ok(KEYS[3], "zset") then return {"WRONGTYPE", KEYS[3]} end
  refused = rare.stream_refusal()  -- (the purge emits an "expire" event)
  if refused then return refused end
  local indexes = rare.index_records(manifests, 7)
  local bad = rare.bad_index(indexes)
  if bad then return {"WRONGTYPE", bad} end
  return rare.purge_listed(idkey, KEYS[2], KEYS[3], KEYS[4], indexes) or {"MISSING"}
end
if stored ~= ARGV[1] then  -- (a delete of any version replies with the one it deleted)
  rare = rare or cold_paths()
  refused = rare.bad_version(KEYS[2], stored)
  if refused then return refused end
  if ARGV[1] ~= "" then return {"VERSION", stored} end
end
-- each index's entries of the document, as members (value encodings .. id key)
local old = {}
for i = 1, #manifests do
  old[i] = read_list(got[i + 1], idkey)
  if not old[i] then
    rare = rare or cold_paths()
    return rare.damaged(KEYS[2], manifests[i])
  end
end

-- the deleted document for its event, read before anything is written
local last = EVENTS and EVENTS.doc and payload_of(redis.call("GET", KEYS[1]))
-- writes: the id first (its WRONGTYPE error is a refusal: nothing written yet), then its
-- entries, index by index (the first ZREM in each proves its key's type: proving()),
-- then the event: a refusal of any puts back what was removed before it
do
  local removed, bad = typed(KEYS[3], "ZREM", KEYS[3], idkey)
  if bad then return bad end
  local dropped = 0  -- (the indexes whose entries are removed)
  for i = 1, #old do
    bad = proving("ZREM", KEYS[6 + i], old[i])
    if bad then break end
    dropped = i
  end
  if not bad then bad = emit_first("delete", idkey, stored, nil, nil, last) end
  if bad then  -- (put back what was removed; no closure made for it on every call)
    rare = rare or cold_paths()
    for i = 1, dropped do rare.bulk("ZADD", KEYS[6 + i], old[i], true) end
    if removed == 1 then redis.call("ZADD", KEYS[3], 0, idkey) end
    return bad
  end
end
if scheduled > 0 then redis.call("ZREM", KEYS[4], idkey) end
if soft then
  redis.call("DEL", KEYS[2])
  redis.call("RENAME", KEYS[1], KEYS[5])
  redis.call("PEXPIRE", KEYS[5], ARGV[4])
else
  redis.call("DEL", KEYS[1], KEYS[2])
end
return {"OK", stored}
