#!lua flags=allow-oom
-- delete.lua: delete one document and every index entry it has, if its version matches.
--
-- allow-oom: a delete only frees memory, and must work when the server is full.
-- The entries to remove are read from the meta hash (what save.lua wrote), never recomputed
-- from the document, so a delete is exact even if the model's code changed since.
--
-- KEYS[1]   document key
-- KEYS[2]   meta hash key
-- KEYS[3]   the partition's id index
-- KEYS[4]   the partition's TTL schedule
-- KEYS[5]   where a soft delete keeps the document JSON until it expires
-- KEYS[6]   the partition's state hash (schema layout, see _prelude.lua)
-- KEYS[7..] index keys of the model
-- ARGV[1]   expected version, or "" to delete whatever version is stored
-- ARGV[2]   id key
-- ARGV[3]   MessagePack strings one after another (not an array): the meta field of every
--           index, in KEYS[7..] order (passed on to the meta hash's HMGET as cmsgpack.unpack
--           returns them: no table made of them on the common path)
-- ARGV[4]   "" to delete now; milliseconds to soft-delete: the document leaves every index
--           at once (so no read finds it) and its JSON stays at KEYS[5] that long
-- ARGV[5]   change events: "" (none), the spec events_on() reads, or the stream's MAXLEN
--           alone (digits: a stream entry without the document, no Pub/Sub, the usual
--           events, read with no MessagePack to unpack); the stream is KEYS[#KEYS]
-- ARGV[6]   the caller's schema layout ("" for none)
-- ARGV[7]   absent or "" (the caller loaded the document as format 2, or did not load it),
--           or, from a caller that loaded it as format 3 (bench/format3.md), a MessagePack
--           array: per index in KEYS[7..] order, an array of the value encodings its LOADED
--           document has there (its entries less the id key, which is appended here: no
--           list to parse; exact: the version is compared first);
--           for a delete of whatever version is stored (ARGV[1] ""), absent, or the model's
--           spec when every index is derived (headed.spec_items): a MessagePack array, per
--           index an array of its members' key texts (the stored name as JSON) and kind
--           codes (derived.py)
-- A format-3 document whose meta hash holds no version (no sweep record: no expiry) is
-- deleted with the caller's entries (ARGV[7]), or, a delete of whatever version is stored
-- sent with the spec, with the entries derived from its stored JSON (derived_entries, a
-- compound index's members' joined, as expire.lua's touch derives them; made by
-- rare.colder_paths()); else (no spec, a compressed payload, a member absent, a text
-- _derive.lua does not read) nothing is deleted and the reply is {"ENTRIES", version}:
-- the caller reads it and deletes it as loaded. One with a sweep record is deleted by it, as a format-2
-- document by its meta hash (it lists every index's entries). Both keys go in one DEL (the
-- meta hash may be a sweep record). Its header is read by header_of() written out in
-- place: a function named in cold_paths() would be made whenever a rare path makes them.
-- Returns   {"OK", deleted version} | {"MISSING"} | {"VERSION", actual} | {"WRONGTYPE", key}
--           | {"LAYOUT", stored layout} (the caller's schema is outdated: nothing deleted)
--           | {"LOCKED", record key} (a prepared transaction holds the document)
--           | {"DAMAGED", meta hash key, field} (a field of the meta hash does not read:
--             nothing deleted; repair() rebuilds it from the document)
--           (an expired document is "MISSING", and its leftovers are purged)
--           | {"ENTRIES", version} (format 3: see above; nothing deleted)
--           | {"CORRUPT"} (a format-3 header that does not read: nothing deleted)
-- luacheck: globals redis KEYS ARGV cmsgpack
-- uses: _write _derive
-- The shared definitions only the rare paths use are made when one is taken (cold_paths(),
-- luachunks.py), not on every call, and read as fields of ``rare``: a lock, an expired
-- document's purge, another version, a damaged meta hash, an index of more than 1000
-- entries, a refused write, an event other than a stream's alone. The common delete (no
-- schedule, no lock, a stream's event or none) calls none of them: it runs the shared
-- layout_refusal, events_unchecked, schedule_and_locks, typed, read_list, proving and
-- emit_first (_prelude.lua's and _write.lua's) written out in place (a change to one of
-- those must be made here too), the same commands in the same order, so that the only
-- function made per call is cold_paths() (each function made per call costs the server
-- about 1,100 instructions, each C function called about 800: errors are read as ``.err``
-- or by a reply's value).
-- cold: lock_holder stream_refusal index_records bad_index purge_listed bad_version damaged
-- cold: bulk type_ok events_unchecked emit_first payload_of proving read_list
-- and, made only by rare.colder_paths() (a blind delete of a format-3 document without a
-- sweep record, its entries derived from its JSON):
-- colder: derived_entries json_plain_spans json_members json_ws

-- What each command serves (commands per write are the server's main cost; see typed() in
-- _write.lua): HGET of the state hash's layout: the layout refusal and its type (a delete
-- takes no version: the clock is not read); TYPE of the document: its type and whether it
-- is alive; HMGET of the meta hash: the version and every
-- index's entries, and its type (a format-3 caller's: GET of the document, and the meta
-- hash asked in the EXISTS); one EXISTS of the schedule and the lock hash, usually
-- both absent: no lock, and the id is in no schedule; else the schedule's ZCARD (its type,
-- and whether the id can be in it at all: its refusal is returned where it always was, after
-- the meta hash's) and the lock hash's HGET (schedule_and_locks); then the writes, the
-- first of them (ZREM of the id) proving the id index's type, the first ZREM in each index
-- that index's, the XADD of the event the stream's: a refusal of any puts back what was
-- removed before it.
local rare  -- (cold_paths(), made on the first rare path taken)
local state_key = KEYS[6]
do  -- (layout_refusal() of a writer in line: one HGET, which also proves the key's type)
  local got = redis.pcall("HGET", state_key, "layout")
  local layout = ARGV[6]
  -- (the same text is the same layout: the usual case, with no number read)
  if got ~= layout then
    if type(got) == "table" then  -- (an error reply)
      if string.find(got.err, "WRONGTYPE", 1, true) then return {"WRONGTYPE", state_key} end
      error(got)
    end
    if layout ~= nil and layout ~= "" then
      -- (a layout that is not plain digits does not read, as verify() and repair() judge
      -- it: refused with nothing written)
      local stored = string.find(got or "0", "^%d+$") and tonumber(got or "0")
      if not stored then error({err = "DAMAGED " .. state_key .. " layout"}) end
      local mine = tonumber(layout)
      if stored > mine then return {"LAYOUT", string.format("%.0f", stored)} end
    end
  end
end
-- Change events: ARGV[5]. The usual spec, the stream's MAXLEN alone (digits), is read here
-- (stream_max); EVENTS, events_unchecked()'s table, is made only for any other spec (it is
-- unpacked here, before anything is written) or where a purge emits.
local spec = ARGV[5]
local stream_max
if spec ~= "" then
  local first = string.byte(spec, 1)
  if first >= 48 and first <= 57 then
    stream_max = spec
  else
    rare = cold_paths()
    rare.events_unchecked(spec, KEYS[#KEYS])
  end
end
local idkey, soft = ARGV[2], ARGV[4] ~= ""
-- (schedule_and_locks in line: the schedule's ZCARD refusal is returned after the meta
-- hash's, see above)
local scheduled, locked, ttl_refused = 0, 0, nil
-- (a caller that loaded the document as format 3 asks of its meta hash too, which such a
-- document has only as a sweep record or a listed index's fields: none of the three there,
-- the usual case in a partition where nothing expires, and no TYPE of it is asked; else
-- its TYPE, which format 3's path reads below anyway, tells whether it was one of them)
local headed_caller = ARGV[7] and ARGV[1] ~= "" and ARGV[7] ~= ""
local meta_absent, meta_type = false, nil
do
  local lock_hash = string.sub(state_key, 1, -6) .. "locks"
  local found
  if headed_caller then
    found = redis.call("EXISTS", KEYS[4], lock_hash, KEYS[2])
    meta_absent = found == 0
    if not meta_absent then
      meta_type = redis.call("TYPE", KEYS[2]).ok
      if meta_type ~= "none" then found = found - 1 end
    end
  else
    found = redis.call("EXISTS", KEYS[4], lock_hash)
  end
  if found > 0 then
    local count = redis.pcall("ZCARD", KEYS[4])
    if type(count) ~= "number" then
      if not string.find(count.err, "WRONGTYPE", 1, true) then error(count) end
      locked, ttl_refused = found - 1, {"WRONGTYPE", KEYS[4]}
    else
      scheduled, locked = count, found - (count > 0 and 1 or 0)
    end
  end
end
if locked > 0 then  -- (a document of a prepared transaction: see lock_holder())
  rare = rare or cold_paths()
  local holder = rare.lock_holder(state_key, idkey, true)
  if holder then return {"LOCKED", holder} end
end
local doc_type = redis.call("TYPE", KEYS[1]).ok
if doc_type ~= "none" and doc_type ~= "string" then return {"WRONGTYPE", KEYS[1]} end
local alive = doc_type == "string"
if soft then  -- (type_ok() in line: the common path names no function it does not call)
  local t = redis.call("TYPE", KEYS[5]).ok
  if t ~= "none" and t ~= "string" then return {"WRONGTYPE", KEYS[5]} end
end
-- every index's meta field, in KEYS[7..] order (index i is KEYS[6 + i]: no record per index
-- is built on the common path, only for a purge; no table of the fields either: a rare
-- path that names one unpacks them again)
local got, old  -- (the meta hash's HMGET reply, or {version}; each index's members)
if headed_caller and alive then  -- (format 3's caller)
  -- (the common delete once documents are format 3: no cold_paths() made on it)
  local raw = redis.call("GET", KEYS[1])
  if string.byte(raw, 1) == 1 then
    -- (header_of(raw) in line, see above)
    local _, w_ends, version, w = string.find(raw, "^\1([1-9]%d*)%z([0-9a-f]*)%z")
    local size = w_ends and #w
    if not w_ends or #version > 16 or (size > 0 and (size < 16 or (size - 16) % 32 ~= 0)) then
      return {"CORRUPT"}
    end
    for at = 33, size, 32 do  -- (each older write's version: 16 digits, not all zero)
      local _, last, zeros = string.find(w, "^(0*)%d*", at)
      if last < at + 15 or #zeros > 15 then return {"CORRUPT"} end
    end
    meta_type = meta_absent and "none" or meta_type
    if meta_type ~= "none" and meta_type ~= "hash" then return {"WRONGTYPE", KEYS[2]} end
    got, old = {version}, cmsgpack.unpack(ARGV[7])
    for i = 1, #old do  -- (the members: the loaded value encodings and the id key)
      local members = old[i]
      for j = 1, #members do members[j] = members[j] .. idkey end
    end
  end
end
if not got then
  got = redis.pcall("HMGET", KEYS[2], "v", cmsgpack.unpack(ARGV[3]))
  if got.err then
    if string.find(got.err, "WRONGTYPE", 1, true) then return {"WRONGTYPE", KEYS[2]} end
    error(got)
  end
end
if ttl_refused then return ttl_refused end
local stored = got[1] or nil
if not stored then
  -- (no version in the meta hash: a document of format 3, whose entries it does not list)
  local raw = alive and redis.call("GET", KEYS[1])
  if not raw or string.byte(raw, 1) ~= 1 then return {"MISSING"} end
  do
    -- (header_of(raw) in line, see above)
    local _, w_ends, version, w = string.find(raw, "^\1([1-9]%d*)%z([0-9a-f]*)%z")
    local size = w_ends and #w
    if not w_ends or #version > 16 or (size > 0 and (size < 16 or (size - 16) % 32 ~= 0)) then
      return {"CORRUPT"}
    end
    for at = 33, size, 32 do  -- (each older write's version: 16 digits, not all zero)
      local _, last, zeros = string.find(w, "^(0*)%d*", at)
      if last < at + 15 or #zeros > 15 then return {"CORRUPT"} end
    end
    if ARGV[1] ~= "" and version ~= ARGV[1] then return {"VERSION", version} end
    -- (a delete of whatever version is stored, whose caller sent the spec as ARGV[7]: the
    -- entries derived from the stored JSON, as expire.lua's touch derives them; any index
    -- or member that does not derive: ENTRIES, as without the spec)
    local derive = ARGV[1] == "" and ARGV[7]
    if not derive or derive == "" then return {"ENTRIES", version} end
    local payload = string.sub(raw, w_ends + 1)
    if string.byte(payload, 1) ~= 123 then return {"ENTRIES", version} end
    rare = rare or cold_paths()
    local rarer = rare.colder_paths()
    local indexes = cmsgpack.unpack(derive)
    if #indexes ~= #got - 1 then return {"ENTRIES", version} end
    local given = {}
    for _, members in ipairs(indexes) do
      if #members == 0 then return {"ENTRIES", version} end
      for j = 1, #members, 2 do given[#given + 1] = {members[j]} end
    end
    local spans = rarer.json_plain_spans(payload, given)
    if not spans then
      local ok, members, close = pcall(rarer.json_members, payload)
      if not ok or rarer.json_ws(payload, close + 1) then return {"ENTRIES", version} end
      spans = {}
      for _, m in ipairs(members) do
        -- (a member name written with an escape may be another text of a wanted name)
        if string.find(m[1], "\\", 1, true) then return {"ENTRIES", version} end
        spans[m[1]] = m
      end
    end
    old = {}
    for i, members in ipairs(indexes) do
      local entries
      for j = 1, #members, 2 do
        local span, kind = spans[members[j]], members[j + 1]
        local found = span and kind ~= "" and rarer.derived_entries(
          string.sub(payload, span[2], span[3] - 1), kind)
        if not found then return {"ENTRIES", version} end
        if #members == 2 then
          entries = found
        else  -- (a compound index: its members' entries joined, one each)
          if #found ~= 1 then return {"ENTRIES", version} end
          entries = {(entries and entries[1] or "") .. found[1]}
        end
      end
      for k, e in ipairs(entries) do entries[k] = e .. idkey end
      old[i] = entries
    end
    stored = version
  end
end
if not alive then  -- it expired: clean up what it left
  rare = rare or cold_paths()
  if not rare.type_ok(KEYS[3], "zset") then return {"WRONGTYPE", KEYS[3]} end
  if not EVENTS then rare.events_unchecked(spec, KEYS[#KEYS]) end  -- (a purge emits)
  local refused = rare.stream_refusal()  -- (the purge emits an "expire" event)
  if refused then return refused end
  local indexes = rare.index_records({cmsgpack.unpack(ARGV[3])}, 7)
  local bad = rare.bad_index(indexes)
  if bad then return {"WRONGTYPE", bad} end
  return rare.purge_listed(idkey, KEYS[2], KEYS[3], KEYS[4], indexes) or {"MISSING"}
end
if stored ~= ARGV[1] then  -- (a delete of any version replies with the one it deleted)
  rare = rare or cold_paths()
  local refused = rare.bad_version(KEYS[2], stored)
  if refused then return refused end
  if ARGV[1] ~= "" then return {"VERSION", stored} end
end
-- each index's entries of the document, as members (value encodings .. id key), unless
-- made above (a format-3 document's): from the meta hash's lists, a list of one value (a
-- scalar field's) by one match, as read_list() reads it ("len:bytes", at most 12 digits,
-- the length read by arithmetic on its digits); any other by read_list()
if not old then
  old = {}
  for i = 1, #got - 1 do  -- (the HMGET's reply: the version, then one list per index)
    local list = got[i + 1]
    local size, item
    if list then size, item = string.match(list, "^(%d+):(.*)$") end
    if size and #size <= 12 and size + 0 == #item then
      old[i] = {item .. idkey}
    elseif not list or list == "" then  -- (no field, or an empty list: no entries)
      old[i] = {}
    else
      rare = rare or cold_paths()
      old[i] = rare.read_list(list, idkey)
      if not old[i] then return rare.damaged(KEYS[2], ({cmsgpack.unpack(ARGV[3])})[i]) end
    end
  end
end

-- the deleted document for its event, read before anything is written (EVENTS: made
-- above for a spec other than the stream's MAXLEN alone, whose events carry no document)
local last = EVENTS and EVENTS.doc and rare.payload_of(redis.call("GET", KEYS[1]))
-- writes: the id first (its WRONGTYPE error is a refusal: nothing written yet), then its
-- entries, index by index (the first ZREM in each proves its key's type: proving()),
-- then the event: a refusal of any puts back what was removed before it
-- (typed()'s checks written out: a ZREM's reply is a count, else an error)
do
  local removed = redis.pcall("ZREM", KEYS[3], idkey)
  if removed ~= 1 and removed ~= 0 then
    if string.find(removed.err, "WRONGTYPE", 1, true) then return {"WRONGTYPE", KEYS[3]} end
    error(removed)
  end
  local bad = nil
  local dropped = 0  -- (the indexes whose entries are removed)
  for i = 1, #old do
    local members, key = old[i], KEYS[6 + i]
    local n = #members
    if n > 1000 then
      rare = rare or cold_paths()
      bad = rare.proving("ZREM", key, members)
    elseif n > 0 then  -- (none: nothing written, nothing proven, as proving() does)
      local reply
      if n == 1 then
        reply = redis.pcall("ZREM", key, members[1])
      else
        reply = redis.pcall("ZREM", key, unpack(members))
      end
      -- (a count of n removed, the usual reply, is no error; any other is looked at)
      if reply ~= n and type(reply) ~= "number" then
        if not string.find(reply.err, "WRONGTYPE", 1, true) then error(reply) end
        bad = {"WRONGTYPE", key}
      end
    end
    if bad then break end
    dropped = i
  end
  if not bad then
    if stream_max then  -- (emit_first's usual event, a stream's alone)
      local reply = redis.pcall("XADD", KEYS[#KEYS], "MAXLEN", "~", stream_max, "*", "op",
                                "delete", "id", idkey, "v", stored)
      if reply.err then  -- (a string's .err is nil, read from its metatable)
        if not string.find(reply.err, "WRONGTYPE", 1, true) then error(reply) end
        bad = {"WRONGTYPE", KEYS[#KEYS]}
      end
    elseif spec ~= "" then  -- (EVENTS made above)
      bad = rare.emit_first("delete", idkey, stored, nil, nil, last)
    end
  end
  if bad then  -- (put back what was removed; no closure made for it on every call)
    rare = rare or cold_paths()
    for i = 1, dropped do rare.bulk("ZADD", KEYS[6 + i], old[i], true) end
    if removed == 1 then redis.call("ZADD", KEYS[3], 0, idkey) end
    return bad
  end
end
if scheduled > 0 then redis.call("ZREM", KEYS[4], idkey) end
if soft then
  redis.call("DEL", KEYS[2])
  redis.call("RENAME", KEYS[1], KEYS[5])
  redis.call("PEXPIRE", KEYS[5], ARGV[4])
else
  redis.call("DEL", KEYS[1], KEYS[2])
end
return {"OK", stored}
