#!lua
-- save.lua: compare-and-set update of one stored document with its index entries (an
-- insert is insert.lua's, which reads the same arguments; a batch's, insert_many.lua's).
--
-- The shebang declares a writer without allow-oom: above maxmemory the server refuses the
-- script before it starts (without it, a first write that frees memory, such as ZREM, lets
-- the rest run past the limit). Needs Redis 7.0 or newer.
-- Every check runs before the first write (Redis does not roll back a failed script). The
-- document JSON is stored verbatim: this script never decodes it. What the script must read
-- (version, the index entries written last time) lives in the meta hash.
--
-- KEYS[1]   document key
-- KEYS[2]   meta hash key
-- KEYS[3]   the partition's id index (ZSET, score 0, member = id key)
-- KEYS[4]   unused (insert.lua's id sequence: the caller passes a key of the same
--           partition so that every key is in one slot)
-- KEYS[5]   the partition's TTL schedule (ZSET, score = expire-at ms, member = id key)
-- KEYS[6]   the partition's state hash: version clock, schema layout (see _prelude.lua)
-- KEYS[7..] every index key of the model (ZSET, score 0, member = value encodings .. id key)
-- ARGV[1]   "update" (anything else is an error: an insert is insert.lua's; an update of
--           some fields whatever the stored version, with no read before, is patch.lua's)
-- ARGV[2]   expected version
-- ARGV[3]   id key
-- ARGV[4]   document JSON
-- ARGV[5]   write id, 16 characters (kept beside the version: a resent write that finds it
--           there was applied by its first attempt and reports success without a change)
-- ARGV[6]   MessagePack pairs one after another (not an array): meta field name, netstring
--           list of value encodings
-- ARGV[7]   MessagePack quadruples one after another (not an array), one per index this
--           write touches: KEYS position, meta field holding the index's entries, "1" to
--           enforce uniqueness, index name
--           (ARGV[6] and ARGV[7] are gathered by one table constructor each, whose array is
--           sized once: cmsgpack fills an array's table one item at a time from an empty
--           one, resizing it as it grows)
-- ARGV[8]   MessagePack array: the meta field of every index, in KEYS[7..] order
-- ARGV[9]   expiry: "keep" (as it is), "persist" (none), or milliseconds from now
-- ARGV[10]  document key prefix    ARGV[11]  meta key prefix
-- ARGV[12]  change events: "" (none), the spec events_on() reads, or the stream's MAXLEN
--           alone (digits: a stream entry without the document, no Pub/Sub, the usual
--           events, read with no MessagePack to unpack); the stream is KEYS[#KEYS]
-- ARGV[13]  MessagePack array of the changed field names (the event's "f"), "" for all
-- ARGV[14]  the caller's schema layout ("" for none)
-- ARGV[15]  absent or "" (an update), or a MessagePack array with, per index of ARGV[7] (in its
--           order), the array of its value encodings: ARGV[6]'s netstrings, decoded (sent
--           when the write touches every index: one decode instead of a parse per index)
-- ARGV[16]  absent or "" (the caller loaded the document as format 2), or, from a caller
--           that loaded it as format 3 (bench/format3.md: "\1" version "\0" W "\0" JSON),
--           a MessagePack array: {per index of ARGV[7] (in its order), the entries its
--           LOADED document has there (a packed list, as a meta field holds them); every
--           index's meta field and new packed list, flat (the sweep record, written whole;
--           sent only with a new expiry in milliseconds: an expiry kept updates the record
--           there with ARGV[6]'s pairs); the listed indexes' pairs, flat (kept in the meta
--           hash whatever the expiry; empty for a model with none)}; or, for a save that
--           sends no pairs and touches one index or none, "=" then that index's loaded
--           packed list (nothing for none). Exact because
--           the version is compared first. A format-3 document keeps its format: the new
--           header's W chains this write id before the old ones (headed()), and its meta
--           hash is headed_meta()'s (a sweep record only with an expiry). header_of,
--           written_in, headed and headed_meta are written out in place on format 3's
--           paths: a function named in cold_paths() would be made whenever a rare path
--           (a list of several entries, several indexes) makes them.
--
-- Expiry: the document key expires (SET ... PXAT) and is scheduled in KEYS[5]; its meta hash
-- and index entries stay until a sweep (this script sweeps a few due documents after every
-- write) or a write that meets them purges them. Readers check that documents exist.
-- Returns   {"OK", version, id key} | {"VERSION", actual} | {"MISSING"}
--           | {"LAYOUT", stored layout} (the caller's schema is outdated: nothing written)
--           | {"UNIQUE", index name, id key of the holder} | {"WRONGTYPE", key}
--           | {"LOCKED", record key} (a prepared transaction holds the document)
--           | {"DAMAGED", meta hash key, field} (a field of the meta hash does not read:
--             nothing written; repair() rebuilds it from the document)
--           | {"ENTRIES", version} (a format-3 document at the expected version, met by a
--             caller that sent no ARGV[16]: nothing written; it sends its entries again)
--           | {"CORRUPT"} (a format-3 header that does not read: nothing written)
-- luacheck: globals redis KEYS ARGV cmsgpack
-- uses: _write
-- The shared definitions only the rare paths use are made when one is taken (cold_paths(),
-- luachunks.py), not on every call, and read as fields of ``rare``: a lock, a resent
-- write, an expired document's purge, another version or a damaged meta hash, a unique
-- claim, more than one index or a list of more than one value, a refused write, a sweep, an
-- event other than a stream's alone. The common update (one index, not unique, whose single
-- entry moves or stays, a stream's event or none, no schedule, no lock) calls none of them:
-- it runs the shared state_check, schedule_and_locks, events_unchecked, typed,
-- read_list (_prelude.lua's), entries_diff, change_entries, take_version_text, emit_first, write_clock and
-- store_taken written out in place (a change to one of those must be made here too), the
-- same commands in the same order, so that the only function made per call is
-- cold_paths() (each function made per call costs the server about 1,100 instructions,
-- each C function called about 800: errors are read as ``.err`` or by a reply's value).
-- cold: lock_holder applied applied_in stream_refusal index_records bad_index purge_listed
-- cold: bad_version damaged unique_holder take_back_entries sweep type_ok events_unchecked
-- cold: emit_first read_list unpack_list entries_diff change_entries

-- (an insert sent here would be taken for an update of a missing document: refused loudly)
if ARGV[1] ~= "update" then return redis.error_reply("ERR save.lua only updates") end
local idkey = ARGV[3]
local doc_key, meta_key, state_key = KEYS[1], KEYS[2], KEYS[6]
local doc_prefix, meta_prefix = ARGV[10], ARGV[11]
local rare  -- (cold_paths(), made on the first rare path taken)
-- (every index of the model, in KEYS[7..] order, what a purge or a sweep writes, is
-- index_records(cmsgpack.unpack(ARGV[8]), 7): made where one is needed, most writes do
-- neither)
-- What each command serves (commands per write are the server's main cost): the state
-- hash's HMGET: the layout refusal, the version clock, the hash's type; one EXISTS of the
-- TTL schedule and the lock hash (and, for a format-3 caller, the meta hash, whose TYPE
-- follows only if one of the three is there): all absent, the usual case, says there is no
-- sweep to do, no lock; else the schedule's ZCARD (its type, and whether a sweep can have
-- anything to do) and the lock hash's check, each on its own (schedule_and_locks).
-- The stream's type is proven by the XADD itself (emit_first), which comes after the
-- writes of the entries that change (which prove the types of the indexes where no unique
-- claim is made), all of which a refusal takes back.
-- Change events: ARGV[12]. The usual spec, the stream's MAXLEN alone (digits), is read here
-- (stream_max); EVENTS, events_unchecked()'s table, is made only where a rare path may emit
-- (an expired document's purge, an event other than a stream's alone, a sweep).
local spec = ARGV[12]
local stream_max
if spec ~= "" then
  local first = string.byte(spec, 1)
  if first >= 48 and first <= 57 then stream_max = spec end
end
local clock, new_layout
-- (a format-3 caller's: no meta hash there, asked in the schedule's EXISTS; or its type)
local meta_absent, meta_type = false, nil
local scheduled, others = 0, 0  -- (others: whether the lock hash exists)
do  -- (state_check and schedule_and_locks in line; typed()'s checks written out: an error
    -- reply is a refusal when WRONGTYPE, else raised)
  local got = redis.pcall("HMGET", state_key, "layout", "clock")
  if got.err then
    if string.find(got.err, "WRONGTYPE", 1, true) then return {"WRONGTYPE", state_key} end
    error(got)
  end
  clock = tonumber(got[2] or "0") or 0
  local layout = ARGV[14]
  -- (the same text is the same layout: the usual case, with no number read)
  if layout and layout ~= "" and got[1] ~= layout then
    -- (a layout that is not plain digits does not read: refused before anything is
    -- written, as layout_refusal() does)
    local stored = string.find(got[1] or "0", "^%d+$") and tonumber(got[1] or "0")
    if not stored then error({err = "DAMAGED " .. state_key .. " layout"}) end
    local mine = tonumber(layout)
    if stored > mine then return {"LAYOUT", string.format("%.0f", stored)} end
    if stored < mine then new_layout = layout end  -- (recorded with the clock)
  end
  -- (a caller that loaded the document as format 3 asks of its meta hash too, which such a
  -- document has only as a sweep record or a listed index's fields: none of the three
  -- there, the usual case in a partition where nothing expires, and no TYPE of it is asked;
  -- else its TYPE, which format 3's path reads below anyway, tells whether it was one of
  -- them: no command more than the two keys' EXISTS and the TYPE)
  local lock_hash = string.sub(state_key, 1, -6) .. "locks"
  local found
  if ARGV[16] and ARGV[16] ~= "" then
    found = redis.call("EXISTS", KEYS[5], lock_hash, meta_key)
    meta_absent = found == 0
    if not meta_absent then
      meta_type = redis.call("TYPE", meta_key).ok
      if meta_type ~= "none" then found = found - 1 end
    end
  else
    found = redis.call("EXISTS", KEYS[5], lock_hash)
  end
  if found > 0 then
    local count = redis.pcall("ZCARD", KEYS[5])
    if type(count) ~= "number" then
      if string.find(count.err, "WRONGTYPE", 1, true) then return {"WRONGTYPE", KEYS[5]} end
      error(count)
    end
    scheduled, others = count, found - (count > 0 and 1 or 0)
  end
end
-- (any other spec is unpacked here, before anything is written, as events_unchecked did)
if spec ~= "" and not stream_max then
  rare = cold_paths()
  rare.events_unchecked(spec, KEYS[#KEYS])
end
local locked  -- (format 3: the holder of its lock, its resend looked for in its header)
if others > 0 then  -- (a document of a prepared transaction: lock_holder())
  rare = rare or cold_paths()
  local holder = rare.lock_holder(state_key, idkey, true)
  -- (a resent write applied the first time, before the lock was taken, is recognised by its
  -- write id below: it is not refused)
  if holder and not (rare.type_ok(meta_key, "hash") and rare.applied(meta_key, ARGV[5])) then
    -- (a format-3 document has no "r": the resend of a write sent as format 3 (ARGV[16])
    -- is recognised from its header's W below, before anything is written, and any other
    -- write to it refused there as LOCKED; one sent as format 2 is refused ENTRIES there,
    -- never applied, so it has no resend to find)
    local raw = ARGV[16] and ARGV[16] ~= "" and rare.type_ok(doc_key, "string")
      and redis.call("GET", doc_key)
    if not (raw and string.byte(raw, 1) == 1) then return {"LOCKED", holder} end
    locked = holder
  end
end

-- the indexes this write touches, with their new entries (ARGV[15], else ARGV[6]'s)
local fields = {cmsgpack.unpack(ARGV[6])}
local listed = ARGV[15] and ARGV[15] ~= "" and cmsgpack.unpack(ARGV[15]) or nil
local described = {cmsgpack.unpack(ARGV[7])}
local touched = #described / 4  -- (how many indexes this write touches)
-- (the general path's records of them, {key, field, unique, name, old, new, drop, add},
-- made below: the common update's one index is read from ``described`` with no record)
local indexes

-- 1. identity and version --------------------------------------------------------------
-- An update reads, in one HMGET, the version, the recent write ids and the entries the
-- touched indexes hold now; the TYPE of the document key tells both its type and whether
-- it is alive (an expired document's meta hash stays until a purge).
local seen  -- the meta hash's "r"
local got  -- {version, "r", the touched indexes' entries (packed lists)}
-- Format 3 (ARGV[16] sent): the document's GET gives its version and W; the entries to
-- remove are the caller's. Any other document (gone, or of format 2 or 1) takes the
-- format-2 path below, which ignores them.
local header  -- {version text, W, sweep pairs, listed pairs, a meta hash there} of a
-- format-3 document
if ARGV[16] and ARGV[16] ~= "" then
  -- (the common update once documents are format 3: no cold_paths() made on it)
  local raw = redis.pcall("GET", doc_key)
  if type(raw) == "table" and raw.err then
    if string.find(raw.err, "WRONGTYPE", 1, true) then return {"WRONGTYPE", doc_key} end
    error(raw)
  end
  if raw and string.byte(raw, 1) == 1 then
    -- (header_of(raw) in line)
    local _, ends, stored, w = string.find(raw, "^\1([1-9]%d*)%z([0-9a-f]*)%z")
    if not ends or #stored > 16 or (#w > 0 and (#w < 16 or (#w - 16) % 32 ~= 0)) then
      return {"CORRUPT"}
    end
    for at = 33, #w, 32 do  -- (each older write's version: 16 digits, not all zero)
      local _, last, zeros = string.find(w, "^(0*)%d*", at)
      if last < at + 15 or #zeros > 15 then return {"CORRUPT"} end
    end
    -- (written_in(w, stored, ARGV[5]) in line: the version a resent write gave it)
    local resent
    if #ARGV[5] == 16 and w ~= "" then
      local at = string.find(w, ARGV[5], 1, true)
      while at do
        if at == 1 then resent = tonumber(stored); break end
        if at % 32 == 17 then resent = tonumber(string.sub(w, at + 16, at + 31)); break end
        at = string.find(w, ARGV[5], at + 1, true)
      end
    end
    -- (the common save's form, "=" then the one touched index's loaded list, is read
    -- with no MessagePack to unpack: an unpack of nested arrays costs the server about
    -- 9,000 instructions)
    local given, plain
    if string.byte(ARGV[16], 1) == 61 then
      plain = {}  -- (no pairs: the sweep record's nor the listed indexes')
    else
      given = cmsgpack.unpack(ARGV[16])
    end
    -- (type_ok() in line; whether a meta hash is there at all, which the write then
    -- deletes only if so)
    meta_type = meta_absent and "none" or meta_type
    if meta_type ~= "none" and meta_type ~= "hash" then return {"WRONGTYPE", meta_key} end
    if locked then  -- (a prepared transaction holds it: only a resend is answered)
      if resent then return {"OK", resent, idkey} end
      return {"LOCKED", locked}
    end
    if stored ~= ARGV[2] then
      if resent then return {"OK", resent, idkey} end  -- a resent write applied before
      return {"VERSION", stored}
    end
    if plain then
      -- (one empty table for both lists of pairs: only read)
      header = {stored, w, plain, plain, meta_type == "hash"}
      got = {stored, false, touched == 1 and string.sub(ARGV[16], 2) or nil}
    else
      header = {stored, w, given[2] or {}, given[3] or {}, meta_type == "hash"}
      got = {stored, false}
      local old = given[1] or {}
      for i = 1, touched do got[i + 2] = old[i] or "" end
    end
  end
end

-- the id index: an update refuses it when it holds another type too (a model whose keys
-- hold foreign data is refused whole, whichever write it is)
-- (type_ok() in line, here and below: the common path names no function it can do without)
do
  local t = redis.call("TYPE", KEYS[3]).ok
  if t ~= "none" and t ~= "zset" then return {"WRONGTYPE", KEYS[3]} end
end
local json, changed = ARGV[4], ARGV[13] ~= "" and ARGV[13] or nil
if not header then
  local t = redis.call("TYPE", doc_key).ok
  if t ~= "none" and t ~= "string" then return {"WRONGTYPE", doc_key} end
  local alive = t == "string"
  if touched == 1 then  -- (the common updates: no list of fields made for the HMGET)
    got = redis.pcall("HMGET", meta_key, "v", "r", described[2])
  elseif touched == 0 then
    got = redis.pcall("HMGET", meta_key, "v", "r")
  else
    local wanted = {"v", "r"}
    for i = 1, touched do wanted[i + 2] = described[4 * i - 2] end
    got = redis.pcall("HMGET", meta_key, unpack(wanted))
  end
  if got.err then
    if string.find(got.err, "WRONGTYPE", 1, true) then return {"WRONGTYPE", meta_key} end
    error(got)
  end
  local stored = got[1] or nil
  seen = got[2]
  -- (no "r": a format-3 document's sweep record, whose "v" may equal the caller's version
  -- when it loaded the document without its header (a cached read): its document is read
  -- too, so that it is never written as format 2)
  if alive and (stored ~= ARGV[2] or not seen) then
    rare = rare or cold_paths()
    local raw = not seen and redis.call("GET", doc_key)
    if raw and string.byte(raw, 1) == 1 then
      -- (no "r": a format-3 document, whose entries this caller did not send: headed_refusal)
      -- (header_of(raw) in line)
      local _, ends, stored, w = string.find(raw, "^\1([1-9]%d*)%z([0-9a-f]*)%z")
      if not ends or #stored > 16 or (#w > 0 and (#w < 16 or (#w - 16) % 32 ~= 0)) then
        return {"CORRUPT"}
      end
      for at = 33, #w, 32 do  -- (each older write's version: 16 digits, not all zero)
        local _, last, zeros = string.find(w, "^(0*)%d*", at)
        if last < at + 15 or #zeros > 15 then return {"CORRUPT"} end
      end
      -- (written_in(w, stored, ARGV[5]) in line: the version a resent write gave it)
      local resent
      if #ARGV[5] == 16 and w ~= "" then
        local at = string.find(w, ARGV[5], 1, true)
        while at do
          if at == 1 then resent = tonumber(stored); break end
          if at % 32 == 17 then resent = tonumber(string.sub(w, at + 16, at + 31)); break end
          at = string.find(w, ARGV[5], at + 1, true)
        end
      end
      if resent then return {"OK", resent, idkey} end  -- a resent write applied before
      if locked then return {"LOCKED", locked} end
      return {stored == ARGV[2] and "ENTRIES" or "VERSION", stored}
    end
    local version = rare.applied_in(seen or nil, ARGV[5])
    if version then return {"OK", version, idkey} end  -- a resent write applied before
  end
  if not alive then
    if stored then
      -- What an expired document left behind is purged before its id is refused: the
      -- purge writes the id index, the schedule and every index, so their types come first
      -- (the id index's and the schedule's are checked for every write).
      rare = rare or cold_paths()
      if not EVENTS then rare.events_unchecked(spec, KEYS[#KEYS]) end  -- (a purge emits)
      local refused = rare.stream_refusal()  -- (its "expire" event: before the update's own)
      if refused then return refused end
      local all_indexes = rare.index_records(cmsgpack.unpack(ARGV[8]), 7)
      local bad = rare.bad_index(all_indexes)
      if bad then return {"WRONGTYPE", bad} end
      refused = rare.purge_listed(idkey, meta_key, KEYS[3], KEYS[5], all_indexes)
      if refused then return refused end
    end
    return {"MISSING"}
  end
  if not stored then return {"MISSING"} end
  if stored ~= ARGV[2] then  -- (another version, or one that does not read)
    rare = rare or cold_paths()
    return rare.bad_version(meta_key, stored) or {"VERSION", stored}
  end
end

-- The common update: one index, no unique claim, a list of one value before and after
-- (read_list's reading of such a list: "len:bytes" with at most 12 digits, one match each,
-- the length read by arithmetic on its digits, as tonumber reads them): its entry moved by
-- one ZREM (which proves the key's type) and one ZADD, or, unchanged, its key's type
-- checked. Any other write takes the general path below, which reads the lists whole.
local one_key, was, now  -- (the common update's index key and its entry's old and new value)
if touched == 1 and described[3] ~= "1" then
  local size, item = string.match(got[3] or "", "^(%d+):(.*)$")
  if size and #size <= 12 and size + 0 == #item then
    if listed then
      if #listed[1] == 1 then was, now = item, listed[1][1] end
    else  -- (ARGV[6]'s pair of its meta field: a write touches few, no table of them made)
      local pair = nil
      for j = 1, #fields, 2 do
        if fields[j] == described[2] then pair = fields[j + 1]; break end
      end
      local size2, item2 = string.match(pair or "", "^(%d+):(.*)$")
      if size2 and #size2 <= 12 and size2 + 0 == #item2 then was, now = item, item2 end
    end
    if was then one_key = KEYS[described[1] + 0] end
  end
end
if not one_key and touched > 0 then
  -- the general path: a record per index, its lists read whole (a damaged one refused)
  rare = rare or cold_paths()
  indexes = {}
  for i = 1, touched do
    local base = 4 * (i - 1)
    -- (every field a record gets is named here, nil for now: the constructor sizes the
    -- table for all of them, where each one added later could make it grow again)
    indexes[i] = {key = KEYS[tonumber(described[base + 1])], field = described[base + 2],
                  unique = described[base + 3] == "1", name = described[base + 4],
                  old = nil, new = nil, drop = nil, add = nil}
  end
  for i, index in ipairs(indexes) do
    index.old = rare.read_list(got[i + 2] or nil)
    if not index.old then return rare.damaged(meta_key, index.field) end
  end
end

-- 2. index key types and unique claims --------------------------------------------------
if one_key then
  -- (an entry that moves proves its key's type by its first write there, see 3.; an
  -- unchanged one is checked here)
  if was == now then
    local t = redis.call("TYPE", one_key).ok
    if t ~= "none" and t ~= "zset" then return {"WRONGTYPE", one_key} end
  end
elseif indexes then
  for i, index in ipairs(indexes) do
    if listed then
      index.new = listed[i]
    else  -- (ARGV[6]'s pair of its meta field: a write touches few, no table of them made)
      local pair = nil
      for j = 1, #fields, 2 do
        if fields[j] == index.field then pair = fields[j + 1]; break end
      end
      -- (none sent: no entries, as a missing pair always read)
      index.new = rare.unpack_list(pair)
    end
    index.drop, index.add = rare.entries_diff(idkey, index.old, index.new)
    -- (a write proves the type of an index by its first write there, see 3., unless it
    -- makes a unique claim in it first or has nothing to write there)
    if index.unique or #index.drop + #index.add == 0 then
      local t = redis.call("TYPE", index.key).ok
      if t ~= "none" and t ~= "zset" then return {"WRONGTYPE", index.key} end
    end
    if index.unique then
      for _, member in ipairs(index.new) do
        local holder = rare.unique_holder(index.key, member, idkey, doc_prefix)
        if holder then return {"UNIQUE", index.name, holder} end
      end
    end
  end
end

-- 3. writes (nothing above has written but the purge of an expired document's leftovers,
-- which keeps the indexes exact whatever follows) -------------------------------------------
-- The changed entries of each index (the first write in each proves its key's type:
-- change_entries), then the event (the version it names is taken, then written): a
-- WRONGTYPE error of any is a refusal, and what was written before it is taken back (the
-- event, which cannot be, comes last of them)
local refused = nil
local written = 0  -- (the indexes whose entries are written)
if one_key then
  if was ~= now then  -- (change_entries of one entry: the ZREM proves the key's type)
    local reply = redis.pcall("ZREM", one_key, was .. idkey)
    if reply ~= 1 and reply ~= 0 then  -- (the count removed of one member, else an error)
      if string.find(reply.err, "WRONGTYPE", 1, true) then return {"WRONGTYPE", one_key} end
      error(reply)
    end
    redis.call("ZADD", one_key, 0, now .. idkey)
  end
  written = 1
elseif indexes then
  for i, index in ipairs(indexes) do
    refused = rare.change_entries(index.key, index.drop, index.add)
    if refused then break end
    written = i
  end
end
-- (take_version_text in line: TIME's digits read by arithmetic, as tonumber reads them;
-- the version's text made of them when it is the time, the usual case)
local version, shown, now_us
if not refused then
  local t = redis.call("TIME")
  now_us = t[1] * 1000000 + t[2]
  version = clock + 1
  if now_us > version then version = now_us end
  if version == now_us then
    shown = t[1] .. string.sub("00000", #t[2]) .. t[2]
  else
    shown = string.format("%.0f", version)
  end
  if stream_max then
    -- (emit_first's usual event, a stream's alone, with its write id and fields)
    local reply
    if changed then
      reply = redis.pcall("XADD", KEYS[#KEYS], "MAXLEN", "~", stream_max, "*", "op", "update",
                          "id", idkey, "v", shown, "w", ARGV[5], "f", changed)
    else
      reply = redis.pcall("XADD", KEYS[#KEYS], "MAXLEN", "~", stream_max, "*", "op", "update",
                          "id", idkey, "v", shown, "w", ARGV[5])
    end
    if reply.err then  -- (a string's .err is nil, read from its metatable)
      if not string.find(reply.err, "WRONGTYPE", 1, true) then error(reply) end
      refused = {"WRONGTYPE", KEYS[#KEYS]}
    end
  elseif spec ~= "" then  -- (EVENTS made above)
    refused = rare.emit_first("update", idkey, shown, ARGV[5], changed, json)
  end
end
if refused then  -- (one place that takes back: no function made for it on every call)
  rare = rare or cold_paths()
  if one_key then
    indexes = {{key = one_key, drop = was ~= now and {was .. idkey} or {},
                add = was ~= now and {now .. idkey} or {}}}
  end
  rare.take_back_entries(indexes or {}, written)
  return refused
end
-- (write_clock: a newer layout of the caller in the same HSET)
if new_layout then
  redis.call("HSET", state_key, "clock", shown, "layout", new_layout)
else
  redis.call("HSET", state_key, "clock", shown)
end
-- (store_taken of an update: the document with its expiry, "keep" (as it is), "persist"
-- or milliseconds from the time the version was taken; then the meta hash's version,
-- recent writes and lists)
local expiry = ARGV[9]
if header then  -- (format 3 stays format 3: headed(), and the meta hash headed_meta() keeps)
  -- (headed(shown, ARGV[5], json, header[1], header[2]) in line)
  local old, w = header[1], header[2]
  if #w >= 16 then
    local padded = #old == 16 and old or string.rep("0", 16 - #old) .. old
    if #w == 16 then
      w = ARGV[5] .. w .. padded
    else
      w = ARGV[5] .. string.sub(w, 1, 16) .. padded .. string.sub(w, 17, 16 + 32 * 2)
    end
  else
    w = ARGV[5]
  end
  local value, expiring = "\1" .. shown .. "\0" .. w .. "\0" .. json, true
  if expiry == "keep" then
    -- (an expiring format-3 document keeps a sweep record: without a meta hash there is no
    -- expiry to ask PTTL about; one set by hand stays, and verify() reports its missing
    -- record, which a query never misses: it checks every candidate is alive)
    expiring = header[5] and redis.call("PTTL", doc_key) > 0
    redis.call("SET", doc_key, value, "KEEPTTL")
  elseif expiry == "persist" then
    redis.call("SET", doc_key, value)
    redis.call("ZREM", KEYS[5], idkey)
    expiring = false
  else
    local at = math.floor(now_us / 1000) + tonumber(expiry)
    redis.call("SET", doc_key, value, "PXAT", at)
    redis.call("ZADD", KEYS[5], at, idkey)
  end
  if expiring and #header[3] == 0 then
    -- (an expiry kept: its sweep record gets the new version and the touched indexes'
    -- new pairs (ARGV[6]'s) in place, the others unchanged, as format 2's meta hash)
    if #fields == 2 then
      redis.call("HSET", meta_key, "v", shown, fields[1], fields[2])
    else
      redis.call("HSET", meta_key, "v", shown, unpack(fields))
    end
  else
    -- (headed_meta(meta_key, expiring, shown, header[3], header[4]) in line; the hash
    -- written whole, so any earlier one deleted first: only if there was one)
    if header[5] then redis.call("DEL", meta_key) end
    if expiring then
      redis.call("HSET", meta_key, "v", shown, unpack(header[3]))
    elseif #header[4] > 0 then
      redis.call("HSET", meta_key, unpack(header[4]))
    end
  end
elseif expiry == "keep" then
  redis.call("SET", doc_key, "\0" .. shown .. "\0" .. json, "KEEPTTL")
elseif expiry == "persist" then
  redis.call("SET", doc_key, "\0" .. shown .. "\0" .. json)
  redis.call("ZREM", KEYS[5], idkey)
else
  local at = math.floor(now_us / 1000) + tonumber(expiry)
  redis.call("SET", doc_key, "\0" .. shown .. "\0" .. json, "PXAT", at)
  redis.call("ZADD", KEYS[5], at, idkey)
end
-- (a version of 16 digits, the time's, has no padding: no call; the last RECENT - 1 = 3
-- entries of "r" kept, 32 characters each)
if not header then
  local recent = ARGV[5] .. (#shown < 16 and string.rep("0", 16 - #shown) or "") .. shown
  if seen then recent = recent .. (#seen <= 96 and seen or string.sub(seen, 1, 96)) end
  if #fields == 2 then  -- (the common update's one pair: no unpack())
    redis.call("HSET", meta_key, "v", shown, "r", recent, fields[1], fields[2])
  else
    redis.call("HSET", meta_key, "v", shown, "r", recent, unpack(fields))
  end
end
-- bounded housekeeping: purge a few documents whose expiry is due (only when the schedule
-- had entries)
if scheduled > 0 then
  rare = rare or cold_paths()
  if not EVENTS then rare.events_unchecked(spec, KEYS[#KEYS]) end  -- (a purge emits)
  rare.sweep(8, doc_prefix, meta_prefix, KEYS[3], KEYS[5],
             rare.index_records(cmsgpack.unpack(ARGV[8]), 7), math.floor(now_us / 1000))
end
return {"OK", version, idkey}
