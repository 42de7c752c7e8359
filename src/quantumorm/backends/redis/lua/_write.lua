-- _write.lua: the checks and the writes of one document write, shared by save.lua (one
-- document) and tx.lua (several, all or nothing). A script includes it with "-- uses: _write".
-- Callers run every check of every document before the first write: Redis does not roll a
-- script back, so a refusal must come before anything is changed.
-- luacheck: globals redis cjson

-- ZADD (score 0) or ZREM members in chunks (unpack() has a stack limit)
local function bulk(command, key, members, with_score)
  local count = #members
  if not with_score and count <= 1000 then  -- (the members are the arguments: no copy)
    if count > 0 then redis.call(command, key, unpack(members)) end
    return
  end
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

-- A meta hash's "r" keeps the document's last RECENT writes, newest first, 32 characters
-- each: the write id (16) and the version it wrote (16 digits, zero-padded). A write whose
-- reply was lost is sent again with the same write id; finding it here means the first
-- attempt was applied (it must not apply twice) and tells the version it wrote.
local RECENT = 4

-- The version the write ``write_id`` gave a document whose "r" is ``seen``, or nil if it
-- was not among its last RECENT writes. (A plain search, then its place checked: a write id
-- starts an entry, at 1, 33, 65...; no substring is made of each entry, which cost every
-- write as much as a command.)
-- (written out in place on some scripts' common paths: change the copies too;
-- tests/unit/test_lua_written_out.py names them)
local function applied_in(seen, write_id)
  if not seen or not write_id or #write_id ~= 16 then return nil end
  local at = string.find(seen, write_id, 1, true)
  while at do
    if at % 32 == 1 then return tonumber(string.sub(seen, at + 16, at + 31)) end
    at = string.find(seen, write_id, at + 1, true)
  end
  return nil
end

-- The version the write ``write_id`` gave the document of ``meta_key``, or nil.
local function applied(meta_key, write_id)
  if not write_id or #write_id ~= 16 then return nil end
  return applied_in(redis.call("HGET", meta_key, "r"), write_id)
end

-- Commands per write are the server's main cost, so a read that a write needs anyway also
-- proves its key's type: ``redis.pcall`` turns a WRONGTYPE error into the refusal
-- {"WRONGTYPE", key} (nothing written yet) instead of a TYPE command before it. Returns the
-- reply, or nil and the refusal; any other error is raised as it is.
-- (written out in place on some scripts' common paths: change the copies too;
-- tests/unit/test_lua_written_out.py names them)
local function typed(key, ...)
  local reply = redis.pcall(...)
  if type(reply) == "table" and reply.err then
    if string.find(reply.err, "WRONGTYPE", 1, true) then return nil, {"WRONGTYPE", key} end
    error(reply)
  end
  return reply
end

-- The state hash's clock as read by state_check() (nil: not read yet; next_version reads
-- it), and the caller's layout when it must be recorded (written with the clock).
local CLOCK, NEW_LAYOUT = nil, nil

-- layout_refusal() (see _prelude.lua) for a writer, in one HMGET that also reads the clock
-- and proves the state hash's type; a newer layout of the caller is recorded by the
-- write's clock update (so in the same HSET), not by a command of its own.
-- (written out in place on some scripts' common paths: change the copies too;
-- tests/unit/test_lua_written_out.py names them)
local function state_check(state_key, layout, writer)
  local got, refused = typed(state_key, "HMGET", state_key, "layout", "clock")
  if refused then return refused end
  CLOCK = tonumber(got[2] or "0") or 0
  -- (the same text is the same layout: the usual case, with no number read)
  if layout == nil or layout == "" or got[1] == layout then return nil end
  -- (a layout that is not plain digits does not read: refused before anything is written,
  -- as layout_refusal() does; inlined, so that no function is made for this rare path)
  local stored = string.find(got[1] or "0", "^%d+$") and tonumber(got[1] or "0")
  if not stored then error({err = "DAMAGED " .. state_key .. " layout"}) end
  local mine = tonumber(layout)
  if stored > mine then return {"LAYOUT", string.format("%.0f", stored)} end
  if writer and stored < mine then NEW_LAYOUT = layout end
  return nil
end

-- Versions never repeat for an id, across deletes, expiries and re-creates: every write
-- takes the next value of its partition's clock (the state hash's "clock"), max(last + 1,
-- the server's time in microseconds), so a compare-and-set from an earlier life of a
-- document always fails. The clock outlives every document; if it is lost too (FLUSHALL, a
-- new server), the time still puts new versions above the old ones, which were at most the
-- time of their write (plus one per write made in the same microsecond, which one server
-- cannot sustain). Versions stay below 2^53 (exact as Lua numbers) until the year 2255.
-- A script writing many documents (insert_many) sets DEFERRED: the clock is then written
-- once, by flush_clock() at its end, instead of once per document.
local DEFERRED, DIRTY = false, false

-- The server's time in milliseconds as the last take_version() read it (nil: not read): an
-- expiry the same write sets counts from it (see write_time_ms), with no TIME of its own.
local NOW_MS = nil

-- the server's time in milliseconds for an expiry this write sets: the time its version
-- was taken at (microseconds before, in the same script), else a TIME
local function write_time_ms()
  return NOW_MS or now_ms()
end

-- The next version, taken from the clock (CLOCK) but not yet written: write_clock() does
-- that (a script may need the version before its first write: see emit_first); with the
-- time it was taken at, in microseconds and as the TIME reply.
local function take_version_at(state_key)
  local t = redis.call("TIME")
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  NOW_MS = math.floor(now / 1000)
  local last = CLOCK or tonumber(redis.call("HGET", state_key, "clock") or "0") or 0
  CLOCK = math.max(last + 1, now)
  return CLOCK, now, t
end

-- take_version_at()'s version alone
local function take_version(state_key)
  return (take_version_at(state_key))
end

-- take_version() and the version's decimal text: made of the TIME reply's own digits when
-- the version is the time (the usual case), else by string.format (a "%.0f" of a 16-digit
-- number costs the server more than the rest of taking the version).
-- (written out in place on some scripts' common paths: change the copies too;
-- tests/unit/test_lua_written_out.py names them)
local function take_version_text(state_key)
  -- (take_version_at(state_key), in line: each function the common path names is made on
  -- every call, see luachunks.py; the two must stay the same)
  local t = redis.call("TIME")
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  NOW_MS = math.floor(now / 1000)
  local last = CLOCK or tonumber(redis.call("HGET", state_key, "clock") or "0") or 0
  CLOCK = math.max(last + 1, now)
  -- (the microseconds padded to six digits: string.sub makes no table, where a table of
  -- the paddings would be made on every call)
  if CLOCK == now then return CLOCK, t[1] .. string.sub("00000", #t[2]) .. t[2] end
  return CLOCK, string.format("%.0f", CLOCK)
end

-- Write the clock (and a newer layout of the caller, in the same HSET); deferred to
-- flush_clock() in a DEFERRED script. ``shown``: the clock's decimal text, when the caller
-- has made it (a string.format per call costs as much as a command's own work).
-- (written out in place on some scripts' common paths: change the copies too;
-- tests/unit/test_lua_written_out.py names them)
local function write_clock(state_key, shown)
  if DEFERRED then
    DIRTY = true
  elseif NEW_LAYOUT then
    redis.call("HSET", state_key, "clock", shown or string.format("%.0f", CLOCK),
               "layout", NEW_LAYOUT)
    NEW_LAYOUT = nil
  else
    redis.call("HSET", state_key, "clock", shown or string.format("%.0f", CLOCK))
  end
end

local function next_version(state_key)
  local version = take_version(state_key)
  write_clock(state_key)
  return version
end

-- events_on() (see _prelude.lua) without its TYPE check of the stream, for a write whose
-- first write is its event (emit_first): the XADD's WRONGTYPE error is then the refusal.
-- A purge before it must check the stream itself (stream_refusal). ``spec`` may also be the
-- stream's MAXLEN alone (digits: a stream entry without the document, no Pub/Sub, the
-- usual events, read with no MessagePack to unpack), as insert, save and delete send it.
-- (written out in place on some scripts' common paths: change the copies too;
-- tests/unit/test_lua_written_out.py names them)
local function events_unchecked(spec, key)
  if spec == nil or spec == "" then return end
  local first = string.byte(spec, 1)
  if first >= 48 and first <= 57 then
    EVENTS = {maxlen = spec, doc = false, channel = "", key = key}
    return
  end
  local s = cmsgpack.unpack(spec)
  EVENTS = {maxlen = s[1], doc = s[2] == "1", channel = s[3], key = key}
end

-- {"WRONGTYPE", stream} if change events go to a stream that holds another type, else nil
local function stream_refusal()
  if EVENTS and EVENTS.maxlen ~= "" and not type_ok(EVENTS.key, "stream") then
    return {"WRONGTYPE", EVENTS.key}
  end
  return nil
end

-- emit() as a refusable write: a WRONGTYPE error of its XADD is a refusal, {"WRONGTYPE",
-- stream} (any other error is raised). Where it is not the script's first write (save.lua and
-- delete.lua make it their last refusable one), the caller takes back what it wrote before.
-- (written out in place on some scripts' common paths: change the copies too;
-- tests/unit/test_lua_written_out.py names them)
local function emit_first(op, idkey, version, write_id, changed, doc)
  if EVENTS and EVENTS.channel == "" and EVENTS.maxlen ~= "" and not (doc and EVENTS.doc)
      and (write_id or not changed) then
    -- (the usual events, a stream's alone: emit()'s XADD with its arguments in place, with
    -- no list of them made and no pcall of emit: a patch's or an update's carries a write id
    -- and its fields, an insert's a write id, a delete's neither)
    local key, maxlen, shown, _, refused = EVENTS.key, EVENTS.maxlen, tostring(version)
    if changed then
      _, refused = typed(key, "XADD", key, "MAXLEN", "~", maxlen, "*", "op", op, "id", idkey,
                         "v", shown, "w", write_id, "f", changed)
    elseif write_id then
      _, refused = typed(key, "XADD", key, "MAXLEN", "~", maxlen, "*", "op", op, "id", idkey,
                         "v", shown, "w", write_id)
    else
      _, refused = typed(key, "XADD", key, "MAXLEN", "~", maxlen, "*", "op", op, "id", idkey,
                         "v", shown)
    end
    return refused
  end
  local ok, failure = pcall(emit, op, idkey, version, write_id, changed, doc)
  if ok then return nil end
  local text = type(failure) == "table" and failure.err or tostring(failure)
  if string.find(text, "WRONGTYPE", 1, true) then return {"WRONGTYPE", EVENTS.key} end
  error(failure)
end

-- Write the clock the versions of a DEFERRED script took (and a newer layout with it).
local function flush_clock(state_key)
  if not DIRTY then return end
  if NEW_LAYOUT then
    redis.call("HSET", state_key, "clock", string.format("%.0f", CLOCK), "layout", NEW_LAYOUT)
    NEW_LAYOUT = nil
  else
    redis.call("HSET", state_key, "clock", string.format("%.0f", CLOCK))
  end
  DIRTY = false
end

-- Make the clock at least ``version`` (a document moved in keeps its version).
local function clock_at_least(state_key, version)
  local last = CLOCK or tonumber(redis.call("HGET", state_key, "clock") or "0") or 0
  if version > last then
    redis.call("HSET", state_key, "clock", string.format("%.0f", version))
    CLOCK = version
  end
end

-- The meta hash a format-3 document keeps after a write (bench/format3.md, section 1):
-- with an expiry (``expiring``), a sweep record: its version (``shown``) and every index's
-- entries (``all``: flat meta field / packed list pairs); else only the listed indexes'
-- fields (``listed``, the same form), or none. The hash is written whole (DEL first: a
-- format-2 meta hash's "r" or a dropped index's field never stays).
local function headed_meta(meta_key, expiring, shown, all, listed)
  redis.call("DEL", meta_key)
  if expiring then
    if #all > 0 then
      redis.call("HSET", meta_key, "v", shown, unpack(all))
    else
      redis.call("HSET", meta_key, "v", shown)
    end
  elseif #listed > 0 then
    redis.call("HSET", meta_key, unpack(listed))
  end
end

-- Identity and version check of a write to a known id: a refusal, or nil. An insert must
-- find no document, an update the expected version; {"APPLIED", version} when the document
-- already carries this write (an earlier attempt of it). What an expired document left
-- behind is purged on the way (it is garbage either way): its id is free again.
-- ``indexes``: every index of the model, {key =, field =}.
local function check_version(mode, expected, idkey, doc_key, meta_key, ids_key, ttl_key,
                             indexes, write_id)
  if mode == "insert" and redis.call("EXISTS", doc_key, meta_key) == 0 then return nil end
  for _, pair in ipairs({{doc_key, "string"}, {meta_key, "hash"}}) do
    if not type_ok(pair[1], pair[2]) then return {"WRONGTYPE", pair[1]} end
  end
  local stored = redis.call("HGET", meta_key, "v")
  local alive = redis.call("EXISTS", doc_key) == 1
  if alive and stored ~= expected then
    -- (applied(meta_key, write_id), its "r" kept: a format-2 document always has one; a
    -- format-3 document has none (a sweep record has no "r"), and an insert finds its
    -- resend in the header's W)
    local valid = write_id and #write_id == 16
    local seen = valid and redis.call("HGET", meta_key, "r")
    local version = seen and applied_in(seen, write_id)
    local raw = valid and not seen and mode == "insert" and redis.call("GET", doc_key)
    if raw and string.byte(raw, 1) == 1 then
      -- (a format-3 document: its header's W, by header_of() and written_in() written out
      -- here, as a function named would be made on every call of tx.lua or whenever a
      -- rare path of insert.lua makes its others; a header that does not read is taken,
      -- and refused, as a taken id: EXISTS, as an insert over a damaged format-2 document)
      local ends = string.find(raw, "\0", 2, true)
      local w_ends = ends and string.find(raw, "\0", ends + 1, true)
      local size = w_ends and w_ends - ends - 1
      local at = size and size >= 16 and (size - 16) % 32 == 0
        and not string.find(string.sub(raw, ends + 1, w_ends - 1), "[^0-9a-f]")
        and string.find(raw, write_id, ends + 1, true)
      while at and at < w_ends do
        if at == ends + 1 then version = tonumber(string.sub(raw, 2, ends - 1)); break end
        if (at - ends - 1) % 32 == 16 then
          -- (its version: 16 digits, not all zero, as header_of() reads it; else damaged:
          -- taken, refused as EXISTS)
          local slot = string.sub(raw, at + 16, at + 31)
          version = not string.find(slot, "%D") and string.find(slot, "[1-9]")
            and tonumber(slot) or nil
          break
        end
        at = string.find(raw, write_id, at + 1, true)
      end
    end
    if version then return {"APPLIED", version} end
  end
  if mode == "insert" and alive then return {"EXISTS"} end
  if not alive and (stored or mode == "insert") then
    local bad = bad_index(indexes)
    if bad then return {"WRONGTYPE", bad} end
    local refused = purge_listed(idkey, meta_key, ids_key, ttl_key, indexes)
    if refused then return refused end
    stored = nil
  end
  if mode == "insert" then return nil end
  if not stored then return {"MISSING"} end
  if stored ~= expected then return bad_version(meta_key, stored) or {"VERSION", stored} end
  return nil
end

-- A format-3 document key's value (header_of in _prelude.lua): ``payload`` at version
-- ``shown`` written by ``write_id``, after the write that left the header ``old_version``,
-- ``old_w`` (nil for a new document). W keeps RECENT writes: this one's id, then the
-- previous newest's id and version (zero-padded to 16 digits), then the older ones as they
-- were, the oldest dropped.
local function headed(shown, write_id, payload, old_version, old_w)
  local w = write_id
  if old_w and #old_w >= 16 then
    -- (the time's 16 digits need no padding; a W of one id no cut: no call for either)
    local padded = #old_version == 16 and old_version
      or string.rep("0", 16 - #old_version) .. old_version
    if #old_w == 16 then
      w = w .. old_w .. padded
    else
      w = w .. string.sub(old_w, 1, 16) .. padded .. string.sub(old_w, 17, 16 + 32 * (RECENT - 2))
    end
  end
  return "\1" .. shown .. "\0" .. w .. "\0" .. payload
end

-- Give back the ids an insert took from its sequence (``key``: INCR'd ``increments``
-- times, the last reply ``counter``) when it is refused after them: counter values a user
-- took are skipped, never given back twice. (insert.lua's refusals: a function made only
-- then, not on every allocating insert.)
local function give_back_ids(key, increments, counter)
  if increments == 0 then return end
  if counter == increments then  -- (the counter did not exist: it goes again)
    redis.call("DEL", key)
  else
    redis.call("INCRBY", key, -increments)
  end
end

-- An insert of a known id (or of the id a 1000th allocation found taken): nil when its
-- document key and meta hash are absent; else a refusal, {"OK", version, idkey} when the
-- document already carries this write (a resent insert), or nil once an expired one's
-- leftovers are purged. ``manifests``: the packed meta field of every index, whose keys
-- are KEYS[first..] (what a purge writes).
local function insert_refusal(idkey, doc_key, meta_key, ids_key, ttl_key, manifests, first,
                              write_id)
  if redis.call("EXISTS", doc_key, meta_key) == 0 then return nil end
  if not type_ok(ids_key, "zset") then return {"WRONGTYPE", ids_key} end  -- (for a purge)
  local bad = stream_refusal()  -- (the purge's "expire" event comes before the insert's)
  if bad then return bad end
  local refused = check_version("insert", "0", idkey, doc_key, meta_key, ids_key, ttl_key,
                                index_records(cmsgpack.unpack(manifests), first), write_id)
  if refused and refused[1] == "APPLIED" then return {"OK", refused[2], idkey} end
  return refused
end

-- The live document (other than ``idkey`` and those in ``ignore``) whose entry in a unique
-- index holds ``member``, or nil. An expired holder's entry is a leftover: the value is free.
-- Every entry of the value is looked at (in pages), however many expired holders wait for
-- the sweep: stopping early would let a second live holder in.
local function unique_holder(index_key, member, idkey, doc_prefix, ignore)
  if member == NULL then return nil end  -- nulls never conflict
  local low, high = "[" .. member, "(" .. member .. "\255"
  while true do
    local held = redis.call("ZRANGEBYLEX", index_key, low, high, "LIMIT", 0, 64)
    for _, other in ipairs(held) do
      local other_id = string.sub(other, #member + 1)
      if other_id ~= idkey and not (ignore and ignore[other_id])
          and redis.call("EXISTS", doc_prefix .. escaped_id(other_id)) == 1 then
        return other_id
      end
    end
    if #held < 64 then return nil end
    low = "(" .. held[#held]
  end
end

-- The value encoding of a list (quantumorm.sortable.pack_list) that holds exactly one, as
-- the list of a scalar field does; nil for any other list (unpack_list reads those, and
-- says which are damaged).
local function sole_item(s)
  local _, colon = string.find(s, "^%d+:")
  -- (at most 12 digits, as read_list() reads)
  if colon and colon <= 13 and tonumber(string.sub(s, 1, colon - 1)) == #s - colon then
    return string.sub(s, colon + 1)
  end
  return nil
end

-- The entries of a document that change in one index from ``old`` to ``new`` (lists of
-- value encodings), as members: those to remove and those to add.
-- (written out in place on some scripts' common paths: change the copies too;
-- tests/unit/test_lua_written_out.py names them)
local function entries_diff(idkey, old, new)
  if #old == 1 and #new == 1 then  -- (a scalar field's: no table of the kept ones made)
    if old[1] == new[1] then return {}, {} end
    return {old[1] .. idkey}, {new[1] .. idkey}
  end
  local keep, drop, add = {}, {}, {}
  for _, member in ipairs(new) do keep[member] = true end
  for _, member in ipairs(old) do
    if keep[member] then keep[member] = nil else drop[#drop + 1] = member .. idkey end
  end
  for _, member in ipairs(new) do
    if keep[member] then add[#add + 1] = member .. idkey; keep[member] = nil end
  end
  return drop, add
end

-- Bring a document's entries in one index from ``old`` to ``new`` (lists of value
-- encodings): only the entries that differ are removed and added.
local function rewrite_entries(index_key, idkey, old, new)
  if #old == 0 then  -- (a new document: every entry is added, in one ZADD per 1000)
    local args, n = {}, 0
    for _, member in ipairs(new) do
      args[n + 1], args[n + 2], n = "0", member .. idkey, n + 2
      if n >= 2000 then redis.call("ZADD", index_key, unpack(args)); args, n = {}, 0 end
    end
    if n > 0 then redis.call("ZADD", index_key, unpack(args)) end
    return
  end
  local drop, add = entries_diff(idkey, old, new)
  bulk("ZREM", index_key, drop, false)
  bulk("ZADD", index_key, add, true)
end

-- Writes of index entries whose key's type no check proved (a TYPE command per index
-- saved): the first command in the key proves it, so that its WRONGTYPE error is the refusal
-- {"WRONGTYPE", key} with nothing written there, and nil means written. The caller takes
-- back what it wrote before a refusal (take_back_entries), and makes its change event, which
-- cannot be taken back, its last refusable write.

-- ZADD (score 0) or ZREM ``members`` (value encodings .. id key) in one index, 1000 at a
-- time, the first proving the key's type.
-- (written out in place on some scripts' common paths: change the copies too;
-- tests/unit/test_lua_written_out.py names them)
local function proving(command, index_key, members)
  local n = #members
  if command == "ZREM" and n > 0 and n <= 1000 then  -- (the members are the arguments)
    local _, refused = typed(index_key, "ZREM", index_key, unpack(members))
    return refused
  end
  for i = 1, n, 1000 do
    local args, k = {}, 0
    for j = i, math.min(i + 999, n) do
      if command == "ZADD" then k = k + 1; args[k] = "0" end
      k = k + 1; args[k] = members[j]
    end
    if i == 1 then
      local _, refused = typed(index_key, command, index_key, unpack(args))
      if refused then return refused end
    else
      redis.call(command, index_key, unpack(args))
    end
  end
  return nil
end

-- Remove ``drop`` and add ``add`` (members) in one index, the first command proving the
-- key's type; nothing to do proves nothing (the caller checks such a key itself).
-- (written out in place on some scripts' common paths: change the copies too;
-- tests/unit/test_lua_written_out.py names them)
local function change_entries(index_key, drop, add)
  if #drop == 0 then return proving("ZADD", index_key, add) end
  local refused = proving("ZREM", index_key, drop)
  if refused then return refused end
  if #add == 1 then  -- (a scalar field's: no list of arguments made)
    redis.call("ZADD", index_key, 0, add[1])
  elseif #add > 1 then  -- (the ZREM proved the key's type: no refusal comes from here)
    return proving("ZADD", index_key, add)
  end
  return nil
end

-- Take back change_entries() of the first ``count`` of ``indexes`` (each with its ``drop``
-- and ``add``) after a refusal: the added entries go, the removed ones come back. Exact
-- for a document whose meta hash lists its entries: an entry it removed was listed (its
-- document's), and an entry it added that was there already was one that no meta hash
-- lists (a leftover, which verify() reports and repair() removes). Where the entries had
-- drifted, the touched ones end as the unchanged meta hash lists them: a leftover it added
-- goes, a lost one it removed comes back (docs/redis.md; test_save_script_paths.py).
local function take_back_entries(indexes, count)
  for i = 1, count do
    bulk("ZREM", indexes[i].key, indexes[i].add, false)
    bulk("ZADD", indexes[i].key, indexes[i].drop, true)
  end
end

-- Store a checked write whose version is taken (``shown``: its decimal text) and whose
-- index entries are rewritten: the JSON with its expiry (``expiry``: "keep", "persist" or
-- milliseconds) and the meta hash (``fields``: its flat name/value list of index values,
-- or items ``first`` to ``last`` of it, as patch.lua passes ARGV; ``seen``: its "r" as read
-- before, false when absent, nil when not read). The arguments in place of store()'s
-- record: save.lua and patch.lua call this once per call, where a record of a dozen fields
-- would be built for it each time.
-- (written out in place on some scripts' common paths: change the copies too;
-- tests/unit/test_lua_written_out.py names them)
local function store_taken(mode, idkey, doc_key, meta_key, json, expiry, write_id, fields,
                           seen, shown, ttl_key, first, last)
  -- (versioned(shown, json), and below write_time_ms(), in line: each function the common
  -- path names is made on every call, see luachunks.py)
  local value = "\0" .. shown .. "\0" .. json
  if expiry == "keep" and mode == "update" then
    redis.call("SET", doc_key, value, "KEEPTTL")
  elseif expiry == "keep" or expiry == "persist" then
    -- (a plain SET also drops any expiry)
    redis.call("SET", doc_key, value)
    -- (a new document has no schedule entry: any leftover one went with its purge)
    if mode ~= "insert" then redis.call("ZREM", ttl_key, idkey) end
  else  -- (the expiry set with the value: one command, as insert_many.lua does)
    local at = (NOW_MS or cold_paths().now_ms()) + tonumber(expiry)
    redis.call("SET", doc_key, value, "PXAT", at)
    redis.call("ZADD", ttl_key, at, idkey)
  end
  local recent = write_id .. string.rep("0", 16 - #shown) .. shown
  if mode ~= "insert" then
    if seen == nil then seen = redis.call("HGET", meta_key, "r") end
    recent = recent .. string.sub(seen or "", 1, 32 * (RECENT - 1))
  end
  redis.call("HSET", meta_key, "v", shown, "r", recent, unpack(fields, first or 1, last))
end

-- Store a checked write (its index entries are already rewritten): the JSON with its expiry
-- ("keep", "persist" or milliseconds), the meta hash, the id, and the change event.
-- ``w``: mode, idkey, doc_key, meta_key, json, expiry, version (nil: the clock's next),
-- write_id, fields (flat name/value list for the meta hash), changed (event "f" or nil),
-- seen (optional: the meta hash's "r" as read before; false when absent), listed (true:
-- the caller has already added the id to the id index), emitted (true: the caller has
-- sent the change event, emit_first).
-- Returns the version written.
local function store(w, ids_key, ttl_key, state_key)
  local version = w.version or next_version(state_key)
  local shown = string.format("%.0f", version)
  store_taken(w.mode, w.idkey, w.doc_key, w.meta_key, w.json, w.expiry, w.write_id, w.fields,
              w.seen, shown, ttl_key)
  if w.mode == "insert" and not w.listed then redis.call("ZADD", ids_key, 0, w.idkey) end
  if not w.emitted then
    emit(w.mode == "insert" and "create" or "update", w.idkey, shown, w.write_id,
         w.changed, w.json)
  end
  return version
end

-- JSON, top level only (a "patch" write): the scripts never decode a document, but they
-- can find the text of each of its top-level values and replace some of them, leaving every
-- other byte as it was (see patch_json).
local json_skip

-- the position of the first non-blank character of ``s`` at or after ``i`` (documents
-- are stored compact: the byte at ``i`` is looked at first, a pattern search only if blank)
local function json_ws(s, i)
  local b = string.byte(s, i)
  if b and b ~= 32 and b ~= 9 and b ~= 10 and b ~= 13 then return i end
  return string.find(s, "[^ \t\r\n]", i)
end

-- The position just after the JSON value that starts at ``i`` (strings skip escapes;
-- objects and arrays count their nesting, skipping strings).
json_skip = function(s, i)
  local b = string.byte(s, i)
  if b == 34 then  -- a string
    local j = i + 1
    while true do
      local q = string.find(s, '["\\]', j)
      if not q then error("unterminated string") end
      if string.byte(s, q) == 92 then j = q + 2 else return q + 1 end
    end
  elseif b == 123 or b == 91 then  -- an object or an array
    local depth, j = 0, i
    while true do
      local q = string.find(s, '[%[%]{}"]', j)
      if not q then error("unterminated value") end
      local c = string.byte(s, q)
      if c == 34 then
        j = json_skip(s, q)
      else
        depth = depth + ((c == 123 or c == 91) and 1 or -1)
        j = q + 1
        if depth == 0 then return j end
      end
    end
  end
  local q = string.find(s, "[,}%] \t\r\n]", i)  -- a number, true, false or null
  if not q or q == i then error("bad value") end
  return q
end

-- The members of the JSON object ``s``: a list of {key text (quoted, as stored), first
-- position of the value, position after it}, and the position of the closing brace. The
-- whole object is always scanned, even for a patch of its first members: damage after
-- them must refuse the patch (CORRUPT) as reads would, and of a key stored twice the last
-- is the one reads see (and the one a patch replaces).
local function json_members(s)
  local out = {}
  local i = json_ws(s, 1)
  if not i or string.byte(s, i) ~= 123 then error("not an object") end
  i = json_ws(s, i + 1)
  if i and string.byte(s, i) == 125 then return out, i end
  while true do
    if not i or string.byte(s, i) ~= 34 then error("bad key") end
    local key_end = json_skip(s, i)
    local colon = json_ws(s, key_end)
    if not colon or string.byte(s, colon) ~= 58 then error("no colon") end
    local first = json_ws(s, colon + 1)
    if not first then error("no value") end
    local after = json_skip(s, first)
    out[#out + 1] = {string.sub(s, i, key_end - 1), first, after}
    i = json_ws(s, after)
    local c = i and string.byte(s, i)
    if c == 125 then return out, i end
    if c ~= 44 then error("no comma") end
    i = json_ws(s, i + 1)
  end
end

-- json_plain_spans()'s first proof: the decoded document when ``s`` is valid JSON (cjson
-- reads it whole), an object, with no backslash and no NUL; else nil.
local function json_plain_doc(s)
  -- (a NUL too: cjson stops reading at one, so "reads it whole" would not hold; two plain
  -- searches, which scan bytes, cost a fraction of one search for a class of two)
  if string.find(s, "\\", 1, true) or string.find(s, "\0", 1, true) then return nil end
  local ok, doc = pcall(cjson.decode, s)
  if not ok or type(doc) ~= "table" or string.byte(s, json_ws(s, 1)) ~= 123 then
    return nil
  end
  return doc
end

-- json_plain_spans()'s second: in a document json_plain_doc() accepted whose object has
-- the member of key text ``key``, the first position of its value and the position after
-- it; nil where that is not proven (the text holds two keys of that name).
-- (written out in place on some scripts' common paths: change the copies too;
-- tests/unit/test_lua_written_out.py names them)
local function json_plain_span(s, key)
  local first, after, from = nil, nil, 1
  while true do
    local k, k_end = string.find(s, key, from, true)
    if not k then break end
    local colon = json_ws(s, k_end + 1)
    if string.byte(s, colon) == 58 then
      if first then return nil end  -- (two keys of that name)
      first = json_ws(s, colon + 1)
      local b = string.byte(s, first)
      if b == 34 then
        after = string.find(s, '"', first + 1, true) + 1
      elseif b == 91 or b == 123 then
        local _, last = string.find(s, b == 91 and "^%b[]" or "^%b{}", first)
        if not last or not pcall(cjson.decode, string.sub(s, first, last)) then
          return nil
        end
        after = last + 1
      else
        after = string.find(s, "[,}%] \t\r\n]", first)
      end
    end
    from = k_end + 1
  end
  return first, after
end

-- What patch_json needs of the stored document ``s``, found without scanning it member by
-- member in Lua, where that provably finds what json_members finds: the members named in
-- ``given`` (lists whose first item is a quoted key text) by key text, as json_members
-- gives them; the position of the closing brace; whether the object has members. nil
-- where it cannot prove it (the caller scans the document, which also decides what is damaged).
-- Proof: ``s`` is valid JSON (cjson reads it whole, as a read would; so nothing but
-- blanks follows the object) and has no backslash and no NUL (so each string ends at the
-- next quote, and a key's text is its name between quotes). Then a quoted name followed by ':' is
-- always a key of some object (a quote that closes a string is never followed by a name,
-- and a value is never followed by ':'). When the top-level object has that name (cjson
-- says) and the text holds only one such key, that key is the top-level member, its value
-- where json_members finds it: a string to the next quote, an array or object to its
-- balanced bracket (%b) when that text is one JSON value (cjson checks: a bracket inside
-- a string that ended the count early or late leaves text that is not), a scalar up to
-- the next delimiter. A name the object lacks is appended; a name held by two keys (a
-- nested one too, or stored twice) is left to the scan.
local function json_plain_spans(s, given)
  local doc = json_plain_doc(s)
  if not doc then return nil end
  local at = {}
  for _, m in ipairs(given) do
    local key = m[1]
    if doc[string.sub(key, 2, -2)] ~= nil then
      local first, after = json_plain_span(s, key)
      if not first then return nil end
      at[key] = {key, first, after}
    end
  end
  local close = #s
  while string.byte(s, close) ~= 125 do close = close - 1 end
  return at, close, next(doc) ~= nil
end

-- The stored document ``old`` with the top-level values ``given`` put in place of its own,
-- in place (a member it lacks is added at the end); and the names (``names``: one per
-- member of ``given``, in its order) of the members whose text changed. ``given`` is a
-- list of {key text (quoted, as stored), value text}, encoded by the documents' encoder
-- (the client sends them apart: no fragment to parse here). nil if ``old`` is not a JSON
-- object.
local function patch_json(old, given, names)
  local at, close, filled = json_plain_spans(old, given)
  if not at then  -- (see json_plain_spans: the whole document is scanned)
    local ok, members
    ok, members, close = pcall(json_members, old)
    -- (anything but blanks after the object: damaged, as a read finds it)
    if not ok or json_ws(old, close + 1) then return nil end
    at, filled = {}, #members > 0
    for _, m in ipairs(members) do at[m[1]] = m end
  end
  local replaced, appended, differing = {}, {}, {}
  for k, m in ipairs(given) do
    local value = m[2]
    local mine = at[m[1]]
    if not mine then
      appended[#appended + 1] = m[1] .. ":" .. value
      differing[#differing + 1] = names[k]
    elseif string.sub(old, mine[2], mine[3] - 1) ~= value then
      replaced[#replaced + 1] = {mine[2], mine[3], value}
      differing[#differing + 1] = names[k]
    end
  end
  if #differing == 0 then return old, differing end
  if #appended == 0 and #replaced == 1 then  -- (the common patch: one value replaced)
    local r = replaced[1]
    return string.sub(old, 1, r[1] - 1) .. r[3] .. string.sub(old, r[2]), differing
  end
  table.sort(replaced, function(a, b) return a[1] < b[1] end)
  local pieces, pos = {}, 1
  for _, r in ipairs(replaced) do
    pieces[#pieces + 1] = string.sub(old, pos, r[1] - 1)
    pieces[#pieces + 1] = r[3]
    pos = r[2]
  end
  if #appended > 0 then
    pieces[#pieces + 1] = string.sub(old, pos, close - 1)
    pieces[#pieces + 1] = (filled and "," or "") .. table.concat(appended, ",")
    pos = close
  end
  pieces[#pieces + 1] = string.sub(old, pos)
  return table.concat(pieces), differing
end

-- Two-phase commit (transaction.py, twophase.py): a prepared transaction locks every document
-- it read or writes in its partition's lock hash, "<partition tag>:locks" (id key -> the
-- key of the transaction's record), until its intents are applied or released. The hash is
-- named after the state hash (same tag, so the same slot): every writer has that key already.
-- A writer that meets a lock refuses with {"LOCKED", record key}; the client settles the
-- transaction by its record and sends the write again. Costs the common path nothing of
-- its own: the one EXISTS of schedule_and_locks() counts the hash with the TTL schedule (a
-- hash whose last field is deleted is deleted: no key, no lock).
local function locks_key(state_key)
  return string.sub(state_key, 1, -6) .. "locks"
end

-- Readers learn whether a partition has locks from a string flag, "<partition tag>:locked",
-- set while its lock hash is not empty: one more key in the MGET they send anyway.
local function lock_flag(state_key)
  return string.sub(state_key, 1, -6) .. "locked"
end

-- The record key of the transaction that locks ``idkey`` (nil: none). ``present``: whether
-- the lock hash exists, when the caller knows (schedule_and_locks); nil: one EXISTS says.
local function lock_holder(state_key, idkey, present)
  if present == false then return nil end  -- (the usual case: no key name made for it)
  local key = locks_key(state_key)
  if present == nil and redis.call("EXISTS", key) == 0 then return nil end
  return redis.call("HGET", key, idkey) or nil
end

-- A write reads the TTL schedule (ZCARD: its type, and whether a sweep can have work) and
-- whether its partition has locks (the lock hash's EXISTS). Both are usually absent (an
-- empty sorted set, an empty hash is no key): one EXISTS of both (and of ``...``, keys the
-- caller wants to know absent too) says so. When it counts any, the ZCARD follows, and
-- the count less the schedule's own key is what remains of the others. Returns the
-- schedule's count (0 when refused), how many of the lock hash and ``...`` exist, and the
-- ZCARD's refusal ({"WRONGTYPE", ttl_key}, nil) for the caller to return where its checks'
-- order puts it (a read: nothing is written either way).
-- (written out in place on some scripts' common paths: change the copies too;
-- tests/unit/test_lua_written_out.py names them)
local function schedule_and_locks(ttl_key, state_key, ...)
  -- (locks_key(state_key), in line: no function made per call for it)
  local found = redis.call("EXISTS", ttl_key, string.sub(state_key, 1, -6) .. "locks", ...)
  if found == 0 then return 0, 0, nil end
  local scheduled, refused = typed(ttl_key, "ZCARD", ttl_key)
  if refused then return 0, found - 1, refused end  -- (the key is there, of another type)
  return scheduled, found - (scheduled > 0 and 1 or 0), nil
end
