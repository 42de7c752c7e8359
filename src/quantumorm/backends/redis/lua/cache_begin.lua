#!lua flags=allow-oom
-- cache_begin.lua: before a write commits on the primary, mark its documents' cache slots
-- as written: the entry, a cached absence or a reader's lease is replaced (that reader's
-- fill will be refused), and readers go to the primary until cache_finish.
--
-- KEYS[1..n]  the documents' cache keys (one hash tag)
-- ARGV[1]     the writer's token
-- ARGV[2]     how long the mark lasts if the writer never finishes, milliseconds
-- Returns     the number of keys marked
-- luacheck: globals redis KEYS ARGV

for _, key in ipairs(KEYS) do
  redis.call("SET", key, "P:" .. ARGV[1], "PX", ARGV[2])
end
return #KEYS
