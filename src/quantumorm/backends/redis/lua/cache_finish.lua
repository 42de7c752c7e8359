#!lua flags=allow-oom
-- cache_finish.lua: after a write committed (or failed) on the primary, settle its
-- documents' cache slots. Where the slot still holds this writer's mark (nothing else
-- began or finished since cache_begin) and the write put a document there
-- (write-through), the slot becomes that entry; anywhere else it becomes a tombstone, which
-- refuses every lease and fill that began before it.
--
-- KEYS[1..n]  the documents' cache keys (one hash tag)
-- ARGV[1]     the writer's token ("" when cache_begin did not run: every slot a tombstone)
-- ARGV[2]     entry time to live, milliseconds
-- ARGV[3]     tombstone time to live, milliseconds
-- ARGV[4..]   per key, two values: the version written ("0" for a delete or a failed
--             write), and the entry to store ("E<version>:<json>"), or "" for a tombstone
-- Returns     per key: 1 if the entry was stored, 0 if a tombstone was
-- luacheck: globals redis KEYS ARGV

local mark = "P:" .. ARGV[1]
local out = {}
for i, key in ipairs(KEYS) do
  local version, value = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  out[i] = 0
  if value ~= "" and ARGV[1] ~= "" and redis.call("GET", key) == mark then
    redis.call("SET", key, value, "PX", ARGV[2])
    out[i] = 1
  else
    redis.call("SET", key, "T" .. version, "PX", ARGV[3])
  end
end
return out
