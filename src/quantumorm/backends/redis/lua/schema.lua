#!lua flags=allow-oom
-- schema.lua: replace a collection's stored schema (see quantumorm/schema.py) if it is still
-- at the layout the caller read: a compare-and-set, so that two processes reconciling the
-- same collection at once cannot undo each other's change.
--
-- KEYS[1]   the collection's schema hash
-- ARGV[1]   the layout read ("" when no schema was stored)
-- ARGV[2..] the new schema: hash field, value, field, value...
-- Returns   "OK", or the layout stored now ("" if none) when it was not the one read
-- luacheck: globals redis KEYS ARGV

if not type_ok(KEYS[1], "hash") then return redis.error_reply("WRONGTYPE " .. KEYS[1]) end
local layout = redis.call("HGET", KEYS[1], "layout") or ""
if layout ~= ARGV[1] then return layout end
redis.call("DEL", KEYS[1])
redis.call("HSET", KEYS[1], unpack(ARGV, 2))
return "OK"
