#!lua flags=allow-oom
-- delete.lua: delete one document and every index entry it has, if its version matches.
--
-- allow-oom: a delete only frees memory, and must work when the server is full.
-- The entries to remove are read from the meta hash (what save.lua wrote), never recomputed
-- from the document, so a delete is exact even if the model's code changed since.
--
-- KEYS[1]   document key
-- KEYS[2]   meta hash key
-- KEYS[3]   the partition's id index
-- KEYS[4..] index keys of the model
-- ARGV[1]   expected version, or "" to delete whatever version is stored
-- ARGV[2]   id key
-- ARGV[3]   N, then N pairs: KEYS position of an index, meta field holding its entries
-- Returns   {"OK", deleted version} | {"MISSING"} | {"VERSION", actual} | {"WRONGTYPE", key}
-- luacheck: globals redis KEYS ARGV

for i = 2, #KEYS do
  local t = redis.call("TYPE", KEYS[i]).ok
  local wanted = (i == 2) and "hash" or "zset"
  if t ~= "none" and t ~= wanted then return {"WRONGTYPE", KEYS[i]} end
end
local stored = redis.call("HGET", KEYS[2], "v")
if not stored then return {"MISSING"} end
if ARGV[1] ~= "" and stored ~= ARGV[1] then return {"VERSION", stored} end

local idkey = ARGV[2]
local n = tonumber(ARGV[3])
for i = 1, n do
  local key = KEYS[tonumber(ARGV[2 + 2 * i])]
  local members = unpack_list(redis.call("HGET", KEYS[2], ARGV[3 + 2 * i]))
  local batch, count = {}, 0
  for _, member in ipairs(members) do
    count = count + 1; batch[count] = member .. idkey
    if count >= 1000 then redis.call("ZREM", key, unpack(batch)); batch, count = {}, 0 end
  end
  if count > 0 then redis.call("ZREM", key, unpack(batch)) end
end
redis.call("DEL", KEYS[1], KEYS[2])
redis.call("ZREM", KEYS[3], idkey)
return {"OK", stored}
