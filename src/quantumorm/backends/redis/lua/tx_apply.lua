#!lua flags=allow-oom
-- tx_apply.lua: the apply of a committed two-phase commit in one partition (twophase.py):
-- the intent its prepare stored (tx.lua's call in apply mode) is read here and run, so that
-- the committing client and every settler send only the intent's key.
--
-- allow-oom: once the record says committed, applying is the only way forward; it replaces
-- what the intents (and the documents they lock) already hold, and a refusal above
-- maxmemory would leave the transaction half applied, its locks making every read that
-- meets them fail until memory frees. (A prepare, a new write, stays refused: tx.lua.)
--
-- KEYS[1]   the transaction's intent key in the partition (the other keys the intent
--           names share its hash tag: a cluster routes the call by this one)
-- ARGV[1]   "" (apply the intent stored), or an intent made again with the schema of now
--           (twophase.py's _rebuilt, same form), applied in place of the stored one
-- Returns   what tx.lua returns in apply mode; {"DONE", what the key holds} when it holds no
--           intent (applied: the versions it wrote; or "": released, or expired)
-- luacheck: globals redis KEYS ARGV cmsgpack
-- uses: _write _tx

local stored = redis.call("GET", KEYS[1])
-- (an intent is MessagePack {"call", ...}: "call" right after the array header of 1, 3 or
-- 5 bytes; anything else is the "applied" marker tx.lua leaves)
local at = stored and string.find(string.sub(stored, 1, 10), "\164call", 1, true)
if at ~= 2 and at ~= 4 and at ~= 6 then return {"DONE", stored or ""} end
-- (one made again is not stored: a refused apply leaves the intent as its prepare made it,
-- made again by each settler, which then sends it before any other partition's)
local flat = cmsgpack.unpack(ARGV[1] ~= "" and ARGV[1] or stored)
local nkeys = tonumber(flat[2])
local keys, args = {}, {}
for i = 1, nkeys do keys[i] = flat[2 + i] end
for i = 3 + nkeys, #flat do args[#args + 1] = flat[i] end
return transact(keys, args)
