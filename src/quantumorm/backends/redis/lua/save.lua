#!lua
-- save.lua: insert, or compare-and-set update, of one document with its index entries.
--
-- The shebang declares a writer without allow-oom: above maxmemory the server refuses the
-- script before it starts (without it, a first write that frees memory, such as ZREM, lets
-- the rest run past the limit). Needs Redis 7.0 or newer.
-- Every check runs before the first write (Redis does not roll back a failed script). The
-- document JSON is stored verbatim: this script never decodes it. What the script must read
-- (version, the index entries written last time) lives in the meta hash.
--
-- KEYS[1]   document key; when ARGV[3] == "" the document key prefix (the id is allocated here)
-- KEYS[2]   meta hash key; when allocating, its prefix
-- KEYS[3]   the partition's id index (ZSET, score 0, member = id key)
-- KEYS[4]   the id sequence (string counter) when allocating; otherwise unused (the
--           caller passes a key of the same partition so that every key is in one slot)
-- KEYS[5]   the partition's TTL schedule (ZSET, score = expire-at ms, member = id key)
-- KEYS[6]   the partition's state hash: version clock, schema layout (see _prelude.lua)
-- KEYS[7..] every index key of the model (ZSET, score 0, member = value encodings .. id key)
-- ARGV[1]   "insert" | "update" (an update of some fields whatever the stored version, with
--           no read before, is patch.lua's)
-- ARGV[2]   expected version (update)
-- ARGV[3]   id key, or "" to allocate the next id from KEYS[4]
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
-- Returns   {"OK", version, id key} | {"VERSION", actual} | {"MISSING"} | {"EXISTS"}
--           | {"LAYOUT", stored layout} (the caller's schema is outdated: nothing written)
--           | {"UNIQUE", index name, id key of the holder} | {"WRONGTYPE", key}
--           | {"LOCKED", record key} (a prepared transaction holds the document)
--           | {"DAMAGED", meta hash key, field} (a field of the meta hash does not read:
--             nothing written; repair() rebuilds it from the document)
-- luacheck: globals redis KEYS ARGV cmsgpack
-- uses: _write
-- The shared definitions only the rare paths use are made when one is taken (cold_paths(),
-- luachunks.py), not on every call, and read as fields of ``rare``: a lock, an insert's taken
-- id, an expired document's purge, a unique claim, a refused write, a sweep.
-- cold: lock_holder applied insert_refusal stream_refusal index_records bad_index
-- cold: purge_listed unique_holder take_back_entries sweep

local mode, idkey = ARGV[1], ARGV[3]
local doc_key, meta_key = KEYS[1], KEYS[2]
local doc_prefix, meta_prefix = ARGV[10], ARGV[11]
local rare  -- (cold_paths(), made on the first rare path taken)
-- (every index of the model, in KEYS[7..] order, what a purge or a sweep writes, is
-- index_records(cmsgpack.unpack(ARGV[8]), 7): made where one is needed, most writes do
-- neither. No function is made for it: a closure is made each time its definition runs,
-- on every call, and is garbage the collector sweeps; see also the update's checks below)
-- What each command serves (commands per write are the server's main cost; see typed()):
-- the state hash's HMGET: the layout refusal, the version clock, the hash's type; one
-- EXISTS of the TTL schedule and the lock hash (and, for an insert of a known id, of its
-- document key and meta hash): all absent, the usual case, says there is no sweep to do,
-- no lock, and (an insert) no document there; else the schedule's ZCARD (its type, and
-- whether a sweep can have anything to do) and the checks of whatever else is there, each
-- on its own (schedule_and_locks). An allocation, which checks no lock, sends the ZCARD
-- alone. The stream's type is proven by the XADD itself (emit_first), which comes after
-- the id's ZADD of an insert (and an allocation's INCR) and the writes of the entries that
-- change (which prove the types of the indexes where no unique claim is made), all of
-- which a refusal takes back.
local scheduled, others  -- (others: how many of the lock hash, and an insert's keys, exist)
do
  local refused = state_check(KEYS[6], ARGV[14], true)
  if refused then return refused end
  if idkey == "" then
    scheduled, refused = typed(KEYS[5], "ZCARD", KEYS[5])
    others = 0
  elseif mode == "insert" then
    scheduled, others, refused = schedule_and_locks(KEYS[5], KEYS[6], doc_key, meta_key)
  else
    scheduled, others, refused = schedule_and_locks(KEYS[5], KEYS[6])
  end
  if refused then return refused end
  local spec = string.byte(ARGV[12], 1)
  if spec and spec >= 48 and spec <= 57 then  -- (digits: the stream's MAXLEN alone)
    EVENTS = {maxlen = ARGV[12], doc = false, channel = "", key = KEYS[#KEYS]}
  else
    events_unchecked(ARGV[12], KEYS[#KEYS])
  end
end
if idkey ~= "" and others > 0 then  -- (a document of a prepared transaction: lock_holder())
  -- (an update's "others" is the lock hash alone; an insert's may be its own keys)
  rare = rare or cold_paths()
  local holder = rare.lock_holder(KEYS[6], idkey, mode ~= "insert" or nil)
  -- (a resent write applied the first time, before the lock was taken, is recognised by its
  -- write id below: it is not refused)
  if holder and not (type_ok(meta_key, "hash") and rare.applied(meta_key, ARGV[5])) then
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
local seen  -- the meta hash's "r" (update)

-- the id index: an update refuses it when it holds another type too (a model whose keys
-- hold foreign data is refused whole, whichever write it is); an insert's first write is
-- its id's ZADD, whose WRONGTYPE error is the refusal (see 3.)
if mode ~= "insert" and not type_ok(KEYS[3], "zset") then return {"WRONGTYPE", KEYS[3]} end
local allocating = idkey == ""
local json, changed = ARGV[4], ARGV[13] ~= "" and ARGV[13] or nil
if mode ~= "insert" then
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
    local version = applied_in(seen or nil, ARGV[5])
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
  if stored ~= ARGV[2] then return bad_version(meta_key, stored) or {"VERSION", stored} end
  for i, index in ipairs(indexes) do
    index.old = read_list(got[i + 2] or nil)
    if not index.old then return damaged(meta_key, index.field) end
  end
elseif not allocating and others > 0 then  -- (none: its keys are absent, EXISTS above)
  -- (an insert whose id's keys exist: a taken id, a resent insert recognised by its write
  -- id, or an expired document's leftovers to purge)
  rare = rare or cold_paths()
  local refused = rare.insert_refusal(idkey, doc_key, meta_key, KEYS[3], KEYS[5], ARGV[8], 7,
                                      ARGV[5])
  if refused then return refused end
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
  local writes = #index.new
  if mode ~= "insert" then  -- (an insert's: see 3., once its id is known)
    index.drop, index.add = entries_diff(idkey, index.old, index.new)
    writes = #index.drop + #index.add
  end
  -- (a write proves the type of an index by its first write there, see 3., unless it
  -- makes a unique claim in it first or has nothing to write there)
  if (index.unique or writes == 0) and not type_ok(index.key, "zset") then
    return {"WRONGTYPE", index.key}
  end
  if index.unique then
    rare = rare or cold_paths()
    for _, member in ipairs(index.new) do
      local holder = rare.unique_holder(index.key, member, idkey, doc_prefix)
      if holder then return {"UNIQUE", index.name, holder} end
    end
  end
end

-- a new id: taken only after every other check (no holder of a unique value can be this
-- document); user-supplied ids share the id space, so counter values a user took are
-- skipped. INCR is the first write: its WRONGTYPE error is the refusal; a refusal after it
-- gives the ids back (give_back), so that a refused insert takes no id.
local increments, counter = 0, nil
-- (made when allocating only, nil otherwise: a closure made on every call is garbage)
local give_back = allocating and function()
  if increments == 0 then return end
  if counter == increments then  -- (the counter did not exist: it goes again)
    redis.call("DEL", KEYS[4])
  else
    redis.call("INCRBY", KEYS[4], -increments)
  end
end
if allocating then
  local free = false
  local n
  for _ = 1, 1000 do
    local counted, refused = typed(KEYS[4], "INCR", KEYS[4])
    if refused then return refused end
    increments, counter = increments + 1, counted
    -- (tostring is exact below 1e14, "%.14g"; a string.format costs several times more)
    n = counted < 1e14 and tostring(counted) or string.format("%.0f", counted)
    if redis.call("EXISTS", doc_key .. n, meta_key .. n) == 0 then free = true; break end
  end
  idkey = "\1" .. string.char(32 + #n) .. n
  doc_key, meta_key = doc_key .. n, meta_key .. n
  if not free then  -- (every one of 1000 taken: refused, or an expired one's to purge)
    rare = rare or cold_paths()
    local refused = rare.insert_refusal(idkey, doc_key, meta_key, KEYS[3], KEYS[5], ARGV[8],
                                        7, ARGV[5])
    if refused then give_back(); return refused end
  end
end

-- 3. writes (nothing above has written but the id allocation, and the purge of an expired
-- document's leftovers, which keeps the indexes exact whatever follows) -----------------
local version
-- An insert's first write is its id's ZADD; then, insert or update, the changed entries of
-- each index (the first write in each proves its key's type: change_entries), then the
-- event (the version it names is taken, then written): a WRONGTYPE error of any is a
-- refusal, and what was written before it is taken back (the event, which cannot be, comes
-- last of them)
local added, refused = 0, nil
local written, shown = 0, nil  -- (the indexes whose entries are written; the version text)
if mode == "insert" then
  added, refused = typed(KEYS[3], "ZADD", KEYS[3], 0, idkey)
  if refused then
    if give_back then give_back() end
    return refused
  end
  -- every entry of a new document is added: one ZADD per index, its arguments made in one
  -- pass over the encodings (no list of members made first and copied; a take-back makes
  -- the lists it needs, see below)
  for i, index in ipairs(indexes) do
    local new = index.new
    local n = #new
    if n > 500 then  -- (more than one ZADD: change_entries chunks them)
      local add = {}
      for j = 1, n do add[j] = new[j] .. idkey end
      refused = change_entries(index.key, {}, add)
    elseif n > 0 then
      local args = {}
      for j = 1, n do args[2 * j - 1], args[2 * j] = "0", new[j] .. idkey end
      local _
      _, refused = typed(index.key, "ZADD", index.key, unpack(args))
    end
    if refused then break end
    written = i
  end
else
  for i, index in ipairs(indexes) do
    refused = change_entries(index.key, index.drop, index.add)
    if refused then break end
    written = i
  end
end
if not refused then
  version, shown = take_version_text(KEYS[6])  -- (its text, made once: event, clock, meta)
  local op = mode == "insert" and "create" or "update"
  if EVENTS then refused = emit_first(op, idkey, shown, ARGV[5], changed, json) end
end
if refused then  -- (one place that takes back: no function made for it on every call)
  if mode == "insert" then  -- (the entries an insert added, as take_back_entries reads them)
    local none = {}
    for i = 1, written do
      local index, add = indexes[i], {}
      for j, member in ipairs(indexes[i].new) do add[j] = member .. idkey end
      index.drop, index.add = none, add
    end
  end
  rare = rare or cold_paths()
  rare.take_back_entries(indexes, written)
  if added == 1 then redis.call("ZREM", KEYS[3], idkey) end
  if give_back then give_back() end
  return refused
end
write_clock(KEYS[6], shown)
store_taken(mode, idkey, doc_key, meta_key, json, ARGV[9], ARGV[5], fields, seen or false,
            shown, KEYS[5])
-- bounded housekeeping: purge a few documents whose expiry is due (only when the schedule
-- had entries)
if scheduled > 0 then
  rare = rare or cold_paths()
  rare.sweep(8, doc_prefix, meta_prefix, KEYS[3], KEYS[5],
             rare.index_records(cmsgpack.unpack(ARGV[8]), 7), write_time_ms())
end
return {"OK", version, idkey}
