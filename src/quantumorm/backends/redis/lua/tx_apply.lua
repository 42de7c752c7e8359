#!lua flags=allow-oom
-- tx_apply.lua: the apply of a committed two-phase commit in one partition (twophase.py):
-- the intent its prepare stored (tx.lua's call in apply mode) is read here and run, so that
-- the committing client and every settler send only the intent's key.
--
-- allow-oom: once the record says committed, applying is the only way forward; it replaces
-- what the intents (and the documents they lock) already hold, and a refusal above
-- maxmemory would leave the transaction half applied, its locks making every read that
-- meets them fail until memory frees. (A prepare, a new write, stays refused: tx.lua.)
--
-- KEYS[1]   the transaction's intent key in the partition (the other keys the intent
--           names share its hash tag: a cluster routes the call by this one)
-- ARGV[1]   "" (apply the intent stored), or an intent made again with the schema of now
--           (twophase.py's _rebuilt, same form), applied in place of the stored one
-- Returns   what tx.lua returns in apply mode; {"DONE", what the key holds} when it holds no
--           intent (applied: the versions it wrote; or "": released, or expired); the error
--           "DAMAGED <intent key> intent" when it holds neither (nothing written)
-- luacheck: globals redis KEYS ARGV cmsgpack
-- uses: _write _tx

local stored = redis.call("GET", KEYS[1])
if not stored then return {"DONE", ""} end

-- What the key holds is one of two things tx.lua writes, checked before any of it is
-- applied; anything else (not MessagePack, cut short, another kind, counts that do not
-- read) is refused, nothing written: "DAMAGED <intent key> intent" (twophase.py:
-- DamagedTransactionError). Taken for "applied", a damaged intent would let the committing
-- client forget a transaction whose documents here were never written.
local function damaged() return redis.error_reply("DAMAGED " .. KEYS[1] .. " intent") end
-- The array of strings the MessagePack ``blob`` holds, read as twophase.py's wire.unpack
-- reads it: an array (a map, a number... are not), its header's count of elements, none of
-- them nil (a hole would shorten the list), nothing after it, and (unless ``checked``: the
-- caller checks each element itself) every element a string; else nil, or a Lua error
-- that the pcall around intent() makes damage too.
-- (a string's type is checked by comparing it with "": false for every string, a Lua error
-- for any other type; a call of type() per element cost about 16k server instructions per
-- apply)
local function array(blob, checked)
  local after, list = cmsgpack.unpack_one(blob)
  if after ~= -1 or type(list) ~= "table" then return nil end
  local head, count = string.byte(blob, 1), nil
  if head >= 0x90 and head <= 0x9f then
    count = head - 0x90
  elseif head == 0xdc then
    local a, b = string.byte(blob, 2, 3)
    count = a * 256 + b
  elseif head == 0xdd then
    local a, b, c, d = string.byte(blob, 2, 5)
    count = ((a * 256 + b) * 256 + c) * 256 + d
  else
    return nil
  end
  if #list ~= count then return nil end
  if not checked then
    for i = 1, count do
      if list[i] < "" then return nil end
    end
  end
  return list
end
-- the intent: {"call", key count, keys..., args...}, in apply mode, its keys and rows
-- adding up (the partition's three keys, one per index, two per row, then the intent key
-- itself at its place; 9 arguments a row of a known kind, its expected version and expiry
-- read). Every element is a string, and so is every element of the lists it packs (the
-- indexes described, the phase, a write's meta pairs, lenient positions — digits — and
-- changed names), as twophase.py's _stored_call requires: an element not read by these
-- checks (a document's JSON, a write id, a key, a prefix) of another type would be
-- written converted (a number) or stop the apply on a Lua error half done (a table).
-- Returns the keys, the arguments, and the lists unpacked here, which transact reads
-- instead of unpacking them again (each check made before anything is applied).
local function intent(blob)
  local flat = array(blob, true)  -- (each element checked below)
  if not (flat and flat[1] == "call" and not (flat[2] < "")
          and string.find(flat[2], "^%d+$")) then return nil end
  local nkeys = tonumber(flat[2])
  local nargs = #flat - 2 - nkeys
  if nargs < 6 or (nargs - 6) % 9 ~= 0 then return nil end
  local keys, args = {}, {}
  for i = 1, nkeys do
    local v = flat[2 + i]
    if v < "" then return nil end  -- (a string: see array())
    keys[i] = v
  end
  for i = 1, nargs do
    local v = flat[2 + nkeys + i]
    if v < "" then return nil end
    args[i] = v
  end
  local described = array(args[1])
  if not (described and #described % 3 == 0) then return nil end
  local spec = array(args[6])
  if not (spec and spec[1] == "apply" and spec[2]) then return nil end
  -- (what the writes use after the first one is checked here too, or the apply would stop
  -- on a command's error half done: the ms the applied marker is kept ("" or nil: ten
  -- minutes; else SET ... PX, which refuses 0), and the events spec, whose stream MAXLEN
  -- XADD reads and whose channel PUBLISH takes)
  local keep = spec[4]
  if keep and keep ~= "" and not (#keep <= 15 and string.find(keep, "^%d+$")
                                  and tonumber(keep) > 0) then
    return nil
  end
  local events = nil
  if args[4] ~= "" then
    events = array(args[4])
    if not (events and #events == 3 and (events[2] == "0" or events[2] == "1")
            and (events[1] == "" or #events[1] <= 18 and string.find(events[1], "^%d+$")))
    then
      return nil
    end
  end
  local nrows = (nargs - 6) / 9
  if keys[#described / 3 + 4 + 2 * nrows] ~= KEYS[1] then return nil end
  local fields, lenient = {}, {}
  for n = 1, nrows do
    local base = 6 + 9 * (n - 1)
    local kind, expiry = args[base + 1], args[base + 9]
    if kind ~= "check" and kind ~= "insert" and kind ~= "update" and kind ~= "delete" then
      return nil
    end
    -- (the expected version and the expiry as "%d" wrote them: tonumber would read "+13";
    -- an expiry of at most 15 digits, about 31,000 years, so that now + it is an integer
    -- SET ... PXAT takes: a Lua number of 17 digits or more is sent as "1e+17")
    local expected = args[base + 2]
    local cut = #expected > 20 and string.find(expected, "\0", 1, true)
    if cut and kind == "insert" then
      -- (an insert sent as format 3: "0" in 20 digits, a NUL, then nothing or the listed
      -- indexes' pairs, read by transact: see _tx.lua)
      if expected ~= "00000000000000000000\0" then
        local listed = array(string.sub(expected, cut + 1))
        if not (listed and #listed % 2 == 0) then return nil end
        for i = 2, #listed, 2 do
          if not read_list(listed[i]) then return nil end
        end
      end
      expected = string.sub(expected, 1, cut - 1)
    elseif cut and (kind == "update" or kind == "delete") then
      -- (a row sent as format 3: the version, a NUL, then {one packed list per index, the
      -- listed indexes' pairs}, read by transact: see _tx.lua)
      local given = array(string.sub(expected, cut + 1), true)
      if not (given and #given == 2 and type(given[1]) == "table"
              and type(given[2]) == "table" and #given[1] == #described / 3
              and #given[2] % 2 == 0) then
        return nil
      end
      for _, part in ipairs(given) do
        for i = 1, #part do
          if type(part[i]) ~= "string" then return nil end
        end
      end
      -- (the entries lists, and the listed pairs' lists, read as transact reads them: a
      -- damaged one would stop the apply on a Lua error, the lock kept)
      for i = 1, #given[1] do
        if not read_list(given[1][i]) then return nil end
      end
      for i = 2, #given[2], 2 do
        if not read_list(given[2][i]) then return nil end
      end
      expected = string.sub(expected, 1, cut - 1)
    end
    if not string.find(expected, "^%d+$") then return nil end
    if expiry ~= "keep" and expiry ~= "persist"
        and not (#expiry <= 15 and string.find(expiry, "^%d+$")) then
      return nil
    end
    -- (a write's meta pairs and lenient positions, read by transact after this
    -- partition's checks, and its changed names, copied into its event unread: each must
    -- unpack to an array of strings, or the apply would stop on a Lua error, other
    -- partitions already applied, or write an event no reader can decode)
    if kind == "insert" or kind == "update" then
      local list = array(args[base + 6])
      if not list then return nil end
      fields[n] = list
      list = array(args[base + 7])
      if not list then return nil end
      for i = 1, #list do
        if not string.find(list[i], "^%d+$") then return nil end
      end
      lenient[n] = list
      if args[base + 8] ~= "" and not array(args[base + 8]) then return nil end
    end
  end
  return keys, args, {described = described, spec = spec, events = events, fields = fields,
                      lenient = lenient}
end

-- (an intent is MessagePack {"call", ...}, the applied marker {"applied", versions...}: the
-- first element right after the array header of 1, 3 or 5 bytes)
local head = string.sub(stored, 1, 14)
local at = string.find(head, "\167applied", 1, true)
if at == 2 or at == 4 or at == 6 then
  local ok, flat = pcall(array, stored)
  if not (ok and flat) then return damaged() end
  for i = 2, #flat do  -- (-1: a write left out)
    if not string.find(flat[i], "^%-?%d+$") then return damaged() end
  end
  return {"DONE", stored}
end
-- (pcall: an element of another type where one is read here, a Lua error, is damage too)
local read, keys, args, unpacked = pcall(intent, stored)
if not (read and keys) then return damaged() end
-- (one made again is not stored: a refused apply leaves the intent as its prepare made it,
-- made again by each settler, which then sends it before any other partition's)
if ARGV[1] ~= "" then
  read, keys, args, unpacked = pcall(intent, ARGV[1])
  if not (read and keys) then return damaged() end
end
return transact(keys, args, unpacked, cold_paths)
