#!lua flags=allow-oom
-- cache_invalidate.lua: tombstone documents' cache slots whatever they hold (the
-- invalidations a process owes after the cache was unreachable during its writes).
--
-- KEYS[1..n]  the documents' cache keys (one hash tag)
-- ARGV[1]     tombstone time to live, milliseconds
-- Returns     the number of keys
-- luacheck: globals redis KEYS ARGV

for _, key in ipairs(KEYS) do
  redis.call("SET", key, "T0", "PX", ARGV[1])
end
return #KEYS
