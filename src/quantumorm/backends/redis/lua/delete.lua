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
-- ARGV[5]   change events: "" (none) or the spec events_on() reads; the stream is KEYS[#KEYS]
-- ARGV[6]   the caller's schema layout ("" for none)
-- Returns   {"OK", deleted version} | {"MISSING"} | {"VERSION", actual} | {"WRONGTYPE", key}
--           | {"LAYOUT", stored layout} (the caller's schema is outdated: nothing deleted)
--           (an expired document is "MISSING", and its leftovers are purged)
-- luacheck: globals redis KEYS ARGV cmsgpack

do
  local refused = layout_refusal(KEYS[6], ARGV[6], false)
  if refused then return refused end
  local bad = events_on(ARGV[5], KEYS[#KEYS])
  if bad then return {"WRONGTYPE", bad} end
end
local wanted = {"string", "hash", "zset", "zset", "string"}
for i = 1, 5 do
  if not type_ok(KEYS[i], wanted[i]) then return {"WRONGTYPE", KEYS[i]} end
end
local idkey = ARGV[2]
local indexes = {}
for i, field in ipairs(cmsgpack.unpack(ARGV[3])) do indexes[i] = {key = KEYS[6 + i], field = field} end
do
  local bad = bad_index(indexes)
  if bad then return {"WRONGTYPE", bad} end
end
local stored = redis.call("HGET", KEYS[2], "v")
if not stored then return {"MISSING"} end
if redis.call("EXISTS", KEYS[1]) == 0 then  -- it expired: clean up what it left
  purge_expired(idkey, KEYS[2], KEYS[3], KEYS[4], indexes)
  return {"MISSING"}
end
if ARGV[1] ~= "" and stored ~= ARGV[1] then return {"VERSION", stored} end
purge(idkey, KEYS[2], KEYS[3], KEYS[4], indexes)
emit("delete", idkey, stored, nil, nil, EVENTS and EVENTS.doc and redis.call("GET", KEYS[1]))
if ARGV[4] ~= "" then
  redis.call("RENAME", KEYS[1], KEYS[5])
  redis.call("PEXPIRE", KEYS[5], ARGV[4])
else
  redis.call("DEL", KEYS[1])
end
return {"OK", stored}
