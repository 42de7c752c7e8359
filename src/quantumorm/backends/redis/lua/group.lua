#!lua
-- group.lua: create a consumer group on a change stream (creating the stream), unless the
-- group exists. A script, so that "already exists" is an answer rather than an error.
--
-- KEYS[1]   the partition's change stream
-- ARGV[1]   group name
-- ARGV[2]   where a new group starts: "$" (the next event) or "0" (the oldest kept)
-- Returns   1 if the group was created, 0 if it existed
-- luacheck: globals redis KEYS ARGV

if not type_ok(KEYS[1], "stream") then
  return redis.error_reply("WRONGTYPE " .. KEYS[1] .. " is not a stream")
end
local created = redis.pcall("XGROUP", "CREATE", KEYS[1], ARGV[1], ARGV[2], "MKSTREAM")
if type(created) == "table" and created.err then
  if string.find(created.err, "BUSYGROUP", 1, true) then return 0 end
  return created
end
return 1
