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
-- ARGV[4]   MessagePack pairs one after another (not an array): meta field name, netstring
--           list of value encodings (passed on to the meta hash's HSET as cmsgpack.unpack
--           returns them: no table made of them). Format 3: only what the meta hash keeps:
--           every index's pairs for a document with an expiry (a sweep record), else the
--           listed indexes' (bench/format3.md, section 1), "" for none; format 2: every
--           index's
-- ARGV[5]   MessagePack quadruples one after another (not an array), one per index of the
--           model in KEYS[7..] order: KEYS position (7, 8...: not read), meta field, "1" to
--           enforce uniqueness, index name; ""
--           when the model has no unique index (nothing to unpack: every index is
--           KEYS[6 + i], none enforced)
-- ARGV[6]   MessagePack array: the meta field of every index (a purge's, a sweep's)
-- ARGV[7]   expiry: "keep" or "persist" (none), or milliseconds from now
-- ARGV[8]   document key prefix    ARGV[9]  meta key prefix
-- ARGV[10]  change events: "", the spec events_on() reads, or the stream's MAXLEN alone
--           (digits); the stream is KEYS[#KEYS]
-- ARGV[11]  the caller's schema layout ("" for none)
-- ARGV[12]  per index of ARGV[5], its count of value encodings then the encodings
--           (ARGV[4]'s netstrings, decoded), MessagePack values one after another, as
--           insert_many.lua reads them (gathered by one table constructor: cmsgpack fills an
--           array's table one item at a time, resizing it as it grows); for a document with
--           very many (writes._FLAT_BYTES), one MessagePack array with, per index, the array
--           of its encodings; "" (or absent): read from ARGV[4] (format 2 only: a format-3
--           insert always sends it)
-- ARGV[13]  "2": store the document in format 2 (a meta hash with "v", "r" and every
--           index's list), as releases before format 3 did, for tests of such documents
--           (writes.NEW_FORMAT); absent: format 3
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
-- a sweep, an event other than a stream's alone. The common path (an id allocated or a
-- free one given, no schedule, no lock, no unique index, ARGV[12] sent, a stream's event or
-- none) calls none of them: it runs _write.lua's state_check, schedule_and_locks,
-- events_unchecked, typed, take_version_text, emit_first, write_clock and store_taken
-- written out in place (a change to one of those must be made here too), the same commands
-- in the same order, so that the only function made per call is cold_paths() (each
-- function made per call costs the server about 1,100 instructions, each C function called
-- about 800: errors are read as ``.err`` or by a reply's value, not by type()).
-- cold: lock_holder applied insert_refusal index_records unique_holder change_entries
-- cold: take_back_entries sweep unpack_list give_back_ids type_ok events_unchecked
-- cold: emit_first

local idkey = ARGV[1]
local doc_key, meta_key, state_key = KEYS[1], KEYS[2], KEYS[6]
local doc_prefix = ARGV[8]
local allocating = idkey == ""
local rare  -- (cold_paths(), made on the first rare path taken)
-- Change events: ARGV[10]. The usual spec, the stream's MAXLEN alone (digits), is read here
-- (stream_max); EVENTS, events_unchecked()'s table, is made only where a rare path may emit
-- (an expired document's purge, an event other than a stream's alone, a sweep).
local spec = ARGV[10]
local stream_max
if spec ~= "" then
  local first = string.byte(spec, 1)
  if first >= 48 and first <= 57 then stream_max = spec end
end
-- The state hash's HMGET, the schedule's and the lock hash's EXISTS (an insert of a known
-- id: with its document key and meta hash), as in save.lua; an allocation checks no lock.
-- (state_check in line; typed()'s checks written out: an error reply is a refusal when
-- WRONGTYPE, else raised)
local clock, new_layout
local scheduled, others
do
  local got = redis.pcall("HMGET", state_key, "layout", "clock")
  if got.err then
    if string.find(got.err, "WRONGTYPE", 1, true) then return {"WRONGTYPE", state_key} end
    error(got)
  end
  clock = tonumber(got[2] or "0") or 0
  local layout = ARGV[11]
  -- (the same text is the same layout: the usual case, with no number read)
  if layout and layout ~= "" and got[1] ~= layout then
    -- (a layout that is not plain digits does not read: refused before anything is
    -- written, as layout_refusal() does)
    local stored = string.find(got[1] or "0", "^%d+$") and tonumber(got[1] or "0")
    if not stored then error({err = "DAMAGED " .. state_key .. " layout"}) end
    local mine = tonumber(layout)
    if stored > mine then return {"LAYOUT", string.format("%.0f", stored)} end
    if stored < mine then new_layout = layout end  -- (recorded with the clock)
  end
  if allocating then
    -- (the ZCARD's reply: a count, 0 when there is no schedule; else perhaps an error)
    scheduled, others = redis.pcall("ZCARD", KEYS[5]), 0
    if scheduled ~= 0 and type(scheduled) ~= "number" then
      if string.find(scheduled.err, "WRONGTYPE", 1, true) then return {"WRONGTYPE", KEYS[5]} end
      error(scheduled)
    end
  else  -- (schedule_and_locks in line)
    local found = redis.call("EXISTS", KEYS[5], string.sub(state_key, 1, -6) .. "locks",
                             doc_key, meta_key)
    scheduled, others = 0, 0
    if found > 0 then
      local count = redis.pcall("ZCARD", KEYS[5])
      if type(count) ~= "number" then
        if string.find(count.err, "WRONGTYPE", 1, true) then return {"WRONGTYPE", KEYS[5]} end
        error(count)
      end
      scheduled, others = count, found - (count > 0 and 1 or 0)
    end
  end
end

-- (any other spec is unpacked here, before anything is written, as events_unchecked did)
if spec ~= "" and not stream_max then
  rare = cold_paths()
  rare.events_unchecked(spec, KEYS[#KEYS])
end
if others > 0 then  -- (a document of a prepared transaction: lock_holder())
  rare = rare or cold_paths()
  if not EVENTS then rare.events_unchecked(spec, KEYS[#KEYS]) end  -- (a purge may emit)
  local holder = rare.lock_holder(state_key, idkey)
  -- (a resent insert applied before the lock was taken is recognised by its write id)
  if holder and not (rare.type_ok(meta_key, "hash") and rare.applied(meta_key, ARGV[3])) then
    -- (a format-3 document has no "r": its resend is found in its header's W by
    -- insert_refusal(), which writes nothing for a document alive)
    local raw = rare.type_ok(doc_key, "string") and redis.call("GET", doc_key)
    if raw and string.byte(raw, 1) == 1 then
      local refused = rare.insert_refusal(idkey, doc_key, meta_key, KEYS[3], KEYS[5], ARGV[6],
                                          7, ARGV[3])
      if refused and refused[1] == "OK" then return refused end
    end
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
local nindexes = #KEYS - 6 - (spec ~= "" and 1 or 0)
local described = ARGV[5] ~= "" and {cmsgpack.unpack(ARGV[5])} or nil
-- (index i is read at KEYS[6 + i]: quadruples of another count would claim uniqueness in
-- the wrong index, so they are refused before anything is written)
if described and #described ~= 4 * nindexes then
  return redis.error_reply("ERR insert.lua: " .. #described .. " index quadruple items for "
                           .. nindexes .. " indexes")
end
-- every index's value encodings in one list: per index its count, then its encodings
local listed
local members = ARGV[12]
if members and members ~= "" then
  -- (the arrays form is one MessagePack array: 0x90-0x9f, 0xdc or 0xdd first; the flat
  -- run starts with a count, an integer of any MessagePack width)
  local first = string.byte(members, 1)
  if first >= 144 and first <= 159 or first == 220 or first == 221 then
    local n = 0
    listed = {}
    for _, these in ipairs(cmsgpack.unpack(members)) do
      listed[n + 1] = #these
      for m = 1, #these do listed[n + 1 + m] = these[m] end
      n = n + 1 + #these
    end
  else
    listed = {cmsgpack.unpack(members)}
  end
else  -- (not sent: each index's netstring list of ARGV[4], parsed, as save.lua reads it)
  local fields, values, manifests = {cmsgpack.unpack(ARGV[4])}, {}, cmsgpack.unpack(ARGV[6])
  for i = 1, #fields, 2 do values[fields[i]] = fields[i + 1] end
  local n = 0
  listed = {}
  rare = rare or cold_paths()
  for i = 1, nindexes do
    local these = rare.unpack_list(values[manifests[i]])
    listed[n + 1] = #these
    for m = 1, #these do listed[n + 1 + m] = these[m] end
    n = n + 1 + #these
  end
end
local at = 1  -- (in listed: index i's count, its encodings after it)
for i = 1, nindexes do
  local key, n = KEYS[6 + i], listed[at]
  local unique = described and described[4 * i - 1] == "1"
  -- (an index with entries to add proves its type by that ZADD, below)
  -- (type_ok() in line: the common path names no function it does not call)
  if unique or n == 0 then
    local t = redis.call("TYPE", key).ok
    if t ~= "none" and t ~= "zset" then return {"WRONGTYPE", key} end
  end
  if unique then
    rare = rare or cold_paths()
    for j = at + 1, at + n do
      local holder = rare.unique_holder(key, listed[j], idkey, doc_prefix)
      if holder then return {"UNIQUE", described[4 * i], holder} end
    end
  end
  at = at + 1 + n
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
    if not EVENTS then rare.events_unchecked(spec, KEYS[#KEYS]) end  -- (a purge may emit)
    local refused = rare.insert_refusal(idkey, doc_key, meta_key, KEYS[3], KEYS[5], ARGV[6],
                                        7, ARGV[3])
    if refused then rare.give_back_ids(KEYS[4], increments, counter); return refused end
  end
end

-- writes: the id's ZADD first, then each index's entries (one ZADD each, whose first write
-- there proves its type), then the event; a WRONGTYPE error of any is a refusal, and what
-- was written before it is taken back (the event, which cannot be, comes last)
-- (typed()'s checks written out: a ZADD's reply is a count, else an error)
local added, refused = redis.pcall("ZADD", KEYS[3], 0, idkey), nil
if added ~= 1 and added ~= 0 then
  if not string.find(added.err, "WRONGTYPE", 1, true) then error(added) end
  if allocating then
    rare = rare or cold_paths()
    rare.give_back_ids(KEYS[4], increments, counter)
  end
  return {"WRONGTYPE", KEYS[3]}
end
local written = 0
at = 1
for i = 1, nindexes do
  local key, n, reply = KEYS[6 + i], listed[at], nil
  if n == 1 then  -- (a scalar field's one entry: no argument list made)
    reply = redis.pcall("ZADD", key, "0", listed[at + 1] .. idkey)
  elseif n > 500 then  -- (more than one ZADD: change_entries chunks them)
    local add = {}
    for j = 1, n do add[j] = listed[at + j] .. idkey end
    rare = rare or cold_paths()
    refused = rare.change_entries(key, {}, add)
    reply = n
  elseif n > 0 then
    local args = {}
    for j = 1, n do args[2 * j - 1], args[2 * j] = "0", listed[at + j] .. idkey end
    reply = redis.pcall("ZADD", key, unpack(args))
  else
    reply = n
  end
  at = at + 1 + n
  -- (a count of n entries added, the usual reply, is no error; any other is looked at)
  if reply ~= n and type(reply) ~= "number" then
    if not string.find(reply.err, "WRONGTYPE", 1, true) then error(reply) end
    refused = {"WRONGTYPE", key}
  end
  if refused then break end
  written = i
end
local version, shown, now_us
if not refused then
  -- (take_version_text in line: TIME's digits read by arithmetic, as tonumber reads them;
  -- the version's text made of them when it is the time, the usual case)
  local t = redis.call("TIME")
  now_us = t[1] * 1000000 + t[2]
  version = clock + 1
  if now_us > version then version = now_us end
  if version == now_us then
    shown = t[1] .. string.sub("00000", #t[2]) .. t[2]
  else
    shown = string.format("%.0f", version)
  end
  if stream_max then
    -- (emit_first's usual event, a stream's alone, with its write id)
    local reply = redis.pcall("XADD", KEYS[#KEYS], "MAXLEN", "~", stream_max, "*", "op",
                              "create", "id", idkey, "v", shown, "w", ARGV[3])
    if reply.err then  -- (a string's .err is nil, read from its metatable)
      if not string.find(reply.err, "WRONGTYPE", 1, true) then error(reply) end
      refused = {"WRONGTYPE", KEYS[#KEYS]}
    end
  elseif spec ~= "" then  -- (EVENTS made above)
    refused = rare.emit_first("create", idkey, shown, ARGV[3], nil, ARGV[2])
  end
end
if refused then  -- (the entries added so far, as take_back_entries reads them)
  local taken, none = {}, {}
  at = 1
  for i = 1, written do
    local add = {}
    for j = 1, listed[at] do add[j] = listed[at + j] .. idkey end
    taken[i] = {key = KEYS[6 + i], drop = none, add = add}
    at = at + 1 + listed[at]
  end
  rare = rare or cold_paths()
  rare.take_back_entries(taken, written)
  if added == 1 then redis.call("ZREM", KEYS[3], idkey) end
  if allocating then rare.give_back_ids(KEYS[4], increments, counter) end
  return refused
end
-- (write_clock: a newer layout of the caller in the same HSET)
if new_layout then
  redis.call("HSET", state_key, "clock", shown, "layout", new_layout)
else
  redis.call("HSET", state_key, "clock", shown)
end
-- (store_taken of an insert: the document with its expiry, "keep" or "persist" (a new
-- document has no schedule entry: any leftover one went with its purge) or milliseconds
-- from the time the version was taken; then what the meta hash keeps)
local expiry = ARGV[7]
local expiring = expiry ~= "keep" and expiry ~= "persist"
local at = expiring and math.floor(now_us / 1000) + tonumber(expiry)
if ARGV[13] ~= "2" then
  -- format 3 (bench/format3.md, section 1): the version and this write's id in the header
  -- (headed() in line: a new document has no older writes); the meta hash only as a sweep
  -- record (an expiry: its version and every index's pairs) or with the listed indexes'
  -- pairs (ARGV[4]: what the client sent for it, "" for none)
  local value = "\1" .. shown .. "\0" .. ARGV[3] .. "\0" .. ARGV[2]
  if expiring then
    redis.call("SET", doc_key, value, "PXAT", at)
    redis.call("ZADD", KEYS[5], at, idkey)
    if ARGV[4] == "" then
      redis.call("HSET", meta_key, "v", shown)
    else
      redis.call("HSET", meta_key, "v", shown, cmsgpack.unpack(ARGV[4]))
    end
  else
    redis.call("SET", doc_key, value)
    if ARGV[4] ~= "" then redis.call("HSET", meta_key, cmsgpack.unpack(ARGV[4])) end
  end
else  -- (format 2, ARGV[13] "2": a meta hash with the version, the write id, every list)
  if expiring then
    redis.call("SET", doc_key, "\0" .. shown .. "\0" .. ARGV[2], "PXAT", at)
    redis.call("ZADD", KEYS[5], at, idkey)
  else
    redis.call("SET", doc_key, "\0" .. shown .. "\0" .. ARGV[2])
  end
  -- (a version of 16 digits, the time's, has no padding: no call)
  redis.call("HSET", meta_key, "v", shown, "r",
             ARGV[3] .. (#shown < 16 and string.rep("0", 16 - #shown) or "") .. shown,
             cmsgpack.unpack(ARGV[4]))
end
-- bounded housekeeping: purge a few documents whose expiry is due (only when the schedule
-- had entries)
if scheduled > 0 then
  rare = rare or cold_paths()
  if not EVENTS then rare.events_unchecked(spec, KEYS[#KEYS]) end  -- (a purge emits)
  rare.sweep(8, doc_prefix, ARGV[9], KEYS[3], KEYS[5],
             rare.index_records(cmsgpack.unpack(ARGV[6]), 7), math.floor(now_us / 1000))
end
return {"OK", version, idkey}
