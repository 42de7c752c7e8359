#!lua flags=no-writes
-- fetch.lua: read documents by id, with their versions, in one call (read only).
--
-- KEYS      pairs: document key, meta hash key (all of one partition)
-- Returns   flat pairs: document JSON (or false), version (or false)
-- luacheck: globals redis KEYS

local out = {}
for i = 1, #KEYS, 2 do
  out[#out + 1] = redis.call("GET", KEYS[i]) or false
  out[#out + 1] = redis.call("HGET", KEYS[i + 1], "v") or false
end
return out
