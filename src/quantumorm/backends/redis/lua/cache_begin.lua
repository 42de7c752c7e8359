#!lua flags=allow-oom
-- cache_begin.lua: before a write commits on the primary, mark its documents' cache slots
-- as written: the entry, a cached absence or a reader's lease is replaced (that reader's
-- fill will be refused), and readers go to the primary until cache_finish. The mark is
-- "P:<token>", expiring after ARGV[2] (its writer's deadline is the key's expiry). A slot
-- already marked by other writers keeps their tokens: this writer's token is added to the
-- list, each token with its own deadline ("P:<token>@<deadline>,<token>@<deadline>", the
-- server's time in milliseconds; a token without one, the sole writer's, gets the key's
-- expiry), so no writer's mark is lost (quantumorm/cache/entries.py, the slot rules). A
-- token past its deadline is dropped, and the mark flagged ("-" first: that writer may
-- still commit, so none of the others writes through). The key expires at the latest
-- deadline.
--
-- KEYS[1..n]  the documents' cache keys (one hash tag)
-- ARGV[1]     the writer's token
-- ARGV[2]     how long the mark lasts if the writer never finishes, milliseconds
-- Returns     the number of keys marked
-- luacheck: globals redis KEYS ARGV
-- (the clock read and the mark list's parsing are written out here and in cache_finish.lua:
-- as a shared part's functions they cost every call about 800 server instructions,
-- the list paths up to 10,000 more: bench/bench_cache_marks.py, round 12)

-- (ARGV[2] passed to SET as the string it is: a Lua number is formatted again per use)
local token, guard = ARGV[1], ARGV[2]
local now, deadline, text, mine = nil, nil, nil, nil
for _, key in ipairs(KEYS) do
  -- (a key of another type reads as no mark, and is replaced as before)
  local v = redis.pcall("GET", key)
  if type(v) == "string" and string.sub(v, 1, 2) == "P:" then
    if not now then
      local t = redis.call("TIME")
      now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
      deadline = now + tonumber(guard)
      text = "" .. deadline  -- (13 digits: "%.14g" writes them all)
      mine = token .. "@" .. text
    end
    -- (the common case, one writer's mark "P:<token>", without a table: its deadline is
    -- the key's expiry; a key without one, never written so, reads as past its deadline)
    local d = (#v > 2 and not string.find(v, "[,@%-]", 3)) and
              redis.call("PEXPIRETIME", key)
    if d and d >= now then
      local d_text = "" .. d
      redis.call("SET", key, v .. "@" .. d_text .. "," .. mine, "PXAT",
                 d > deadline and d_text or text)
    else
      local live, at, at_text, flagged = {}, deadline, text, string.sub(v, 3, 3) == "-"
      for item in string.gmatch(string.sub(v, 3), "[^,]+") do
        if item ~= "-" then
          local sep = string.find(item, "@", 1, true)
          local d_text = sep and string.sub(item, sep + 1)
          local d = tonumber(d_text or "")
          if not d then  -- the sole writer's token (or round 11's): the key's expiry
            d = redis.call("PEXPIRETIME", key)
            d_text = "" .. d
            item = string.sub(item, 1, (sep or 0) - 1) .. "@" .. d_text
          end
          if d < now then
            flagged = true  -- past its deadline: dropped
          else
            live[#live + 1] = item
            if d > at then at, at_text = d, d_text end
          end
        end
      end
      live[#live + 1] = mine
      redis.call("SET", key, (flagged and "P:-," or "P:") .. table.concat(live, ","),
                 "PXAT", at_text)
    end
  else
    redis.call("SET", key, "P:" .. token, "PX", guard)
  end
end
return #KEYS
