#!lua
-- cache_fill.lua: fill documents' cache slots after a miss, each only while the reader's
-- lease is still there (no write began or finished since the lease was taken, so what the
-- reader loaded from the primary is not older than any completed write) and the version
-- loaded is not below the lease's floor.
--
-- KEYS[1..n]  the documents' cache keys (one hash tag)
-- ARGV[1]     the reader's token
-- ARGV[2]     entry time to live, milliseconds
-- ARGV[3]     negative entry time to live, milliseconds
-- ARGV[4..]   per key, two values: the version loaded ("0": the document does not
--             exist), and what to store: the entry ("E<version>:<json>"), "N" (a cached
--             absence), or "" (store nothing: the lease is released for other readers)
-- Returns     per key: 1 if filled, 0 if refused (or released)
-- luacheck: globals redis KEYS ARGV

local token = ARGV[1]
local out = {}
for i, key in ipairs(KEYS) do
  local version, value = tonumber(ARGV[2 + 2 * i]), ARGV[3 + 2 * i]
  local v = redis.call("GET", key)
  out[i] = 0
  if v and string.sub(v, 1, 1) == "L" then
    local colon = string.find(v, ":", 2, true)
    local floor = tonumber(string.sub(v, 2, colon - 1))
    if string.sub(v, colon + 1) == token and (version == 0 or version >= floor) then
      if value == "" then
        redis.call("DEL", key)
      else
        local ttl = (version == 0) and ARGV[3] or ARGV[2]
        redis.call("SET", key, value, "PX", ttl)
        out[i] = 1
      end
    end
  end
end
return out
