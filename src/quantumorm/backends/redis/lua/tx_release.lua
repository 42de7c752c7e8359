#!lua flags=allow-oom
-- tx_release.lua: what an aborted (or missing) two-phase commit holds in one partition is
-- released: its locks in the partition's lock hash and its intent (twophase.py). Nothing
-- else was written by its prepare. Releasing twice does nothing. An intent already applied
-- (the "applied" marker tx.lua leaves: the versions it wrote) is kept: a settler that found
-- the record gone may come after an apply, and the committing client's own late apply reads
-- its versions from that marker.
--
-- KEYS[1]   the partition's lock hash      KEYS[2]  the transaction's intent key there
-- ARGV[1]   the transaction's record key (the value of its locks)
-- Returns   how many locks were released
-- luacheck: globals redis KEYS ARGV

local held, mine = redis.call("HGETALL", KEYS[1]), {}
for i = 1, #held, 2 do
  if held[i + 1] == ARGV[1] then mine[#mine + 1] = held[i] end
end
for i = 1, #mine, 1000 do
  redis.call("HDEL", KEYS[1], unpack(mine, i, math.min(i + 999, #mine)))
end
-- (the marker is MessagePack {"applied", ...}: its first element, the 7-byte string
-- "applied", comes right after the array's header of 1, 3 or 5 bytes; an intent's is "call")
local intent = redis.call("GET", KEYS[2])
if intent then
  local at = string.find(string.sub(intent, 1, 14), "\167applied", 1, true)
  if at ~= 2 and at ~= 4 and at ~= 6 then redis.call("DEL", KEYS[2]) end
end
-- (the readers' flag of the partition, "<tag>:locked", goes with its last lock)
if redis.call("EXISTS", KEYS[1]) == 0 then  -- (a hash without fields is deleted)
  redis.call("DEL", string.sub(KEYS[1], 1, -6) .. "locked")
end
return #mine
