#!lua flags=allow-oom
-- cache_finish.lua: after a write committed (or failed) on the primary, settle its
-- documents' cache slots. Where the slot's mark names this writer alone ("P:<token>":
-- nothing else began, finished or was invalidated since cache_begin, and its deadline, the
-- key's expiry, has not passed) and the write put a document there (write-through), the
-- slot becomes that entry. Where the mark names other writers whose deadline has not
-- passed, this writer's token (and those past their deadline) is taken out and "-" put
-- first: the mark stays, expiring at the latest deadline left, so readers keep going to
-- the primary until the last writer named finishes (or its deadline passes), and none of
-- them writes through. Anywhere else the slot becomes a tombstone, which refuses every
-- lease and fill that began before it. (The slot rules: quantumorm/cache/entries.py.)
--
-- KEYS[1..n]  the documents' cache keys (one hash tag)
-- ARGV[1]     the writer's token ("" when cache_begin did not run: no write-through)
-- ARGV[2]     entry time to live, milliseconds
-- ARGV[3]     tombstone time to live, milliseconds ("": none, for the collection's query
--             generation, whose tombstone "T<new generation>" is its renewed token)
-- ARGV[4..]   per key, two values: the version written ("0" for a delete or a failed
--             write), and the entry to store ("E<version>:<json>"), or "" for a tombstone
-- Returns     per key: 1 if the entry was stored, 0 if not (a tombstone, or the mark kept)
-- luacheck: globals redis KEYS ARGV
-- (the clock read and the mark list's parsing are written out here and in cache_begin.lua:
-- as a shared part's functions they cost every call about 800 server instructions,
-- the list paths up to 10,000 more: bench/bench_cache_marks.py, round 12)

local token = ARGV[1]
local mark = (token ~= "") and ("P:" .. token) or false
local now = nil
local out = {}
for i, key in ipairs(KEYS) do
  local version, value = ARGV[2 + 2 * i], ARGV[3 + 2 * i]
  out[i] = 0
  -- (a key of another type reads as no mark, and becomes a tombstone as before)
  local v = redis.pcall("GET", key)
  local rest, at_text = nil, nil
  -- (mark is false without a token: GET's reply for an absent key must not match it)
  if mark and v == mark and value ~= "" then  -- this writer alone: written through
    redis.call("SET", key, value, "PX", ARGV[2])
    out[i] = 1
  else
    if v ~= mark and type(v) == "string" and string.sub(v, 1, 2) == "P:" then
      if not now then
        local t = redis.call("TIME")
        now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
      end
      local at = 0
      for item in string.gmatch(string.sub(v, 3), "[^,]+") do
        local sep = string.find(item, "@", 1, true)
        if item ~= "-" and string.sub(item, 1, (sep or 0) - 1) ~= token then
          local d_text = sep and string.sub(item, sep + 1)
          local d = tonumber(d_text or "")
          if not d then  -- the sole writer's token (or round 11's): the key's expiry
            d = redis.call("PEXPIRETIME", key)  -- (-1: no expiry, never written so)
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
    elseif ARGV[3] == "" then
      redis.call("SET", key, "T" .. version)
    else
      redis.call("SET", key, "T" .. version, "PX", ARGV[3])
    end
  end
end
return out
