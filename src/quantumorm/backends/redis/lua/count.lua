#!lua flags=no-writes
-- count.lua: count the entries of exact index ranges (or of the id index) of one partition,
-- unless documents there can expire (then the caller counts with query.lua, which checks
-- that each document exists).
--
-- KEYS[1]   the partition's TTL schedule
-- KEYS[2]   the index key (or the id index)
-- ARGV      pairs of lex range bounds; none: count the whole key (ZCARD)
-- Returns   the count, or -1 when the TTL schedule is not empty
-- luacheck: globals redis KEYS ARGV

if redis.call("ZCARD", KEYS[1]) > 0 then return -1 end
if #ARGV == 0 then return redis.call("ZCARD", KEYS[2]) end
local n = 0
for i = 1, #ARGV, 2 do n = n + redis.call("ZLEXCOUNT", KEYS[2], ARGV[i], ARGV[i + 1]) end
return n
