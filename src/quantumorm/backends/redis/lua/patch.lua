#!lua
-- patch.lua: set some top-level fields of one stored document, whatever its version, without
-- a read before (``filter(id=x).update(...)``): the stored JSON with the new values' texts
-- in place of the old ones, its index entries moved, a new version, its change event.
--
-- No allow-oom (as save.lua): above maxmemory the server refuses the script before it starts.
-- Every check runs before the first write (Redis does not roll back a failed script). The
-- document is never decoded and encoded again: the new value texts are spliced into the
-- stored text (patch_json, _write.lua), every other byte stays as it was.
-- What every patch of a model and of a set of fields sends alike is one argument, one
-- MessagePack array of strings (each argument costs the server about 1,000 instructions
-- to take in, the unpack about 400 per string); the values apart. (One array, not strings
-- one after another: those are values returned at once, which overflow Lua's C stack past
-- about 8,000.)
--
-- KEYS[1]   document key            KEYS[2]   meta hash key
-- KEYS[3]   the partition's id index (ZSET)
-- KEYS[4]   the partition's TTL schedule (ZSET, score = expire-at ms, member = id key)
-- KEYS[5]   the partition's state hash: version clock, schema layout (see _prelude.lua)
-- KEYS[6..] every index key of the model, then the stream (KEYS[#KEYS]) with events
-- ARGV[1]   id key                  ARGV[2]   write id, 16 characters (see applied_in)
-- ARGV[3]   expiry: "keep" (as it is), "persist" (none), or milliseconds from now
-- ARGV[4]   MessagePack array of strings (c[1], c[2]... below):
--   c[1]  the largest document allowed, in bytes
--   c[2]  the caller's schema layout ("" for none)
--   c[3]  change events: the stream's MAXLEN ("" for no stream)
--   c[4]  "1" when an event carries the document    c[5]  Pub/Sub channel ("" none)
--         (neither a stream nor a channel: no events)
--   c[6]  MessagePack array: the meta field of every index, in KEYS[6..] order (read only
--         by a purge or a sweep)
--   c[7]  the event's "f" (MessagePack array of names) when every member's value changes
--   c[8]  n, the members to set   c[9]  k, the meta fields to set   c[10]  j, the indexes
--         the patch touches
--   then n key texts (the stored names as JSON, quoted), n names (each member's, for the
--   event's "f"), k meta fields, j quadruples: KEYS position, the number of the meta field
--   holding the index's entries, "1" to enforce uniqueness, index name
-- ARGV[5..] n value texts (JSON, as documents are encoded), then k netstring lists of value
--           encodings, one per meta field
--
-- Returns   {"OK", version, id key} (nothing to change: the stored version, nothing written)
--           | {"MISSING"} | {"TOOLARGE", size} | {"CORRUPT"} (not a stored JSON object)
--           | {"COMPRESSED"} (the stored document is compressed, which a script cannot look
--             inside: nothing written, the caller reads and rewrites it)
--           | {"LAYOUT", stored layout} | {"UNIQUE", index name, id key of the holder}
--           | {"WRONGTYPE", key} | {"LOCKED", record key} (a prepared transaction holds it)
--           | {"DAMAGED", meta hash key, field} (a field of the meta hash does not read)
-- An expired document is MISSING (what it left behind is purged on the way).
-- luacheck: globals redis KEYS ARGV cmsgpack
-- uses: _write
-- The shared definitions only the rare paths use are made when one is taken (cold_paths(),
-- luachunks.py), not on every call, and read as fields of ``rare``: a purge, a lock, a
-- member the plain search cannot place, a list of more than one value, a unique claim, a
-- refused index write, a sweep.
-- cold: bad_index purge_listed stream_refusal lock_holder applied patch_json read_list
-- cold: entries_diff unpack_list unique_holder take_back_entries sweep index_records
-- cold: escaped_id

local doc_key, meta_key, idkey, write_id = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local c = cmsgpack.unpack(ARGV[4])
local n, k, j = tonumber(c[8]), tonumber(c[9]), tonumber(c[10])
local at_names, at_fields = 10 + n, 10 + 2 * n  -- (in c; the key texts start at c[11])
local at_indexes = at_fields + k
local at_lists = 4 + n  -- (in ARGV; the value texts start at ARGV[5])
-- (cold_paths(), made on the first rare path taken; there, rare.index_records(...) of c[6]
-- is every index of the model, in KEYS[6..] order, as a purge or a sweep writes them, and
-- the document and meta key prefixes are this document's keys less its escaped id. No
-- function of the body's own is made per call)
local rare

-- The checks that cost no write, in save.lua's order: the state hash (layout, clock, type),
-- one EXISTS of the schedule and the lock hash (see schedule_and_locks), a lock, the id
-- index's type (a model whose keys hold foreign data is refused whole).
local refused = state_check(KEYS[5], c[2], true)
if refused then return refused end
local scheduled, others
scheduled, others, refused = schedule_and_locks(KEYS[4], KEYS[5])
if refused then return refused end
if c[3] ~= "" or c[5] ~= "" then  -- (events_on's spec, sent flat; the XADD proves
  -- the stream's type: emit_first)
  EVENTS = {maxlen = c[3], doc = c[4] == "1", channel = c[5], key = KEYS[#KEYS]}
end
if others > 0 then  -- (the lock hash: a document of a prepared transaction, lock_holder())
  rare = rare or cold_paths()
  local holder = rare.lock_holder(KEYS[5], idkey, true)
  -- (a resent write applied the first time, before the lock was taken, is not refused)
  if holder and not (type_ok(meta_key, "hash") and rare.applied(meta_key, write_id)) then
    return {"LOCKED", holder}
  end
end
if not type_ok(KEYS[3], "zset") then return {"WRONGTYPE", KEYS[3]} end

-- The document (its GET tells its type and whether it is alive) and, in one HMGET, the
-- version, the recent write ids and the entries the touched indexes hold now.
local stored
stored, refused = typed(doc_key, "GET", doc_key)
if refused then return refused end
local got
if j == 1 then  -- (the common patch: one index)
  got, refused = typed(meta_key, "HMGET", meta_key, "v", "r",
                       c[at_fields + tonumber(c[at_indexes + 2])])
else
  local wanted = {"v", "r"}
  for i = 1, j do
    wanted[i + 2] = c[at_fields + tonumber(c[at_indexes + 4 * i - 2])]
  end
  got, refused = typed(meta_key, "HMGET", meta_key, unpack(wanted))
end
if refused then return refused end
local current, seen = got[1] or nil, got[2] or nil
if stored then
  local version = applied_in(seen, write_id)
  if version then return {"OK", version, idkey} end  -- a resent write applied before
elseif current then  -- expired: its leftovers are purged (their keys' types first)
  rare = rare or cold_paths()
  refused = rare.stream_refusal()  -- (its "expire" event)
  if refused then return refused end
  local all = rare.index_records(cmsgpack.unpack(c[6]), 6)
  local bad = rare.bad_index(all)
  if bad then return {"WRONGTYPE", bad} end
  return rare.purge_listed(idkey, meta_key, KEYS[3], KEYS[4], all) or {"MISSING"}
end
if not current or not stored then return {"MISSING"} end

-- The stored JSON with the new values in place (unchanged: nothing written).
stored = payload_of(stored)
-- a compressed document (quantumorm/compression.py) starts with the byte 0xFF, which no
-- JSON text does
if string.byte(stored, 1) == 255 then return {"COMPRESSED"} end
local json, count, changed  -- (how many members' texts change; the event's "f")
if n == 1 then  -- (the common patch: one member, its span proven with no scan)
  local differs
  json, differs = patch_json_one(stored, c[11], ARGV[5])
  count = differs and 1 or 0
end
if not json then
  rare = rare or cold_paths()
  local given, names = {}, {}
  for i = 1, n do
    given[i] = {c[10 + i], ARGV[4 + i]}
    names[i] = c[at_names + i]
  end
  local differing
  json, differing = rare.patch_json(stored, given, names)
  if not json then return {"CORRUPT"} end
  count = #differing
  if count < n then changed = cmsgpack.pack(differing) end
end
local expiry = ARGV[3]
if count == 0 and expiry == "keep" then
  return bad_version(meta_key, current) or {"OK", tonumber(current), idkey}
end
if #json > tonumber(c[1]) then return {"TOOLARGE", #json} end
if count == n then changed = c[7] elseif not changed then changed = cmsgpack.pack({}) end

-- Index entries: the touched indexes' moves, their keys' types, unique claims.
local moved = {}  -- {key, drop, add} of each index whose entries change
for i = 1, j do
  local base = at_indexes + 4 * (i - 1)
  local index_key = KEYS[tonumber(c[base + 1])]
  local field = tonumber(c[base + 2])
  local new = ARGV[at_lists + field]
  local old = got[i + 2] or ""
  local unique = c[base + 3] == "1"
  local drop, add
  if old ~= new then
    -- (a scalar field's lists hold one value each: no list nor set made of them)
    local was, now = sole_item(old), sole_item(new)
    if was and now then
      if was == now then drop, add = {}, {} else drop, add = {was .. idkey}, {now .. idkey} end
    else
      rare = rare or cold_paths()
      local listed = rare.read_list(old)
      if not listed then
        return damaged(meta_key, c[at_fields + field])
      end
      drop, add = rare.entries_diff(idkey, listed, rare.unpack_list(new))
    end
  end
  -- (the first write in an index proves its type, see change_entries; an index with
  -- nothing to write, or a unique claim to check first, is checked here)
  if (unique or not drop or #drop + #add == 0) and not type_ok(index_key, "zset") then
    return {"WRONGTYPE", index_key}
  end
  if unique then
    rare = rare or cold_paths()
    local doc_prefix = string.sub(doc_key, 1, -#rare.escaped_id(idkey) - 1)
    for _, member in ipairs(rare.unpack_list(new)) do
      local holder = rare.unique_holder(index_key, member, idkey, doc_prefix)
      if holder then return {"UNIQUE", c[base + 4], holder} end
    end
  end
  if drop and #drop + #add > 0 then
    moved[#moved + 1] = {key = index_key, drop = drop, add = add}
  end
end

-- Writes: the entries (the first write in each index proves its type), then the event (the
-- version it names taken first), each refusal taking back what came before it; then the
-- clock, the document and its meta hash.
for i, index in ipairs(moved) do
  refused = change_entries(index.key, index.drop, index.add)
  if refused then
    rare = rare or cold_paths()
    rare.take_back_entries(moved, i - 1)
    return refused
  end
end
-- (the version's text made of TIME's digits when it is the time: no "%.0f" of it)
local version, shown = take_version_text(KEYS[5])
if EVENTS then
  refused = emit_first("update", idkey, shown, write_id, changed, json)
  if refused then
    rare = rare or cold_paths()
    rare.take_back_entries(moved, #moved)
    return refused
  end
end
write_clock(KEYS[5], shown)
-- (the meta pairs: each meta field with its list)
local fields
if k == 1 then
  fields = {c[at_fields + 1], ARGV[at_lists + 1]}
else
  fields = {}
  for i = 1, k do fields[2 * i - 1], fields[2 * i] = c[at_fields + i], ARGV[at_lists + i] end
end
store_taken("update", idkey, doc_key, meta_key, json, expiry, write_id, fields, seen or false,
            shown, KEYS[4])
-- bounded housekeeping: purge a few documents whose expiry is due (only when the schedule
-- had entries)
if scheduled > 0 then
  rare = rare or cold_paths()
  local size = #rare.escaped_id(idkey)
  rare.sweep(8, string.sub(doc_key, 1, -size - 1), string.sub(meta_key, 1, -size - 1), KEYS[3],
             KEYS[4], rare.index_records(cmsgpack.unpack(c[6]), 6), write_time_ms())
end
return {"OK", version, idkey}
