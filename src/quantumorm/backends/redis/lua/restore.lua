#!lua
-- restore.lua: put a document into a partition as it was, version included (the
-- repartition tool moves documents this way), with its index entries, id and expiry.
-- Emits no change event: the document did not change, it moved.
--
-- KEYS[1]   document key    KEYS[2]  meta hash key
-- KEYS[3]   the partition's id index    KEYS[4]  its TTL schedule
-- KEYS[5]   the partition's state hash (its clock is raised to the version: no repeat)
-- KEYS[6..] every index key of the model, in the model's index order
-- ARGV[1]   id key     ARGV[2]  document JSON     ARGV[3]  version     ARGV[4]  write id
-- ARGV[5]   MessagePack pairs: meta field, netstring list of value encodings
-- ARGV[6]   MessagePack array, per index: meta field of its entries, "1" if unique, name
-- ARGV[7]   MessagePack positions of unique indexes not enforced for it (null parts)
-- ARGV[8]   expiry: "keep" (none) or milliseconds from now
-- ARGV[9]   document key prefix
-- ARGV[10]  absent or "", or MessagePack pairs (flat): the listed indexes' meta fields and
--           packed lists, which a format-3 document keeps in its meta hash
-- A format-3 document (ARGV[2] its whole stored value, "\1" version "\0" W "\0" JSON:
-- bench/format3.md) is stored with its header as given (its version must be ARGV[3]); its
-- meta hash only where format 3 keeps one: with an expiry, a sweep record (the version
-- and every index's fields, no "r"); else the listed indexes' fields, or none.
-- Returns   {"OK"} | {"EXISTS", version} (already there: a resumed move)
--           | {"UNIQUE", index name, holder id key} | {"WRONGTYPE", key}
--           | {"DAMAGED", meta hash key, field} (the meta hash there, or an expired
--             document's left there, does not read: nothing written)
-- luacheck: globals redis KEYS ARGV cmsgpack
-- uses: _write

local idkey = ARGV[1]
local described = cmsgpack.unpack(ARGV[6])
local indexes = {}
for i = 1, #described / 3 do
  indexes[i] = {key = KEYS[5 + i], field = described[3 * i - 2],
                unique = described[3 * i - 1] == "1", name = described[3 * i]}
end
for _, key in ipairs({KEYS[3], KEYS[4]}) do
  if not type_ok(key, "zset") then return {"WRONGTYPE", key} end
end
if not type_ok(KEYS[5], "hash") then return {"WRONGTYPE", KEYS[5]} end
local bad = bad_index(indexes)
if bad then return {"WRONGTYPE", bad} end
if redis.call("EXISTS", KEYS[1]) == 1 then
  -- (the caller compares this version with its own, as a number: one that does not read,
  -- or none, is the refusal, never a number read from it)
  if not type_ok(KEYS[2], "hash") then return {"WRONGTYPE", KEYS[2]} end
  local found = redis.call("HGET", KEYS[2], "v")
  if not found then  -- (format 3 without a sweep record: its header's version)
    local version = header_of(redis.call("GET", KEYS[1]))
    if version then return {"EXISTS", version} end
    return damaged(KEYS[2], "v")
  end
  return bad_version(KEYS[2], found) or {"EXISTS", found}
end
local refused = check_version("insert", "0", idkey, KEYS[1], KEYS[2], KEYS[3], KEYS[4],
                              indexes, ARGV[4])
if refused then return refused end
local headed = string.byte(ARGV[2], 1) == 1  -- (format 3: checked before anything is written)
if headed and header_of(ARGV[2]) ~= ARGV[3] then
  return redis.error_reply("ERR restore.lua: a format-3 header that does not read, or whose "
                           .. "version is not ARGV[3]")
end
local fields = cmsgpack.unpack(ARGV[5])
local values = {}
for i = 1, #fields, 2 do values[fields[i]] = fields[i + 1] end
local lenient = {}
for _, position in ipairs(cmsgpack.unpack(ARGV[7])) do lenient[tonumber(position)] = true end
local members = {}
for i, index in ipairs(indexes) do
  members[i] = unpack_list(values[index.field])
  if index.unique and not lenient[i] then
    for _, member in ipairs(members[i]) do
      local holder = unique_holder(index.key, member, idkey, ARGV[9])
      if holder then return {"UNIQUE", index.name, holder} end
    end
  end
end
for i, index in ipairs(indexes) do rewrite_entries(index.key, idkey, {}, members[i]) end
if headed then  -- format 3: its header as given
  local listed = ARGV[10] and ARGV[10] ~= "" and cmsgpack.unpack(ARGV[10]) or {}
  if ARGV[8] == "keep" then
    redis.call("SET", KEYS[1], ARGV[2])
  else
    local at = now_ms() + tonumber(ARGV[8])
    redis.call("SET", KEYS[1], ARGV[2], "PXAT", at)
    redis.call("ZADD", KEYS[4], at, idkey)
  end
  headed_meta(KEYS[2], ARGV[8] ~= "keep", ARGV[3], fields, listed)
  redis.call("ZADD", KEYS[3], 0, idkey)
  clock_at_least(KEYS[5], tonumber(ARGV[3]))
  return {"OK"}
end
store({mode = "insert", idkey = idkey, doc_key = KEYS[1], meta_key = KEYS[2], json = ARGV[2],
       expiry = ARGV[8], version = tonumber(ARGV[3]), write_id = ARGV[4], fields = fields},
      KEYS[3], KEYS[4], KEYS[5])
clock_at_least(KEYS[5], tonumber(ARGV[3]))
return {"OK"}
