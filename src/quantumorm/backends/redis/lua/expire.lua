#!lua
-- expire.lua: give one document an expiry, or remove it (touch / persist), without a new
-- version: the document itself does not change.
--
-- KEYS[1]   document key
-- KEYS[2]   the partition's TTL schedule
-- KEYS[3]   the partition's lock hash (two-phase commits, see lock_holder() in _write.lua)
-- KEYS[4]   the document's meta hash (a format-3 document's sweep record)
-- ARGV[1]   id key
-- ARGV[2]   milliseconds from now, or "persist"
-- KEYS[5..] and ARGV[3..]: sent by a caller that has met a format-3 document (after a
--           {"FORMAT3"} reply, nothing written), and read only for one: the partition's
--           state hash (its schema layout); and what a format-3 document needs,
--           MessagePack strings one after another (one argument): the
--           caller's schema layout ("" for none), the number of
--           indexes, then per index (in the model's order) its meta field ("f:..." or
--           "x:..."), its number of members, and per member its key text (the stored
--           name as JSON, quoted) and its kind code (derived.py; "" where not derived);
--           then, when the caller sends its own entries (after an ENTRIES reply), the
--           version they come from and one packed list per index ("len:bytes" repeated)
-- Returns   1, or 0 if the document does not exist (or expired), or {"LOCKED", record key}:
--           a prepared transaction holds the document (its expiry is not changed while it
--           may still be written by that transaction's apply)
--           A format-3 document (bench/format3.md) has no meta hash, but keeps one while it
--           has an expiry, as the sweep record (its version "v" and every index's list of
--           entries: what the sweep purges once the key expires). Touch writes it, the
--           entries derived from the stored JSON (derived_entries), or the caller's when
--           it sends them; persist deletes its "v" and its derived indexes' fields (a listed
--           index's stay, as without an expiry). Its other replies, nothing written:
--           {"ENTRIES", version} (an index not derived, a member absent, a compressed
--           document...: the caller sends its entries of that version),
--           {"VERSION", version} (the caller's entries come from another version: it
--           reads the document again), {"CORRUPT"} (its header does not read),
--           {"FORMAT3"} (the caller sent no KEYS[4..5] and ARGV[3..]: it sends them),
--           {"LAYOUT", stored layout} (or "": the caller sent none, it reads the schema),
--           {"WRONGTYPE", key} (the meta key, the state hash).
--           A document of format 2 or 1: what it did before (its meta hash lists its
--           entries already). Without KEYS[5..], the format is told with no GET where it
--           can be: one EXISTS of the document and its meta hash (a format-2 document has
--           both; a format-3 one has a meta hash only as a sweep record, which its writers
--           keep, so that a touch finding both needs nothing more), and for a persist
--           that finds both, an HGET of "r" (a format-2 meta hash has it, a sweep
--           record never), for a touch an HGET of "v" (a format-2 meta hash and a sweep
--           record have it; the listed indexes' fields alone, which a format-3 document
--           keeps without an expiry, do not): the document is read only when these leave
--           it open.
-- (The meta key is declared, not made from the document key as the lock hash's name is:
-- measured with bench/bench_touch_instructions.py, a key more costs the server about 1,300
-- instructions a call, making its name in Lua about 4,000.)
-- luacheck: globals redis KEYS ARGV cmsgpack
-- uses: _write _derive
-- cold: header_of derived_entries json_plain_spans json_members json_ws layout_refusal

local stored, headed = nil, false
if ARGV[3] then
  stored = redis.pcall("GET", KEYS[1])
  if not stored then return 0 end  -- (another type: its error, read as alive, as EXISTS was)
  headed = type(stored) == "string" and string.byte(stored, 1) == 1
else
  local found = redis.call("EXISTS", KEYS[1], KEYS[4])
  if found == 0 then return 0 end
  -- (both: a format-2 meta hash has "v" and "r"; a sweep record "v" and no "r"; a format-3
  -- document's meta hash without an expiry, its listed indexes' fields only, neither: a
  -- persist tells them by "r", a touch by "v", which a sweep record needs written)
  -- (HGET, not HEXISTS: the published ACL rule allows the one, not the other)
  local told = found == 2 and redis.pcall("HGET", KEYS[4], ARGV[2] == "persist" and "r" or "v")
  if type(told) ~= "string" then
    stored = redis.pcall("GET", KEYS[1])
    if not stored then return 0 end  -- (its meta hash alone: it expired)
    if type(stored) == "string" and string.byte(stored, 1) == 1 then return {"FORMAT3"} end
  end
end
if headed then
  local rare = cold_paths()
  local holder = redis.call("HGET", KEYS[3], ARGV[1])
  if holder then return {"LOCKED", holder} end
  if not type_ok(KEYS[2], "zset") then return redis.error_reply("WRONGTYPE " .. KEYS[2]) end
  local version, _, start = rare.header_of(stored)
  if not version then return {"CORRUPT"} end
  if not type_ok(KEYS[4], "hash") then return {"WRONGTYPE", KEYS[4]} end
  local c = {cmsgpack.unpack(ARGV[3])}
  -- (a caller that has not read the schema yet: it reads it, its indexes checked here)
  if c[1] == "" then return {"LAYOUT", ""} end
  local refused = rare.layout_refusal(KEYS[5], c[1], false)
  if refused then return refused end
  -- the sweep record: the version, then each index's meta field and list of entries
  local record, indexes, at = {"v", version}, {}, 3
  for i = 1, tonumber(c[2]) do
    local count = tonumber(c[at + 1])
    indexes[i] = {field = c[at], members = {unpack(c, at + 2, at + 1 + 2 * count)}}
    at = at + 2 + 2 * count
  end
  if ARGV[2] == "persist" then
    -- (the sweep record's "v" and its derived indexes' fields go; a listed index's field,
    -- one with a member of kind "", stays: bench/format3.md, section 1)
    local gone = {"v"}
    for _, index in ipairs(indexes) do
      local derived = true
      for j = 2, #index.members, 2 do
        if index.members[j] == "" then derived = false end
      end
      if derived then gone[#gone + 1] = index.field end
    end
    redis.call("PERSIST", KEYS[1])
    redis.call("ZREM", KEYS[2], ARGV[1])
    redis.call("HDEL", KEYS[4], unpack(gone))
    return 1
  end
  if c[at] then  -- (the caller's entries, of the version it read)
    if c[at] ~= version then return {"VERSION", tonumber(version)} end
    for i, index in ipairs(indexes) do
      record[2 * i + 1], record[2 * i + 2] = index.field, c[at + i]
    end
  else
    local payload = string.sub(stored, start)
    if string.byte(payload, 1) == 255 then return {"ENTRIES", tonumber(version)} end
    -- every member's text: json_plain_spans' proof, else the scan (as patch_json finds
    -- them); a member absent, or a document that does not read: not derived
    local given = {}
    for _, index in ipairs(indexes) do
      for j = 1, #index.members, 2 do given[#given + 1] = {index.members[j]} end
    end
    local spans = rare.json_plain_spans(payload, given)
    if not spans then
      local ok, members, close = pcall(rare.json_members, payload)
      if not ok or rare.json_ws(payload, close + 1) then return {"ENTRIES", tonumber(version)} end
      spans = {}
      for _, m in ipairs(members) do
        -- (a member name written with an escape may be another text of a wanted name)
        if string.find(m[1], "\\", 1, true) then return {"ENTRIES", tonumber(version)} end
        spans[m[1]] = m
      end
    end
    for i, index in ipairs(indexes) do
      local entries, members = nil, index.members
      for j = 1, #members, 2 do
        local span, kind = spans[members[j]], members[j + 1]
        local got = span and kind ~= "" and rare.derived_entries(
          string.sub(payload, span[2], span[3] - 1), kind)
        if not got then return {"ENTRIES", tonumber(version)} end
        if #members == 2 then
          entries = got
        else  -- (a compound index: its members' entries joined, one each)
          if #got ~= 1 then return {"ENTRIES", tonumber(version)} end
          entries = {(entries and entries[1] or "") .. got[1]}
        end
      end
      local packed = {}
      for k, e in ipairs(entries) do packed[k] = #e .. ":" .. e end
      record[2 * i + 1], record[2 * i + 2] = index.field, table.concat(packed)
    end
  end
  local expire_at = now_ms() + tonumber(ARGV[2])
  redis.call("PEXPIREAT", KEYS[1], expire_at)
  redis.call("ZADD", KEYS[2], expire_at, ARGV[1])
  redis.call("DEL", KEYS[4])
  redis.call("HSET", KEYS[4], unpack(record))
  return 1
end
local holder = redis.call("HGET", KEYS[3], ARGV[1])
if holder then return {"LOCKED", holder} end
if not type_ok(KEYS[2], "zset") then return redis.error_reply("WRONGTYPE " .. KEYS[2]) end
if ARGV[2] == "persist" then
  redis.call("PERSIST", KEYS[1])
  redis.call("ZREM", KEYS[2], ARGV[1])
else
  local at = now_ms() + tonumber(ARGV[2])
  redis.call("PEXPIREAT", KEYS[1], at)
  redis.call("ZADD", KEYS[2], at, ARGV[1])
end
return 1
