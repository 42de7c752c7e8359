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
-- KEYS[3..I+2] every index key of the model, in the model's index order
-- KEYS[I+3..] per document: document key, meta hash key
-- ARGV[1]     MessagePack array, per index: meta field holding its entries, "1" if unique,
--             index name
-- ARGV[2]     expiry of every document: "keep" (none) or milliseconds from now
-- ARGV[3]     document key prefix    ARGV[4]  meta key prefix
-- ARGV[5]     change events: "" (none) or the spec events_on() reads; the stream is KEYS[#KEYS]
-- ARGV[6..]   per document: id key, document JSON, write id, MessagePack array of pairs
--             (meta field name, netstring list of value encodings), MessagePack array of
--             the positions of unique indexes not enforced for it (a compound value with a
--             null part)
-- Returns     per document: {"OK", 1} | {"EXISTS"} | {"UNIQUE", index name, holder id key}
--             | {"WRONGTYPE", key}
-- luacheck: globals redis KEYS ARGV cmsgpack

local described = cmsgpack.unpack(ARGV[1])
local indexes = {}
for i = 1, #described / 3 do
  local index = {key = KEYS[i + 2], field = described[3 * i - 2],
                 unique = described[3 * i - 1] == "1", name = described[3 * i]}
  indexes[i] = index
end
local nindexes = #indexes
local expiry, doc_prefix, meta_prefix = ARGV[2], ARGV[3], ARGV[4]
local at = nil
if expiry ~= "keep" then at = now_ms() + tonumber(expiry) end

-- shared keys: checked once for the whole batch
local shared_error = nil
do
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
local ndocs = (#ARGV - 5) / 5
for d = 1, ndocs do
  local base = 5 + 5 * (d - 1)
  local idkey, json, write_id = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local doc_key, meta_key = KEYS[nindexes + 1 + 2 * d], KEYS[nindexes + 2 + 2 * d]
  local refused = shared_error
  if not refused and redis.call("EXISTS", doc_key, meta_key) > 0 then
    refused = {"EXISTS"}
    for _, pair in ipairs({{doc_key, "string"}, {meta_key, "hash"}}) do
      if not type_ok(pair[1], pair[2]) then refused = {"WRONGTYPE", pair[1]} end
    end
    if refused[1] == "EXISTS" and redis.call("EXISTS", doc_key) == 0 then
      purge_expired(idkey, meta_key, KEYS[1], KEYS[2], indexes)  -- an expired one's leftovers
      refused = nil  -- (the index keys were type-checked above, with the shared keys)
    end
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
        if member ~= NULL and not refused then
          local held = redis.call("ZRANGEBYLEX", index.key, "[" .. member,
                                  "(" .. member .. "\255", "LIMIT", 0, 16)
          for _, other in ipairs(held) do
            local other_id = string.sub(other, #member + 1)
            if not refused and redis.call("EXISTS", doc_prefix .. escaped_id(other_id)) == 1 then
              refused = {"UNIQUE", index.name, other_id}  -- (expired holders do not count)
            end
          end
        end
      end
    end
  end
  if refused then
    results[d] = refused
  else
    for i = 1, nindexes do
      local args, n = {}, 0
      for _, member in ipairs(members[i]) do
        n = n + 1; args[n] = "0"
        n = n + 1; args[n] = member .. idkey
        if n >= 1000 then redis.call("ZADD", indexes[i].key, unpack(args)); args, n = {}, 0 end
      end
      if n > 0 then redis.call("ZADD", indexes[i].key, unpack(args)) end
    end
    redis.call("SET", doc_key, json)
    if at then
      redis.call("PEXPIREAT", doc_key, at)
      redis.call("ZADD", KEYS[2], at, idkey)
    end
    redis.call("HSET", meta_key, "v", 1, "w", write_id, unpack(fields))
    redis.call("ZADD", KEYS[1], 0, idkey)
    emit("create", idkey, 1, write_id, nil, json)
    results[d] = {"OK", 1}
  end
end
if redis.call("ZCARD", KEYS[2]) > 0 then
  sweep(8, doc_prefix, meta_prefix, KEYS[1], KEYS[2], indexes)
end
return results
