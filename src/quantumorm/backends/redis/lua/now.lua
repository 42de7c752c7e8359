#!lua flags=no-writes
-- now.lua: the server's time in microseconds (TIME names no key, so on a cluster it could
-- not be routed; a script call names one of the slot to ask, KEYS[1], and reads nothing).
--
-- KEYS[1]   any key of the slot whose node is asked
-- Returns   microseconds since the epoch, as a string (exact)
-- luacheck: globals redis KEYS

local t = redis.call("TIME")
return string.format("%.0f", tonumber(t[1]) * 1000000 + tonumber(t[2]))
