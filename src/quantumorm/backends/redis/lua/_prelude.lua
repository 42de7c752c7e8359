-- _prelude.lua: shared by every script; commands.py puts it after each script's shebang.
-- luacheck: globals redis

-- the encoding of a null value (quantumorm.sortable.NULL)
local NULL = "\1\0"

-- A document key holds the document's version between two NUL bytes, then the document as
-- Python stored it (its JSON, or compressed: quantumorm/compression.py), so that a read of
-- the key (a query's MGET, a get) brings the version with it, with no read of the meta
-- hash per row. The meta hash keeps the version too ("v"): compare-and-set reads it there.
-- A document stored before versions were kept in it starts with its JSON ("{") or 0xFF.
-- Format 3 (read, not yet written: bench/format3.md) starts with 0x01 instead:
-- "\1" .. version .. "\0" .. recent write ids .. "\0" .. payload; query.lua returns it
-- as it returns format 2 (the caller reads its version there).
local function versioned(version, payload)
  return "\0" .. version .. "\0" .. payload
end

-- what a document key holds, without its version (and, format 3, its write ids; nil
-- stays nil)
local function payload_of(stored)
  local first = stored and string.byte(stored, 1)
  if not first or first > 1 then return stored end
  local ends = string.find(stored, "\0", 2, true)
  if ends and first == 1 then ends = string.find(stored, "\0", ends + 1, true) end
  if not ends then return stored end  -- (damaged: verify() reports it; never an error here)
  return string.sub(stored, ends + 1)
end

-- Format 3's header (bench/format3.md): "\1" .. version .. "\0" .. W .. "\0" .. payload,
-- W the document's recent writes (the newest write's id alone, 16 hex digits, its version
-- being the header's; then each older write's id and version, 32 characters, newest first,
-- as a format-2 meta hash's "r" holds them). Of a stored value: its version (text), W and
-- the position of its payload's first byte; nil when it is not a format-3 value (nil, or
-- its first byte is not 0x01); false when it is one whose header does not read (a version
-- that is not plain digits, a NUL missing, a W that is not 16 + 32k of [0-9a-f] and
-- digits): a writer refuses it as corrupt, nothing written, as a damaged format-2 prefix.
local function header_of(stored)
  if not stored or string.byte(stored, 1) ~= 1 then return nil end
  -- (one match: the version's digits, a NUL, W's [0-9a-f], a NUL; each C function Lua
  -- calls costs the server about 800 instructions)
  local _, ends, version, w = string.find(stored, "^\1([1-9]%d*)%z([0-9a-f]*)%z")
  if not ends or #version > 16 then return false end
  local size = #w
  if size > 0 and (size < 16 or (size - 16) % 32 ~= 0) then return false end
  for at = 33, size, 32 do  -- (each older write's version: 16 digits, not all zero)
    local _, last, zeros = string.find(w, "^(0*)%d*", at)
    if last < at + 15 or #zeros > 15 then return false end
  end
  return version, w, ends + 1
end

-- The version the write ``write_id`` gave a format-3 document whose header holds
-- ``version`` and ``w`` (header_of), or nil if it is not among its recent writes: at 1 (the
-- header's version) or at 17 + 32k (the 16 digits after it).
local function written_in(w, version, write_id)
  if not write_id or #write_id ~= 16 or w == "" then return nil end
  local at = string.find(w, write_id, 1, true)
  while at do
    if at == 1 then return tonumber(version) end
    if at % 32 == 17 then return tonumber(string.sub(w, at + 16, at + 31)) end
    at = string.find(w, write_id, at + 1, true)
  end
  return nil
end

-- "len:bytes" repeated (quantumorm.sortable.pack_list) -> list of strings, each followed by
-- ``suffix`` when one is given (an id key: the list is then a document's index members,
-- made in the same pass); nil or false -> {}; nil for a damaged list (a stray byte, a sign
-- or a blank before a length, a length of more than 12 digits, an item cut short): a caller
-- that reads a meta hash refuses with damaged() then, before writing anything. Each length is read from its bytes: no
-- string is made of its digits (that, with tonumber, cost about a third of the parse), and a
-- length of one or two digits (value encodings are short) from one string.byte of three bytes.
-- (written out in place on some scripts' common paths: change the copies too;
-- tests/unit/test_lua_written_out.py names them)
local function read_list(s, suffix)
  local out, n, pos = {}, 0, 1
  if not s then return out end
  local byte, sub, length = string.byte, string.sub, #s
  while pos <= length do
    local size, colon
    local b1, b2, b3 = byte(s, pos, pos + 2)
    if b2 == 58 and b1 >= 48 and b1 <= 57 then  -- ("d:")
      size, colon = b1 - 48, pos + 1
    elseif b3 == 58 and b1 >= 48 and b1 <= 57 and b2 and b2 >= 48 and b2 <= 57 then  -- ("dd:")
      size, colon = b1 * 10 + b2 - 528, pos + 2
    else
      local b = b1
      size, colon = 0, pos
      while b ~= 58 do  -- (":")
        if not b or b < 48 or b > 57 then return nil end
        size, colon = size * 10 + b - 48, colon + 1
        b = byte(s, colon)
      end
      -- (no digits, or more than sortable.unpack_list reads: verify() would call it damaged)
      if colon == pos or colon - pos > 12 then return nil end
    end
    if colon + size > length then return nil end  -- (an item cut short)
    n = n + 1
    if suffix then
      out[n] = sub(s, colon + 1, colon + size) .. suffix
    else
      out[n] = sub(s, colon + 1, colon + size)
    end
    pos = colon + size + 1
  end
  return out
end

-- read_list() of a list the caller made (its arguments): damage there is an error
local function unpack_list(s, suffix)
  local out = read_list(s, suffix)
  if not out then error("damaged list of value encodings") end
  return out
end

-- The refusal of a write (nothing written) that found the field ``field`` of the meta hash
-- ``meta_key`` damaged: Python raises DamagedMetaError; repair() rebuilds the meta hash.
local function damaged(meta_key, field)
  return {"DAMAGED", meta_key, field}
end

-- What a read raises for the field ``field`` of the meta hash ``meta_key`` when it does not
-- read (a read has no refusal reply to give: translation.py makes this error reply a
-- DamagedMetaError). Neither holds a blank: ids are escaped in keys, and meta fields are
-- "f:" or "x:" and a name.
local function damaged_error(meta_key, field)
  return {err = "DAMAGED " .. meta_key .. " " .. field}
end

-- A stored version is what string.format("%.0f") wrote: digits, no sign, blank or leading
-- zero ("+13" or " 13" would read as 13 to tonumber and to Python's int, and never equal
-- the "13" a caller expects). The refusal for ``stored`` (a version just read that is not
-- the expected one, or that a reply carries), or nil when it is a version.
local function bad_version(meta_key, stored)
  if string.find(stored, "^[1-9]%d*$") then return nil end
  return damaged(meta_key, "v")
end

-- the key is absent or holds the wanted type
local function type_ok(key, wanted)
  local t = redis.call("TYPE", key).ok
  return t == "none" or t == wanted
end

-- the escaped id inside an id key (quantumorm.sortable.id_key)
local function escaped_id(idkey)
  if string.byte(idkey, 1) == 1 then return string.sub(idkey, 3) end
  return string.sub(idkey, 2)
end

-- the first of the indexes whose key holds something else than a sorted set, or nil
local function bad_index(indexes)
  for _, index in ipairs(indexes) do
    if not type_ok(index.key, "zset") then return index.key end
  end
  return nil
end

-- Change events of this call: nil when the model has neither a stream nor Pub/Sub.
local EVENTS = nil

-- Turn change events on. ``spec`` is "" (off) or a MessagePack array: the stream's MAXLEN
-- ("" for no stream), "1" if events carry the document JSON, the Pub/Sub channel ("" for
-- none). ``key`` is the partition's stream. ``s``: the spec already unpacked (or nil).
-- Returns the key if it holds another type (the caller refuses before writing anything),
-- else nil.
local function events_on(spec, key, s)
  if spec == nil or spec == "" then return nil end
  s = s or cmsgpack.unpack(spec)
  EVENTS = {maxlen = s[1], doc = s[2] == "1", channel = s[3], key = key}
  if s[1] ~= "" and not type_ok(key, "stream") then return key end
  return nil
end

-- Append one change event to the stream (trimmed to about MAXLEN) and/or publish it.
-- ``changed`` is a MessagePack array of field names or nil (all of them); ``doc`` nil or JSON.
local function emit(op, idkey, version, write_id, changed, doc)
  if not EVENTS then return end
  -- (the entry built in one constructor, sized for its most fields, its length counted
  -- here: this runs once per write)
  local entry = {"op", op, "id", idkey, "v", tostring(version), nil, nil, nil, nil, nil, nil,
                 nil, nil}
  local n = 6
  if write_id then entry[n + 1], entry[n + 2], n = "w", write_id, n + 2 end
  if changed then entry[n + 1], entry[n + 2], n = "f", changed, n + 2 end
  if doc and EVENTS.doc then entry[n + 1], entry[n + 2], n = "d", doc, n + 2 end
  if EVENTS.maxlen ~= "" then
    local at = redis.call("XADD", EVENTS.key, "MAXLEN", "~", EVENTS.maxlen, "*",
                          unpack(entry, 1, n))
    entry[n + 1], entry[n + 2], n = "x", at, n + 2
  end
  if EVENTS.channel ~= "" then
    redis.call("PUBLISH", EVENTS.channel, cmsgpack.pack({unpack(entry, 1, n)}))
  end
end

-- Every index of the model as {key =, field =}: ``manifests`` lists each index's meta field,
-- in the order of its keys, which start at KEYS[first] (what bad_index(), purge() and
-- sweep() take)
local function index_records(manifests, first)
  local all = {}
  for i, field in ipairs(manifests) do all[i] = {key = KEYS[first + i - 1], field = field} end
  return all
end

-- index_records() where the caller sends no index key but those its common path writes
-- (patch.lua): ``named`` lists, for every index of the model in its order, its meta field
-- then its key's name after the partition's tag and ":" ("i:<name>", keys.py's
-- index_suffix), one after another; ``prefix`` is the partition's tag and ":" (a name built
-- here shares the tag of the keys sent, so it is in their slot, as the lock hash's and the
-- sweep's document keys are)
local function named_index_records(named, prefix)
  local all = {}
  for i = 2, #named, 2 do all[i / 2] = {key = prefix .. named[i], field = named[i - 1]} end
  return all
end

-- A document's index members as its meta hash lists them, one list per index of
-- ``indexes``: read whole before a purge writes anything. A damaged list: nil and the
-- refusal (damaged()).
local function listed_members(idkey, meta_key, indexes)
  local all = {}
  for i, index in ipairs(indexes) do
    local listed = read_list(redis.call("HGET", meta_key, index.field), idkey)
    if not listed then return nil, damaged(meta_key, index.field) end
    all[i] = listed
  end
  return all
end

-- Remove what a document left behind when its key expired: its entries in every index
-- (listed in its meta hash), the meta hash, its id and its schedule entry. ``indexes`` is a
-- list of {key = index key, field = meta field holding that index's entries}; ``members``
-- its members in each, as listed_members() read them before anything was written (a list
-- that does not read is refused there, with nothing written).
local function purge(idkey, meta_key, ids_key, ttl_key, indexes, members)
  for i, index in ipairs(indexes) do
    local listed = members[i]
    for j = 1, #listed, 1000 do
      redis.call("ZREM", index.key, unpack(listed, j, math.min(j + 999, #listed)))
    end
  end
  redis.call("DEL", meta_key)
  redis.call("ZREM", ids_key, idkey)
  redis.call("ZREM", ttl_key, idkey)
end

-- purge() for a document whose key expired, with its "expire" change event
local function purge_expired(idkey, meta_key, ids_key, ttl_key, indexes, members)
  local version = redis.call("HGET", meta_key, "v") or "0"
  purge(idkey, meta_key, ids_key, ttl_key, indexes, members)
  emit("expire", idkey, version)
end

-- purge_expired() of what an expired document left, its lists read first: the refusal
-- (damaged()) with nothing written when one does not read, else nil (purged)
local function purge_listed(idkey, meta_key, ids_key, ttl_key, indexes)
  local members, refused = listed_members(idkey, meta_key, indexes)
  if not members then return refused end
  purge_expired(idkey, meta_key, ids_key, ttl_key, indexes, members)
  return nil
end

-- A partition's state hash ({ns:coll:pN}:state) holds its version clock ("clock", see
-- _write.lua) and "layout": the newest layout of the collection's stored schema (see
-- quantumorm/schema.py) that has used the partition. Every script that reads or writes
-- index entries gets its caller's layout and refuses, before anything else, when the
-- partition has seen a newer one: the caller planned with an outdated schema (an index
-- added, dropped, built or being rebuilt since) and must read it again. A writer records
-- its own layout when it is newer (after a FLUSHALL, or before the stamps of a change
-- have reached every partition). ``layout`` "" (a tool with no schema): no check.
-- Returns {"LAYOUT", the newer stored layout}, {"WRONGTYPE", key}, or nil (go on); a
-- stored layout that does not read is the error damaged_error() would make.
-- (written out in place on some scripts' common paths: change the copies too;
-- tests/unit/test_lua_written_out.py names them)
local function layout_refusal(state_key, layout, writer)
  -- (one HGET, which also proves the key's type: a pcall'd error is no write)
  local got = redis.pcall("HGET", state_key, "layout")
  if type(got) == "table" and got.err then
    if string.find(got.err, "WRONGTYPE", 1, true) then return {"WRONGTYPE", state_key} end
    error(got)
  end
  -- (the same text is the same layout: the usual case, with no number read, as
  -- state_check() in _write.lua)
  if layout == nil or layout == "" or got == layout then return nil end
  -- (a layout that is not plain digits does not read, as verify() and repair() judge it
  -- (" 5" and "1e400" are numbers to tonumber): refused with nothing written, until
  -- repair() writes it again from the stored schema; translation.py makes this a
  -- DamagedStateError)
  local stored = string.find(got or "0", "^%d+$") and tonumber(got or "0")
  if not stored then error({err = "DAMAGED " .. state_key .. " layout"}) end
  local mine = tonumber(layout)
  if stored > mine then return {"LAYOUT", string.format("%.0f", stored)} end
  if writer and stored < mine then redis.call("HSET", state_key, "layout", layout) end
  return nil
end

-- the server's clock, in milliseconds
local function now_ms()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Sweep up to ``limit`` documents whose expiry is due: purge those whose key is gone,
-- reschedule those still alive (their expiry moved), leave those a prepared transaction
-- locks. Returns how many were purged. ``now``: the server's time in milliseconds, when the
-- caller has read it (a write: its version's); nil: a TIME reads it.
local function sweep(limit, doc_prefix, meta_prefix, ids_key, ttl_key, indexes, now)
  local purged, locks, locked = 0, nil, nil
  local due = redis.call("ZRANGEBYSCORE", ttl_key, "-inf", now or now_ms(), "LIMIT", 0, limit)
  if #due > 0 and bad_index(indexes) then return 0 end  -- never fail half-way: leave them
  for _, idkey in ipairs(due) do
    local eid = escaped_id(idkey)
    local at = redis.call("PEXPIRETIME", doc_prefix .. eid)
    if at == -2 and locked == nil then
      -- (the partition's lock hash, "<tag>:locks" beside "<tag>:ttl": one EXISTS per sweep)
      locks = string.sub(ttl_key, 1, -4) .. "locks"
      locked = redis.call("EXISTS", locks) == 1
    end
    if at == -2 and locked and redis.call("HGET", locks, idkey) then  -- luacheck: ignore 542
      -- a document locked by a prepared transaction keeps its leftovers until released:
      -- its apply writes it again (tx.lua); it stays due for the next sweep
    elseif at == -2 then
      -- (a sweep runs after its write's own: an error now would report that write as
      -- failed. A document whose lists of entries do not read, or whose meta key holds
      -- another type, stays due, for verify() to report and repair() to rebuild)
      local meta_key = meta_prefix .. eid
      local readable, members = pcall(listed_members, idkey, meta_key, indexes)
      if readable and members then
        purge_expired(idkey, meta_key, ids_key, ttl_key, indexes, members)
        purged = purged + 1
      end
    elseif at == -1 then
      redis.call("ZREM", ttl_key, idkey)
    else
      redis.call("ZADD", ttl_key, at, idkey)
    end
  end
  return purged
end
