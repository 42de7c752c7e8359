#!lua flags=allow-oom
-- cache_finish.lua: after a write committed (or failed) on the primary, settle its
-- documents' cache slots. Where the slot's mark names this writer alone ("P:<token>":
-- nothing else began, finished or was invalidated since cache_begin) and the write put a
-- document there (write-through), the slot becomes that entry. Where the mark names other
-- writers too (or "-": an invalidation, or a writer that finished, came by), this writer's
-- token is taken out and "-" put first: the mark stays, so readers keep going to the
-- primary until the last writer named finishes (or the mark expires), and none of them
-- writes through. Anywhere else the slot becomes a tombstone, which refuses every lease
-- and fill that began before it. (The slot rules: quantumorm/cache/entries.py.)
--
-- KEYS[1..n]  the documents' cache keys (one hash tag)
-- ARGV[1]     the writer's token ("" when cache_begin did not run: no write-through)
-- ARGV[2]     entry time to live, milliseconds
-- ARGV[3]     tombstone time to live, milliseconds
-- ARGV[4..]   per key, two values: the version written ("0" for a delete or a failed
--             write), and the entry to store ("E<version>:<json>"), or "" for a tombstone
-- Returns     per key: 1 if the entry was stored, 0 if not (a tombstone, or the mark kept)
-- luacheck: globals redis KEYS ARGV

local token = ARGV[1]
local mark = (token ~= "") and ("P:" .. token) or false
local out = {}
for i, key in ipairs(KEYS) do
  local version, value = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  out[i] = 0
  -- (a key of another type reads as no mark, and becomes a tombstone as before)
  local v = redis.pcall("GET", key)
  local mine, rest = v == mark, nil
  if not mine and type(v) == "string" and string.sub(v, 1, 2) == "P:" then
    for t in string.gmatch(string.sub(v, 3), "[^,]+") do
      if t == token and token ~= "" then
        mine = true
      elseif t ~= "-" then
        rest = rest or {}
        rest[#rest + 1] = t
      end
    end
  end
  if rest then  -- other writers are in progress
    redis.call("SET", key, "P:-," .. table.concat(rest, ","), "KEEPTTL")
  elseif mine and value ~= "" and v == mark then
    redis.call("SET", key, value, "PX", ARGV[2])
    out[i] = 1
  else
    redis.call("SET", key, "T" .. version, "PX", ARGV[3])
  end
end
return out
