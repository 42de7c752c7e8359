#!lua
-- insert_many.lua: insert a batch of new documents of one partition, each with its index
-- entries, in one call (what bulk_create sends).
--
-- Each document is checked (id free, key types, unique values) before anything of it is
-- written; a refused document is skipped and reported, the others are written. The batch
-- runs atomically, so a later document sees the index entries of an earlier one. As in
-- save.lua, the JSON is stored verbatim and the shebang makes the server refuse the script
-- above maxmemory before it starts.
--
-- KEYS[1]     the partition's id index
-- KEYS[2]     the partition's TTL schedule
-- KEYS[3]     the partition's state hash: version clock, schema layout
-- KEYS[4..I+3] every index key of the model, in the model's index order
-- KEYS[I+4..] per document: document key, meta hash key
-- ARGV[1]     MessagePack array, per index: meta field holding its entries, "1" if unique,
--             index name
-- ARGV[2]     expiry of every document: "keep" (none) or milliseconds from now
-- ARGV[3]     document key prefix    ARGV[4]  meta key prefix
-- ARGV[5]     change events: "" (none) or the spec events_on() reads; the stream is KEYS[#KEYS]
-- ARGV[6]     the caller's schema layout ("" for none)
-- ARGV[7..]   per document: id key, document JSON, write id, MessagePack array of pairs
--             (meta field name, netstring list of value encodings), MessagePack array of
--             the positions of unique indexes not enforced for it (a compound value with a
--             null part)
-- Returns     {"LAYOUT", stored layout} (the caller's schema is outdated: nothing written),
--             or per document: {"OK", version} | {"EXISTS"} | {"UNIQUE", index name, holder id key}
--             | {"WRONGTYPE", key}
-- luacheck: globals redis KEYS ARGV cmsgpack
-- uses: _write

local described = cmsgpack.unpack(ARGV[1])
local indexes = {}
for i = 1, #described / 3 do
  local index = {key = KEYS[i + 3], field = described[3 * i - 2],
                 unique = described[3 * i - 1] == "1", name = described[3 * i]}
  indexes[i] = index
end
local nindexes = #indexes
local expiry, doc_prefix, meta_prefix = ARGV[2], ARGV[3], ARGV[4]

-- shared keys: checked once for the whole batch
local shared_error = nil
do
  local refused = state_check(KEYS[3], ARGV[6], true)  -- (and the clock, in the same HMGET)
  if refused and refused[1] == "LAYOUT" then return refused end
  shared_error = refused
  local bad = events_on(ARGV[5], KEYS[#KEYS])
  if bad then shared_error = {"WRONGTYPE", bad} end
end
if not type_ok(KEYS[1], "zset") then shared_error = {"WRONGTYPE", KEYS[1]} end
if not type_ok(KEYS[2], "zset") then shared_error = {"WRONGTYPE", KEYS[2]} end
for i = 1, nindexes do
  if not shared_error and not type_ok(indexes[i].key, "zset") then
    shared_error = {"WRONGTYPE", indexes[i].key}
  end
end

local results = {}
local ndocs = (#ARGV - 6) / 5
-- the state hash's clock is written once, after the last document (it is a hash: checked)
DEFERRED = not shared_error
for d = 1, ndocs do
  local base = 6 + 5 * (d - 1)
  local idkey, json, write_id = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local doc_key, meta_key = KEYS[nindexes + 2 + 2 * d], KEYS[nindexes + 3 + 2 * d]
  local refused = shared_error
  if not refused then  -- (an expired document's leftovers are purged: its id is free)
    refused = check_version("insert", "0", idkey, doc_key, meta_key, KEYS[1], KEYS[2], indexes,
                            write_id)
    if refused and refused[1] == "APPLIED" then refused = {"OK", refused[2]} end  -- (resent)
  end
  local fields = cmsgpack.unpack(ARGV[base + 4])
  local values = {}
  for i = 1, #fields, 2 do values[fields[i]] = fields[i + 1] end
  local lenient = {}
  for _, position in ipairs(cmsgpack.unpack(ARGV[base + 5])) do lenient[tonumber(position)] = true end
  local members = {}
  for i = 1, nindexes do
    if refused then break end
    local index = indexes[i]
    members[i] = unpack_list(values[index.field])
    if index.unique and not lenient[i] then
      for _, member in ipairs(members[i]) do
        local holder = not refused and unique_holder(index.key, member, idkey, doc_prefix)
        if holder then refused = {"UNIQUE", index.name, holder} end
      end
    end
  end
  if refused then
    results[d] = refused
  else
    for i = 1, nindexes do rewrite_entries(indexes[i].key, idkey, {}, members[i]) end
    local version = store({mode = "insert", idkey = idkey, doc_key = doc_key,
                           meta_key = meta_key, json = json, expiry = expiry,
                           write_id = write_id, fields = fields}, KEYS[1], KEYS[2], KEYS[3])
    results[d] = {"OK", version}
  end
end
flush_clock(KEYS[3])
if not shared_error and redis.call("ZCARD", KEYS[2]) > 0 then
  sweep(8, doc_prefix, meta_prefix, KEYS[1], KEYS[2], indexes)
end
return results
