#!lua flags=allow-oom
-- stamp.lua: record in a partition's state hash that the collection's stored schema is at
-- ``layout`` now (never lowering it), so that scripts called with an older layout refuse
-- (see layout_refusal in _prelude.lua). Sent to every partition after a schema change.
--
-- KEYS[1]   the partition's state hash
-- ARGV[1]   the new layout
-- Returns   1 when the stamp was written, else 0
-- luacheck: globals redis KEYS ARGV

if not type_ok(KEYS[1], "hash") then return redis.error_reply("WRONGTYPE " .. KEYS[1]) end
-- (a stored layout that does not read, not plain digits as layout_refusal() judges it, is
-- written again: repair() sends this for it)
local text = redis.call("HGET", KEYS[1], "layout") or "0"
local stored = string.find(text, "^%d+$") and tonumber(text) or -1
if tonumber(ARGV[1]) > stored then
  redis.call("HSET", KEYS[1], "layout", ARGV[1])
  return 1
end
return 0
