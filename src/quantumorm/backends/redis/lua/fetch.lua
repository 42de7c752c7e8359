#!lua flags=no-writes
-- fetch.lua: read documents by id, with their versions, in one call (read only).
--
-- KEYS      pairs: document key, meta hash key (all of one partition)
-- Returns   flat pairs: the document as stored (or false), the version of its meta hash,
--           which compare-and-set reads (or false: also when the document is gone; a
--           format-3 document, "\1" first, carries its own in its header); a
--           version that does not read (see bad_version() in _prelude.lua: "+13" or " 13"
--           would read as 13 to Python's int) is the error damaged_error() makes. Reads
--           by id are a plain MGET (a document carries its version, see versioned() in
--           _prelude.lua); this is for documents stored before, and for the tools, which
--           act on the meta hash's version.
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
    local version = json and redis.call("HGET", KEYS[i + 1], "v") or false
    -- (a format-3 document, "\1" first, carries its version in its header, which the
    -- caller reads: its meta hash's, if any (a sweep record's), is not its version, and
    -- one that does not read is left to verify())
    if version and bad_version(KEYS[i + 1], version) and string.byte(json, 1) ~= 1 then
      error(damaged_error(KEYS[i + 1], "v"))
    end
    out[#out + 1] = json or false
    out[#out + 1] = version
  end
end
return out
