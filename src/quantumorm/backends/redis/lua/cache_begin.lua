#!lua flags=allow-oom
-- cache_begin.lua: before a write commits on the primary, mark its documents' cache slots
-- as written: the entry, a cached absence or a reader's lease is replaced (that reader's
-- fill will be refused), and readers go to the primary until cache_finish. A slot already
-- marked by other writers keeps their tokens: this writer's token is added to the list
-- ("P:<token>,<token>"), so no writer's mark is lost (quantumorm/cache/entries.py, the
-- slot rules), and the mark lasts at least ARGV[2] from now.
--
-- KEYS[1..n]  the documents' cache keys (one hash tag)
-- ARGV[1]     the writer's token
-- ARGV[2]     how long the mark lasts if the writer never finishes, milliseconds
-- Returns     the number of keys marked
-- luacheck: globals redis KEYS ARGV

-- (ARGV[2] passed to SET as the string it is: a Lua number is formatted again per call)
local token, guard = ARGV[1], ARGV[2]
for _, key in ipairs(KEYS) do
  -- (a key of another type reads as no mark, and is replaced as before)
  local v = redis.pcall("GET", key)
  if type(v) == "string" and string.sub(v, 1, 2) == "P:" then
    if redis.call("PTTL", key) < tonumber(guard) then
      redis.call("SET", key, v .. "," .. token, "PX", guard)
    else
      redis.call("SET", key, v .. "," .. token, "KEEPTTL")
    end
  else
    redis.call("SET", key, "P:" .. token, "PX", guard)
  end
end
return #KEYS
