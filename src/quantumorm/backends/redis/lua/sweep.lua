#!lua flags=allow-oom
-- sweep.lua: purge what expired documents of one partition left behind (index entries, meta
-- hash, id, schedule entry), up to a limit; allow-oom, as it only frees memory.
--
-- KEYS[1]   the partition's id index
-- KEYS[2]   the partition's TTL schedule
-- KEYS[3]   the partition's state hash (schema layout, see _prelude.lua)
-- KEYS[4..] index keys of the model
-- ARGV[1]   most documents to look at
-- ARGV[2]   MessagePack array: the meta field of every index, in KEYS[4..] order
-- ARGV[3]   document key prefix    ARGV[4]  meta key prefix
-- ARGV[5]   change events: "" (none) or the spec events_on() reads; the stream is KEYS[#KEYS]
-- ARGV[6]   the caller's schema layout ("" for none)
-- Returns   {purged, still due}: how many were purged, how many due ones remain;
--           {"LAYOUT", stored layout} when the caller's schema is outdated
-- luacheck: globals redis KEYS ARGV cmsgpack

do
  local refused = layout_refusal(KEYS[3], ARGV[6], false)
  if refused and refused[1] == "LAYOUT" then return refused end
  if refused then return redis.error_reply("WRONGTYPE " .. KEYS[3] .. " is not a hash") end
  local bad = events_on(ARGV[5], KEYS[#KEYS])
  if bad then return redis.error_reply("WRONGTYPE " .. bad .. " is not a stream") end
end
local indexes = index_records(cmsgpack.unpack(ARGV[2]), 4)
local purged = sweep(tonumber(ARGV[1]), ARGV[3], ARGV[4], KEYS[1], KEYS[2], indexes)
return {purged, redis.call("ZCOUNT", KEYS[2], "-inf", now_ms())}
