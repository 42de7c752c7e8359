#!lua
-- insert.lua: insert of one new document with its index entries: what save() of a new
-- document sends (save.lua is the update's; insert_many.lua a batch's).
--
-- The shebang declares a writer without allow-oom (see save.lua). Needs Redis 7.0 or newer.
-- KEYS are save.lua's (one call record, calls.SaveCall); ARGV an insert's own (save.lua's
-- less the three an insert never reads: each argument costs the server a string made for
-- the script):
-- KEYS[1]   document key; when ARGV[1] == "" the document key prefix (the id is allocated here)
-- KEYS[2]   meta hash key; when allocating, its prefix
-- KEYS[3]   the partition's id index      KEYS[4]  the id sequence when allocating (else
--           any key of the partition)     KEYS[5]  the TTL schedule
-- KEYS[6]   the partition's state hash    KEYS[7..] every index key of the model
-- ARGV[1]   id key, or "" to allocate the next id from KEYS[4]
-- ARGV[2]   document JSON                 ARGV[3]  write id, 16 characters
-- ARGV[4]   MessagePack array of pairs: meta field name, netstring list of value encodings
-- ARGV[5]   MessagePack array of quadruples, one per index of the model in KEYS[7..]
--           order: KEYS position (7, 8...: not read), meta field, "1" to enforce
--           uniqueness, index name; ""
--           when the model has no unique index (nothing to unpack: every index is
--           KEYS[6 + i], none enforced)
-- ARGV[6]   MessagePack array: the meta field of every index (a purge's, a sweep's)
-- ARGV[7]   expiry: "keep" or "persist" (none), or milliseconds from now
-- ARGV[8]   document key prefix    ARGV[9]  meta key prefix
-- ARGV[10]  change events: "", the spec events_on() reads, or the stream's MAXLEN alone
--           (digits); the stream is KEYS[#KEYS]
-- ARGV[11]  the caller's schema layout ("" for none)
-- ARGV[12]  MessagePack array with, per index of ARGV[5], the array of its value encodings
--           (ARGV[4]'s netstrings, decoded); "" (or absent): read from ARGV[4]
--
-- Every check runs before the first write, and the JSON is stored verbatim, as in save.lua;
-- the replies are save.lua's for an insert: {"OK", version, id key} | {"EXISTS"}
-- | {"LAYOUT", stored layout} | {"UNIQUE", index name, id key of the holder}
-- | {"WRONGTYPE", key} | {"LOCKED", record key} | {"DAMAGED", meta hash key, field}.
-- (save.lua, which only updates, refuses an insert.) No record table is made per index (an
-- insert reads each index's entries from ARGV[12] as it goes; tables and strings made per
-- call are the garbage collector's work, a good part of a write's).
-- luacheck: globals redis KEYS ARGV cmsgpack
-- uses: _write
-- The shared definitions only the rare paths use are made when one is taken (cold_paths(),
-- luachunks.py), not on every call, and read as fields of ``rare``: a lock, a taken id or
-- an expired document's leftovers, a unique claim, more than 500 entries, a refused write,
-- a sweep.
-- cold: lock_holder applied insert_refusal index_records unique_holder change_entries
-- cold: take_back_entries sweep write_time_ms unpack_list give_back_ids type_ok

local idkey = ARGV[1]
local doc_key, meta_key = KEYS[1], KEYS[2]
local doc_prefix = ARGV[8]
local allocating = idkey == ""
local rare  -- (cold_paths(), made on the first rare path taken)
-- The state hash's HMGET, the schedule's and the lock hash's EXISTS (an insert of a known
-- id: with its document key and meta hash), as in save.lua; an allocation checks no lock.
local scheduled, others
do
  local refused = state_check(KEYS[6], ARGV[11], true)
  if refused then return refused end
  if allocating then
    scheduled, refused = typed(KEYS[5], "ZCARD", KEYS[5])
    others = 0
  else
    scheduled, others, refused = schedule_and_locks(KEYS[5], KEYS[6], doc_key, meta_key)
  end
  if refused then return refused end
  events_unchecked(ARGV[10], KEYS[#KEYS])  -- (digits: the stream's MAXLEN alone)
end

if others > 0 then  -- (a document of a prepared transaction: lock_holder())
  rare = rare or cold_paths()
  local holder = rare.lock_holder(KEYS[6], idkey)
  -- (a resent insert applied before the lock was taken is recognised by its write id)
  if holder and not (rare.type_ok(meta_key, "hash") and rare.applied(meta_key, ARGV[3])) then
    return {"LOCKED", holder}
  end
  -- (an insert whose id's keys exist: a taken id, a resent insert recognised by its write
  -- id, or an expired document's leftovers to purge)
  local refused = rare.insert_refusal(idkey, doc_key, meta_key, KEYS[3], KEYS[5], ARGV[6], 7,
                                      ARGV[3])
  if refused then return refused end
end

-- index key types and unique claims: every index (KEYS[7..], less the stream when events
-- are on), its entries from ARGV[12]
local nindexes = #KEYS - 6 - (ARGV[10] ~= "" and 1 or 0)
local described = ARGV[5] ~= "" and cmsgpack.unpack(ARGV[5]) or nil
-- (index i is read at KEYS[6 + i]: quadruples of another count would claim uniqueness in
-- the wrong index, so they are refused before anything is written)
if described and #described ~= 4 * nindexes then
  return redis.error_reply("ERR insert.lua: " .. #described .. " index quadruple items for "
                           .. nindexes .. " indexes")
end
local fields = cmsgpack.unpack(ARGV[4])
local listed
if ARGV[12] and ARGV[12] ~= "" then
  listed = cmsgpack.unpack(ARGV[12])
else  -- (not sent: each index's netstring list of ARGV[4], parsed, as save.lua reads it)
  local values, manifests = {}, cmsgpack.unpack(ARGV[6])
  for i = 1, #fields, 2 do values[fields[i]] = fields[i + 1] end
  listed = {}
  rare = rare or cold_paths()
  for i = 1, nindexes do listed[i] = rare.unpack_list(values[manifests[i]]) end
end
for i = 1, nindexes do
  local key, new = KEYS[6 + i], listed[i]
  local unique = described and described[4 * i - 1] == "1"
  -- (an index with entries to add proves its type by that ZADD, below)
  -- (type_ok() in line: the common path names no function it does not call)
  if unique or #new == 0 then
    local t = redis.call("TYPE", key).ok
    if t ~= "none" and t ~= "zset" then return {"WRONGTYPE", key} end
  end
  if unique then
    rare = rare or cold_paths()
    for _, member in ipairs(new) do
      local holder = rare.unique_holder(key, member, idkey, doc_prefix)
      if holder then return {"UNIQUE", described[4 * i], holder} end
    end
  end
end

-- a new id, as save.lua takes it: after every other check, counter values a user took
-- skipped, given back on a refusal after it
-- (a refusal after them gives them back: give_back_ids(), from the cold table)
local increments, counter = 0, nil
if allocating then
  local free = false
  local n
  for _ = 1, 1000 do
    local counted = redis.pcall("INCR", KEYS[4])
    if type(counted) ~= "number" then
      -- (another type, or a string that is not a count, e.g. "+13", met by the first
      -- INCR: the counter's WRONGTYPE refusal, as writer.id_counter() types it; any other
      -- error, an overflow, is raised, what earlier passes took given back first)
      if string.find(counted.err, "WRONGTYPE", 1, true)
          or string.find(counted.err, "not an integer", 1, true) then
        return {"WRONGTYPE", KEYS[4]}
      end
      if increments > 0 then
        rare = rare or cold_paths()
        rare.give_back_ids(KEYS[4], increments, counter)
      end
      error(counted)
    end
    increments, counter = increments + 1, counted
    -- (tostring is exact below 1e14, "%.14g"; a string.format costs several times more)
    n = counted < 1e14 and tostring(counted) or string.format("%.0f", counted)
    if redis.call("EXISTS", doc_key .. n, meta_key .. n) == 0 then free = true; break end
  end
  idkey = "\1" .. string.char(32 + #n) .. n
  doc_key, meta_key = doc_key .. n, meta_key .. n
  if not free then  -- (every one of 1000 taken: refused, or an expired one's to purge)
    rare = rare or cold_paths()
    local refused = rare.insert_refusal(idkey, doc_key, meta_key, KEYS[3], KEYS[5], ARGV[6],
                                        7, ARGV[3])
    if refused then rare.give_back_ids(KEYS[4], increments, counter); return refused end
  end
end

-- writes: the id's ZADD first, then each index's entries (one ZADD each, whose first write
-- there proves its type), then the event; a WRONGTYPE error of any is a refusal, and what
-- was written before it is taken back (the event, which cannot be, comes last)
local added, refused = typed(KEYS[3], "ZADD", KEYS[3], 0, idkey)
if refused then
  if allocating then
    rare = rare or cold_paths()
    rare.give_back_ids(KEYS[4], increments, counter)
  end
  return refused
end
local written = 0
for i = 1, nindexes do
  local key, new = KEYS[6 + i], listed[i]
  local n, _ = #new, nil
  if n == 1 then  -- (a scalar field's one entry: no argument list made)
    _, refused = typed(key, "ZADD", key, "0", new[1] .. idkey)
  elseif n > 500 then  -- (more than one ZADD: change_entries chunks them)
    local add = {}
    for j = 1, n do add[j] = new[j] .. idkey end
    rare = rare or cold_paths()
    refused = rare.change_entries(key, {}, add)
  elseif n > 0 then
    local args = {}
    for j = 1, n do args[2 * j - 1], args[2 * j] = "0", new[j] .. idkey end
    _, refused = typed(key, "ZADD", key, unpack(args))
  end
  if refused then break end
  written = i
end
local version, shown
if not refused then
  version, shown = take_version_text(KEYS[6])  -- (its text, made once: event, clock, meta)
  if EVENTS then refused = emit_first("create", idkey, shown, ARGV[3], nil, ARGV[2]) end
end
if refused then  -- (the entries added so far, as take_back_entries reads them)
  local taken, none = {}, {}
  for i = 1, written do
    local add = {}
    for j, member in ipairs(listed[i]) do add[j] = member .. idkey end
    taken[i] = {key = KEYS[6 + i], drop = none, add = add}
  end
  rare = rare or cold_paths()
  rare.take_back_entries(taken, written)
  if added == 1 then redis.call("ZREM", KEYS[3], idkey) end
  if allocating then rare.give_back_ids(KEYS[4], increments, counter) end
  return refused
end
write_clock(KEYS[6], shown)
store_taken("insert", idkey, doc_key, meta_key, ARGV[2], ARGV[7], ARGV[3], fields, false,
            shown, KEYS[5])
-- bounded housekeeping: purge a few documents whose expiry is due (only when the schedule
-- had entries)
if scheduled > 0 then
  rare = rare or cold_paths()
  rare.sweep(8, doc_prefix, ARGV[9], KEYS[3], KEYS[5],
             rare.index_records(cmsgpack.unpack(ARGV[6]), 7), rare.write_time_ms())
end
return {"OK", version, idkey}
