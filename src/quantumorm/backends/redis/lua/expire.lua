#!lua
-- expire.lua: give one document an expiry, or remove it (touch / persist), without a new
-- version: the document itself does not change.
--
-- KEYS[1]   document key
-- KEYS[2]   the partition's TTL schedule
-- KEYS[3]   the partition's lock hash (two-phase commits, see lock_holder() in _write.lua)
-- ARGV[1]   id key
-- ARGV[2]   milliseconds from now, or "persist"
-- Returns   1, or 0 if the document does not exist (or expired), or {"LOCKED", record key}:
--           a prepared transaction holds the document (its expiry is not changed while it
--           may still be written by that transaction's apply)
-- luacheck: globals redis KEYS ARGV

if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
local holder = redis.call("HGET", KEYS[3], ARGV[1])
if holder then return {"LOCKED", holder} end
if not type_ok(KEYS[2], "zset") then return redis.error_reply("WRONGTYPE " .. KEYS[2]) end
if ARGV[2] == "persist" then
  redis.call("PERSIST", KEYS[1])
  redis.call("ZREM", KEYS[2], ARGV[1])
else
  local at = now_ms() + tonumber(ARGV[2])
  redis.call("PEXPIREAT", KEYS[1], at)
  redis.call("ZADD", KEYS[2], at, ARGV[1])
end
return 1
