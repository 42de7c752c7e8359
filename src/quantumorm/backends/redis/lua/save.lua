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
-- KEYS[6..] every index key of the model (ZSET, score 0, member = value encodings .. id key)
-- ARGV[1]   "insert" | "update"
-- ARGV[2]   expected version (update)
-- ARGV[3]   id key, or "" to allocate the next id from KEYS[4]
-- ARGV[4]   document JSON
-- ARGV[5]   write id (stored beside the version, to recognise a retried write)
-- ARGV[6]   MessagePack array of pairs: meta field name, netstring list of value encodings
-- ARGV[7]   MessagePack array of quadruples, one per index this write touches: KEYS
--           position, meta field holding the index's entries, "1" to enforce uniqueness,
--           index name
-- ARGV[8]   MessagePack array: the meta field of every index, in KEYS[6..] order
-- ARGV[9]   expiry: "keep" (as it is), "persist" (none), or milliseconds from now
-- ARGV[10]  document key prefix    ARGV[11]  meta key prefix
-- ARGV[12]  change events: "" (none) or the spec events_on() reads; the stream is KEYS[#KEYS]
-- ARGV[13]  MessagePack array of the changed field names (the event's "f"), "" for all
--
-- Expiry: the document key expires (PEXPIREAT) and is scheduled in KEYS[5]; its meta hash
-- and index entries stay until a sweep (this script sweeps a few due documents after every
-- write) or a write that meets them purges them. Readers check that documents exist.
-- Returns   {"OK", version, id key} | {"VERSION", actual} | {"MISSING"} | {"EXISTS"}
--           | {"UNIQUE", index name, id key of the holder} | {"WRONGTYPE", key}
-- luacheck: globals redis KEYS ARGV cmsgpack

local function bulk(command, key, members, with_score)
  local args, n = {}, 0
  for _, member in ipairs(members) do
    if with_score then n = n + 1; args[n] = "0" end
    n = n + 1; args[n] = member
    if n >= 1000 then
      redis.call(command, key, unpack(args)); args, n = {}, 0
    end
  end
  if n > 0 then redis.call(command, key, unpack(args)) end
end

local mode, idkey = ARGV[1], ARGV[3]
local doc_key, meta_key = KEYS[1], KEYS[2]
local doc_prefix, meta_prefix = ARGV[10], ARGV[11]
local all_indexes = {}
for i, field in ipairs(cmsgpack.unpack(ARGV[8])) do
  all_indexes[i] = {key = KEYS[5 + i], field = field}
end
do
  local bad = events_on(ARGV[12], KEYS[#KEYS])
  if bad then return {"WRONGTYPE", bad} end
end
local function alive(other_idkey)
  return redis.call("EXISTS", doc_prefix .. escaped_id(other_idkey)) == 1
end

-- 1. identity and version (an id to allocate is taken only after every other check) ---
local version
local function identify()
  if idkey == "" then
    if not type_ok(KEYS[4], "string") then return {"WRONGTYPE", KEYS[4]} end
    -- user-supplied ids share the id space: skip counter values a user already took
    local n
    for _ = 1, 1000 do
      n = tostring(redis.call("INCR", KEYS[4]))
      if redis.call("EXISTS", doc_key .. n, meta_key .. n) == 0 then break end
    end
    idkey = "\1" .. string.char(32 + #n) .. n
    doc_key, meta_key = doc_key .. n, meta_key .. n
  end
  for _, key in ipairs({KEYS[3], KEYS[5]}) do
    if not type_ok(key, "zset") then return {"WRONGTYPE", key} end
  end
  if mode == "insert" then
    if redis.call("EXISTS", doc_key, meta_key) > 0 then  -- (the rare path names the cause)
      for _, pair in ipairs({{doc_key, "string"}, {meta_key, "hash"}}) do
        if not type_ok(pair[1], pair[2]) then return {"WRONGTYPE", pair[1]} end
      end
      if redis.call("EXISTS", doc_key) == 1 then return {"EXISTS"} end
      -- only the leftovers of an expired document: they go, the id is free
      local bad = bad_index(all_indexes)
      if bad then return {"WRONGTYPE", bad} end
      purge_expired(idkey, meta_key, KEYS[3], KEYS[5], all_indexes)
    end
    version = 1
    return nil
  end
  for _, pair in ipairs({{doc_key, "string"}, {meta_key, "hash"}}) do
    if not type_ok(pair[1], pair[2]) then return {"WRONGTYPE", pair[1]} end
  end
  local stored = redis.call("HGET", meta_key, "v")
  if stored and redis.call("EXISTS", doc_key) == 0 then  -- it expired
    local bad = bad_index(all_indexes)
    if bad then return {"WRONGTYPE", bad} end
    purge_expired(idkey, meta_key, KEYS[3], KEYS[5], all_indexes)
    stored = nil
  end
  if not stored then return {"MISSING"} end
  if stored ~= ARGV[2] then return {"VERSION", stored} end
  version = tonumber(stored) + 1
  return nil
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
      if member ~= NULL then
        local held = redis.call("ZRANGEBYLEX", index.key, "[" .. member, "(" .. member .. "\255",
                                "LIMIT", 0, 16)
        for _, other in ipairs(held) do
          local other_id = string.sub(other, #member + 1)
          -- an expired holder's entry is a leftover: the value is free
          if other_id ~= idkey and alive(other_id) then
            return {"UNIQUE", index.name, other_id}
          end
        end
      end
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
  local keep, drop, add = {}, {}, {}
  for _, member in ipairs(index.new) do keep[member] = true end
  for _, member in ipairs(old) do
    if keep[member] then keep[member] = nil else drop[#drop + 1] = member .. idkey end
  end
  for _, member in ipairs(index.new) do
    if keep[member] then add[#add + 1] = member .. idkey; keep[member] = nil end
  end
  bulk("ZREM", index.key, drop, false)
  bulk("ZADD", index.key, add, true)
end
local expiry = ARGV[9]
if expiry == "keep" and mode == "update" then
  redis.call("SET", doc_key, ARGV[4], "KEEPTTL")
else
  redis.call("SET", doc_key, ARGV[4])  -- (a plain SET also drops any expiry)
  if expiry == "keep" or expiry == "persist" then
    redis.call("ZREM", KEYS[5], idkey)
  else
    local at = now_ms() + tonumber(expiry)
    redis.call("PEXPIREAT", doc_key, at)
    redis.call("ZADD", KEYS[5], at, idkey)
  end
end
redis.call("HSET", meta_key, "v", version, "w", ARGV[5], unpack(fields))
if mode == "insert" then redis.call("ZADD", KEYS[3], 0, idkey) end
emit(mode == "insert" and "create" or "update", idkey, version, ARGV[5],
     ARGV[13] ~= "" and ARGV[13] or nil, ARGV[4])
-- bounded housekeeping: purge a few documents whose expiry is due
if redis.call("ZCARD", KEYS[5]) > 0 then
  sweep(8, doc_prefix, meta_prefix, KEYS[3], KEYS[5], all_indexes)
end
return {"OK", version, idkey}
