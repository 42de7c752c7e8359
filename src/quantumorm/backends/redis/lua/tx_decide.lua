#!lua flags=allow-oom
-- tx_decide.lua: the decision of a two-phase commit (twophase.py), taken on its record
-- alone, once: "pending" becomes "committed" or "aborted" and never changes again.
--
-- allow-oom: deciding frees what the transaction holds; it must work on a full server.
-- KEYS[1]   the record key
-- ARGV[1]   "commit" (committed if the server's time is before the deadline, else aborted)
--           | "abort" (aborted if still pending) | "expire" (aborted if past the deadline)
-- Returns   the state after the call: "committed" | "aborted" | "pending" (ARGV[1]
--           "expire" before the deadline) | "missing" (no record: counts as aborted); the
--           error "DAMAGED <record> deadline" for a pending record whose deadline does not
--           read, unless ARGV[1] is "abort" (nothing changed)
-- luacheck: globals redis KEYS ARGV

local got = redis.call("HMGET", KEYS[1], "state", "deadline")
local state = got[1]
if not state then return "missing" end
if state ~= "pending" then return state end
if ARGV[1] == "abort" then  -- (needs no deadline)
  redis.call("HSET", KEYS[1], "state", "aborted")
  return "aborted"
end
-- the deadline as tx_begin.lua wrote it (string.format "%.0f": plain digits); anything else
-- ("+5", " 5", "1e3", text, none) cannot say whether the deadline passed: refused, nothing
-- changed (twophase.py: DamagedTransactionError)
if not (got[2] and string.find(got[2], "^%d+$")) then
  return redis.error_reply("DAMAGED " .. KEYS[1] .. " deadline")
end
local late = now_ms() >= tonumber(got[2])
if ARGV[1] == "commit" and not late then
  redis.call("HSET", KEYS[1], "state", "committed")
  redis.call("PERSIST", KEYS[1])  -- (kept until every intent is applied)
  return "committed"
end
if ARGV[1] == "expire" and not late then return "pending" end
redis.call("HSET", KEYS[1], "state", "aborted")
return "aborted"
