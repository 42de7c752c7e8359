#!lua
-- patch.lua: set some top-level fields of one stored document, whatever its version, without
-- a read before (``filter(id=x).update(...)``): the stored JSON with the new values' texts
-- in place of the old ones, its index entries moved, a new version, its change event.
--
-- No allow-oom (as save.lua): above maxmemory the server refuses the script before it starts.
-- Every check runs before the first write (Redis does not roll back a failed script). The
-- document is never decoded and encoded again: the new value texts are spliced into the
-- stored text (patch_json, _write.lua), every other byte stays as it was.
-- What every patch of a model and of a set of fields sends alike, then the expiry, the
-- values, the id key and the write id, are one argument of MessagePack strings and numbers
-- (each EVALSHA argument costs the server about 1,100 instructions to take in, each
-- MessagePack string about 550). They come one after another, gathered by one table
-- constructor (its array sized once), not as one MessagePack array: cmsgpack fills an
-- array's table one item at a time from an empty one, resizing it as it grows (about 650
-- instructions per item, 22 items in the common patch). Past STREAM_MAX constants
-- (writes.py) they all come as one array: values returned at once overflow Lua's C stack
-- past about 8,000 (the values after the constants are fewer than the constants: at most
-- 2 * STREAM_MAX + 3 come one after another).
--
-- KEYS[1]   document key            KEYS[2]   meta hash key
-- KEYS[3]   the partition's id index (ZSET)
-- KEYS[4]   the partition's TTL schedule (ZSET, score = expire-at ms, member = id key)
-- KEYS[5]   the partition's state hash: version clock, schema layout (see _prelude.lua)
-- KEYS[6..] the key of each index the patch touches, in the order of its quadruples
--           below, then the stream (KEYS[#KEYS]) with events. The model's other indexes
--           are not sent (each key sent costs the server about 1,400 instructions): a
--           purge or a sweep, which write every index, build their names from c[6] and
--           the partition's tag (named_index_records, _prelude.lua), in the slot of the
--           keys sent, as the lock hash's name and the sweep's document keys are built
-- ARGV[1]   MessagePack strings and numbers one after another, or past STREAM_MAX constants
--           one MessagePack array of them (c[1], c[2]... below; the numbers are MessagePack
--           integers, Lua numbers once unpacked: no text parsed)
--   c[1]  the largest document allowed, in bytes (a number)
--   c[2]  the caller's schema layout ("" for none)
--   c[3]  change events: the stream's MAXLEN ("" for no stream)
--   c[4]  "1" when an event carries the document    c[5]  Pub/Sub channel ("" none)
--         (neither a stream nor a channel: no events)
--   c[6]  MessagePack array: of every index of the model, in its order, its meta field
--         then its key's name after the partition's tag ("i:<name>") (read only by a
--         purge or a sweep)
--   c[7]  the event's "f" (MessagePack array of names) when every member's value changes
--   c[8]  n, the members to set   c[9]  k, the meta fields to set   c[10]  j, the indexes
--         the patch touches (numbers)
--   then n key texts (the stored names as JSON, quoted), n names (each member's, for the
--   event's "f"), k meta fields, j quadruples: KEYS position, the number of the meta field
--   holding the index's entries (both numbers), "1" to enforce uniqueness, and the index's
--   member and name: "<position of its member among the n> <kind> <index name>", the kind
--   derived.py's code for _derive.lua (empty: not derived), read only for a format-3
--   document (and the name for a UNIQUE refusal);
--   then the plain pattern of a patch of one member ("" for none: writes.py's
--   plain_pattern), a Lua pattern of the whole stored JSON as Python writes the model's
--   documents, capturing the text before the member's value, its text, the text after
--   it and each array's text;
--   then (c[at_values]) the expiry: "keep" (as it is), "persist" (none), or milliseconds
--   from now; n value texts (JSON, as documents are encoded), then k netstring lists of
--   value encodings, one per meta field; then the id key and the write id, 16 characters
--   (see applied_in)
--
-- Returns   {"OK", version, id key} (nothing to change: the stored version, nothing written)
--           | {"MISSING"} | {"TOOLARGE", size} | {"CORRUPT"} (not a stored JSON object)
--           | {"COMPRESSED"} (the stored document is compressed, which a script cannot look
--             inside: nothing written, the caller reads and rewrites it)
--           | {"LAYOUT", stored layout} | {"UNIQUE", index name, id key of the holder}
--           | {"WRONGTYPE", key} | {"LOCKED", record key} (a prepared transaction holds it)
--           | {"DAMAGED", meta hash key, field} (a field of the meta hash does not read)
--           | {"CORRUPT", "header"} (a format-3 document whose header does not read)
--           | {"ENTRIES", version} (a format-3 document whose old entries in a touched
--             index cannot be derived from its JSON, or whose patch gives it an expiry
--             while it has no sweep record, or removes its expiry while it has one:
--             nothing written, the caller reads and writes it)
-- An expired document is MISSING (what it left behind is purged on the way).
-- luacheck: globals redis KEYS ARGV cmsgpack
-- uses: _write _derive
--
-- Format 3 (bench/format3.md; a document key "\1<version>\0<W>\0<payload>"): its version
-- and recent write ids are in its header (header_of, written_in), it has no meta hash but
-- a sweep record (the same key) while it has an expiry. The touched indexes' old entries
-- are derived from the stored JSON's member texts (derived_entries), never read; where one
-- is not derivable (its kind, a member absent, an escape _derive does not read), the reply
-- is {"ENTRIES", version} with nothing written. The document is written in format 3
-- again (headed), and the sweep record, if any, gets the new version and the patched
-- fields' lists (a persist of a document with one: ENTRIES). The common patch of a
-- format-3 document (no meta hash, one member proven by the plain search, one index of a
-- common kind whose entry moves) writes header_of, written_in, headed and derived_entry's
-- common kinds (_derive.lua) out in place, and asks in the schedule's EXISTS whether a
-- meta hash is there: none, no HMGET of it (an absent key's HMGET costs the server about
-- 6,400 instructions, the EXISTS's third key a few hundred). The format-2 path sends the
-- same commands as before, the GET moved ahead of the EXISTS, and makes no function either.
-- The shared definitions only the rare paths use are made when one is taken (cold_paths(),
-- luachunks.py), not on every call, and read as fields of ``rare``: a purge, a lock, a
-- member the plain search cannot place, a list of more than one value, a unique claim, a
-- refused index write, a sweep, an event other than a stream's alone, a patch that changes
-- nothing, an index of another kind or a text derived_entry's common part does not read.
-- The common path (one member proven by the plain search, at most one index whose single
-- entry moves, a stream's event or none) calls none of them: it runs _write.lua's
-- state_check, schedule_and_locks, applied_in, json_plain_spans' proofs of one member,
-- change_entries, take_version_text, emit_first, write_clock and store_taken written out in
-- place (a change to one of those must be made here too), the same commands (the
-- document's GET before the schedule's EXISTS, whose keys its format chooses), so that the
-- only function made per call is cold_paths() (each function made per call costs the
-- server about 800 instructions), and typed()'s checks written out where the common path
-- reads or writes (a Lua call with its arguments passed on costs about 500).
-- cold: bad_index purge_listed stream_refusal lock_holder applied_in patch_json read_list
-- cold: entries_diff unpack_list unique_holder take_back_entries sweep named_index_records
-- cold: escaped_id type_ok bad_version damaged sole_item change_entries emit_first
-- cold: derived_entries json_plain_spans json_members typed written_in

local doc_key, meta_key, state_key = KEYS[1], KEYS[2], KEYS[5]
-- (one array: the one value unpacked; values one after another are more than one)
local c = {cmsgpack.unpack(ARGV[1])}
if #c == 1 then c = c[1] end
local n, k, j = c[8], c[9], c[10]  -- (MessagePack integers: numbers, no tonumber)
local at_names, at_fields = 10 + n, 10 + 2 * n  -- (in c; the key texts start at c[11])
local at_indexes = at_fields + k
-- (in c: the plain pattern at c[at_values - 1], the expiry at c[at_values], the value texts
-- from c[at_values + 1], the lists from c[at_lists + 1])
local at_values = at_indexes + 4 * j + 2
local at_lists = at_values + n
local idkey, write_id = c[at_lists + k + 1], c[at_lists + k + 2]
-- (cold_paths(), made on the first rare path taken; there, rare.named_index_records(...)
-- of c[6] is every index of the model, in its order, as a purge or a sweep writes them, and
-- the document and meta key prefixes are this document's keys less its escaped id. No
-- function of the body's own is made per call)
local rare

-- The checks that cost no write, in save.lua's order: the state hash (layout, clock, type:
-- state_check), one EXISTS of the schedule and the lock hash (schedule_and_locks), a lock,
-- the id index's type (a model whose keys hold foreign data is refused whole).
-- (typed()'s checks written out: a reply that is an error is a refusal when WRONGTYPE,
-- else raised)
local got, refused = redis.pcall("HMGET", state_key, "layout", "clock"), nil
if got.err then
  if string.find(got.err, "WRONGTYPE", 1, true) then return {"WRONGTYPE", state_key} end
  error(got)
end
local clock, new_layout = tonumber(got[2] or "0") or 0, nil
if c[2] ~= "" and got[1] ~= c[2] then  -- (the same text is the same layout: no number read)
  local stored_layout = string.find(got[1] or "0", "^%d+$") and tonumber(got[1] or "0")
  local mine = tonumber(c[2])
  -- (a layout that does not read: refused before anything is written, as state_check does)
  if not stored_layout then error({err = "DAMAGED " .. state_key .. " layout"}) end
  if stored_layout > mine then return {"LAYOUT", string.format("%.0f", stored_layout)} end
  if stored_layout < mine then new_layout = c[2] end  -- (recorded with the clock)
end
local id_type = redis.call("TYPE", KEYS[3]).ok
if id_type ~= "none" and id_type ~= "zset" then return {"WRONGTYPE", KEYS[3]} end

-- The document (its GET tells its type and whether it is alive), read before the schedule
-- and the locks: its format tells which keys one EXISTS asks about (a read; nothing is
-- written before every check either way).
local stored = redis.pcall("GET", doc_key)
if stored and stored.err then  -- (a string's .err is nil, read from its metatable)
  if string.find(stored.err, "WRONGTYPE", 1, true) then return {"WRONGTYPE", doc_key} end
  error(stored)
end
-- Format 3's header: ``f3`` the header's version text (false: a header that does not read,
-- refused below where a damaged prefix is), nil for format 2 or 1; else its version prefix
-- (format 2: one find, "\0", the version's digits or anything else but "\0", "\0").
-- (header_of(stored) in line: no function made per call for it. The header's find first,
-- the common case's only one: each Lua call of a string function costs the server about
-- 1,000 instructions; format 2's pays the header's failed find, at its first byte)
-- (``f3_head``: the payload's first character, "" for none: its byte is then known with no
-- call where it is "{")
local f3, f3_w, f3_start, prefix_end, f3_head
if stored then
  local _, ends
  _, ends, f3, f3_w, f3_head = string.find(stored, "^\1([1-9]%d*)%z([0-9a-f]*)%z(.?)")
  if not ends then
    _, prefix_end = string.find(stored, "^%z[^%z]*%z")
    if not prefix_end and string.byte(stored, 1) == 1 then f3 = false end
  elseif #f3 > 16 or (#f3_w > 0 and (#f3_w < 16 or (#f3_w - 16) % 32 ~= 0)) then
    f3 = false
  else
    for at = 33, #f3_w, 32 do  -- (each older write's version: 16 digits, not all zero)
      local _, last, zeros = string.find(f3_w, "^(0*)%d*", at)
      if last < at + 15 or #zeros > 15 then f3 = false; break end
    end
    f3_start = ends + 1 - #f3_head
  end
end
-- The schedule and the lock hash (schedule_and_locks): one EXISTS, of the meta hash too
-- for a format-3 document, which has one only as a sweep record or a listed index's
-- fields: none of them there (the usual case), nothing more is read of them, and no HMGET
-- of the meta hash follows. Else the two keys as for format 2, and the meta hash's HMGET.
local locks_key = string.sub(state_key, 1, -6) .. "locks"
local scheduled, others, meta_absent = 0, nil, false
if f3 then
  others = redis.call("EXISTS", KEYS[4], locks_key, meta_key)
  meta_absent = others == 0
  if not meta_absent then others = nil end
end
others = others or redis.call("EXISTS", KEYS[4], locks_key)
if others > 0 then
  rare = rare or cold_paths()
  scheduled, refused = rare.typed(KEYS[4], "ZCARD", KEYS[4])
  if refused then return refused end
  others = others - (scheduled > 0 and 1 or 0)
end
-- Change events: c[3] and c[5] (events_on's spec, sent flat; the XADD proves the stream's
-- type: emit_first). Its table, EVENTS, is made only where a rare path may emit (a purge,
-- an event other than a stream's alone, a sweep): the common one reads c[3..5] itself.
local events = c[3] ~= "" or c[5] ~= ""
if others > 0 then  -- (the lock hash: a document of a prepared transaction, lock_holder())
  rare = rare or cold_paths()
  local holder = rare.lock_holder(state_key, idkey, true)
  -- (a resent write applied the first time, before the lock was taken, is not refused:
  -- found in the meta hash's "r", or, where it has none, in a format-3 header's W)
  if holder then
    local seen = nil
    if rare.type_ok(meta_key, "hash") then seen = redis.call("HGET", meta_key, "r") end
    local done = seen and rare.applied_in(seen, write_id)
    if seen == false and f3 then done = rare.written_in(f3_w, f3, write_id) end
    if not done then return {"LOCKED", holder} end
  end
end

-- In one HMGET, the version, the recent write ids and the entries the touched indexes
-- hold now (a format-3 document's meta hash, where it has one: its sweep record's "v").
local m_type
local field  -- (the common patch's one index: the number of its meta field)
if meta_absent then
  got = nil  -- (no table made for it: current and seen stay nil)
elseif j == 1 then  -- (the common patch: one index)
  field = c[at_indexes + 2]
  got = redis.pcall("HMGET", meta_key, "v", "r", c[at_fields + field])
  if got.err then
    if string.find(got.err, "WRONGTYPE", 1, true) then return {"WRONGTYPE", meta_key} end
    error(got)
  end
else
  local wanted = {"v", "r"}
  for i = 1, j do
    wanted[i + 2] = c[at_fields + tonumber(c[at_indexes + 4 * i - 2])]
  end
  rare = rare or cold_paths()
  got, refused = rare.typed(meta_key, "HMGET", meta_key, unpack(wanted))
  if refused then return refused end
end
local current, seen
if got then current, seen = got[1] or nil, got[2] or nil end
if stored then
  -- a resent write applied before (applied_in: a write id starts an entry of "r", at 1,
  -- 33, 65...)
  if seen and #write_id == 16 then
    local at = string.find(seen, write_id, 1, true)
    while at do
      if at % 32 == 1 then return {"OK", tonumber(string.sub(seen, at + 16, at + 31)), idkey} end
      at = string.find(seen, write_id, at + 1, true)
    end
  end
elseif current then  -- expired: its leftovers are purged (their keys' types first)
  rare = rare or cold_paths()
  if events then
    EVENTS = {maxlen = c[3], doc = c[4] == "1", channel = c[5], key = KEYS[#KEYS]}
  end
  refused = rare.stream_refusal()  -- (its "expire" event)
  if refused then return refused end
  local all = rare.named_index_records(cmsgpack.unpack(c[6]), string.sub(state_key, 1, -6))
  local bad = rare.bad_index(all)
  if bad then return {"WRONGTYPE", bad} end
  return rare.purge_listed(idkey, meta_key, KEYS[3], KEYS[4], all) or {"MISSING"}
end
-- (a format-3 document has a meta hash only as a sweep record: its version is its header's)
if not stored or not current and f3 == nil then return {"MISSING"} end

-- The stored JSON with the new values in place (unchanged: nothing written), less its
-- version (payload_of; its prefix or header found above). (A format-3 payload is read in
-- place, from ``payload_at`` in the stored value, by the plain searches and the plain
-- pattern, whose "^" anchors at its start: no copy of it; a proof or a scan that reads
-- the payload alone copies it first)
local payload_at = 1
if prefix_end then
  stored = string.sub(stored, prefix_end + 1)
elseif f3 == false then
  return {"CORRUPT", "header"}  -- (as a damaged format-2 prefix)
elseif f3 then
  -- A format-3 document: its version and W from its header, a resent write recognised
  -- there (the meta hash read above is its sweep record, if any: its "v" is the header's,
  -- its lists those of the entries; it has no "r"). The format-2 path pays no test for
  -- it: its prefix is found first.
  -- (the common patch once documents are format 3: header_of, written_in, headed and
  -- derived_entry's common kinds written out, no function made for them)
  -- (written_in(f3_w, f3, write_id) in line: the version a resent write gave it)
  if #write_id == 16 and f3_w ~= "" then
    local at = string.find(f3_w, write_id, 1, true)
    while at do
      if at == 1 then return {"OK", tonumber(f3), idkey} end
      if at % 32 == 17 then return {"OK", tonumber(string.sub(f3_w, at + 16, at + 31)), idkey} end
      at = string.find(f3_w, write_id, at + 1, true)
    end
  end
  payload_at, current, m_type = f3_start, f3, current and "hash" or "none"
end  -- (else format 1, or a damaged prefix: kept whole)
-- a compressed document (quantumorm/compression.py) starts with the byte 0xFF, which no
-- JSON text does
local head = f3_head == "{" and 123 or string.byte(stored, payload_at)
if head == 255 then return {"COMPRESSED"} end
local json, count, changed  -- (how many members' texts change; the event's "f")
-- (format 3's common patch: the JSON's text before and after the new value, its size)
local before, rest, json_size
-- (format 3: the members' old value texts, by position, nil where absent; or old1, the
-- one member's text the common proof found: no table made for it)
local olds, old1
if n == 1 and not string.find(stored, "\\", payload_at, true) then
  -- (the common patch: one member, its span proven with no scan. First by the plain
  -- pattern (writes.py's plain_pattern: the stored JSON as Python writes a document of the
  -- model, every member in field order, none nested): one find of the whole text, anchored
  -- at both ends, gives the member's value's span. Proof: with no backslash in the text, a
  -- string's text ends at the next quote, so each string the pattern matches ('%b""': a
  -- quote, the bytes up to the next one, that one) is one string as json_members reads
  -- it; a run of letters, digits, '.', '+' and '-' followed by the ',' or '}' the pattern
  -- names is one scalar as json_skip reads it (none of those is a delimiter); an array
  -- ('%b[]': a '[' to the ']' that balances it, brackets in strings counted too) whose
  -- text less each pair of quotes and what they enclose, taken from the left as '%b""'
  -- pairs them, holds no quote (its strings are those pairs), no bracket nor brace but its
  -- first and last byte, is strings and scalars between its two brackets: json_skip,
  -- which skips each string whole, ends it at its last ']', where the pattern does. So
  -- json_members reads the object member by member where the pattern does, the text is
  -- one it accepts (nothing after the object), and the member of the target's name is
  -- the pattern's (each name once): where patch_json would splice. (A raw NUL, which
  -- Python's encoder never writes, changes none of that: json_members and _derive.lua read
  -- it as any byte; the cjson proof, whose read stops at one, takes a text with none.)
  -- Else, or where an array's text less its strings is not that, as json_plain_spans
  -- proves it: the JSON valid, an object, with no backslash nor NUL (json_plain_doc), the
  -- member there, its key text once (json_plain_span); blanks looked for only where the
  -- byte is one)
  local first, after, plain = nil, nil, c[at_values - 1]
  -- (the plain pattern's captures: the texts before and after the member's value, which
  -- the new document is made of, taken by the find: no string.sub of them below)
  local head_text, tail_text
  -- (a text with a null member goes to the cjson proof at once: a string field's null
  -- fails the pattern, maybe late in the text, where a failed find costs the server more
  -- than the proof, about 14,000 instructions in issue 12's documents; one plain search)
  if plain ~= "" and not string.find(stored, ":null", payload_at, true) then
    -- (the member's text captured too: old1, no string.sub of it below)
    local _, arrays, more
    _, _, head_text, old1, tail_text, arrays, more = string.find(stored, plain, payload_at)
    -- (each array's text less its strings, the pairs of quotes '%b""' takes from the
    -- left: no quote left (an odd one would be), no bracket nor brace but its two
    -- brackets; else the cjson proof. A gsub that keeps only the bytes between strings,
    -- and a set read on those alone)
    if arrays and (not string.find(string.gsub(arrays, '%b""', ""), '^%[[^][{}"]*%]$')
                   or more and not string.find(string.gsub(more, '%b""', ""),
                                               '^%[[^][{}"]*%]$')) then
      head_text, old1, tail_text = nil, nil, nil
    end
  end
  local ok, doc, key, b
  if not head_text and payload_at > 1 then  -- (the proof reads the payload alone)
    stored, payload_at = string.sub(stored, payload_at), 1
  end
  if not head_text and not string.find(stored, "\0", 1, true) then
    ok, doc = pcall(cjson.decode, stored)
    key, b = c[11], head
    if b == 32 or b == 9 or b == 10 or b == 13 then
      b = string.byte(stored, string.find(stored, "[^ \t\r\n]") or 1)
    end
  end
  -- (cjson's read of a text whose first byte but blanks is "{": a table)
  if not head_text and ok and b == 123 and doc[string.sub(key, 2, -2)] ~= nil then
    local from = 1
    while true do
      local kat, k_end = string.find(stored, key, from, true)
      if not kat then break end
      local colon = k_end + 1
      local b, next_b = string.byte(stored, colon, colon + 1)  -- (the colon's and the next)
      if b == 32 or b == 9 or b == 10 or b == 13 then
        colon = string.find(stored, "[^ \t\r\n]", colon)
        b, next_b = string.byte(stored, colon or 1, (colon or 1) + 1)
      end
      if b == 58 then
        if first then first = false; break end  -- (two keys of that name: not proven)
        first = colon + 1
        b = next_b
        if b == 32 or b == 9 or b == 10 or b == 13 then
          first = string.find(stored, "[^ \t\r\n]", first)
          b = string.byte(stored, first)
        end
        if b == 34 then
          after = string.find(stored, '"', first + 1, true) + 1
        elseif b == 91 or b == 123 then
          local _, last = string.find(stored, b == 91 and "^%b[]" or "^%b{}", first)
          if not last or not pcall(cjson.decode, string.sub(stored, first, last)) then
            first = false
            break
          end
          after = last + 1
        else
          after = string.find(stored, "[,}%] \t\r\n]", first)
        end
      end
      from = k_end + 1
    end
  end
  if head_text or first then
    -- (spliced, then compared whole: Lua strings are interned, so equal texts are one
    -- string and == compares two pointers; no third string.sub for the old value's text.
    -- A patch that changes nothing thus copies the document once more than a compare of
    -- the old value's text would: the common patch changes its value, and needs the copy)
    if not head_text then
      head_text, tail_text = string.sub(stored, 1, first - 1), string.sub(stored, after)
    end
    if f3 then
      -- (format 3 reads the old value's text anyway, for its entry: compared with the
      -- new one, and the new JSON left in its two parts, made whole only inside the
      -- stored value's text (one string, no copy of the JSON alone) or where a rare
      -- path needs it; its size counted)
      local new_text = c[at_values + 1]
      old1 = old1 or string.sub(stored, first, after - 1)
      count = old1 == new_text and 0 or 1
      before, rest = head_text, tail_text
      json_size = #stored - payload_at + 1 - #old1 + #new_text
    else
      json = head_text .. c[at_values + 1] .. tail_text
      count = json == stored and 0 or 1
    end
  end
end
if not json and not before then
  if payload_at > 1 then stored = string.sub(stored, payload_at) end
  rare = rare or cold_paths()
  local given, names = {}, {}
  for i = 1, n do
    given[i] = {c[10 + i], c[at_values + i]}
    names[i] = c[at_names + i]
  end
  local differing
  json, differing = rare.patch_json(stored, given, names)
  if not json then return {"CORRUPT"} end
  if f3 and j > 0 then
    -- (the members as patch_json found them: json_plain_spans' proof, else the scan, which
    -- read the document whole just now)
    local at = rare.json_plain_spans(stored, given)
    if not at then
      local _, members = pcall(rare.json_members, stored)
      at = {}
      for _, m in ipairs(members) do
        -- (a member name written with an escape may be another text of a wanted name,
        -- which Python reads and this scan would not: no old text derived, ENTRIES)
        if string.find(m[1], "\\", 1, true) then at = {}; break end
        at[m[1]] = m
      end
    end
    olds = {}
    for i = 1, n do
      local m = at[c[10 + i]]
      if m then olds[i] = string.sub(stored, m[2], m[3] - 1) end
    end
  end
  count = #differing
  if count < n then changed = cmsgpack.pack(differing) end
end
local expiry = c[at_values]
if count == 0 and expiry == "keep" then
  rare = rare or cold_paths()
  return rare.bad_version(meta_key, current) or {"OK", tonumber(current), idkey}
end
json_size = json_size or #json
if json_size > c[1] then return {"TOOLARGE", json_size} end
if count == n then changed = c[7] elseif not changed then changed = cmsgpack.pack({}) end

-- Index entries: the touched indexes' moves, their keys' types, unique claims. The common
-- one (one index, not unique, a scalar's entry that moves: sole_item of both lists) is
-- written here; any other goes through the general loop.
local moved  -- {key, drop, add} of each index whose entries change (the general loop's)
local index_key, was, now  -- (the common move's, else nil)
if f3 then
  -- Format 3: each touched index's old entries derived from its member's old text (the
  -- kind and the member's position in its quadruple's last item); one not derived: the
  -- refusal ENTRIES, nothing written. A new expiry needs a sweep record listing every
  -- index, which only a read can make: ENTRIES too when there is none.
  -- A persist keeps a sweep record's listed indexes' fields (bench/format3.md, section 1),
  -- which this call cannot tell from the others (it carries the touched indexes' kinds
  -- only): ENTRIES too, and save.lua writes it (headed_meta).
  if m_type ~= "hash" and expiry ~= "keep" and expiry ~= "persist"
      or m_type == "hash" and expiry == "persist" then
    return {"ENTRIES", tonumber(f3)}
  end
  -- (the common one: one index, not unique, of a scalar kind, its one entry derived from
  -- the one member's old text as the common proof found it (no backslash in the
  -- document: a string's text ends at its first quote), the new list holding one entry
  -- (sole_item in line) that differs: written as format 2's common move below, no
  -- cold_paths(). derived_entry's common kinds written out: a positive int or zero, a
  -- string without escapes, a boolean, null; any other text or kind goes through the
  -- general loop, which derives it whole or refuses)
  if j == 1 and old1 and c[at_indexes + 3] ~= "1" then
    local member, kind = string.match(c[at_indexes + 4], "^(%d+) (%S*) ")
    if member == "1" then
      -- (by the kind first: an int's or a boolean's text read with no byte read before it,
      -- each Lua call of a string function costing the server about 1,000 instructions;
      -- Lua strings are interned, so a compare with a constant text is one of pointers)
      local old
      if old1 == "null" then
        if kind == "int" or kind == "str" or kind == "enum" or kind == "bool" then old = NULL end
      elseif (kind == "str" or kind == "enum") and string.byte(old1, 1) == 34 then
        old = " " .. string.sub(old1, 2, -2) .. "\0"
      elseif kind == "int" then
        -- (the digits less their trailing zeros, in one match that also proves the text
        -- is a positive int without a leading zero; the exponent's 10 digits
        -- 5000000000 + the number of digits)
        local digits = string.match(old1, "^([1-9]%d-)0*$")
        if digits then
          -- (the head of 1 to 9 digits written out, as query.lua's int_heads: no
          -- string.char call, one concatenation)
          local size = #old1
          old = (size == 1 and "\0245000000001" or size == 2 and "\0245000000002"
                 or size == 3 and "\0245000000003" or size == 4 and "\0245000000004"
                 or size == 5 and "\0245000000005" or size == 6 and "\0245000000006"
                 or size == 7 and "\0245000000007" or size == 8 and "\0245000000008"
                 or size == 9 and "\0245000000009"
                 or "\24" .. string.format("%010d", 5000000000 + size)) .. digits .. "\0"
        elseif old1 == "0" then
          old = "\20\0"
        end
      elseif kind == "bool" then
        if old1 == "true" then old = "\3\0" elseif old1 == "false" then old = "\2\0" end
      end
      local size2, item2 = string.match(c[at_lists + c[at_indexes + 2]], "^(%d+):(.*)$")
      if old and size2 and #size2 <= 12 and size2 + 0 == #item2 and old ~= item2 then
        was, now, index_key = old, item2, KEYS[c[at_indexes + 1]]
      end
    end
  end
  local olds_of
  if not index_key then
    moved, olds, olds_of = {}, olds or {old1}, {}
  end
  rare = rare or (not index_key and j > 0 and cold_paths()) or nil
  for i = 1, index_key and 0 or j do
    local member, kind = string.match(c[at_indexes + 4 * i], "^(%d+) (%S*) ")
    local text = member and olds[tonumber(member)]
    local old = text and kind ~= "" and rare.derived_entries(text, kind)
    if not old then return {"ENTRIES", tonumber(f3)} end
    olds_of[i] = old
  end
  for i = 1, index_key and 0 or j do
    local base = at_indexes + 4 * (i - 1)
    local key = KEYS[tonumber(c[base + 1])]
    local new = rare.unpack_list(c[at_lists + tonumber(c[base + 2])])
    local unique = c[base + 3] == "1"
    local drop, add = rare.entries_diff(idkey, olds_of[i], new)
    if (unique or #drop + #add == 0) and not rare.type_ok(key, "zset") then
      return {"WRONGTYPE", key}
    end
    if unique then
      local doc_prefix = string.sub(doc_key, 1, -#rare.escaped_id(idkey) - 1)
      for _, value in ipairs(new) do
        local holder = rare.unique_holder(key, value, idkey, doc_prefix)
        if holder then return {"UNIQUE", string.match(c[base + 4], "^%d+ %S* (.*)$"), holder} end
      end
    end
    if #drop + #add > 0 then moved[#moved + 1] = {key = key, drop = drop, add = add} end
  end
elseif j == 1 and c[at_indexes + 3] ~= "1" then
  local old, new = got[3] or "", c[at_lists + field]
  -- (sole_item: "len:bytes" holding exactly one value, its length at most 12 digits;
  -- one match of each gives both parts, the length read by arithmetic on its digits, as
  -- tonumber reads them, with no function call: each costs the server about 800
  -- instructions)
  local size, item = string.match(old, "^(%d+):(.*)$")
  local size2, item2 = string.match(new, "^(%d+):(.*)$")
  if size and size2 and #size <= 12 and #size2 <= 12 and size + 0 == #item
      and size2 + 0 == #item2 then
    was, now = item, item2
    if was ~= now then index_key = KEYS[c[at_indexes + 1]] end
  end
end
if index_key then
  -- (change_entries: the ZREM proves the key's type)
  local reply = redis.pcall("ZREM", index_key, was .. idkey)
  if reply ~= 1 and reply ~= 0 then  -- (the count removed of one member, else an error)
    if string.find(reply.err, "WRONGTYPE", 1, true) then return {"WRONGTYPE", index_key} end
    error(reply)
  end
  redis.call("ZADD", index_key, "0", now .. idkey)  -- (a string: no number formatted)
elseif j > 0 and not f3 then
  rare = rare or cold_paths()
  moved = {}
  for i = 1, j do
    local base = at_indexes + 4 * (i - 1)
    local key = KEYS[tonumber(c[base + 1])]
    local field = tonumber(c[base + 2])
    local new = c[at_lists + field]
    local old = got[i + 2] or ""
    local unique = c[base + 3] == "1"
    local drop, add
    if old ~= new then
      -- (a scalar field's lists hold one value each: no list nor set made of them)
      local a, b = rare.sole_item(old), rare.sole_item(new)
      if a and b then
        if a == b then drop, add = {}, {} else drop, add = {a .. idkey}, {b .. idkey} end
      else
        local listed = rare.read_list(old)
        if not listed then
          return rare.damaged(meta_key, c[at_fields + field])
        end
        drop, add = rare.entries_diff(idkey, listed, rare.unpack_list(new))
      end
    end
    -- (the first write in an index proves its type, see change_entries; an index with
    -- nothing to write, or a unique claim to check first, is checked here)
    if (unique or not drop or #drop + #add == 0) and not rare.type_ok(key, "zset") then
      return {"WRONGTYPE", key}
    end
    if unique then
      local doc_prefix = string.sub(doc_key, 1, -#rare.escaped_id(idkey) - 1)
      for _, member in ipairs(rare.unpack_list(new)) do
        local holder = rare.unique_holder(key, member, idkey, doc_prefix)
        if holder then return {"UNIQUE", string.match(c[base + 4], "^%d+ %S* (.*)$"), holder} end
      end
    end
    if drop and #drop + #add > 0 then
      moved[#moved + 1] = {key = key, drop = drop, add = add}
    end
  end
  -- Writes: the entries (the first write in each index proves its type), each refusal
  -- taking back what came before it.
  for i, index in ipairs(moved) do
    refused = rare.change_entries(index.key, index.drop, index.add)
    if refused then
      rare.take_back_entries(moved, i - 1)
      return refused
    end
  end
end
if f3 and moved then  -- (format 3's moves, as the loop above writes them)
  for i, index in ipairs(moved) do
    refused = rare.change_entries(index.key, index.drop, index.add)
    if refused then
      rare.take_back_entries(moved, i - 1)
      return refused
    end
  end
end

-- Then the event (the version it names taken first: take_version_text, the version's text
-- made of TIME's digits when it is the time, no "%.0f" of it), a refusal taking back the
-- entries; then the clock, the document and its meta hash.
local t = redis.call("TIME")
-- (TIME's digits read by arithmetic, as tonumber reads them; no math.max: no call)
local now_us = t[1] * 1000000 + t[2]
local version, shown = clock + 1, nil
if now_us > version then version = now_us end
if version == now_us then
  -- (the microseconds padded to 6 digits; no call when they have 6, 9 times in 10)
  shown = #t[2] == 6 and t[1] .. t[2] or t[1] .. string.sub("00000", #t[2]) .. t[2]
else
  shown = string.format("%.0f", version)
end
if events then
  if c[5] == "" and c[3] ~= "" and c[4] ~= "1" then
    -- (emit_first's usual event, a stream's alone, with its write id and fields)
    local reply = redis.pcall("XADD", KEYS[#KEYS], "MAXLEN", "~", c[3], "*", "op",
                              "update", "id", idkey, "v", shown, "w", write_id, "f", changed)
    if reply.err then  -- (a string's .err is nil, read from its metatable)
      if not string.find(reply.err, "WRONGTYPE", 1, true) then error(reply) end
      refused = {"WRONGTYPE", KEYS[#KEYS]}
    end
  else
    rare = rare or cold_paths()
    EVENTS = {maxlen = c[3], doc = c[4] == "1", channel = c[5], key = KEYS[#KEYS]}
    json = json or before .. c[at_values + 1] .. rest
    refused = rare.emit_first("update", idkey, shown, write_id, changed, json)
  end
  if refused then
    rare = rare or cold_paths()
    if index_key then
      moved = {{key = index_key, drop = {was .. idkey}, add = {now .. idkey}}}
    end
    rare.take_back_entries(moved or {}, moved and #moved or 0)
    return refused
  end
end
-- (write_clock: a newer layout of the caller in the same HSET)
if new_layout then
  redis.call("HSET", state_key, "clock", shown, "layout", new_layout)
else
  redis.call("HSET", state_key, "clock", shown)
end
-- (store_taken: the document with its expiry, "keep", "persist" or milliseconds from the
-- time the version was taken; then the meta hash's version, recent writes and lists)
if f3 then
  -- Format 3: the document with its new header (this write's id first in W); the sweep
  -- record, where there is one, with the new version and the patched indexes' lists (no
  -- "r": W holds the recent writes), deleted with the expiry ("persist")
  -- (headed(shown, write_id, json, f3, f3_w) in line; the usual W, of more than one
  -- write, whose newest's version is the time's 16 digits, and the JSON in its two parts,
  -- in one concatenation)
  local value, size = nil, #f3_w
  if size == 16 and #f3 == 16 and before then
    -- (W of one write, a document written once since its load: the same bytes as below,
    -- in one concatenation, with no W nor JSON made apart)
    value = "\1" .. shown .. "\0" .. write_id .. f3_w .. f3 .. "\0" .. before
            .. c[at_values + 1] .. rest
  elseif size <= 16 or #f3 ~= 16 or not before then
    local w = write_id
    if size >= 16 then
      -- (the time's 16 digits need no padding; a W of one id no cut: no call for either)
      local padded = #f3 == 16 and f3 or string.rep("0", 16 - #f3) .. f3
      if size == 16 then
        w = w .. f3_w .. padded
      else
        w = w .. string.sub(f3_w, 1, 16) .. padded .. string.sub(f3_w, 17, 16 + 32 * (RECENT - 2))
      end
    end
    value = "\1" .. shown .. "\0" .. w .. "\0" .. (json or before .. c[at_values + 1] .. rest)
  else
    value = "\1" .. shown .. "\0" .. write_id .. string.sub(f3_w, 1, 16) .. f3
            .. string.sub(f3_w, 17, 16 + 32 * (RECENT - 2)) .. "\0" .. before
            .. c[at_values + 1] .. rest
  end
  if expiry == "keep" then
    redis.call("SET", doc_key, value, "KEEPTTL")
  elseif expiry == "persist" then
    redis.call("SET", doc_key, value)
    redis.call("ZREM", KEYS[4], idkey)
  else
    local expire_at = math.floor(now_us / 1000) + tonumber(expiry)
    redis.call("SET", doc_key, value, "PXAT", expire_at)
    redis.call("ZADD", KEYS[4], expire_at, idkey)
  end
  if m_type == "hash" then  -- (not a persist: ENTRIES above)
    local fields = {}
    for i = 1, k do fields[2 * i - 1], fields[2 * i] = c[at_fields + i], c[at_lists + i] end
    redis.call("HSET", meta_key, "v", shown, unpack(fields))
  end
elseif expiry == "keep" then
  redis.call("SET", doc_key, "\0" .. shown .. "\0" .. json, "KEEPTTL")
elseif expiry == "persist" then
  redis.call("SET", doc_key, "\0" .. shown .. "\0" .. json)
  redis.call("ZREM", KEYS[4], idkey)
else
  local expire_at = math.floor(now_us / 1000) + tonumber(expiry)
  redis.call("SET", doc_key, "\0" .. shown .. "\0" .. json, "PXAT", expire_at)
  redis.call("ZADD", KEYS[4], expire_at, idkey)
end
-- (a version of 16 digits, the time's, has no padding: no call; nor has a list of at
-- most 3 earlier entries, which is kept whole)
if not f3 then
  seen = seen or ""
  local recent = write_id .. (#shown < 16 and string.rep("0", 16 - #shown) or "") .. shown
                 .. (#seen <= 96 and seen or string.sub(seen, 1, 96))
  if k == 1 then
    redis.call("HSET", meta_key, "v", shown, "r", recent, c[at_fields + 1], c[at_lists + 1])
  else
    local fields = {}
    for i = 1, k do fields[2 * i - 1], fields[2 * i] = c[at_fields + i], c[at_lists + i] end
    redis.call("HSET", meta_key, "v", shown, "r", recent, unpack(fields))
  end
end
-- bounded housekeeping: purge a few documents whose expiry is due (only when the schedule
-- had entries)
if scheduled > 0 then
  rare = rare or cold_paths()
  if events then
    EVENTS = {maxlen = c[3], doc = c[4] == "1", channel = c[5], key = KEYS[#KEYS]}
  end
  local size = #rare.escaped_id(idkey)
  local all = rare.named_index_records(cmsgpack.unpack(c[6]), string.sub(state_key, 1, -6))
  rare.sweep(8, string.sub(doc_key, 1, -size - 1), string.sub(meta_key, 1, -size - 1), KEYS[3],
             KEYS[4], all, math.floor(now_us / 1000))
end
return {"OK", version, idkey}
