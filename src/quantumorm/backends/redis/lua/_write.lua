-- _write.lua: the checks and the writes of one document write, shared by save.lua (one
-- document) and tx.lua (several, all or nothing). A script includes it with "-- uses: _write".
-- Callers run every check of every document before the first write: Redis does not roll a
-- script back, so a refusal must come before anything is changed.
-- luacheck: globals redis

-- ZADD (score 0) or ZREM members in chunks (unpack() has a stack limit)
local function bulk(command, key, members, with_score)
  local args, n = {}, 0
  for _, member in ipairs(members) do
    if with_score then n = n + 1; args[n] = "0" end
    n = n + 1; args[n] = member
    if n >= 1000 then
      redis.call(command, key, unpack(args)); args, n = {}, 0
    end
  end
  if n > 0 then redis.call(command, key, unpack(args)) end
end

-- A meta hash's "w" keeps the write ids of the document's last WRITE_IDS writes, newest
-- first, 16 characters each: a write whose reply was lost is sent again with the same write
-- id, and finding it here means the first attempt was applied (it must not apply twice).
local WRITE_IDS = 4

-- Whether the write ``write_id`` was applied to the document of ``meta_key``.
local function applied(meta_key, write_id)
  if not write_id or #write_id ~= 16 then return false end
  local seen = redis.call("HGET", meta_key, "w")
  if not seen then return false end
  for i = 1, #seen, 16 do
    if string.sub(seen, i, i + 15) == write_id then return true end
  end
  return false
end

-- Identity and version of a write to a known id: a refusal, or nil and the new version. An
-- insert must find no document, an update the expected version; {"APPLIED"} when the
-- document already carries this write (an earlier attempt of it). What an expired document
-- left behind is purged on the way (it is garbage either way): its id is free again.
-- ``indexes``: every index of the model, {key =, field =}.
local function check_version(mode, expected, idkey, doc_key, meta_key, ids_key, ttl_key,
                             indexes, write_id)
  if mode == "insert" and redis.call("EXISTS", doc_key, meta_key) == 0 then return nil, 1 end
  for _, pair in ipairs({{doc_key, "string"}, {meta_key, "hash"}}) do
    if not type_ok(pair[1], pair[2]) then return {"WRONGTYPE", pair[1]} end
  end
  local stored = redis.call("HGET", meta_key, "v")
  local alive = redis.call("EXISTS", doc_key) == 1
  if alive and stored ~= expected and applied(meta_key, write_id) then return {"APPLIED"} end
  if mode == "insert" and alive then return {"EXISTS"} end
  if not alive and (stored or mode == "insert") then
    local bad = bad_index(indexes)
    if bad then return {"WRONGTYPE", bad} end
    purge_expired(idkey, meta_key, ids_key, ttl_key, indexes)
    stored = nil
  end
  if mode == "insert" then return nil, 1 end
  if not stored then return {"MISSING"} end
  if stored ~= expected then return {"VERSION", stored} end
  return nil, tonumber(stored) + 1
end

-- The live document (other than ``idkey`` and those in ``ignore``) whose entry in a unique
-- index holds ``member``, or nil. An expired holder's entry is a leftover: the value is free.
local function unique_holder(index_key, member, idkey, doc_prefix, ignore)
  if member == NULL then return nil end  -- nulls never conflict
  local held = redis.call("ZRANGEBYLEX", index_key, "[" .. member, "(" .. member .. "\255",
                          "LIMIT", 0, 16)
  for _, other in ipairs(held) do
    local other_id = string.sub(other, #member + 1)
    if other_id ~= idkey and not (ignore and ignore[other_id])
        and redis.call("EXISTS", doc_prefix .. escaped_id(other_id)) == 1 then
      return other_id
    end
  end
  return nil
end

-- Bring a document's entries in one index from ``old`` to ``new`` (lists of value
-- encodings): only the entries that differ are removed and added.
local function rewrite_entries(index_key, idkey, old, new)
  local keep, drop, add = {}, {}, {}
  for _, member in ipairs(new) do keep[member] = true end
  for _, member in ipairs(old) do
    if keep[member] then keep[member] = nil else drop[#drop + 1] = member .. idkey end
  end
  for _, member in ipairs(new) do
    if keep[member] then add[#add + 1] = member .. idkey; keep[member] = nil end
  end
  bulk("ZREM", index_key, drop, false)
  bulk("ZADD", index_key, add, true)
end

-- Store a checked write (its index entries are already rewritten): the JSON with its expiry
-- ("keep", "persist" or milliseconds), the meta hash, the id, and the change event.
-- ``w``: mode, idkey, doc_key, meta_key, json, expiry, version, write_id, fields (flat
-- name/value list for the meta hash), changed (event "f" or nil).
local function store(w, ids_key, ttl_key)
  if w.expiry == "keep" and w.mode == "update" then
    redis.call("SET", w.doc_key, w.json, "KEEPTTL")
  else
    redis.call("SET", w.doc_key, w.json)  -- (a plain SET also drops any expiry)
    if w.expiry == "keep" or w.expiry == "persist" then
      -- (a new document has no schedule entry: any leftover one went with its purge)
      if w.mode ~= "insert" then redis.call("ZREM", ttl_key, w.idkey) end
    else
      local at = now_ms() + tonumber(w.expiry)
      redis.call("PEXPIREAT", w.doc_key, at)
      redis.call("ZADD", ttl_key, at, w.idkey)
    end
  end
  local write_ids = w.write_id
  if w.mode ~= "insert" then
    write_ids = write_ids .. string.sub(redis.call("HGET", w.meta_key, "w") or "", 1,
                                        16 * (WRITE_IDS - 1))
  end
  redis.call("HSET", w.meta_key, "v", w.version, "w", write_ids, unpack(w.fields))
  if w.mode == "insert" then redis.call("ZADD", ids_key, 0, w.idkey) end
  emit(w.mode == "insert" and "create" or "update", w.idkey, w.version, w.write_id,
       w.changed, w.json)
end
