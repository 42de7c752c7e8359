#!lua
-- cache_read.lua: read documents' cache slots (quantumorm.cache); take a lease on each miss.
--
-- KEYS[1..n]  the documents' cache keys (one hash tag)
-- ARGV[1]     the reader's token
-- ARGV[2]     lease time, milliseconds
-- Returns     per key: the entry ("E<version>:<json>") or "N" (cached absence) as stored;
--             "G" when this reader now holds the lease (absent, tombstone, or its own
--             lease): load from the primary, then cache_fill; "W" when another reader
--             holds it; "P" when a write is in progress (read the primary, fill nothing)
-- luacheck: globals redis KEYS ARGV

local token, lease_ms = ARGV[1], ARGV[2]
local out = {}
for i, key in ipairs(KEYS) do
  local v = redis.call("GET", key)
  local kind = v and string.sub(v, 1, 1)
  if kind == "E" or kind == "N" then
    out[i] = v
  elseif kind == "P" then
    out[i] = "P"
  elseif kind == "L" then
    local colon = string.find(v, ":", 2, true)
    if string.sub(v, colon + 1) == token then out[i] = "G" else out[i] = "W" end
  else
    -- absent, or a tombstone whose floor the lease keeps
    local floor = (kind == "T") and string.sub(v, 2) or "0"
    redis.call("SET", key, "L" .. floor .. ":" .. token, "PX", lease_ms)
    out[i] = "G"
  end
end
return out
