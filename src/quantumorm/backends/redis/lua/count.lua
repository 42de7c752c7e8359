#!lua flags=no-writes
-- count.lua: count the entries of exact index ranges (or of the id index) of one partition,
-- unless documents there can expire (then the caller counts with query.lua, which checks
-- that each document exists).
--
-- KEYS[1]   the partition's TTL schedule
-- KEYS[2]   the index key (or the id index)
-- KEYS[3]   the partition's state hash (schema layout, see _prelude.lua)
-- ARGV[1]   the caller's schema layout
-- ARGV[2..] pairs of lex range bounds; none: count the whole key (ZCARD)
-- Returns   the count, -1 when the TTL schedule is not empty or the partition has locks of
--           two-phase commits (its flag, see lock_flag() in _write.lua), -2 when the
--           caller's schema is outdated (it must read it again)
-- luacheck: globals redis KEYS ARGV

-- (layout_refusal() in line, of a reader: no function made per call for it, and a layout
-- that is the caller's own text, the usual case, read with no call)
local got = redis.pcall("HGET", KEYS[3], "layout")
if got ~= ARGV[1] then
  if type(got) == "table" then  -- (an error reply: the state hash holds another type)
    if string.find(got.err, "WRONGTYPE", 1, true) then
      return redis.error_reply("WRONGTYPE " .. KEYS[3] .. " is not a hash")
    end
    error(got)
  end
  if ARGV[1] ~= nil and ARGV[1] ~= "" then
    -- (a layout that is not plain digits does not read, as layout_refusal() judges it)
    local stored = string.find(got or "0", "^%d+$") and tonumber(got or "0")
    if not stored then error({err = "DAMAGED " .. KEYS[3] .. " layout"}) end
    if stored > tonumber(ARGV[1]) then return -2 end
  end
end
-- The TTL schedule and the lock flag (two-phase commits: while the partition has locks,
-- query.lua counts, and says so) are usually both absent (an empty sorted set is no key):
-- one EXISTS of the two says so. When either is there the answer is -1 either way (a
-- schedule that exists is not empty); its ZCARD only proves the schedule's type.
local lock_flag = string.sub(KEYS[3], 1, -6) .. "locked"
if redis.call("EXISTS", KEYS[1], lock_flag) > 0 then
  redis.call("ZCARD", KEYS[1])
  return -1
end
if #ARGV == 1 then return redis.call("ZCARD", KEYS[2]) end
local n = 0
for i = 2, #ARGV, 2 do n = n + redis.call("ZLEXCOUNT", KEYS[2], ARGV[i], ARGV[i + 1]) end
return n
