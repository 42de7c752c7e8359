#!lua flags=allow-oom
-- cache_finish.lua: after a write committed (or failed) on the primary, settle its
-- documents' cache slots. Where the slot's mark names this writer alone
-- ("P:<token>@<deadline>": nothing else began, finished or was invalidated since
-- cache_begin, and no token was dropped) and the write put a document there
-- (write-through), the slot becomes that entry. Where the mark names other writers whose
-- deadline has not passed, this writer's token (and those past their deadline) is taken
-- out and "-" put first: the mark stays, expiring at the latest deadline left, so readers
-- keep going to the primary until the last writer named finishes (or its deadline passes),
-- and none of them writes through. Anywhere else the slot becomes a tombstone, which
-- refuses every lease and fill that began before it. (The slot rules:
-- quantumorm/cache/entries.py.)
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
local prefix = (token ~= "") and ("P:" .. token .. "@") or false
local now = nil
local out = {}
for i, key in ipairs(KEYS) do
  local version, value = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  out[i] = 0
  -- (a key of another type reads as no mark, and becomes a tombstone as before)
  local v = redis.pcall("GET", key)
  local rest, at, at_text = nil, 0, nil
  if type(v) ~= "string" or string.sub(v, 1, 2) ~= "P:" then
    v = false
  elseif prefix and string.sub(v, 1, #prefix) == prefix
      and not string.find(v, ",", #prefix, true) then
    -- this writer alone: its deadline has not passed (the key expires at it)
    if value ~= "" then
      redis.call("SET", key, value, "PX", ARGV[2])
      out[i] = 1
      v = nil
    end
  else
    if not now then
      local t = redis.call("TIME")
      now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    for item in string.gmatch(string.sub(v, 3), "[^,]+") do
      local sep = string.find(item, "@", 1, true)
      if item ~= "-" and (token == "" or string.sub(item, 1, (sep or 0) - 1) ~= token) then
        local d_text = sep and string.sub(item, sep + 1)
        local d = tonumber(d_text or "")
        if not d then  -- a round-11 mark "P:<token>": its deadline is the key's expiry
          d = now + math.max(redis.call("PTTL", key), 0)
          d_text = "" .. d
          item = string.sub(item, 1, (sep or 0) - 1) .. "@" .. d_text
        end
        if d >= now then  -- (else past its deadline: dropped)
          rest = rest or {}
          rest[#rest + 1] = item
          if d > at then at, at_text = d, d_text end
        end
      end
    end
  end
  if rest then  -- other writers are in progress
    redis.call("SET", key, "P:-," .. table.concat(rest, ","), "PXAT", at_text)
  elseif v ~= nil then
    redis.call("SET", key, "T" .. version, "PX", ARGV[3])
  end
end
return out
