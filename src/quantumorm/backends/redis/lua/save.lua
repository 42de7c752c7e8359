#!lua
-- save.lua: compare-and-set update of one stored document with its index entries (an
-- insert is insert.lua's, which reads the same arguments; a batch's, insert_many.lua's).
--
-- The shebang declares a writer without allow-oom: above maxmemory the server refuses the
-- script before it starts (without it, a first write that frees memory, such as ZREM, lets
-- the rest run past the limit). Needs Redis 7.0 or newer.
-- Every check runs before the first write (Redis does not roll back a failed script). The
-- document JSON is stored verbatim: this script never decodes it. What the script must read
-- (version, the index entries written last time) lives in the meta hash.
--
-- KEYS[1]   document key
-- KEYS[2]   meta hash key
-- KEYS[3]   the partition's id index (ZSET, score 0, member = id key)
-- KEYS[4]   unused (insert.lua's id sequence: the caller passes a key of the same
--           partition so that every key is in one slot)
-- KEYS[5]   the partition's TTL schedule (ZSET, score = expire-at ms, member = id key)
-- KEYS[6]   the partition's state hash: version clock, schema layout (see _prelude.lua)
-- KEYS[7..] every index key of the model (ZSET, score 0, member = value encodings .. id key)
-- ARGV[1]   "update" (anything else is an error: an insert is insert.lua's; an update of
--           some fields whatever the stored version, with no read before, is patch.lua's)
-- ARGV[2]   expected version
-- ARGV[3]   id key
-- ARGV[4]   document JSON
-- ARGV[5]   write id, 16 characters (kept beside the version: a resent write that finds it
--           there was applied by its first attempt and reports success without a change)
-- ARGV[6]   MessagePack array of pairs: meta field name, netstring list of value encodings
-- ARGV[7]   MessagePack array of quadruples, one per index this write touches: KEYS
--           position, meta field holding the index's entries, "1" to enforce uniqueness,
--           index name
-- ARGV[8]   MessagePack array: the meta field of every index, in KEYS[7..] order
-- ARGV[9]   expiry: "keep" (as it is), "persist" (none), or milliseconds from now
-- ARGV[10]  document key prefix    ARGV[11]  meta key prefix
-- ARGV[12]  change events: "" (none), the spec events_on() reads, or the stream's MAXLEN
--           alone (digits: a stream entry without the document, no Pub/Sub, the usual
--           events, read with no MessagePack to unpack); the stream is KEYS[#KEYS]
-- ARGV[13]  MessagePack array of the changed field names (the event's "f"), "" for all
-- ARGV[14]  the caller's schema layout ("" for none)
-- ARGV[15]  absent or "" (an update), or a MessagePack array with, per index of ARGV[7] (in its
--           order), the array of its value encodings: ARGV[6]'s netstrings, decoded (sent
--           when the write touches every index: one decode instead of a parse per index)
--
-- Expiry: the document key expires (SET ... PXAT) and is scheduled in KEYS[5]; its meta hash
-- and index entries stay until a sweep (this script sweeps a few due documents after every
-- write) or a write that meets them purges them. Readers check that documents exist.
-- Returns   {"OK", version, id key} | {"VERSION", actual} | {"MISSING"}
--           | {"LAYOUT", stored layout} (the caller's schema is outdated: nothing written)
--           | {"UNIQUE", index name, id key of the holder} | {"WRONGTYPE", key}
--           | {"LOCKED", record key} (a prepared transaction holds the document)
--           | {"DAMAGED", meta hash key, field} (a field of the meta hash does not read:
--             nothing written; repair() rebuilds it from the document)
-- luacheck: globals redis KEYS ARGV cmsgpack
-- uses: _write
-- The shared definitions only the rare paths use are made when one is taken (cold_paths(),
-- luachunks.py), not on every call, and read as fields of ``rare``: a lock, a resent
-- write, an expired document's purge, another version or a damaged meta hash, a unique
-- claim, a refused write, a sweep.
-- cold: lock_holder applied applied_in stream_refusal index_records bad_index purge_listed
-- cold: bad_version damaged unique_holder take_back_entries sweep write_time_ms type_ok

-- (an insert sent here would be taken for an update of a missing document: refused loudly)
if ARGV[1] ~= "update" then return redis.error_reply("ERR save.lua only updates") end
local idkey = ARGV[3]
local doc_key, meta_key = KEYS[1], KEYS[2]
local doc_prefix, meta_prefix = ARGV[10], ARGV[11]
local rare  -- (cold_paths(), made on the first rare path taken)
-- (every index of the model, in KEYS[7..] order, what a purge or a sweep writes, is
-- index_records(cmsgpack.unpack(ARGV[8]), 7): made where one is needed, most writes do
-- neither. No function is made for it: a closure is made each time its definition runs,
-- on every call, and is garbage the collector sweeps; see also the update's checks below)
-- What each command serves (commands per write are the server's main cost; see typed()):
-- the state hash's HMGET: the layout refusal, the version clock, the hash's type; one
-- EXISTS of the TTL schedule and the lock hash: both absent, the usual case, says there is
-- no sweep to do, no lock; else the schedule's ZCARD (its type, and whether a sweep can
-- have anything to do) and the lock hash's check, each on its own (schedule_and_locks).
-- The stream's type is proven by the XADD itself (emit_first), which comes after the
-- writes of the entries that change (which prove the types of the indexes where no unique
-- claim is made), all of which a refusal takes back.
local scheduled, others  -- (others: whether the lock hash exists)
do
  local refused = state_check(KEYS[6], ARGV[14], true)
  if refused then return refused end
  scheduled, others, refused = schedule_and_locks(KEYS[5], KEYS[6])
  if refused then return refused end
  events_unchecked(ARGV[12], KEYS[#KEYS])  -- (digits: the stream's MAXLEN alone)
end
if others > 0 then  -- (a document of a prepared transaction: lock_holder())
  rare = cold_paths()
  local holder = rare.lock_holder(KEYS[6], idkey, true)
  -- (a resent write applied the first time, before the lock was taken, is recognised by its
  -- write id below: it is not refused)
  if holder and not (rare.type_ok(meta_key, "hash") and rare.applied(meta_key, ARGV[5])) then
    return {"LOCKED", holder}
  end
end

-- the indexes this write touches, with their new entries (ARGV[15], else ARGV[6]'s)
local fields = cmsgpack.unpack(ARGV[6])
local listed = ARGV[15] and ARGV[15] ~= "" and cmsgpack.unpack(ARGV[15]) or nil
local described = cmsgpack.unpack(ARGV[7])
local indexes = {}
for i = 1, #described / 4 do
  local base = 4 * (i - 1)
  -- (every field a record gets is named here, nil for now: the constructor sizes the
  -- table for all of them, where each one added later could make it grow again)
  indexes[i] = {key = KEYS[tonumber(described[base + 1])], field = described[base + 2],
                unique = described[base + 3] == "1", name = described[base + 4],
                old = nil, new = nil, drop = nil, add = nil}
end

-- 1. identity and version --------------------------------------------------------------
-- An update reads, in one HMGET, the version, the recent write ids and the entries the
-- touched indexes hold now; the TYPE of the document key tells both its type and whether
-- it is alive (an expired document's meta hash stays until a purge): see below, where it
-- runs in line (no closure made for it on every call).
local seen  -- the meta hash's "r"

-- the id index: an update refuses it when it holds another type too (a model whose keys
-- hold foreign data is refused whole, whichever write it is)
-- (type_ok() in line, here and below: the common path names no function it can do without)
do
  local t = redis.call("TYPE", KEYS[3]).ok
  if t ~= "none" and t ~= "zset" then return {"WRONGTYPE", KEYS[3]} end
end
local json, changed = ARGV[4], ARGV[13] ~= "" and ARGV[13] or nil
do
  local t = redis.call("TYPE", doc_key).ok
  if t ~= "none" and t ~= "string" then return {"WRONGTYPE", doc_key} end
  local alive = t == "string"
  local got, refused
  if #indexes == 1 then  -- (the common updates: no list of fields made for the HMGET)
    got, refused = typed(meta_key, "HMGET", meta_key, "v", "r", indexes[1].field)
  elseif #indexes == 0 then
    got, refused = typed(meta_key, "HMGET", meta_key, "v", "r")
  else
    local wanted = {"v", "r"}
    for i, index in ipairs(indexes) do wanted[i + 2] = index.field end
    got, refused = typed(meta_key, "HMGET", meta_key, unpack(wanted))
  end
  if refused then return refused end
  local stored = got[1] or nil
  seen = got[2]
  if alive and stored ~= ARGV[2] then
    rare = rare or cold_paths()
    local version = rare.applied_in(seen or nil, ARGV[5])
    if version then return {"OK", version, idkey} end  -- a resent write applied before
  end
  if not alive then
    if stored then
      -- What an expired document left behind is purged before its id is refused: the
      -- purge writes the id index, the schedule and every index, so their types come first
      -- (the id index's and the schedule's are checked for every write).
      rare = rare or cold_paths()
      refused = rare.stream_refusal()  -- (its "expire" event: before the update's own)
      if refused then return refused end
      local all_indexes = rare.index_records(cmsgpack.unpack(ARGV[8]), 7)
      local bad = rare.bad_index(all_indexes)
      if bad then return {"WRONGTYPE", bad} end
      refused = rare.purge_listed(idkey, meta_key, KEYS[3], KEYS[5], all_indexes)
      if refused then return refused end
    end
    return {"MISSING"}
  end
  if not stored then return {"MISSING"} end
  if stored ~= ARGV[2] then  -- (another version, or one that does not read)
    rare = rare or cold_paths()
    return rare.bad_version(meta_key, stored) or {"VERSION", stored}
  end
  for i, index in ipairs(indexes) do
    index.old = read_list(got[i + 2] or nil)
    if not index.old then
      rare = rare or cold_paths()
      return rare.damaged(meta_key, index.field)
    end
  end
end

-- 2. index key types and unique claims --------------------------------------------------
for i, index in ipairs(indexes) do
  if listed then
    index.new = listed[i]
  else  -- (ARGV[6]'s pair of its meta field: a write touches few, no table of them made)
    local pair = nil
    for j = 1, #fields, 2 do
      if fields[j] == index.field then pair = fields[j + 1]; break end
    end
    index.new = unpack_list(pair)  -- (none sent: no entries, as a missing pair always read)
  end
  index.drop, index.add = entries_diff(idkey, index.old, index.new)
  -- (a write proves the type of an index by its first write there, see 3., unless it
  -- makes a unique claim in it first or has nothing to write there)
  if index.unique or #index.drop + #index.add == 0 then
    local t = redis.call("TYPE", index.key).ok
    if t ~= "none" and t ~= "zset" then return {"WRONGTYPE", index.key} end
  end
  if index.unique then
    rare = rare or cold_paths()
    for _, member in ipairs(index.new) do
      local holder = rare.unique_holder(index.key, member, idkey, doc_prefix)
      if holder then return {"UNIQUE", index.name, holder} end
    end
  end
end

-- 3. writes (nothing above has written but the purge of an expired document's leftovers,
-- which keeps the indexes exact whatever follows) -------------------------------------------
local version
-- The changed entries of each index (the first write in each proves its key's type:
-- change_entries), then the event (the version it names is taken, then written): a
-- WRONGTYPE error of any is a refusal, and what was written before it is taken back (the
-- event, which cannot be, comes last of them)
local refused = nil
local written, shown = 0, nil  -- (the indexes whose entries are written; the version text)
for i, index in ipairs(indexes) do
  refused = change_entries(index.key, index.drop, index.add)
  if refused then break end
  written = i
end
if not refused then
  version, shown = take_version_text(KEYS[6])  -- (its text, made once: event, clock, meta)
  if EVENTS then refused = emit_first("update", idkey, shown, ARGV[5], changed, json) end
end
if refused then  -- (one place that takes back: no function made for it on every call)
  rare = rare or cold_paths()
  rare.take_back_entries(indexes, written)
  return refused
end
write_clock(KEYS[6], shown)
store_taken("update", idkey, doc_key, meta_key, json, ARGV[9], ARGV[5], fields, seen or false,
            shown, KEYS[5])
-- bounded housekeeping: purge a few documents whose expiry is due (only when the schedule
-- had entries)
if scheduled > 0 then
  rare = rare or cold_paths()
  rare.sweep(8, doc_prefix, meta_prefix, KEYS[3], KEYS[5],
             rare.index_records(cmsgpack.unpack(ARGV[8]), 7), rare.write_time_ms())
end
return {"OK", version, idkey}
