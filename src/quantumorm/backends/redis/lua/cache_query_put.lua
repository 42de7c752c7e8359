#!lua
-- cache_query_put.lua: store a query result computed at generation ARGV[1], only if that
-- is still the collection's generation (no write through the ORM began or finished
-- meanwhile) and not a write's mark.
--
-- KEYS[1]   the collection's query generation
-- KEYS[2]   the result's key
-- ARGV[1]   the generation read before the query ran
-- ARGV[2]   time to live, milliseconds
-- ARGV[3]   the payload
-- Returns   1 if stored, 0 if refused
-- luacheck: globals redis KEYS ARGV

-- (a write in progress holds the generation as its mark, "P:<tokens>": nothing is stored)
if string.sub(ARGV[1], 1, 2) == "P:" or redis.call("GET", KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call("SET", KEYS[2], ARGV[1] .. ":" .. ARGV[3], "PX", ARGV[2])
return 1
