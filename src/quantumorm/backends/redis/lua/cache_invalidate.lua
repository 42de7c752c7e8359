#!lua flags=allow-oom
-- cache_invalidate.lua: the invalidations a process owes (quantumorm/cache/state.py): after
-- the cache was unreachable during its writes, and for entries it found damaged. The slot
-- rules (quantumorm/cache/entries.py): a write's mark is never replaced by anything a fill
-- can overwrite; it is flagged ("P:-,<tokens>": no writer named writes through), keeping
-- its expiry. A lease or a tombstone becomes a tombstone keeping its floor; anything else
-- a tombstone "T0". A damaged entry's tombstone replaces only the bytes the reader saw.
-- Dropping a collection's cache (ARGV[1] ""), a mark is flagged likewise and every other
-- slot is deleted (a tombstone is needed only over a mark).
--
-- KEYS[1..n]  the documents' cache keys (one hash tag)
-- ARGV[1]     tombstone time to live, milliseconds ("": drop)
-- ARGV[1+i]   for KEYS[i] (optional): "" (whatever the slot holds) or the damaged entry a
--             reader saw there: the slot is tombstoned only while it holds exactly that
-- Returns     the number of keys
-- luacheck: globals redis KEYS ARGV

local ttl = ARGV[1]
for i, key in ipairs(KEYS) do
  local expected = ARGV[1 + i] or ""
  -- (a key of another type reads as nothing, and becomes a tombstone as before)
  local v = redis.pcall("GET", key)
  if type(v) ~= "string" then v = false end
  if expected ~= "" then
    if v == expected then redis.call("SET", key, "T0", "PX", ttl) end
  elseif v and string.sub(v, 1, 2) == "P:" then
    if string.sub(v, 3, 3) ~= "-" then
      redis.call("SET", key, "P:-," .. string.sub(v, 3), "KEEPTTL")
    end
  elseif ttl == "" then
    redis.call("DEL", key)
  elseif v and string.sub(v, 1, 1) == "T" then
    redis.call("SET", key, v, "PX", ttl)
  elseif v and string.sub(v, 1, 1) == "L" then
    local colon = string.find(v, ":", 2, true)
    redis.call("SET", key, "T" .. string.sub(v, 2, (colon or #v + 1) - 1), "PX", ttl)
  else
    redis.call("SET", key, "T0", "PX", ttl)
  end
end
return #KEYS
