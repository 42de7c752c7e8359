#!lua flags=allow-oom
-- repair.lua: fix what verify() found in one partition (what repair() sends, batch by
-- batch). Each fix checks again, inside this atomic call, that the problem is still there
-- (writers may have fixed or changed the document since it was judged) and does nothing
-- otherwise. allow-oom: fixes mostly free memory, and a full server needs them most.
--
-- KEYS[1]     the partition's id index    KEYS[2]  its TTL schedule
-- KEYS[3]     the partition's state hash (version clock, schema layout)
-- KEYS[4..I+3] every index key of the model, in the model's index order
-- KEYS[I+4..] per fix: document key, meta hash key (for "drop" and "clock": any key of
--             the partition, unused)
-- ARGV[1]     MessagePack array: the meta field of every index, in KEYS order
-- ARGV[2]     the caller's schema layout
-- ARGV[3]     document key prefix    ARGV[4]  meta key prefix
-- ARGV[5..]   per fix, 5 values: what, id key, version ("" if none), the document as stored
--             when judged ("" if none), MessagePack pairs (meta field, netstring list of
--             value encodings) for "adopt"/"reentry"; for "drop": the index position
--             (1-based) in the version slot and the entry in the JSON slot
--   what:  "unlist"   an id without document nor meta hash: removed from the id index
--          "purge"    a meta hash without document and no sweep due: what it records goes
--          "adopt"    a document without (valid) meta hash: a new version, its entries, listed
--          "rebuild"  a document whose meta hash does not read (a damaged field, another type
--                     at its key): as "adopt" (the document is the truth); the entries the
--                     damaged record listed are removed by the "drop" fixes that follow
--          "discard"  a meta hash that does not read, without document: it goes, with its id
--                     and schedule entry (its entries: "drop" fixes)
--          "list"     a document at this version missing from the id index: listed
--          "reentry"  a document at this version whose entries are wrong: rewritten
--          "restamp"  a document carrying another version than its meta hash at this one:
--                     stored again with the meta hash's
--          "drop"     an index entry that no live document records: removed; with a
--                     version in the 5th slot, an entry judged stale from a format-3
--                     document at that version: removed while it is still at it
--   and for a format-3 document (bench/format3.md: "\1" .. version .. "\0" .. W .. "\0"
--   .. payload; its meta hash only a sweep record or a listed index's record), whose 5th
--   value is a MessagePack array {pairs as for "reentry", the meta fields a listed index
--   keeps whatever the expiry}:
--          "restamp3" its header does not read: stored again as judged (the same bytes)
--                     with a new version from the clock, W empty, its payload kept; then
--                     as "resweep" at that version, and listed
--          "resweep"  at this version (its header's): its entries rewritten from the
--                     pairs (those its meta hash listed and the pairs do not hold go), and
--                     its meta hash made what format 3 keeps: a sweep record ("v" and the
--                     pairs) when the document expires, else the listed fields, or none
--          "list3"    at this version, missing from the id index: listed
--          "moved3"   at this version, restored in another partition (repartition.py): its
--                     entries (the pairs), those its meta hash lists, the meta hash, the
--                     document, its id and schedule entry removed
--          "clock"    the clock raised to the version
-- Returns     {"LAYOUT", stored} or, per fix, 1 if it was applied, 0 if no longer needed
-- luacheck: globals redis KEYS ARGV cmsgpack
-- uses: _write

local manifests = cmsgpack.unpack(ARGV[1])
local indexes, by_field = {}, {}
for i, field in ipairs(manifests) do
  indexes[i] = {key = KEYS[3 + i], field = field}
  by_field[field] = indexes[i]
end
local nindexes = #indexes
do
  local refused = layout_refusal(KEYS[3], ARGV[2], true)
  if refused then return refused end
  for _, key in ipairs({KEYS[1], KEYS[2]}) do
    if not type_ok(key, "zset") then return redis.error_reply("WRONGTYPE " .. key) end
  end
  local bad = bad_index(indexes)
  if bad then return redis.error_reply("WRONGTYPE " .. bad) end
end

-- write the meta fields ``pairs`` and bring the entries of the indexes they record to them
-- (all of them added, whatever the meta hash recorded: an entry may have been lost)
local function entries(idkey, meta_key, pairs)
  pairs = pairs or {}
  for i = 1, #pairs, 2 do
    local index = by_field[pairs[i]]
    if index then
      local new = unpack_list(pairs[i + 1])
      -- (a record that does not read is rewritten: its entries go with "drop" fixes)
      local old = read_list(redis.call("HGET", meta_key, pairs[i]) or nil) or {}
      rewrite_entries(index.key, idkey, old, new)
      local all = {}
      for n, member in ipairs(new) do all[n] = member .. idkey end
      bulk("ZADD", index.key, all, true)
    end
  end
  if #pairs > 0 then redis.call("HSET", meta_key, unpack(pairs)) end
end

-- Whether the meta hash at ``meta_key`` must be made again from its document: it is
-- absent, holds another type, has no version that reads (see bad_version), or a list of
-- entries or values that does not read; and the fields that do not read (nil: the key goes
-- whole).
local function unreadable(meta_key)
  if not type_ok(meta_key, "hash") then return true, nil end
  local flat, bad, has_version = redis.call("HGETALL", meta_key), {}, false
  for i = 1, #flat, 2 do
    local name, value = flat[i], flat[i + 1]
    local kind = string.sub(name, 1, 2)
    if name == "v" then
      has_version = true
      if bad_version(meta_key, value) then bad[#bad + 1] = name end
    elseif (kind == "f:" or kind == "x:") and not read_list(value) then
      bad[#bad + 1] = name
    end
  end
  return not has_version or #bad > 0, bad
end

-- the document is alive and its meta hash at ``version`` (as it was judged)
local function at_version(doc_key, meta_key, version)
  return redis.call("EXISTS", doc_key) == 1 and type_ok(meta_key, "hash")
    and redis.call("HGET", meta_key, "v") == version
end

-- a format-3 document at ``version`` (its header's, as judged): its recent write ids (W),
-- else nil (changed since, gone, or not of format 3)
local function headed_at(doc_key, version)
  if not type_ok(doc_key, "string") then return nil end
  local shown, w = header_of(redis.call("GET", doc_key))
  if not shown or shown ~= version then return nil end
  return w
end

-- "resweep" (see the header) of a format-3 document at ``version``: ``spec`` is {pairs,
-- listed fields}
local function headed_entries(idkey, doc_key, meta_key, version, spec)
  local pairs, listed = spec[1], spec[2]
  local hashed = type_ok(meta_key, "hash")
  for i = 1, #pairs, 2 do
    local index = by_field[pairs[i]]
    if index then
      local new = unpack_list(pairs[i + 1])
      -- (a record that does not read lists nothing here: its entries go with "drop" fixes)
      local old = hashed and read_list(redis.call("HGET", meta_key, pairs[i]) or nil) or {}
      rewrite_entries(index.key, idkey, old, new)
      local all = {}
      for k, member in ipairs(new) do all[k] = member .. idkey end
      bulk("ZADD", index.key, all, true)
    end
  end
  local kept = {}
  if hashed and redis.call("PTTL", doc_key) >= 0 then
    -- a sweep record: "v" and every index's fields; the fields of indexes not checked
    -- (building) kept if they read, those that do not read and a format-2 "r" dropped
    local _, bad = unreadable(meta_key)
    bad = bad or {}
    bad[#bad + 1] = "r"
    redis.call("HDEL", meta_key, unpack(bad))
    kept = {"v", version}
    for i = 1, #pairs do kept[i + 2] = pairs[i] end
  else
    redis.call("DEL", meta_key)
    if redis.call("PTTL", doc_key) >= 0 then
      kept = {"v", version}
      for i = 1, #pairs do kept[i + 2] = pairs[i] end
    else
      local keep = {}
      for _, name in ipairs(listed) do keep[name] = true end
      for i = 1, #pairs, 2 do
        if keep[pairs[i]] then kept[#kept + 1], kept[#kept + 2] = pairs[i], pairs[i + 1] end
      end
    end
  end
  if #kept > 0 then redis.call("HSET", meta_key, unpack(kept)) end
end

local results = {}
for n = 1, (#ARGV - 4) / 5 do
  local base = 4 + 5 * (n - 1)
  local what, idkey, version, json = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3], ARGV[base + 4]
  local doc_key, meta_key = KEYS[nindexes + 2 + 2 * n], KEYS[nindexes + 3 + 2 * n]
  local done = 0
  if what == "unlist" then
    if redis.call("EXISTS", doc_key, meta_key) == 0 then
      redis.call("ZREM", KEYS[1], idkey)
      redis.call("ZREM", KEYS[2], idkey)
      done = 1
    end
  elseif what == "purge" then
    if redis.call("EXISTS", doc_key) == 0 and not redis.call("ZSCORE", KEYS[2], idkey)
        and type_ok(meta_key, "hash") then
      local members = listed_members(idkey, meta_key, indexes)
      if members then  -- (damaged since it was judged: the next run discards it)
        purge(idkey, meta_key, KEYS[1], KEYS[2], indexes, members)
        done = 1
      end
    end
  elseif what == "discard" then
    if redis.call("EXISTS", doc_key) == 0 and redis.call("EXISTS", meta_key) == 1
        and unreadable(meta_key) then
      -- the entries its lists that read record go now (verify() judged them as awaiting
      -- the sweep); those of a list that does not read, with "drop" fixes
      if type_ok(meta_key, "hash") then
        for _, index in ipairs(indexes) do
          local listed = read_list(redis.call("HGET", meta_key, index.field) or nil, idkey)
          if listed then bulk("ZREM", index.key, listed, false) end
        end
      end
      redis.call("DEL", meta_key)
      redis.call("ZREM", KEYS[1], idkey)
      redis.call("ZREM", KEYS[2], idkey)
      done = 1
    end
  elseif what == "adopt" or what == "rebuild" then
    local needed, bad = unreadable(meta_key)
    if needed and type_ok(doc_key, "string") and redis.call("GET", doc_key) == json then
      if not bad then
        redis.call("DEL", meta_key)
      elseif #bad > 0 then
        redis.call("HDEL", meta_key, unpack(bad))
      end
      entries(idkey, meta_key, cmsgpack.unpack(ARGV[base + 5]))
      local shown = string.format("%.0f", next_version(KEYS[3]))
      redis.call("HSET", meta_key, "v", shown)
      -- (the document key carries the version too: the new one, as any write stores it)
      redis.call("SET", doc_key, versioned(shown, payload_of(json)), "KEEPTTL")
      redis.call("ZADD", KEYS[1], 0, idkey)
      done = 1
    end
  elseif what == "list" then
    if at_version(doc_key, meta_key, version) then
      redis.call("ZADD", KEYS[1], 0, idkey)
      done = 1
    end
  elseif what == "restamp" then
    -- the document carries another version than its meta hash's: the meta hash's, which
    -- compare-and-set reads, is written into the document (as judged: unchanged since)
    if at_version(doc_key, meta_key, version) and redis.call("GET", doc_key) == json then
      redis.call("SET", doc_key, versioned(version, payload_of(json)), "KEEPTTL")
      done = 1
    end
  elseif what == "reentry" then
    if at_version(doc_key, meta_key, version) then
      entries(idkey, meta_key, cmsgpack.unpack(ARGV[base + 5]))
      done = 1
    end
  elseif what == "restamp3" then
    if type_ok(doc_key, "string") and redis.call("GET", doc_key) == json then
      local shown = string.format("%.0f", next_version(KEYS[3]))
      redis.call("SET", doc_key, "\1" .. shown .. "\0\0" .. payload_of(json), "KEEPTTL")
      headed_entries(idkey, doc_key, meta_key, shown, cmsgpack.unpack(ARGV[base + 5]))
      redis.call("ZADD", KEYS[1], 0, idkey)
      done = 1
    end
  elseif what == "resweep" then
    if headed_at(doc_key, version) then
      headed_entries(idkey, doc_key, meta_key, version, cmsgpack.unpack(ARGV[base + 5]))
      done = 1
    end
  elseif what == "list3" then
    if headed_at(doc_key, version) then
      redis.call("ZADD", KEYS[1], 0, idkey)
      done = 1
    end
  elseif what == "moved3" then
    if headed_at(doc_key, version) then
      local pairs = cmsgpack.unpack(ARGV[base + 5])[1]
      for i = 1, #pairs, 2 do
        local index = by_field[pairs[i]]
        if index then bulk("ZREM", index.key, unpack_list(pairs[i + 1], idkey), false) end
      end
      if type_ok(meta_key, "hash") then
        for _, index in ipairs(indexes) do
          local listed = read_list(redis.call("HGET", meta_key, index.field) or nil, idkey)
          if listed then bulk("ZREM", index.key, listed, false) end
        end
      end
      redis.call("DEL", doc_key, meta_key)
      redis.call("ZREM", KEYS[1], idkey)
      redis.call("ZREM", KEYS[2], idkey)
      done = 1
    end
  elseif what == "drop" and ARGV[base + 5] ~= "" then
    -- judged stale from a format-3 document at that version: still at it, still stale
    local index = indexes[tonumber(version)]
    local cut = #json
    while cut > 0 and string.byte(json, cut) ~= 0 do cut = cut - 1 end
    if headed_at(ARGV[3] .. escaped_id(string.sub(json, cut + 1)), ARGV[base + 5])
        and redis.call("ZREM", index.key, json) == 1 then
      done = 1
    end
  elseif what == "drop" then
    local index = indexes[tonumber(version)]
    local cut = #json
    while cut > 0 and string.byte(json, cut) ~= 0 do cut = cut - 1 end
    local value, owner = string.sub(json, 1, cut), string.sub(json, cut + 1)
    local eid = escaped_id(owner)
    local owner_meta = ARGV[4] .. eid
    local recorded = false
    if redis.call("EXISTS", ARGV[3] .. eid) == 1 and type_ok(owner_meta, "hash") then
      local listed = read_list(redis.call("HGET", owner_meta, index.field) or nil)
      -- (a record that does not read, of a live document that repair() could not rebuild:
      -- which entries are its own is not known here, so none is removed)
      if not listed then recorded = true end
      for _, member in ipairs(listed or {}) do
        if member == value then recorded = true; break end
      end
    end
    if not recorded and redis.call("ZREM", index.key, json) == 1 then done = 1 end
  elseif what == "clock" then
    clock_at_least(KEYS[3], tonumber(version))
    done = 1
  end
  results[n] = done
end
return results
