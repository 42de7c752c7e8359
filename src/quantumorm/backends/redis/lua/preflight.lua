#!lua flags=no-writes
-- preflight.lua: whether the calling user's ACL lets the scripts run every command they
-- call, on this model's keys (read only: redis.acl_check_cmd runs nothing). Sent once, at
-- a model's first use on a connection: Redis checks a script's commands one by one as it
-- runs them, so a command refused half-way through a write would leave it half done.
--
-- KEYS[1]   a document key    KEYS[2]  its meta hash    KEYS[3]  the partition's id index
-- KEYS[4]   its TTL schedule  KEYS[5]  its state hash    KEYS[6]  where soft deletes go
-- KEYS[7]   the id sequence   KEYS[8]  an index key (or the id index when there is none)
-- KEYS[9]   the change stream (when the model has one)
-- ARGV[1]   "1" when the model has a change stream    ARGV[2]  its Pub/Sub channel, or ""
-- Returns   "" when every command is allowed, else "COMMAND key" of the first refused one
-- luacheck: globals redis KEYS ARGV

local checks = {
  {"GET", KEYS[1]}, {"SET", KEYS[1], "x"}, {"DEL", KEYS[1]}, {"EXISTS", KEYS[1]},
  {"TYPE", KEYS[1]}, {"PEXPIRE", KEYS[1], "1"}, {"PEXPIREAT", KEYS[1], "1"},
  {"PEXPIRETIME", KEYS[1]}, {"PERSIST", KEYS[1]}, {"RENAME", KEYS[1], KEYS[6]},
  {"HGET", KEYS[2], "v"}, {"HMGET", KEYS[2], "v"}, {"HSET", KEYS[2], "v", "1"},
  {"HGETALL", KEYS[2]}, {"HGET", KEYS[5], "clock"}, {"HSET", KEYS[5], "clock", "1"},
  {"ZADD", KEYS[3], "0", "m"}, {"ZREM", KEYS[3], "m"}, {"ZCARD", KEYS[3]},
  {"ZRANGE", KEYS[3], "0", "-1"}, {"ZSCORE", KEYS[3], "m"},
  {"ZRANGEBYSCORE", KEYS[4], "-inf", "+inf"}, {"ZCOUNT", KEYS[4], "-inf", "+inf"},
  {"ZADD", KEYS[8], "0", "m"}, {"ZREM", KEYS[8], "m"}, {"ZRANGEBYLEX", KEYS[8], "-", "+"},
  {"ZREVRANGEBYLEX", KEYS[8], "+", "-"}, {"ZLEXCOUNT", KEYS[8], "-", "+"},
  {"INCR", KEYS[7]}, {"TIME"},
}
if ARGV[1] == "1" then
  checks[#checks + 1] = {"XADD", KEYS[9], "MAXLEN", "~", "1", "*", "f", "v"}
  checks[#checks + 1] = {"XGROUP", "CREATE", KEYS[9], "g", "0", "MKSTREAM"}
end
if ARGV[2] ~= "" then checks[#checks + 1] = {"PUBLISH", ARGV[2], "m"} end
for _, check in ipairs(checks) do
  if not redis.acl_check_cmd(unpack(check)) then
    return check[1] .. (check[2] and (" " .. check[2]) or "")
  end
end
return ""
