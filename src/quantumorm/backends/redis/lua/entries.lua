#!lua flags=no-writes
-- entries.lua: judge a batch of one index's entries (what verify() walks), read only.
-- An entry is right when its document is alive and the document's meta hash records it;
-- a document whose key expired and that awaits the sweep (its meta hash is still there and
-- it is in the expiry schedule) leaves entries that reads skip: they are not a problem.
--
-- KEYS[1]   the index
-- KEYS[2]   the partition's TTL schedule
-- ARGV[1]   the meta field recording the index's entries
-- ARGV[2]   document key prefix    ARGV[3]  meta key prefix
-- ARGV[4..] the entries (members of KEYS[1]) to judge
-- Returns   flat pairs for the entries that are not right: position (1-based, in ARGV[4..]),
--           "stale" (the document is alive but does not record it) | "orphan" (no document,
--           and not awaiting a sweep) | "expired" (awaiting a sweep)
--           | the document as stored, for an entry of a live format-3 document
--           ("\1" first: bench/format3.md) that its meta hash, if any, does not record:
--           no meta hash records a format-3 document's entries (only an expiring one's
--           sweep record does), so verify() judges it from the document, in Python, with
--           the model's encoders
--           A meta hash whose list of entries does not read (or another type at its key)
--           records nothing: its document's entries are "stale" (alive) or "orphan" (its
--           sweep would leave them), for repair() to remove once it has rebuilt (or
--           discarded) the meta hash.
-- luacheck: globals redis KEYS ARGV

local out = {}
for n = 4, #ARGV do
  local entry = ARGV[n]
  -- (an entry removed since the caller listed it went with a write of its document: fine)
  if redis.call("ZSCORE", KEYS[1], entry) then
    local cut = #entry
    while cut > 0 and string.byte(entry, cut) ~= 0 do cut = cut - 1 end
    local value, idkey = string.sub(entry, 1, cut), string.sub(entry, cut + 1)
    local eid = escaped_id(idkey)
    local meta_key = ARGV[3] .. eid
    local alive = redis.call("EXISTS", ARGV[2] .. eid) == 1
    local recorded, readable = false, false
    if type_ok(meta_key, "hash") then
      local listed = read_list(redis.call("HGET", meta_key, ARGV[1]) or nil)
      readable = listed ~= nil
      for _, member in ipairs(listed or {}) do
        if member == value then recorded = true; break end
      end
    end
    if not alive then
      local awaiting = readable and redis.call("EXISTS", meta_key) == 1
        and redis.call("ZSCORE", KEYS[2], idkey)
      out[#out + 1] = n - 3
      out[#out + 1] = awaiting and "expired" or "orphan"
    elseif not recorded then
      -- (a format-3 document: judged by the caller from the document; read only here, on
      -- the path of an entry its meta hash does not record)
      local stored = type_ok(ARGV[2] .. eid, "string") and redis.call("GET", ARGV[2] .. eid)
      out[#out + 1] = n - 3
      out[#out + 1] = stored and string.byte(stored, 1) == 1 and stored or "stale"
    end
  end
end
return out
