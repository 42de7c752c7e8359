#!lua
-- cache_query_get.lua: a cached query result, if computed at the collection's current
-- generation and no write is in progress there; the generation either way (created if
-- missing: a random token, so a lost generation key can never make an old result current
-- again).
--
-- KEYS[1]   the collection's query generation
-- KEYS[2]   the result's key
-- ARGV[1]   a fresh token, the generation if none exists
-- Returns   {generation, result payload or false}
-- luacheck: globals redis KEYS ARGV

local gen = redis.call("GET", KEYS[1])
if not gen then
  gen = ARGV[1]
  redis.call("SET", KEYS[1], gen)
end
-- (a write in progress holds the generation as its mark, "P:<tokens>": nothing is served)
if string.sub(gen, 1, 2) == "P:" then return {gen, false} end
local r = redis.call("GET", KEYS[2])
if r and string.sub(r, 1, #gen + 1) == gen .. ":" then
  return {gen, string.sub(r, #gen + 2)}
end
return {gen, false}
