#!lua
-- reindex.lua: bring the entries of some indexes of a batch of documents of one partition
-- to what their values imply (what Model.objects.reindex() sends, batch by batch).
--
-- For each document the caller read its JSON and version, and computed in Python (the
-- scripts never decode JSON) the value encodings of the indexes being built. A document
-- whose version changed since is skipped: the write that changed it maintained every index
-- of the model, building ones included. One that is gone is skipped too.
--
-- KEYS[1]     the partition's state hash (schema layout, see _prelude.lua)
-- KEYS[2..I+1] the keys of the indexes being built
-- KEYS[I+2..] per document: document key, meta hash key
-- ARGV[1]     MessagePack array, per index being built: meta field of its entries, "1" if
--             unique, name
-- ARGV[2]     the partition's document key prefix
-- ARGV[3]     the caller's schema layout
-- ARGV[4..]   per document: id key, version read, JSON to store ("" to keep the stored
--             one: it lacks no field with a default), MessagePack pairs (meta field, netstring
--             list of value encodings) for every meta field of the built indexes, MessagePack
--             positions of unique indexes not enforced for it
--             A format-3 document (bench/format3.md: "\1" .. version .. "\0" .. W .. "\0" ..
--             payload, its version in its header, its meta hash only a sweep record or a
--             listed index's record) is sent with "\1" .. version read, then "\0" .. meta
--             field for each field that the meta hash keeps even without an expiry (a
--             listed index's): its header's version is compared (not the meta hash's), the
--             entries written, the meta hash extended only when the document has an expiry
--             (its sweep record: "v" and the fields) or with the listed fields, and the
--             document stays format 3 (a backfilled JSON stored with its header as it was).
-- Returns     {"LAYOUT", stored layout} when the schema changed under the build, or per
--             document: "OK" | "SKIPPED" | {"UNIQUE", index name, holder id key}
--             (a unique value another live document holds: the entry is written anyway, so
--             the index cannot be made ready until the conflict is resolved)
-- luacheck: globals redis KEYS ARGV cmsgpack
-- uses: _write

local described = cmsgpack.unpack(ARGV[1])
local indexes = {}
for i = 1, #described / 3 do
  indexes[i] = {key = KEYS[i + 1], field = described[3 * i - 2],
                unique = described[3 * i - 1] == "1", name = described[3 * i]}
end
local nindexes = #indexes
do
  local refused = layout_refusal(KEYS[1], ARGV[3], true)
  if refused then return refused end
end
for _, index in ipairs(indexes) do
  if not type_ok(index.key, "zset") then return redis.error_reply("WRONGTYPE " .. index.key) end
end
-- A format-3 document at ``version`` (its header, as the caller read it): whether it is
-- still there, and its recent write ids (W); ``listed``: the meta fields it keeps
-- whatever its expiry (see the header above).
local function headed_at(doc_key, version)
  if not type_ok(doc_key, "string") then return nil end
  local shown, w = header_of(redis.call("GET", doc_key))
  if not shown or shown ~= version then return nil end
  return w
end

local results = {}
for d = 1, (#ARGV - 3) / 5 do
  local base = 3 + 5 * (d - 1)
  local idkey, version, json = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local doc_key, meta_key = KEYS[nindexes + 2 * d], KEYS[nindexes + 1 + 2 * d]
  local w, listed = nil, nil
  -- (a format-3 version, "\1" first, never equals a meta hash's "v": its test is made
  -- only then, off a format-2 document's path)
  if redis.call("EXISTS", doc_key) == 0 or not type_ok(meta_key, "hash")
      or redis.call("HGET", meta_key, "v") ~= version then
    if string.byte(version, 1) == 1 and type_ok(meta_key, "hash") then  -- (format 3)
      listed = {}
      for name in string.gmatch(version, "%z([^%z]+)") do listed[name] = true end
      version = string.match(version, "^\1([^%z]*)")
      w = headed_at(doc_key, version)
    end
    if not w then results[d] = "SKIPPED" end  -- (written or gone since it was read)
  end
  if not results[d] then
    local fields = cmsgpack.unpack(ARGV[base + 4])
    local values = {}
    for i = 1, #fields, 2 do values[fields[i]] = fields[i + 1] end
    local lenient = {}
    for _, position in ipairs(cmsgpack.unpack(ARGV[base + 5])) do
      lenient[tonumber(position)] = true
    end
    results[d] = "OK"
    for i, index in ipairs(indexes) do
      local new = unpack_list(values[index.field])
      if index.unique and not lenient[i] and results[d] == "OK" then
        for _, member in ipairs(new) do
          local holder = unique_holder(index.key, member, idkey, ARGV[2])
          if holder then results[d] = {"UNIQUE", index.name, holder}; break end
        end
      end
      -- the entries recorded before go, the new ones are all (re)added: a rebuild starts
      -- from an empty index, where an entry the meta hash records may be missing (a record
      -- that does not read is rewritten here; its entries, if any, are left for verify()
      -- to report and repair() to remove: an error now would stop a call that has written)
      rewrite_entries(index.key, idkey,
                      read_list(redis.call("HGET", meta_key, index.field)) or {}, new)
      local all = {}
      for n, member in ipairs(new) do all[n] = member .. idkey end
      bulk("ZADD", index.key, all, true)
    end
    if listed then
      -- format 3: the meta hash is a sweep record (an expiry: "v" and every index's fields)
      -- or a listed index's record, and nothing else
      local kept = {}
      if redis.call("PTTL", doc_key) >= 0 then
        kept = fields
        kept[#kept + 1], kept[#kept + 2] = "v", version
      else
        for i = 1, #fields, 2 do
          if listed[fields[i]] then
            kept[#kept + 1], kept[#kept + 2] = fields[i], fields[i + 1]
          end
        end
      end
      if #kept > 0 then redis.call("HSET", meta_key, unpack(kept)) end
      if json ~= "" then
        redis.call("SET", doc_key, "\1" .. version .. "\0" .. w .. "\0" .. json, "KEEPTTL")
      end
    else
      if #fields > 0 then redis.call("HSET", meta_key, unpack(fields)) end
      if json ~= "" then redis.call("SET", doc_key, versioned(version, json), "KEEPTTL") end
    end
  end
end
return results
