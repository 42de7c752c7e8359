#!lua flags=no-writes
-- tx_due.lua: the two-phase commits of a namespace's registry whose deadline has passed by
-- this server's clock, the one that scored them (tx_open.lua): what the sweeper settles.
--
-- KEYS[1]   the registry, {<ns>:2pc}:open
-- ARGV[1]   how many at most
-- ARGV[2]   how many due ones to pass over first (absent: none): those a sweep met and
--           could not settle, still there ahead of the rest
-- Returns   the record keys, the longest due first
-- luacheck: globals redis KEYS ARGV

return redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now_ms(), "LIMIT",
                  tonumber(ARGV[2]) or 0, tonumber(ARGV[1]))
