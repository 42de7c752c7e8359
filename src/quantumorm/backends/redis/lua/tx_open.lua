#!lua
-- tx_open.lua: a two-phase commit entered in its namespace's registry of open transactions
-- (twophase.py), scored with its deadline by this server's clock, so that the sweeper
-- (tx_due.lua, on this same server) finds it once due whatever the clients' clocks say. The
-- registry has a slot of its own: this is a call apart from the record's tx_begin.lua (same
-- round trip), and the score only says when the sweeper looks: what it does is decided by
-- the record (its own deadline, on its own server's clock).
--
-- KEYS[1]   the registry, {<ns>:2pc}:open
-- ARGV[1]   the record key           ARGV[2]  the timeout, ms
-- Returns   the score: the deadline, ms since the epoch (this server's clock)
-- luacheck: globals redis KEYS ARGV

local deadline = now_ms() + tonumber(ARGV[2])
redis.call("ZADD", KEYS[1], string.format("%.0f", deadline), ARGV[1])
return deadline
