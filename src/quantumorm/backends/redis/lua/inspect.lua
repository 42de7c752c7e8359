#!lua flags=no-writes
-- inspect.lua: what verify() needs to judge a batch of listed ids of one partition, read
-- in one atomic snapshot (read only): each id's document, meta hash and expiry schedule
-- entry, and how many of the index entries its meta hash records are missing from each
-- index.
--
-- KEYS[1]     the partition's TTL schedule    KEYS[2]  its id index
-- KEYS[3..I+2] the keys of the indexes to check
-- KEYS[I+3..] per id: document key, meta hash key
-- ARGV[1]     MessagePack array: the meta field recording each index's entries, in KEYS
--             order
-- ARGV[2..]   the id keys, in KEYS order
-- Returns     per id: {JSON or false, meta hash as a flat list, scheduled expiry or false,
--             1 if the id index lists it else 0, {entries missing from index 1, index 2...},
--             1 if the meta key holds another type than a hash else 0}
--             (a list of entries that does not read counts nothing missing: verify() finds
--             it in the meta hash returned, and reports the meta hash as damaged)
--
-- Called with ARGV[1] "" instead, it checks the presence of format-3 documents' entries
-- (bench/format3.md: no meta hash records them; verify() computes them in Python from the
-- document it judged, with the model's encoders):
-- KEYS        as above (KEYS[I+3..]: per document, document key and meta hash key)
-- ARGV[2..]   per document, in KEYS order: MessagePack array {version judged, members of
--             index 1 (value encoding .. id key), members of index 2, ...}
-- Returns     per document: false when it no longer carries the version judged (a writer
--             changed it since: nothing to report), else {entries missing from index 1,
--             index 2...} (ZMSCORE: a lex index's members have score 0, a missing one nil)
-- luacheck: globals redis KEYS ARGV cmsgpack

if ARGV[1] == "" then
  local present = {}
  for d = 1, #ARGV - 1 do
    local wanted = cmsgpack.unpack(ARGV[d + 1])
    local doc_key = KEYS[#wanted + 2 * d]  -- (KEYS[I+3..]: document key, meta key)
    local version = type_ok(doc_key, "string") and header_of(redis.call("GET", doc_key))
    if version ~= wanted[1] then
      present[d] = false
    else
      local missing = {}
      for i = 2, #wanted do
        local n, members, key = 0, wanted[i], KEYS[i + 1]
        if #members > 0 and type_ok(key, "zset") then
          for first = 1, #members, 1000 do
            local scores = redis.call("ZMSCORE", key,
                                      unpack(members, first, math.min(first + 999, #members)))
            for j = 1, math.min(1000, #members - first + 1) do
              if not scores[j] then n = n + 1 end
            end
          end
        end
        missing[i - 1] = n
      end
      present[d] = missing
    end
  end
  return present
end

local manifests = cmsgpack.unpack(ARGV[1])
local nindexes = #manifests
local out = {}
for d = 1, #ARGV - 1 do
  local idkey = ARGV[d + 1]
  local doc_key, meta_key = KEYS[nindexes + 1 + 2 * d], KEYS[nindexes + 2 + 2 * d]
  local json = false
  if type_ok(doc_key, "string") then json = redis.call("GET", doc_key) or false end
  local meta, hashed = {}, type_ok(meta_key, "hash")
  if hashed then meta = redis.call("HGETALL", meta_key) end
  local missing = {}
  for i = 1, nindexes do
    local n = 0
    if hashed and type_ok(KEYS[i + 2], "zset") then
      local members = read_list(redis.call("HGET", meta_key, manifests[i]) or nil, idkey)
      for _, member in ipairs(members or {}) do
        if not redis.call("ZSCORE", KEYS[i + 2], member) then n = n + 1 end
      end
    end
    missing[i] = n
  end
  local listed = redis.call("ZSCORE", KEYS[2], idkey) and 1 or 0
  out[d] = {json, meta, redis.call("ZSCORE", KEYS[1], idkey) or false, listed, missing,
            hashed and 0 or 1}
end
return out
