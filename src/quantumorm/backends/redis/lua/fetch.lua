#!lua flags=no-writes
-- fetch.lua: read documents by id, with their versions, in one call (read only).
--
-- KEYS      pairs: document key, meta hash key (all of one partition)
-- Returns   flat pairs: the document as stored (or false), its version from the meta hash,
--           or false: when the stored document carries its version (see versioned() in
--           _prelude.lua), and when it is gone
-- luacheck: globals redis KEYS

local out, BATCH = {}, 512
for first = 1, #KEYS, 2 * BATCH do
  local last = math.min(first + 2 * BATCH - 1, #KEYS)
  -- the documents of a batch with one MGET, then each found one's version
  local docs = {}
  for i = first, last, 2 do docs[#docs + 1] = KEYS[i] end
  docs = redis.call("MGET", unpack(docs))
  for i = first, last, 2 do
    local json = docs[(i - first) / 2 + 1]
    out[#out + 1] = json or false
    -- (a document that carries its version: false, the caller reads it there)
    if json and string.byte(json, 1) ~= 0 then
      out[#out + 1] = redis.call("HGET", KEYS[i + 1], "v") or false
    else
      out[#out + 1] = false
    end
  end
end
return out
