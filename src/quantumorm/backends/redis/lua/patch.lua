#!lua
-- patch.lua: set some top-level fields of one stored document, whatever its version, without
-- a read before (``filter(id=x).update(...)``): the stored JSON with the new values' texts
-- in place of the old ones, its index entries moved, a new version, its change event.
--
-- No allow-oom (as save.lua): above maxmemory the server refuses the script before it starts.
-- Every check runs before the first write (Redis does not roll back a failed script). The
-- document is never decoded and encoded again: the new value texts are spliced into the
-- stored text (patch_json, _write.lua), every other byte stays as it was.
-- Arguments are plain strings, counted (no MessagePack to unpack on the common path).
--
-- KEYS[1]   document key            KEYS[2]   meta hash key
-- KEYS[3]   the partition's id index (ZSET)
-- KEYS[4]   the partition's TTL schedule (ZSET, score = expire-at ms, member = id key)
-- KEYS[5]   the partition's state hash: version clock, schema layout (see _prelude.lua)
-- KEYS[6..] every index key of the model, then the stream (KEYS[#KEYS]) with events
-- ARGV[1]   id key                  ARGV[2]   write id, 16 characters (see applied_in)
-- ARGV[3]   expiry: "keep" (as it is), "persist" (none), or milliseconds from now
-- ARGV[4]   the largest document allowed, in bytes
-- ARGV[5]   the caller's schema layout ("" for none)
-- ARGV[6]   change events: the stream's MAXLEN ("" for no stream)
-- ARGV[7]   "1" when an event carries the document    ARGV[8]   Pub/Sub channel ("" none)
--           (neither a stream nor a channel: no events)
-- ARGV[9]   MessagePack array: the meta field of every index, in KEYS[6..] order (read only
--           by a purge or a sweep)
-- ARGV[10]  the event's "f" (MessagePack array of names) when every member's value changes
-- ARGV[11]  n, the members to set      ARGV[12]  k, the meta field pairs
-- ARGV[13]  j, the indexes the patch touches
-- then n key texts (the stored names as JSON, quoted), n value texts (JSON, as documents
-- are encoded), n names (each member's, for the event's "f"); then k pairs: meta field,
-- netstring list of value encodings; then j quadruples: KEYS position, the number of the
-- pair holding the index's entries, "1" to enforce uniqueness, index name
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
local n, k = tonumber(ARGV[11]), tonumber(ARGV[12])
local at_values, at_names = 13 + n, 13 + 2 * n  -- (the key texts start at 14)
local at_pairs = 13 + 3 * n
local at_indexes = at_pairs + 2 * k
local rare  -- (cold_paths(), made on the first rare path taken)

-- the document and meta key prefixes (a sweep's, a unique claim's), from this document's
local function prefixes()
  rare = rare or cold_paths()
  local size = #rare.escaped_id(idkey)
  return string.sub(doc_key, 1, -size - 1), string.sub(meta_key, 1, -size - 1)
end

-- every index of the model, in KEYS[6..] order: what a purge or a sweep writes (built when
-- one is needed)
local function every_index()
  rare = rare or cold_paths()
  return rare.index_records(cmsgpack.unpack(ARGV[9]), 6)
end

-- The checks that cost no write, in save.lua's order: the state hash (layout, clock, type),
-- one EXISTS of the schedule and the lock hash (see schedule_and_locks), a lock, the id
-- index's type (a model whose keys hold foreign data is refused whole).
local refused = state_check(KEYS[5], ARGV[5], true)
if refused then return refused end
local scheduled, others
scheduled, others, refused = schedule_and_locks(KEYS[4], KEYS[5])
if refused then return refused end
if ARGV[6] ~= "" or ARGV[8] ~= "" then  -- (events_on's spec, sent flat; the XADD proves
  -- the stream's type: emit_first)
  EVENTS = {maxlen = ARGV[6], doc = ARGV[7] == "1", channel = ARGV[8], key = KEYS[#KEYS]}
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
local j = tonumber(ARGV[13])
local got
if j == 1 then  -- (the common patch: one index)
  got, refused = typed(meta_key, "HMGET", meta_key, "v", "r",
                       ARGV[at_pairs + 2 * tonumber(ARGV[at_indexes + 2]) - 1])
else
  local wanted = {"v", "r"}
  for i = 1, j do
    wanted[i + 2] = ARGV[at_pairs + 2 * tonumber(ARGV[at_indexes + 4 * i - 2]) - 1]
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
  local all = every_index()
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
  json, differs = patch_json_one(stored, ARGV[14], ARGV[at_values + 1])
  count = differs and 1 or 0
end
if not json then
  rare = rare or cold_paths()
  local given, names = {}, {}
  for i = 1, n do
    given[i] = {ARGV[13 + i], ARGV[at_values + i]}
    names[i] = ARGV[at_names + i]
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
if #json > tonumber(ARGV[4]) then return {"TOOLARGE", #json} end
if count == n then changed = ARGV[10] elseif not changed then changed = cmsgpack.pack({}) end

-- Index entries: the touched indexes' moves, their keys' types, unique claims.
local moved = {}  -- {key, drop, add} of each index whose entries change
for i = 1, j do
  local base = at_indexes + 4 * (i - 1)
  local index_key = KEYS[tonumber(ARGV[base + 1])]
  local new = ARGV[at_pairs + 2 * tonumber(ARGV[base + 2])]
  local old = got[i + 2] or ""
  local unique = ARGV[base + 3] == "1"
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
        return damaged(meta_key, ARGV[at_pairs + 2 * tonumber(ARGV[base + 2]) - 1])
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
    local doc_prefix = prefixes()  -- (rare made)
    for _, member in ipairs(rare.unpack_list(new)) do
      local holder = rare.unique_holder(index_key, member, idkey, doc_prefix)
      if holder then return {"UNIQUE", ARGV[base + 4], holder} end
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
local version = take_version(KEYS[5])
local shown = string.format("%.0f", version)
if EVENTS then
  refused = emit_first("update", idkey, shown, write_id, changed, json)
  if refused then
    rare = rare or cold_paths()
    rare.take_back_entries(moved, #moved)
    return refused
  end
end
write_clock(KEYS[5], shown)
-- (the meta pairs straight from ARGV: no table of them)
store_taken("update", idkey, doc_key, meta_key, json, expiry, write_id, ARGV, seen or false,
            shown, KEYS[4], at_pairs + 1, at_indexes)
-- bounded housekeeping: purge a few documents whose expiry is due (only when the schedule
-- had entries)
if scheduled > 0 then
  local doc_prefix, meta_prefix = prefixes()
  rare.sweep(8, doc_prefix, meta_prefix, KEYS[3], KEYS[4], every_index(), write_time_ms())
end
return {"OK", version, idkey}
