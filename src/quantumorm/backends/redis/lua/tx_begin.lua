#!lua
-- tx_begin.lua: the record of a two-phase commit (twophase.py), written before any prepare:
-- state "pending", the deadline (this server's time plus the timeout) and the participants.
-- A pending record expires soon after its deadline: a missing record counts as aborted,
-- which is what a pending one past its deadline becomes anyway (tx_decide.lua, on this same
-- server's clock), so a client that dies leaves no record behind. The commit makes it
-- persistent (until every intent is applied).
--
-- KEYS[1]   the record key (a slot of its own)
-- ARGV[1]   the timeout, ms          ARGV[2]  how long a record outlives its deadline, ms
-- ARGV[3]   the participants: MessagePack array of (lock hash key, intent key) pairs
-- Returns   the deadline, ms since the epoch (this server's clock)
-- luacheck: globals redis KEYS ARGV

local deadline = now_ms() + tonumber(ARGV[1])
redis.call("HSET", KEYS[1], "state", "pending", "deadline", string.format("%.0f", deadline),
           "parts", ARGV[3])
redis.call("PEXPIREAT", KEYS[1], deadline + tonumber(ARGV[2]))
return deadline
