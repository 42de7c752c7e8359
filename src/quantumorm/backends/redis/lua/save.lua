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
-- ARGV[1]   "insert" | "update"
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
-- ARGV[12]  change events: "" (none) or the spec events_on() reads; the stream is KEYS[#KEYS]
-- ARGV[13]  MessagePack array of the changed field names (the event's "f"), "" for all
-- ARGV[14]  the caller's schema layout ("" for none)
--
-- Expiry: the document key expires (PEXPIREAT) and is scheduled in KEYS[5]; its meta hash
-- and index entries stay until a sweep (this script sweeps a few due documents after every
-- write) or a write that meets them purges them. Readers check that documents exist.
-- Returns   {"OK", version, id key} | {"VERSION", actual} | {"MISSING"} | {"EXISTS"}
--           | {"LAYOUT", stored layout} (the caller's schema is outdated: nothing written)
--           | {"UNIQUE", index name, id key of the holder} | {"WRONGTYPE", key}
-- luacheck: globals redis KEYS ARGV cmsgpack
-- uses: _write

local mode, idkey = ARGV[1], ARGV[3]
local doc_key, meta_key = KEYS[1], KEYS[2]
local doc_prefix, meta_prefix = ARGV[10], ARGV[11]
local all_indexes = {}
for i, field in ipairs(cmsgpack.unpack(ARGV[8])) do
  all_indexes[i] = {key = KEYS[6 + i], field = field}
end
do
  local refused = layout_refusal(KEYS[6], ARGV[14], true)
  if refused then return refused end
  local bad = events_on(ARGV[12], KEYS[#KEYS])
  if bad then return {"WRONGTYPE", bad} end
end

-- 1. identity and version (an id to allocate is taken only after every other check) ---
local function identify()
  for _, key in ipairs({KEYS[3], KEYS[5]}) do
    if not type_ok(key, "zset") then return {"WRONGTYPE", key} end
  end
  if idkey == "" then
    if not type_ok(KEYS[4], "string") then return {"WRONGTYPE", KEYS[4]} end
    -- user-supplied ids share the id space: skip counter values a user already took
    local n
    for _ = 1, 1000 do
      n = string.format("%.0f", redis.call("INCR", KEYS[4]))  -- (tostring: 1e+14)
      if redis.call("EXISTS", doc_key .. n, meta_key .. n) == 0 then break end
    end
    idkey = "\1" .. string.char(32 + #n) .. n
    doc_key, meta_key = doc_key .. n, meta_key .. n
  end
  local refused = check_version(mode, ARGV[2], idkey, doc_key, meta_key, KEYS[3], KEYS[5],
                                all_indexes, ARGV[5])
  if refused and refused[1] == "APPLIED" then  -- a resent write that was applied before
    return {"OK", refused[2], idkey}
  end
  return refused
end
local allocating = idkey == ""
if not allocating then
  local refused = identify()
  if refused then return refused end
end

-- 2. new values, index keys and unique claims ----------------------------------------
local fields = cmsgpack.unpack(ARGV[6])
local values = {}
for i = 1, #fields, 2 do values[fields[i]] = fields[i + 1] end
local described = cmsgpack.unpack(ARGV[7])
local indexes = {}
for i = 1, #described / 4 do
  local base = 4 * (i - 1)
  local index = {key = KEYS[tonumber(described[base + 1])], field = described[base + 2],
                 unique = described[base + 3] == "1", name = described[base + 4]}
  if not type_ok(index.key, "zset") then return {"WRONGTYPE", index.key} end
  index.new = unpack_list(values[index.field])
  if index.unique then
    for _, member in ipairs(index.new) do
      local holder = unique_holder(index.key, member, idkey, doc_prefix)
      if holder then return {"UNIQUE", index.name, holder} end
    end
  end
  indexes[i] = index
end

if allocating then  -- a new id: no holder of a unique value can be this document
  local refused = identify()
  if refused then return refused end
end

-- 3. writes (nothing above has written, except the id allocation) ---------------------
for _, index in ipairs(indexes) do
  local old = {}  -- an insert has no entries yet
  if mode ~= "insert" then old = unpack_list(redis.call("HGET", meta_key, index.field)) end
  rewrite_entries(index.key, idkey, old, index.new)
end
local version = store({mode = mode, idkey = idkey, doc_key = doc_key, meta_key = meta_key,
                       json = ARGV[4], expiry = ARGV[9], write_id = ARGV[5], fields = fields,
                       changed = ARGV[13] ~= "" and ARGV[13] or nil}, KEYS[3], KEYS[5], KEYS[6])
-- bounded housekeeping: purge a few documents whose expiry is due
if redis.call("ZCARD", KEYS[5]) > 0 then
  sweep(8, doc_prefix, meta_prefix, KEYS[3], KEYS[5], all_indexes)
end
return {"OK", version, idkey}
