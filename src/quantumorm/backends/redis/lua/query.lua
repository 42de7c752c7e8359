#!lua flags=no-writes
-- query.lua: answer one query on one partition in one call (read only).
--
-- The planner (planner.py) sends a driver (where candidate ids come from), a predicate the
-- candidates must satisfy (evaluated on the value encodings kept in each meta hash), an
-- ordering and a keyset position. This script estimates the cost of each driver with
-- ZLEXCOUNT/ZCARD, takes the cheapest, and returns the documents in order. Ids whose document
-- is gone are dropped, so a dangling index entry is never returned nor counted.
--
-- The cheap tests run first: index membership (ZMSCORE, one call per batch of candidates)
-- and range conditions read as sets of ids when their ranges are small enough (set
-- algebra; a walk reads them before its first chunk, so they filter its candidates before
-- the membership tests do), and only then the meta hash of the candidates left (one HMGET
-- each, which also reads the version of a row returned). Rows are read with one MGET per
-- batch. Where a whole range or every candidate is read and a test on values is left, the
-- candidates' documents are read first the same way (read_first: a format-3 document's
-- values derived from it, the document kept for its row), and a range condition is tested
-- so, instead of read as a set, when the membership tests keep few enough candidates
-- (range_sets' cost model).
--
-- Document and meta keys are built from the prefixes in ARGV[1..2]: they share the
-- partition's hash tag with KEYS, so they are in the same slot.
--
-- KEYS[1]   the partition's id index (ZSET, member = id key)
-- KEYS[2..] index keys of the model, in order, up to the last one the program names (none
--           after it: Plan.reach), then the partition's state hash (schema layout, see
--           _prelude.lua), then its TTL schedule (ZSET, last)
-- ARGV[1]   document key prefix          ARGV[2]  meta key prefix
-- ARGV[3]   "rows" | "keyed" (rows with their sort keys, to merge partitions) | "sortkeys"
--           (keyed without the documents: the first phase over many partitions) | "count"
--           | "exists" | "plan"
-- ARGV[4]   offset                       ARGV[5]  limit, or -1
-- ARGV[6]   "1" to check that each candidate's document exists (also done whenever the TTL
--           schedule is not empty)
-- ARGV[7]   the program, MessagePack strings one after the other (or, when long, one array
--           of them: wire.program): DRIVER, NEED, PRED, ORDER, AFTER (grammar in planner.py)
-- ARGV[8]   the caller's schema layout
-- ARGV[9..] with a program that reads values (NEED not empty) only: per indexed field, its
--           meta field, its JSON key text and its kind code (derived.py; "": not derived),
--           MessagePack strings one after the other (Plan.derivable), read only for a
--           format-3 candidate without a meta hash (see from_document)
-- Returns   rows: flat, each row {escaped id, json} when its json (the document as stored)
--           carries its version (format 2 or 3: its first byte is 0 or 1), else {escaped
--           id, version, json} (the meta hash's version: digits, "0" when there is none; a
--           version that does not read is an error, see meta_version()): the row's
--           second item says which (escaped id: the id as in its document key, see
--           escaped_id() in _prelude.lua; results.py reads this form); keyed: flat
--           {id key, version, json, then per ORDER entry the encoding the rows are ordered
--           by, ...} (version false when the json carries its own, see versioned() in
--           _prelude.lua; the id key breaks ties); sortkeys: {id key, version, sort
--           keys...}, without the json; count: integer; exists: 0|1;
--           plan: {estimated candidates, 1 if exact, the chosen driver, the drivers it
--           reads...}, each driver named by its position in the program's DRIVER (depth
--           first, from 1);
--           in every mode {"LAYOUT", stored layout} when the caller's schema is outdated;
--           but plan, {"LOCKED", the answer, its lock holders} while the partition's lock
--           flag is set
-- luacheck: globals redis KEYS ARGV cmsgpack
-- The shared definitions the exact walk (the common query, first below) uses only on its rare
-- paths, and the rest of the script only (cold_paths(), made after the walk):
-- cold: escaped_id read_list damaged_error bad_version
-- and, made only by rare.colder_paths() (a format-3 candidate without a meta hash, see
-- from_document):
-- colder: derived_entries json_plain_doc json_plain_span json_members
-- Written out in place (from_document, the plain search's entries): derived_entry's
-- common part (null, booleans, ints, strings without escapes), which the colder tier makes;
-- (first below) layout_refusal, a reader's, as count.lua's; by the exact walk (the common
-- query, which makes no function): escaped_id, and the script's own lead_of, ids_of,
-- no_strings, escaped_at and doc_keys (made after it, for the rest of the script).
-- uses: _derive _write

do
  -- (layout_refusal() in line, of a reader, as count.lua's: no function made per call for
  -- it, and a layout that is the caller's own text, the usual case, read with no call)
  local state_key, layout = KEYS[#KEYS - 1], ARGV[8]
  local got = redis.pcall("HGET", state_key, "layout")
  if got ~= layout then
    if type(got) == "table" then  -- (an error reply: the state hash holds another type)
      if string.find(got.err, "WRONGTYPE", 1, true) then
        return redis.error_reply("WRONGTYPE " .. state_key .. " is not a hash")
      end
      error(got)
    end
    if layout ~= nil and layout ~= "" then
      -- (a layout that is not plain digits does not read, as layout_refusal() judges it)
      local stored = string.find(got or "0", "^%d+$") and tonumber(got or "0")
      if not stored then error({err = "DAMAGED " .. state_key .. " layout"}) end
      if stored > tonumber(layout) then return {"LAYOUT", string.format("%.0f", stored)} end
    end
  end
end
local doc_prefix, meta_prefix, mode = ARGV[1], ARGV[2], ARGV[3]
-- keyed: rows, each followed by its sort keys (the caller merges partitions with them);
-- bare: without their documents (the caller fetches only the rows the merge keeps)
local bare = mode == "sortkeys"
local keyed = bare or mode == "keyed"
if keyed then mode = "rows" end
local verify = ARGV[6] == "1"

-- The program's first seven tokens, as locals (no table), which say whether it is the exact
-- walk below and are all that walk reads; the whole program is decoded after it, for the
-- rest of the script (a long one comes as one array, wire.program: never the walk here).
local _, kind, walk_pos, walk_ids, walk_desc, walk_low, walk_high, walk_exact =
  cmsgpack.unpack_limit(ARGV[7], 7)

-- documents with an expiry are scheduled in the partition's TTL set (the last key): while it
-- is not empty, index entries may outlive their document, so every candidate is checked.
-- The schedule and the partition's lock flag (two-phase commits: see answered()) are
-- usually both absent (an empty sorted set is no key): one EXISTS of the two says so, and
-- only when one of them is there does each get its own read. But the exact walk of a whole
-- range (offset 0, no limit: an equality's) checks no candidate either way: its MGET leaves
-- out a document gone (expired or not), and no window counts its entries. It reads the lock
-- flag (a string, "<tag>:locked") with its first batch's documents instead, as a read by id
-- does (flagged: nil until then).
local lock_flag = string.sub(KEYS[#KEYS - 1], 1, -6) .. "locked"
local whole = kind == "WALK" and walk_exact == "1" and mode == "rows" and not keyed
  and not verify and ARGV[4] == "0" and ARGV[5] == "-1"
local flagged
if not whole then
  flagged = redis.call("EXISTS", KEYS[#KEYS], lock_flag) > 0
  verify = verify or (flagged and redis.call("ZCARD", KEYS[#KEYS]) > 0)
end

local find, sub, byte = string.find, string.sub, string.byte

-- two-phase commits (twophase.py): while the partition has locks (its flag, beside the state
-- hash), the answer comes wrapped, {"LOCKED", answer, holders}: the caller settles the
-- committed transactions holding them and asks again (also when a holder met here is gone
-- by then: its apply may have landed in between), so that it sees a committed transaction
-- whole. Made only while the schedule or the flag is there (nil, the usual case: the answer
-- goes out as it is, and no function is made for it on every call).
local answered
if flagged then
  answered = function(answer)
    if redis.call("EXISTS", lock_flag) == 1 then
      local holders, met = {}, {}
      -- (HGETALL: in the ACL rule)
      local pairs_ = redis.call("HGETALL", string.sub(lock_flag, 1, -7) .. "locks")
      for i = 2, #pairs_, 2 do
        local holder = pairs_[i]
        if not met[holder] then met[holder] = true; holders[#holders + 1] = holder end
      end
      return {"LOCKED", answer, holders}
    end
    return answer
  end
end

-- The common query first: an exact walk whose rows are returned (an equality or a range on
-- one index, or every document, in index order; nothing to test) while no document can
-- expire. Its rows are exactly the index entries at offset .. offset + limit of its range,
-- read with one command, then their documents with one MGET per batch: none of the
-- compiler, planner and filters below (building their closures costs more than such a
-- query), nor any function of the script (each made costs the server about 1,100
-- instructions per call): lead_of(), ids_of(), no_strings(), escaped_at(), doc_keys() and
-- escaped_id() are written out in place (below the walk: change the copies too). The
-- program is WALK keypos is_id_index desc min max exact ... (grammar below).
if kind == "WALK" and walk_exact == "1" and mode == "rows" and not keyed and not verify then
  -- (index_key() below, inline)
  local pos = tonumber(walk_pos)
  local key = pos and pos <= #KEYS - 2 and KEYS[pos]
  if not key then
    error({err = "ERR query program names index key " .. tostring(walk_pos) .. " of "
      .. (#KEYS - 2) .. " sent (the program's reach and query.lua disagree)"})
  end
  local low, high = walk_low, walk_high
  -- (the offset and the limit as sent, digits or -1 (none: a negative count is no limit to
  -- Redis): no number read nor written back, strtod and printf in C)
  local members
  if walk_desc == "1" then
    members = redis.call("ZREVRANGEBYLEX", key, high, low, "LIMIT", ARGV[4], ARGV[5])
  else
    members = redis.call("ZRANGEBYLEX", key, low, high, "LIMIT", ARGV[4], ARGV[5])
  end
  local count = #members
  -- Where the id key starts in each member: ``start`` in them all (the id index's members
  -- are id keys; after a whole value in a single-field index: lead_of()'s test, inline),
  -- else ``starts[i]`` (ids_of()'s rules, inline: after a member's last \0, or after its
  -- first in a single-field index of no string value: no_strings()). No id key is made:
  -- only each row's escaped id, below.
  local start, starts = 1, nil
  if walk_ids ~= "1" and count > 0 then
    local v, head = sub(low, 2), members[1]
    if byte(low, 1) == 91 and byte(v, -1) == 0 and high == "(" .. v .. "\255" then
      start = #v + 1
      if find(head, "\0", start, true) then starts = {} end  -- (a compound index's)
    else
      start, starts = nil, {}
    end
    if starts then
      local z = find(head, "\0", 1, true)
      local single = not start and count >= 16 and z and not find(head, "\0", z + 1, true)
        and redis.call("ZLEXCOUNT", key, "[\32", "(\33") == 0
      for i = 1, count do
        local m = members[i]
        local at = find(m, "\0", start or 1, true)
        if at and not single then
          while true do
            local j = find(m, "\0", at + 1, true)
            if not j then break end
            at = j
          end
        end
        starts[i] = at and at + 1 or start
      end
    end
  end
  -- Each row's escaped id (escaped_id(), inline: after the id key's kind byte, and a numeric
  -- one's length byte), its document key's suffix and the id the reply names the row by:
  -- ``skip`` bytes from the id key's start in them all when the first and the last id key
  -- (in id key order: numeric ones first) are of one kind (escaped_at()'s test, inline)
  local skip
  if not starts and count > 0 then
    local head, tail = byte(members[1], start), byte(members[count], start)
    if head == tail then skip = head == 1 and 2 or 1 end
  end
  local out, n, BATCH = {}, 0, 512
  for first = 1, count, BATCH do
    local last = math.min(first + BATCH - 1, count)
    -- (doc_keys(), inline: a table made at its size, not grown entry by entry; with the
    -- slot of the lock flag after them, read with the first batch of a whole range)
    local keys = {unpack(members, first, last + 1)}
    for i = first, last do
      local m, at = members[i], starts and starts[i] or start
      local escaped = sub(m, at + (skip or (byte(m, at) == 1 and 2 or 1)))
      members[i] = escaped
      keys[i - first + 1] = doc_prefix .. escaped
    end
    keys[last - first + 2] = flagged == nil and lock_flag or nil
    local docs = redis.call("MGET", unpack(keys))
    if flagged == nil then flagged = docs[last - first + 2] ~= false end
    for i = first, last do
      local json = docs[i - first + 1]
      -- (an empty value, which no format stores, is format 1's: read as any damaged one)
      if not json then  -- (gone: expired since its entry was read)
      elseif (byte(json, 1) or 2) > 1 then  -- (format 1: its version is the meta hash's)
        -- (meta_version() below, inline: a rare path, whose definitions cold_paths() makes)
        local rare = cold_paths()
        local meta_key = meta_prefix .. members[i]
        local version = redis.call("HGET", meta_key, "v")
        if version and rare.bad_version(meta_key, version) then
          error(rare.damaged_error(meta_key, "v"))
        end
        out[n + 1], out[n + 2], out[n + 3] = members[i], version or "0", json
        n = n + 3
      else  -- (0: format 2, 1: format 3; both carry their version, which the caller reads)
        out[n + 1], out[n + 2] = members[i], json
        n = n + 2
      end
    end
  end
  if flagged == nil then flagged = redis.call("MGET", lock_flag)[1] ~= false end  -- (no row)
  if answered then return answered(out) end
  if flagged and whole then  -- (answered()'s wrapping, written out: the flag read above)
    local holders, met = {}, {}
    -- (HGETALL: in the ACL rule)
    local pairs_ = redis.call("HGETALL", sub(lock_flag, 1, -7) .. "locks")
    for i = 2, #pairs_, 2 do
      local holder = pairs_[i]
      if not met[holder] then met[holder] = true; holders[#holders + 1] = holder end
    end
    return {"LOCKED", out, holders}
  end
  return out
end

-- Where the escaped id starts in every id key of ``ids`` (3: all numeric, "\1", a length
-- byte, the digits; 2: none, "\2" and the escaped id), or nil: both kinds, or too few ids
-- for the test to pay (escaped_id() per row then). ``ordered``: ``ids`` are in id key order,
-- where numeric id keys all sort before the others, so the first and the last say; else
-- no "\2" in them all (a numeric id key holds none) says they are all numeric.
local function escaped_at(ids, ordered)
  local count = #ids
  if count == 0 then return nil end
  if ordered then
    local head, tail = byte(ids[1], 1), byte(ids[count], 1)
    if head == tail then return head == 1 and 3 or 2 end
  elseif count >= 8 and not find(table.concat(ids), "\2", 1, true) then
    return 3
  end
  return nil
end

-- The document keys of ``ids[first..last]`` (``at``: escaped_at()'s), then their escaped
-- ids (the ids a rows reply names), in tables made at their size (not grown entry by entry,
-- each growth a new array and a copy).
local function doc_keys(ids, first, last, at)
  local escaped = {unpack(ids, first, last)}
  if at then
    for i = 1, last - first + 1 do escaped[i] = sub(escaped[i], at) end
  else
    for i = 1, last - first + 1 do
      local idkey = escaped[i]  -- (escaped_id, inline)
      escaped[i] = sub(idkey, byte(idkey, 1) == 1 and 3 or 2)
    end
  end
  local keys = {unpack(escaped)}
  for i = 1, #keys do keys[i] = doc_prefix .. keys[i] end
  return keys, escaped
end

-- Where the id key starts in the members of a lex range [v, v\xff) when v is a whole value
-- encoding (it ends with \0): such members are v, then the id key, unless more encodings
-- follow (a compound index), which the caller sees as a \0 after it. nil: no such start.
local function lead_of(low, high)
  local v = sub(low, 2)
  if byte(low, 1) == 91 and byte(v, -1) == 0 and high == "(" .. v .. "\255" then
    return #v + 1
  end
  return nil
end

-- The id keys of index members, in order: an id key follows a member's last \0 (it has
-- none); a value encoding usually has one \0, at its end, so a plain find (in C) from the
-- front beats a byte loop from the back. ``lead``: see lead_of, or nil. (One call per list:
-- a call per member costs as much as its finds.) With ``set``, each goes into it (set[id
-- key] = true) instead of a new list: a range condition read as a set, often thousands.
local plain_of = {}  -- index key -> whether it holds no string value (see no_strings)
-- whether the index ``key`` holds no string value (members from "\32", the string tag, to
-- "\33"): a string's encoding is the only one with a \0 inside (escaped as \0\255:
-- sortable.encode_string), so in a single-field index of no string the id key of a member
-- follows its first \0. One ZLEXCOUNT per index and call.
local function no_strings(key)
  local plain = plain_of[key]
  if plain == nil then
    plain = redis.call("ZLEXCOUNT", key, "[\32", "(\33") == 0
    plain_of[key] = plain
  end
  return plain
end

local function ids_of(members, lead, set, key)
  local out = set or {}
  -- Without a lead, a long list of the index ``key``: a first member with one \0 is of a
  -- single-field index (each value of a compound member ends with a \0); with no string
  -- in it, each id key follows the first \0 (one find per member, not two)
  if key and not lead and #members >= 16 then
    local first = members[1]
    local z = find(first, "\0", 1, true)
    if z and not find(first, "\0", z + 1, true) and no_strings(key) then
      for i = 1, #members do
        local m = members[i]
        local id = sub(m, find(m, "\0", 1, true) + 1)
        if set then out[id] = true else out[i] = id end
      end
      return out
    end
  end
  -- After a whole value (lead), the members of a single-field index hold just the id key
  -- and those of a compound index a \0 more (each further value ends with one): every
  -- member of one index has as many values, so its first member says which for all.
  if lead and members[1] and not find(members[1], "\0", lead, true) then
    if set then
      for i = 1, #members do out[sub(members[i], lead)] = true end
    else
      for i = 1, #members do out[i] = sub(members[i], lead) end
    end
    return out
  end
  for i = 1, #members do
    local m = members[i]
    local id
    if lead and not find(m, "\0", lead, true) then
      id = sub(m, lead)
    else
      local at = find(m, "\0", 1, true)
      while true do
        local j = find(m, "\0", at + 1, true)
        if not j then break end
        at = j
      end
      id = sub(m, at + 1)
    end
    if set then out[id] = true else out[i] = id end
  end
  return out
end

-- The rest of the script: what the exact walk above does not make on its every call (each
-- function made costs the server instructions per call), the shared definitions only it
-- uses made by cold_paths() (see luachunks.py)

-- (a program of a few hundred tokens comes flat, its strings one after the other, decoded
-- onto the stack into one table: half the cost of an array's, whose table the decoder fills
-- item by item; a longer one is one array: wire.program)
-- (a long one, already decoded whole as the walk's first token above: not decoded again)
local program, argi = kind, 0
if type(program) ~= "table" then program = {cmsgpack.unpack(ARGV[7])} end
local rare = cold_paths()
local escaped_id, read_list, damaged_error = rare.escaped_id, rare.read_list, rare.damaged_error
local bad_version = rare.bad_version
local match, char = string.match, string.char
local function nxt() argi = argi + 1; return program[argi] end

-- A row's version as the meta hash ``meta_key`` holds it ("v"; "0" when there is none):
-- one that does not read (bad_version(): "+13" or " 13" would read as 13 to Python's int)
-- is the error damaged_error() makes, never a version read from it.
local function meta_version(meta_key, v)
  if v and bad_version(meta_key, v) then error(damaged_error(meta_key, "v")) end
  return v or "0"
end

-- ids_of() into ``set`` for the members of a single-field index (a ZRNG's: one value
-- encoding, then the id key), with one string call less per member (a range condition read
-- as a set is often tens of thousands of members): after a whole value ``lead`` (lead_of)
-- the rest is the id key; ``plain`` (the index holds no string value, the only encoding
-- with a \0 inside, escaped as \0\255: sortable.encode_string) the id key follows the
-- first \0.
local function single_ids(members, lead, plain, set)
  if lead then
    for i = 1, #members do set[sub(members[i], lead)] = true end
  elseif plain then
    for i = 1, #members do
      local m = members[i]
      set[sub(m, find(m, "\0", 1, true) + 1)] = true
    end
  else
    ids_of(members, nil, set)
  end
end

local offset, limit = tonumber(ARGV[4]), tonumber(ARGV[5])

-- Byte order, independent of the server's locale (Lua's < uses strcoll).
local function cmp(a, b)
  if a == b then return 0 end
  local n = math.min(#a, #b)
  local i = 1
  while i <= n do
    local j = math.min(i + 15, n)
    -- (a whole short value is one chunk, compared byte by byte without a sub first; the
    -- bytes of a chunk are read with one string.byte each: a call costs far more than a
    -- table read)
    if j - i < 15 or sub(a, i, j) ~= sub(b, i, j) then
      local x, y = {byte(a, i, j)}, {byte(b, i, j)}
      for k = 1, j - i + 1 do
        if x[k] ~= y[k] then return x[k] < y[k] and -1 or 1 end
      end
    end
    i = j + 1
  end
  return #a < #b and -1 or 1
end

-- DRIVER := ALL exact COVERS | RANGE keypos n (min max)* exact COVERS
--         | IDS n idkey* exact COVERS | UNION exact COVERS n DRIVER* | BEST n DRIVER*
--         | WALK keypos is_id_index desc min max exact COVERS
-- COVERS := n position*
-- An exact driver yields exactly the matching ids: the predicate need not be evaluated. A
-- driver "covers" the conditions of a top-level AND that its candidates satisfy already.
local function parse_covers(d)
  local n = tonumber(nxt())
  if n > 0 then
    d.skip = {}
    for _ = 1, n do d.skip[tonumber(nxt())] = true end
  end
end

-- The error for an index position ``pos`` of the program that is not one of the index
-- KEYS sent (1 .. #KEYS - 2: the state hash and the TTL schedule come last). The caller cuts
-- the KEYS to the program's reach, found by a second parser (planner.program_reach): were
-- it to drift from this script's, a position past the cut would name the state hash (an
-- error), the TTL schedule (an empty answer) or nothing. Refused, never read.
local function reach_error(pos)
  return {err = "ERR query program names index key " .. tostring(pos) .. " of "
    .. (#KEYS - 2) .. " sent (the program's reach and query.lua disagree)"}
end

-- the index key at the program's next token, a position in KEYS (see reach_error)
local function index_key()
  local token = nxt()
  local pos = tonumber(token)
  local key = pos and pos <= #KEYS - 2 and KEYS[pos]
  if not key then error(reach_error(token)) end
  return key
end

local ndrivers = 0  -- each driver's position in the program (depth first): plan mode
local function parse_driver()
  local kind = nxt()
  ndrivers = ndrivers + 1
  local d = {kind = kind, n = ndrivers}
  if kind == "RANGE" then
    d.key = index_key()
    d.ranges = {}
    for i = 1, tonumber(nxt()) do d.ranges[i] = {nxt(), nxt()} end
  elseif kind == "IDS" then
    d.ids = {}
    for i = 1, tonumber(nxt()) do d.ids[i] = nxt() end
  elseif kind == "UNION" or kind == "BEST" then
    if kind == "UNION" then d.exact = nxt() == "1"; parse_covers(d) end
    d.children = {}
    for i = 1, tonumber(nxt()) do d.children[i] = parse_driver() end
    return d
  elseif kind == "WALK" then
    d.key = index_key()
    d.is_ids, d.desc, d.min, d.max = nxt() == "1", nxt() == "1", nxt(), nxt()
  end
  d.exact = nxt() == "1"
  parse_covers(d)
  return d
end

-- PRED := T | F | AND n PRED* | OR n PRED* | NOT PRED | EQ f v | IN f n v* | GT f v
--       | GE f v | LT f v | LE f v | PRE f p | HAS f v | NULL f | ID n idkey*
--       | ZIN keypos n v*  (index membership of v .. id: equality without reading meta)
--       | ZRNG keypos n (min max)* PRED  (PRED, which holds exactly for the ids in those
--         lex ranges of that index)
-- The predicate is compiled once into closures test(vals, idkey) -> boolean, where vals
-- maps meta fields to their lists of value encodings (read from the meta hash on first use:
-- values_of). A top-level AND also returns its children, so the conditions a driver covers
-- can be left out. One compiler per op, in a
-- table keyed by the op's token (the planner's tables emit them: lookup_plans.py).
local compile_pred
local compilers = {}
-- what the compiler knows of a compiled test: probe_of[test] = {key, values, neg} when it is
-- an index membership test (ZIN, or NOT ZIN), which query.lua runs in batches (ZMSCORE);
-- cheap[test] when it reads no meta hash; ranged[test] = {key, ranges} when its matches are
-- exactly those index ranges (ZRNG)
local probe_of, cheap, ranged = {}, {}, {}

-- the tests in ``cs``, those that read no meta hash first (only = true: only those)
local function cheap_first(cs, only)
  local out = {}
  for _, c in ipairs(cs) do if cheap[c] or probe_of[c] then out[#out + 1] = c end end
  if not only then
    for _, c in ipairs(cs) do if not (cheap[c] or probe_of[c]) then out[#out + 1] = c end end
  end
  return out
end

-- the tests of a conjunction, those that read no meta hash first (the others read it only
-- for the candidates that pass them)
local function all_of(cs)
  local order = cheap_first(cs)
  local n = #order
  if n == 1 then return order[1] end
  local f = function(vals, id)
    for i = 1, n do if not order[i](vals, id) then return false end end
    return true
  end
  if #order == #cheap_first(cs, true) then cheap[f] = true end
  return f
end

compilers.AND = function()
  local cs = {}
  for i = 1, tonumber(nxt()) do cs[i] = compile_pred() end
  if #cs == 0 then return compilers.T(), cs end
  return all_of(cs), cs
end

compilers.OR = function()
  local cs = {}
  for i = 1, tonumber(nxt()) do cs[i] = compile_pred() end
  local order = cheap_first(cs)
  local n = #order
  local f = function(vals, id)
    for i = 1, n do if order[i](vals, id) then return true end end
    return false
  end
  if #order == #cheap_first(cs, true) then cheap[f] = true end
  return f
end

compilers.NOT = function()
  local c = compile_pred()
  local f = function(vals, id) return not c(vals, id) end
  local p = probe_of[c]
  if p then probe_of[f] = {key = p.key, values = p.values, neg = not p.neg} end
  if cheap[c] then cheap[f] = true end
  return f
end

compilers.T = function()
  local f = function() return true end
  cheap[f] = true
  return f
end
compilers.F = function()
  local f = function() return false end
  cheap[f] = true
  return f
end

compilers.ID = function()
  local set = {}
  for _ = 1, tonumber(nxt()) do set[nxt()] = true end
  local f = function(_, id) return set[id] == true end
  cheap[f] = true
  return f
end

compilers.ZIN = function()
  local key, values = index_key(), {}
  for i = 1, tonumber(nxt()) do values[i] = nxt() end
  local n = #values
  local f = function(_, id)
    for i = 1, n do
      if redis.call("ZSCORE", key, values[i] .. id) then return true end
    end
    return false
  end
  probe_of[f] = {key = key, values = values, neg = false}
  return f
end

-- ZRNG: a condition whose matches are exactly the entries of some lex ranges of a single-field
-- index, then its test on the meta hash. As a condition of the top-level AND it may be tested
-- by membership in those ranges, read at once (set algebra) when that is cheaper than the
-- meta reads it spares (see narrow); anywhere else the meta test runs.
compilers.ZRNG = function()
  local key, ranges = index_key(), {}
  for i = 1, tonumber(nxt()) do ranges[i] = {nxt(), nxt()} end
  local c = compile_pred()
  ranged[c] = {key = key, ranges = ranges}
  return c
end

compilers.IN = function()
  local field, set = nxt(), {}
  for _ = 1, tonumber(nxt()) do set[nxt()] = true end
  return function(vals) return set[vals[field][1] or NULL] == true end
end

compilers.NULL = function()
  local field = nxt()
  return function(vals)
    local list = vals[field]
    -- a never-indexed field reads as null; an empty array ("" stored) is not null
    return (list[1] or NULL) == NULL and not (list.missing == false and list[1] == nil)
  end
end

compilers.EQ = function()
  local field, value = nxt(), nxt()
  return function(vals) return (vals[field][1] or NULL) == value end
end

compilers.HAS = function()
  local field, value = nxt(), nxt()
  return function(vals)
    for _, item in ipairs(vals[field]) do if item == value then return true end end
    return false
  end
end

compilers.PRE = function()
  local field, value = nxt(), nxt()
  local n = #value
  return function(vals)
    local v = vals[field][1] or NULL
    return v ~= NULL and string.sub(v, 1, n) == value
  end
end

-- GT: above; GE: above or equal; LT / LE: below (or equal). Nulls are never in a range.
local function comparison(low, equal)
  local high = not low
  return function()
    local field, value = nxt(), nxt()
    return function(vals)
      local v = vals[field][1] or NULL
      if v == NULL then return false end
      local c = cmp(v, value)
      if c == 0 then return equal end
      return (c > 0 and low) or (c < 0 and high)
    end
  end
end
compilers.GT = comparison(true, false)
compilers.GE = comparison(true, true)
compilers.LT = comparison(false, false)
compilers.LE = comparison(false, true)

compile_pred = function()
  local op = nxt()
  local compiler = compilers[op]
  if not compiler then error("query.lua: unknown predicate op " .. tostring(op)) end
  return compiler()
end

local driver = parse_driver()
local need = {}
for i = 1, tonumber(nxt()) do need[i] = nxt() end
local pred, pred_children = compile_pred()
local order = {}
for i = 1, tonumber(nxt()) do order[i] = {field = nxt(), desc = nxt() == "1"} end
local tie_desc = #order > 0 and order[#order].desc
local after = nil
local nafter = tonumber(nxt())
if nafter > 0 then
  after = {}
  for i = 1, nafter do after[i] = nxt() end
end

-- cost estimates -----------------------------------------------------------------------
-- ZLEXCOUNT of a lex range, each asked once per call: a driver's estimate and the sizing of
-- the same condition's ranges as a set (range_sets) count the same range
local lexcounts = {}  -- key -> low -> high -> count
local function lexcount(key, low, high)
  local of_key = lexcounts[key]
  if not of_key then of_key = {}; lexcounts[key] = of_key end
  local of_low = of_key[low]
  if not of_low then of_low = {}; of_key[low] = of_low end
  local n = of_low[high]
  if not n then
    n = redis.call("ZLEXCOUNT", key, low, high)
    of_low[high] = n
  end
  return n
end

local function estimate(d)
  if d.est then return d.est end
  local n = 0
  if d.kind == "ALL" then n = redis.call("ZCARD", KEYS[1])
  elseif d.kind == "RANGE" then
    for _, r in ipairs(d.ranges) do n = n + lexcount(d.key, r[1], r[2]) end
  elseif d.kind == "IDS" then n = #d.ids
  elseif d.kind == "WALK" then n = lexcount(d.key, d.min, d.max)
  elseif d.kind == "UNION" then
    for _, c in ipairs(d.children) do n = n + estimate(c) end
  elseif d.kind == "BEST" then
    for _, c in ipairs(d.children) do
      local e = estimate(c)
      if not d.choice or e < n then d.choice, n = c, e end
    end
  end
  d.est = n
  return n
end

-- the positions of the drivers d reads: itself, or a union's parts (choices settled)
local function used(d, out)
  if d.kind == "BEST" then estimate(d); return used(d.choice, out) end
  if d.kind == "UNION" then
    for _, c in ipairs(d.children) do used(c, out) end
    return out
  end
  out[#out + 1] = d.n
  return out
end

-- candidates ---------------------------------------------------------------------------
local function alive(idkey)
  return redis.call("EXISTS", doc_prefix .. escaped_id(idkey)) == 1
end

local function collect(d, out, seen)
  local function add(idkey)
    if not seen[idkey] then seen[idkey] = true; out[#out + 1] = idkey end
  end
  if d.kind == "ALL" then
    for _, idkey in ipairs(redis.call("ZRANGE", KEYS[1], 0, -1)) do add(idkey) end
  elseif d.kind == "RANGE" then
    for _, r in ipairs(d.ranges) do
      local members = redis.call("ZRANGEBYLEX", d.key, r[1], r[2])
      local ids = ids_of(members, lead_of(r[1], r[2]), nil, d.key)
      for _, idkey in ipairs(ids) do add(idkey) end
    end
  elseif d.kind == "IDS" then
    for _, idkey in ipairs(d.ids) do
      if alive(idkey) then add(idkey) end  -- ids come from the caller, not from an index
    end
  elseif d.kind == "UNION" then
    for _, c in ipairs(d.children) do collect(c, out, seen) end
  elseif d.kind == "BEST" then
    estimate(d); collect(d.choice, out, seen)
  end
end

-- meta values, read lazily ------------------------------------------------------------------
-- A candidate's values table reads its meta hash (one HMGET of the NEED fields) the first
-- time a test or the ordering asks for a field, so a candidate that a membership test
-- rejects costs no meta read. When rows are returned, the same HMGET reads the version.
local ID, VERSION, LOADED = {}, {}, {}  -- keys of a values table that no meta field can be
-- (and DOC: the candidate's document, read before its tests by read_first(), which leaves
-- out a candidate whose document is gone; rawget only, as a values table reads its meta
-- hash for any key it lacks)
local DOC = {}
local ABSENT = {}  -- (a VERSION the meta read found absent)
local with_version = mode == "rows"
local fields = {}
for i, f in ipairs(need) do fields[i] = f end
if with_version then fields[#fields + 1] = "v" end

-- Format 3 (bench/format3.md, section 4 "Queries"): a document "\1<version>\0<W>\0<payload>"
-- keeps no encodings in a meta hash, unless it has an expiry (a sweep record: "v" and every
-- index's fields) or the index is listed (its field kept). A candidate whose meta read
-- finds a NEED field absent and no "v" (not read, or absent) may be one: its document is
-- read (GET), and when it is format 3, each absent field's entries are derived from the
-- member's JSON text (_derive.lua), the member's key text and kind as ARGV[9..] gives
-- them (MessagePack strings, three per indexed field: meta field, key text, kind; "" when
-- Lua does not derive that field's entries). Where they cannot be derived (the kind, a
-- compressed payload, a member absent, a text not in a form Python writes), the query is
-- refused (UNDERIVED: translation.py makes it a QueryError), never answered by a guess. A
-- document of format 2 or 1 (or gone) keeps the meta hash's answer: an absent field is
-- one never indexed. The member is found by a plain search of the stored text where that
-- is proven (from_document), its entry made in place for an int, a string, a boolean or
-- null; the rest by the colder tier (_write.lua's plain proof, or its scan of the members,
-- then _derive.lua). Once a call has met more format-3 documents than meta hashes, each
-- candidate's document is read first (see the values table).
-- meta field -> {key text, kind, whether the plain search reads its key text (see there)},
-- read from ARGV[9..] when first needed
local derivable
-- (the head of a positive int's entry, by its number of digits, 1 to 9: sortable's
-- exponent, 5000000000 + the number of digits; made with ``derivable``)
local int_heads
-- The candidates met whose document is format 3, and those whose meta read found a meta
-- hash (see the values table below: the document is read first while the first are more)
local format3_met, meta_met = 0, 0
-- ``trying``: the document read before the meta hash (see the values table), every NEED
-- field to derive (``raw`` empty): false (and the document read, or false) where that is
-- not done by the plain search (not format 3, a field not found there...), nothing set in
-- ``vals`` then; ``got``: that document (false: none), or nil (read here).
local function from_document(vals, raw, doc_key, trying, got)
  local stored = got or got == nil and redis.call("GET", doc_key)
  if not stored or byte(stored, 1) ~= 1 then return false, stored end
  format3_met = format3_met + 1
  local z = find(stored, "\0", 2, true)
  -- (format 3: its header's version, in place of the ABSENT the meta read left; a values
  -- table has no __newindex: the fields are set, as they are read, without rawset)
  if z and with_version and not trying then vals[VERSION] = sub(stored, 2, z - 1) end
  if not derivable then
    derivable = {}
    int_heads = {"\0245000000001", "\0245000000002", "\0245000000003", "\0245000000004",
                 "\0245000000005", "\0245000000006", "\0245000000007", "\0245000000008",
                 "\0245000000009"}
    local spec = ARGV[9] and ARGV[9] ~= "" and {cmsgpack.unpack(ARGV[9])} or {}
    if type(spec[1]) == "table" then spec = spec[1] end  -- (a long one: one array)
    for i = 1, #spec - 2, 3 do
      local key = spec[i + 1]
      derivable[spec[i]] = {key, spec[i + 2], not find(key, "[\\,:]", 2)}
    end
  end
  -- (the payload after the header's two NULs, from ``start`` in ``stored``; a header that
  -- does not read is refused)
  local ends = z  -- (the version's end)
  z = z and find(stored, "\0", z + 1, true)
  if not z then
    if trying then return false, stored end
    error({err = "UNDERIVED " .. doc_key .. " " .. need[1] .. " header"})
  end
  local start = z + 1
  -- The plain search, without decoding the document: an object ("{" first, as stored)
  -- without a backslash and without a "{" but its first. Then, the document being JSON
  -- (as Python's read of it must find; like the scan below, the search does not check it,
  -- and may answer on a damaged document that read refuses), each quote opens or closes a
  -- string (no escape); between two strings stands a ',' or a ':', so a text '"name"'
  -- whose name holds neither (nor a backslash) is always one whole string, a key when ':'
  -- follows it (blanks between); and no object is nested, so every key is the top-level
  -- object's. A name held by one such key is that member (no other key text of the name,
  -- which Python would read last: it would need a backslash), its value's text from after
  -- the ':' to the next quote (a string: no escape) or to the next delimiter (a number,
  -- true, false, null). Anything else (an array, a name held twice or not at all, a key
  -- text with an escape, a ',' or a ':') is left to the colder tier below.
  local plain = byte(stored, start) == 123 and not find(stored, "\\", start, true)
    and not find(stored, "{", start + 1, true)
  local payload, members, proven  -- (the colder tier's: the payload, its scanned members,
  local rarer                      -- its plain proof's document)
  for i = 1, #need do
    if not raw[i] then
      local f = need[i]
      local known = derivable[f]
      if not known or known[2] == "" then
        if trying then
          for j = 1, i - 1 do vals[need[j]] = nil end  -- (none set: see above)
          return false, stored
        end
        error({err = "UNDERIVED " .. doc_key .. " " .. f .. " kind"})
      end
      local key, kind, list, quick = known[1], known[2], nil, false
      if plain and known[3] then
        -- (first the common case, stored compact: the name's only text, ':' right after it,
        -- then a positive int of fewer than 10 digits (its trailing zeros apart) or a
        -- string, each read with one match)
        local n = #key
        local at = find(stored, key, start + 1, true)
        local first = at and byte(stored, at + n) == 58 and not find(stored, key, at + 1, true)
          and at + n + 1
        -- (the list of one entry: "missing" unset, which NULL reads only of an empty one)
        if not first then  -- (not that case)
        elseif kind == "int" then
          local digits, zeros = match(stored, "^([1-9]%d-)(0*)[,}%] \t\r\n]", first)
          local head = digits and int_heads[#digits + #zeros]
          if head then
            list = {head .. digits .. "\0"}
            vals[f], quick = list, true
          end
        elseif kind == "str" or kind == "enum" then
          local s = match(stored, '^"([^"]*)"', first)
          if s then
            list = {" " .. s .. "\0"}
            vals[f], quick = list, true
          end
        end
        -- (then the plain search's every case, blanks and all)
        first = nil
        while not list do
          if not at then break end
          local c = at + n
          local b = byte(stored, c)
          if b == 32 or b == 9 or b == 10 or b == 13 then
            c = find(stored, "[^ \t\r\n]", c)
            b = c and byte(stored, c)
          end
          if b == 58 then
            if first then first = nil; break end  -- (held twice: the colder tier)
            first = c + 1
            b = byte(stored, first)
            if b == 32 or b == 9 or b == 10 or b == 13 then
              first = find(stored, "[^ \t\r\n]", first)
            end
          end
          at = find(stored, key, at + 1, true)
        end
        local b = not list and first and byte(stored, first)
        local t
        if b == 34 then
          local q = find(stored, '"', first + 1, true)
          t = q and sub(stored, first, q)
        elseif b and b ~= 91 then
          local q = find(stored, "[,}%] \t\r\n]", first)
          t = q and q > first and sub(stored, first, q - 1)
        end
        -- (derived_entry's common part, written out: null, booleans, ints, strings without
        -- escapes; the same bytes)
        if list then  -- (found above)
        elseif not t then  -- (not found here)
        elseif b == 110 then
          if t == "null" then list = {NULL} end
        elseif b == 34 then
          if kind == "str" or kind == "enum" then list = {" " .. sub(t, 2, -2) .. "\0"} end
        elseif kind == "int" then
          local digits, c = t, b
          if b == 45 then
            digits = sub(t, 2)
            c = byte(digits, 1)
          end
          if c and c >= 49 and c <= 57 and not find(digits, "%D") then
            local m = #digits
            local last = m
            while byte(digits, last) == 48 do last = last - 1 end
            if last < m then digits = sub(digits, 1, last) end
            if b == 45 then
              list = {"\16" .. (m < 10 and "499999999" .. char(57 - m)
                               or string.format("%010d", 4999999999 - m))
                      .. (string.gsub(digits, "%d", {["0"] = "9", ["1"] = "8", ["2"] = "7",
                          ["3"] = "6", ["4"] = "5", ["5"] = "4", ["6"] = "3", ["7"] = "2",
                          ["8"] = "1", ["9"] = "0"})) .. "~\0"}
            else
              list = {"\24" .. (m < 10 and "500000000" .. char(48 + m)
                               or string.format("%010d", 5000000000 + m)) .. digits .. "\0"}
            end
          elseif t == "0" then
            list = {"\20\0"}
          end
        elseif kind == "bool" then
          if t == "true" then list = {"\3\0"} elseif t == "false" then list = {"\2\0"} end
        end
      end
      if not list and trying then
        for j = 1, i - 1 do vals[need[j]] = nil end
        return false, stored
      end
      if not list then  -- (the colder tier's derivation, and its plain proof or its scan)
        rarer = rarer or rare.colder_paths()
        payload = payload or sub(stored, start)
        local function refuse(why)
          error({err = "UNDERIVED " .. doc_key .. " " .. f .. " " .. why})
        end
        if byte(payload, 1) ~= 123 then refuse("payload") end
        local t
        -- (the plain proof of _write.lua's json_plain_spans: a valid JSON object without a
        -- backslash or a NUL, whose top level has the name, held by one key text only)
        if proven == nil then proven = rarer.json_plain_doc(payload) or false end
        if proven and not find(key, "\\", 1, true) then
          if proven[sub(key, 2, -2)] == nil then refuse("absent") end
          local first, after = rarer.json_plain_span(payload, key)
          if first then t = sub(payload, first, after - 1) end
        end
        if not t then  -- (the whole object scanned; of a key stored twice, the last)
          if not members then
            local ok, found = pcall(rarer.json_members, payload)
            if not ok then refuse("json") end
            members = found
          end
          for _, m in ipairs(members) do
            if m[1] == key then
              t = sub(payload, m[2], m[3] - 1)
            elseif find(m[1], "\\", 1, true) then  -- (another text of the same name, maybe)
              refuse("escaped")
            end
          end
          if not t then refuse("absent") end
        end
        list = rarer.derived_entries(t, kind)
        if not list then refuse("text") end
      end
      if not quick then
        list.missing = false
        vals[f] = list
      end
    end
  end
  if trying and with_version then vals[VERSION] = sub(stored, 2, ends - 1) end
  return true
end

local no_fields  -- (an empty meta read: made when first needed)
local lazy = {__index = function(vals, field)
  if rawget(vals, LOADED) or #fields == 0 then return nil end
  rawset(vals, LOADED, true)
  local escaped = escaped_id(rawget(vals, ID))
  -- (while more candidates have met format-3 documents than meta hashes, the document is
  -- read first: one derived whole by the plain search needs no meta read; any other (not
  -- format 3, a field not found there) is read as below, the document already read passed
  -- on. A format-3 document with a sweep record (an expiry) or a field of a listed index
  -- (no kind) then reads them there; its derived fields are those the sweep record holds,
  -- written with it.)
  local got = rawget(vals, DOC)
  if got == nil and format3_met > meta_met then
    local done
    no_fields = no_fields or {}
    done, got = from_document(vals, no_fields, doc_prefix .. escaped, true)
    if done then return rawget(vals, field) end
  end
  local meta_key = meta_prefix .. escaped
  local raw = redis.call("HMGET", meta_key, unpack(fields))
  -- (a values table has no __newindex: its fields are set without rawset)
  local absent = false
  for i = 1, #need do
    local item = raw[i]
    if item then
      local list = read_list(item)
      if not list then error(damaged_error(meta_key, need[i])) end
      list.missing = false  -- (an empty array is "")
      vals[need[i]] = list
    else
      absent = true
    end
  end
  -- (no "v": not a format-2 meta hash nor a sweep record, perhaps a format-3 document
  -- (from_document); without "v" read, any field absent says so)
  if with_version then
    local v = raw[#fields]
    vals[VERSION] = v or ABSENT
    if v then
      meta_met = meta_met + 1
    else
      from_document(vals, raw, doc_prefix .. escaped, false, got)
    end
  elseif absent then
    from_document(vals, raw, doc_prefix .. escaped, false, got)
  else
    meta_met = meta_met + 1
  end
  if absent then  -- (a field neither read nor derived: never indexed)
    for i = 1, #need do
      if not rawget(vals, need[i]) then vals[need[i]] = {missing = true} end
    end
  end
  return rawget(vals, field)
end}

local function values_of(idkey)
  return setmetatable({[ID] = idkey}, lazy)
end

-- The tests a candidate of driver d must pass: the membership tests of the top-level AND
-- (run in batches, before anything else), its conditions that index ranges can decide
-- (ZRNG) and the rest; the conditions of a top-level AND that d covers are left out, and an
-- exact driver yields only matches.
local function make_test(d)
  if d.exact then return {}, {}, {} end
  local rest = {pred}
  if pred_children then
    rest = {}
    for i, c in ipairs(pred_children) do
      if not (d.skip and d.skip[i]) then rest[#rest + 1] = c end
    end
  end
  local probes, ranges, others = {}, {}, {}
  for _, c in ipairs(rest) do
    if probe_of[c] then probes[#probes + 1] = probe_of[c]
    elseif ranged[c] then ranges[#ranges + 1] = c
    else others[#others + 1] = c end
  end
  -- (fewest values first: each probe is one ZMSCORE per value and batch)
  table.sort(probes, function(a, b) return #a.values < #b.values end)
  return probes, ranges, others
end

-- one test of several (nil: none)
local function conjunction(tests)
  if #tests == 0 then return nil end
  return all_of(tests)
end

-- The ids of ``ids`` (a list, in order) that pass the membership test p: one ZMSCORE per
-- value and batch, instead of one ZSCORE per candidate.
local BATCH = 512
local function probe_filter(ids, p)
  local out, n = {}, 0
  if #p.values == 1 then  -- (the common probe, one value: no table of hits)
    local value, neg = p.values[1], p.neg
    for first = 1, #ids, BATCH do
      local last = math.min(first + BATCH - 1, #ids)
      local members, k = {}, 0
      for i = first, last do k = k + 1; members[k] = value .. ids[i] end
      local scores = redis.call("ZMSCORE", p.key, unpack(members))
      for i = 1, k do
        if (not scores[i]) == neg then n = n + 1; out[n] = ids[first + i - 1] end
      end
    end
    return out
  end
  for first = 1, #ids, BATCH do
    local last = math.min(first + BATCH - 1, #ids)
    local hit = {}
    for _, value in ipairs(p.values) do
      local members = {}
      for i = first, last do members[#members + 1] = value .. ids[i] end
      local scores = redis.call("ZMSCORE", p.key, unpack(members))
      for i = 1, #members do if scores[i] then hit[first + i - 1] = true end end
    end
    for i = first, last do
      if (hit[i] == true) ~= p.neg then out[#out + 1] = ids[i] end
    end
  end
  return out
end

local function filter(ids, probes)
  for _, p in ipairs(probes) do
    if #ids == 0 then break end
    ids = probe_filter(ids, p)
  end
  return ids
end

-- The document-first test: the values tables of the candidates ``ids`` (a list), their
-- documents read first, one MGET per batch (as rows are read), each format-3 one's NEED
-- fields derived from it by the plain search (from_document, ``trying``: as the values
-- table does once more format-3 documents than meta hashes are met, with no GET per
-- candidate). A document the plain search does not answer (format 2, a sweep record's
-- field not derived there...) leaves its values table to read the meta hash as ever, the
-- document passed on (DOC); a candidate whose document is gone is left out (never returned
-- nor counted: as alive() and emit() judge it); a key there of another type keeps its
-- values table without a document, whose read refuses it. The documents stay in the values
-- tables, so a row returned is not read again (emit), where the caller returns every row
-- it keeps (rows, no window); elsewhere it drops each once its test has passed. Returns the ids kept and their values
-- tables, in order; or ``ids`` and nil once more meta hashes than format-3 documents have
-- been met (a collection of format 2: each document read first would be read for nothing).
local function read_first(ids)
  -- (mostly meta hashes met, format 2: the candidates as they are, no values table, read
  -- as ever, each checked alive where the caller checks it)
  if format3_met < meta_met then return ids, nil end
  local kept, tables, n = {}, {}, 0
  local at = escaped_at(ids, false)
  no_fields = no_fields or {}
  for first = 1, #ids, BATCH do
    local last = math.min(first + BATCH - 1, #ids)
    local keys = doc_keys(ids, first, last, at)
    local docs = redis.call("MGET", unpack(keys))
    for i = first, last do
      local doc = docs[i - first + 1]
      if doc then
        local vals = setmetatable({[ID] = ids[i], [DOC] = doc}, lazy)
        if byte(doc, 1) == 1 and from_document(vals, no_fields, keys[i - first + 1], true, doc)
        then
          vals[LOADED] = true
        end
        n = n + 1
        kept[n], tables[n] = ids[i], vals
      elseif redis.call("EXISTS", keys[i - first + 1]) == 1 then
        -- (a key MGET answers nil for that is there: not a string, which the values
        -- table's read refuses (WRONGTYPE), as the test would without read_first)
        n = n + 1
        kept[n], tables[n] = ids[i], values_of(ids[i])
      end
    end
  end
  return kept, tables
end

-- Set algebra: a range condition is tested by reading its index ranges into a set of ids
-- when they hold at most RANGE_READ times as many entries as the candidates expected to
-- reach it, whose meta hashes it would otherwise read one by one (an entry read costs far
-- less than a call). (Measured under callgrind, a numeric range: about 4,300 server
-- instructions per entry read into a set against 57,000 per candidate's meta read and
-- test: they break even at about 13 entries per candidate.)
-- The document-first test (read_first) reads a candidate's format-3 document instead, with
-- one MGET per batch, the document kept for the row returned: about DOC_COST instructions
-- per candidate reaching it against ENTRY_COST per entry of a set. (Measured under
-- callgrind, issue 12's compound query at 20,000 documents: a set entry about 3,200 to
-- 4,300; a candidate's document read first and tested about 48,000, its read alone 7,300
-- and the plain search 11,000, the values table, its entry and the test the rest; the
-- membership tests run before it on the candidates a set would have left out counted in.
-- So it pays where the membership tests keep few of the candidates: a set of the compound
-- query's range, about 3 entries per candidate reaching it, is read.) ``probes`` (nil: the
-- caller does not read documents first) are the membership tests run before it (after
-- the sets): the candidates reaching it are those expected, times the share of the
-- documents each set read and each membership test keeps (their entries against the
-- documents, the conditions taken as independent). A range is tested that way when that
-- costs less than its set, the documents at both ends of the id index being format 3 (a
-- collection of format-2 documents would read their meta hashes: the set pays there).
-- Returns the sets, the tests left to run on each candidate's values, and whether the
-- caller reads its candidates' documents first (it may: ``probes``; and a test left reads
-- values: the document-first test is then cheaper than the values table's GET or HMGET per
-- candidate, whichever the test chose).
local RANGE_READ = 12
local ENTRY_COST, DOC_COST = 4300, 48000
local function kept_share(probes, total)
  local share = 1
  for _, p in ipairs(probes) do
    local n = 0
    for _, v in ipairs(p.values) do n = n + lexcount(p.key, "[" .. v, "(" .. v .. "\255") end
    local f = math.min(n / total, 1)
    share = share * (p.neg and 1 - f or f)
  end
  return share
end
-- whether the documents at both ends of the id index are format 3 (three calls)
local function format3_ends()
  local head = redis.call("ZRANGE", KEYS[1], 0, 0)[1]
  local tail = redis.call("ZRANGE", KEYS[1], -1, -1)[1]
  if not head then return false end
  local docs = redis.call("MGET", doc_prefix .. escaped_id(head), doc_prefix .. escaped_id(tail))
  return docs[1] ~= false and docs[2] ~= false and byte(docs[1], 1) == 1
    and byte(docs[2], 1) == 1
end
local function range_sets(ranges, others, candidates, probes)
  local sized = {}
  for _, c in ipairs(ranges) do
    local r, n = ranged[c], 0
    if candidates > 0 then  -- (no candidate: nothing to size)
      for _, b in ipairs(r.ranges) do n = n + lexcount(r.key, b[1], b[2]) end
    end
    sized[#sized + 1] = {test = c, n = n}
  end
  table.sort(sized, function(a, b) return a.n < b.n end)
  local sets, tests = {}, {}
  -- (sized when a set is large enough to weigh, 256 entries; the documents' format looked
  -- at only when they would be read first)
  local total, reaching, format3
  for _, s in ipairs(sized) do
    local read = candidates > 0 and s.n <= RANGE_READ * candidates
    if read and probes and s.n >= 256 then
      if total == nil then
        total = lexcount(KEYS[1], "-", "+")
        reaching = total > 0 and candidates * kept_share(probes, total)
      end
      -- (once one range is tested on the documents, any larger one is too: read already)
      if reaching and (#tests > 0 or DOC_COST * reaching < ENTRY_COST * s.n) then
        if format3 == nil then format3 = format3_ends() end
        read = not format3
      end
    end
    if read then
      local r, set = ranged[s.test], {}
      for _, b in ipairs(r.ranges) do
        local members, lead = redis.call("ZRANGEBYLEX", r.key, b[1], b[2]), lead_of(b[1], b[2])
        single_ids(members, lead, not lead and no_strings(r.key), set)
      end
      sets[#sets + 1] = set
      if reaching then reaching = reaching * math.min(s.n / total, 1) end
    else
      tests[#tests + 1] = s.test
    end
  end
  for _, c in ipairs(others) do tests[#tests + 1] = c end
  local test = conjunction(tests)
  return sets, test, probes ~= nil and test ~= nil and not cheap[test]
end

-- the ids of ``ids`` in every set of ``sets``
local function within(ids, sets)
  for _, set in ipairs(sets) do
    local kept = {}
    for _, idkey in ipairs(ids) do if set[idkey] then kept[#kept + 1] = idkey end end
    ids = kept
  end
  return ids
end

local function compare_rows(a, b)
  for i, o in ipairs(order) do
    local c = cmp(a.keys[i], b.keys[i])
    if c ~= 0 then if o.desc then return -c else return c end end
  end
  local c = cmp(a.id, b.id)
  if tie_desc then return -c end
  return c
end

-- whether the rows are ordered by id alone (the default order: no ORDER entry); sort_keys
-- then reads no meta hash
local function by_id_only()
  return #order == 0 or (#order == 1 and order[1].field == "@id")
end

-- Sort rows in place. By id alone, when every id is numeric and short enough to be a Lua
-- number exactly (an id key is \1, a length byte, the digits: see sortable.id_key), by
-- number, with table.sort's own comparison of numbers (in C): compare_rows' byte loop per
-- comparison costs far more.
local function sort_rows(rows, by_id)
  if by_id and #rows > 1 then
    local nums, row_of = {}, {}
    for i, row in ipairs(rows) do
      local idkey = row.id
      local n = byte(idkey, 1) == 1 and #idkey <= 17 and tonumber(sub(idkey, 3))
      if not n then nums = nil; break end
      nums[i], row_of[n] = n, row
    end
    if nums then
      table.sort(nums)
      local count = #nums
      for i = 1, count do
        rows[i] = row_of[nums[tie_desc and count + 1 - i or i]]
      end
      return
    end
  end
  table.sort(rows, function(a, b) return compare_rows(a, b) < 0 end)
end

local function sort_keys(vals, idkey)
  local keys = {}
  for i, o in ipairs(order) do
    if o.field == "@id" then keys[i] = idkey else keys[i] = vals[o.field][1] or NULL end
  end
  return keys
end

-- A row's version when no meta read of its tests brought it.
local function version_of(idkey)
  local meta_key = meta_prefix .. escaped_id(idkey)
  local v = redis.call("HGET", meta_key, "v")
  if not v and bare then  -- (a format-3 document without a sweep record: its header's)
    local stored = redis.call("GET", doc_prefix .. escaped_id(idkey))
    local ends = stored and byte(stored, 1) == 1 and find(stored, "\0", 2, true)
    if ends then v = sub(stored, 2, ends - 1) end
  end
  return meta_version(meta_key, v)
end

-- A returned row's version: the one the meta read of its tests brought, checked here (for
-- the rows returned, not for every candidate read), else read now (version_of).
local function row_version(vals, idkey)
  local v = rawget(vals, VERSION)
  if v == nil then return version_of(idkey) end
  if v == ABSENT then return "0" end
  if string.find(v, "^[1-9]%d*$") then return v end  -- (no key name made for a good one)
  return meta_version(meta_prefix .. escaped_id(idkey), v)
end

-- The rows' documents, one MGET per batch; a document gone (expired) since its index entry
-- was read is left out. Versions come from the meta read of the tests when there was one.
local function emit(rows)
  if mode == "count" then return #rows end
  if mode == "exists" then return #rows > 0 and 1 or 0 end
  local out = {}
  if bare then  -- (rows whose document may have expired were checked alive: see verify)
    for _, row in ipairs(rows) do
      local vals = row.vals or values_of(row.id)
      local keys_of = row.keys or sort_keys(vals, row.id)
      out[#out + 1] = row.id
      out[#out + 1] = row_version(vals, row.id)
      for k = 1, #order do out[#out + 1] = keys_of[k] end
    end
    return out
  end
  for first = 1, #rows, BATCH do
    local last = math.min(first + BATCH - 1, #rows)
    -- (a row whose document was read first, before its tests (read_first), keeps it: only
    -- the others are read here)
    local keys, escaped, docs, k = {}, {}, {}, 0
    for i = first, last do
      local idkey = rows[i].id  -- (escaped_id, inline)
      local e = sub(idkey, byte(idkey, 1) == 1 and 3 or 2)
      escaped[i - first + 1] = e
      local vals = rows[i].vals
      local doc = vals and rawget(vals, DOC)
      if doc then docs[i - first + 1] = doc else k = k + 1; keys[k] = doc_prefix .. e end
    end
    if k > 0 then
      local got = redis.call("MGET", unpack(keys))
      k = 0
      for i = 1, last - first + 1 do
        if docs[i] == nil then k = k + 1; docs[i] = got[k] end
      end
    end
    for i = first, last do
      local json = docs[i - first + 1]
      if json then
        local row = rows[i]
        -- (a row's values table, made here only when its sort keys or version need it)
        local vals = row.vals
        if keyed and not row.keys then vals = vals or values_of(row.id) end
        -- (a walk's rows have no sort keys yet: reading them reads the version too)
        local keys_of = keyed and (row.keys or sort_keys(vals, row.id))
        -- (false: the document carries its version, which the caller reads there)
        local version = false
        if (string.byte(json, 1) or 2) > 1 then  -- (0: format 2, 1: format 3; "": format 1)
          vals = vals or values_of(row.id)
          version = row_version(vals, row.id)
        end
        if keyed then
          out[#out + 1] = row.id
          out[#out + 1] = version
          out[#out + 1] = json
          for k = 1, #order do out[#out + 1] = keys_of[k] end
        else  -- (the rows reply: the escaped id, the version only where the JSON has none)
          out[#out + 1] = escaped[i - first + 1]
          if version then out[#out + 1] = version end
          out[#out + 1] = json
        end
      end
    end
  end
  return out
end

-- emit() of rows given as plain id keys (a walk's rows when no test reads their meta hash:
-- no table per row); rows mode without sort keys reads just the documents
local function emit_ids(ids)
  if mode ~= "rows" or keyed then
    local rows = {}
    for i, idkey in ipairs(ids) do rows[i] = {id = idkey} end
    return emit(rows)
  end
  local out, n, at = {}, 0, escaped_at(ids, false)
  for first = 1, #ids, BATCH do
    local last = math.min(first + BATCH - 1, #ids)
    local keys, escaped = doc_keys(ids, first, last, at)
    local docs = redis.call("MGET", unpack(keys))
    for i = first, last do
      local json = docs[i - first + 1]
      -- (the rows reply, as the exact walk's: the version only where the JSON has none)
      if not json then  -- (gone)
      elseif (byte(json, 1) or 2) > 1 then  -- (format 1, "")
        out[n + 1], out[n + 2], out[n + 3] = escaped[i - first + 1], version_of(ids[i]), json
        n = n + 3
      else
        out[n + 1], out[n + 2] = escaped[i - first + 1], json
        n = n + 2
      end
    end
  end
  return out
end

local function want()
  if mode == "exists" then return 1 end
  if mode == "count" or limit < 0 then return nil end
  return offset + limit
end

-- strategy 1: walk an ordered index, filtering as we go; stops once the window is full --
local function walk(d)
  local target = want()
  -- an exact walk needs exactly the window; a filtered one reads ahead
  local chunk = 256
  if target then chunk = d.exact and target or math.min(math.max(2 * target, 32), 1024) end
  local rows, skipped = {}, 0
  -- each chunk starts after the last member read (an exclusive bound: members are unique),
  -- not at an offset, which Redis would walk from the start of the range every time
  local low, high = d.min, d.max
  local lead = lead_of(low, high)  -- (the chunks' bounds after the first: the same members)
  -- a walk that reads its whole range may test range conditions on sets; one that stops at
  -- a window reads about that many entries (at least)
  local probes, ranges, others = make_test(d)
  local expected = target  -- (sized only when there are range conditions to size it for)
  if not expected and #ranges > 0 then expected = estimate(d) end
  -- (the documents read first only by a walk of its whole range: a window's stops at its
  -- last row, reading no candidate after it)
  local sets, test, by_doc = range_sets(ranges, others, expected,
    not target and mode ~= "exists" and probes or nil)
  while true do
    local members
    if d.desc then
      members = redis.call("ZREVRANGEBYLEX", d.key, high, low, "LIMIT", 0, chunk)
    else
      members = redis.call("ZRANGEBYLEX", d.key, low, high, "LIMIT", 0, chunk)
    end
    local ids = members
    if not d.is_ids then ids = ids_of(members, lead, nil, d.key) end
    -- (the sets, read already, first: a lookup per candidate costs less than a probe's)
    local passed, tables = filter(within(ids, sets), probes), nil
    if by_doc then passed, tables = read_first(passed) end
    for k, idkey in ipairs(passed) do
      -- (no test: no values table; emit makes one only if a row needs its meta hash)
      local vals = test and (tables and tables[k] or values_of(idkey))
      -- (a document read first is there: read_first left out those gone)
      if (not test or test(vals, idkey)) and (not verify or tables or alive(idkey)) then
        -- (a document read first is kept for its row only where rows are returned: a
        -- count's would be held to the end for nothing)
        if tables and mode ~= "rows" then rawset(vals, DOC, nil) end
        if mode ~= "count" and skipped < offset then
          skipped = skipped + 1
        elseif test then
          rows[#rows + 1] = {id = idkey, vals = vals}
          if target and #rows + skipped >= target then return emit(rows) end
        else
          rows[#rows + 1] = idkey
          if target and #rows + skipped >= target then return emit_ids(rows) end
        end
      end
    end
    if #members < chunk then break end
    if d.desc then high = "(" .. members[#members] else low = "(" .. members[#members] end
    chunk = math.min(chunk * 2, 4096)
  end
  if mode == "count" then return #rows end
  if test then return emit(rows) end
  return emit_ids(rows)
end

-- strategy 2: gather candidates from the cheapest driver, filter, sort, slice ----------
local function gather(d)
  while d.kind == "BEST" do estimate(d); d = d.choice end
  if mode ~= "rows" and d.exact and not verify and not after
      and (d.kind == "RANGE" or d.kind == "ALL") then
    -- the index is exact, and the ranges of one index are disjoint
    if mode == "exists" then return estimate(d) > 0 and 1 or 0 end
    return estimate(d)
  end
  local ids = {}
  collect(d, ids, {})
  local probes, ranges, others = make_test(d)
  ids = filter(ids, probes)
  local sets, test, by_doc = range_sets(ranges, others, #ids,
    mode ~= "exists" and {} or nil)
  ids = within(ids, sets)
  local rows = {}
  local pos_row = after and {id = after[#after], keys = after}
  -- (a values table only when a test or the ordering reads the meta hash: emit makes one
  -- for a row that needs its version)
  local by_id = by_id_only()
  -- (read first, the documents of a batch of candidates at a time; each kept for its row
  -- only where every row kept is returned (rows, no window): else all would be held until
  -- the sort, most for nothing, and are read again for the page)
  local step = by_doc and BATCH or math.max(#ids, 1)
  local keep = mode == "rows" and offset == 0 and limit < 0
  for first = 1, #ids, step do
    local slice, tables = ids, nil
    if by_doc then
      slice, tables = read_first({unpack(ids, first, math.min(first + step - 1, #ids))})
    end
    for k, idkey in ipairs(slice) do
      local vals = tables and tables[k] or (test or not by_id) and values_of(idkey) or nil
      if not test or test(vals, idkey) then
        if tables and not keep then rawset(vals, DOC, nil) end
        local row = {id = idkey, keys = sort_keys(vals, idkey), vals = vals}
        if (not pos_row or compare_rows(row, pos_row) > 0)
            and (not verify or tables or alive(idkey)) then
          if mode == "exists" then return 1 end
          rows[#rows + 1] = row
        end
      end
    end
  end
  if mode == "count" then return #rows end
  if mode == "exists" then return #rows > 0 and 1 or 0 end
  sort_rows(rows, by_id)
  local first, last = offset + 1, #rows
  if limit >= 0 then last = math.min(last, offset + limit) end
  local page = {}
  for i = first, last do page[#page + 1] = rows[i] end
  return emit(page)
end

-- choose ----------------------------------------------------------------------------------
-- Among the children of a BEST, walks yield rows already in order and stop once the page is
-- full; the others must read every candidate, then sort. A walk reads about
-- target * walked / matches entries (matches estimated by the best other driver).
local chosen = driver
if driver.kind == "BEST" then
  local walk, other = nil, {kind = "BEST", children = {}}
  for _, c in ipairs(driver.children) do
    if c.kind == "WALK" then
      if not walk or estimate(c) < estimate(walk) then walk = c end
    else
      other.children[#other.children + 1] = c
    end
  end
  if #other.children == 0 then
    chosen = walk
  elseif not walk then
    chosen = other
  else
    local target, w, o = want(), estimate(walk), estimate(other)
    local walked = w
    if target then
      walked = walk.exact and target or target * w / math.max(o, 1)
    end
    if walked <= 2 * o + (target or 0) then chosen = walk else chosen = other end
  end
end

while chosen.kind == "BEST" do estimate(chosen); chosen = chosen.choice end
if mode == "plan" then
  local out = {estimate(chosen), chosen.exact and 1 or 0, chosen.n}
  for _, n in ipairs(used(chosen, {})) do out[#out + 1] = n end
  return out
end
local answer
if chosen.kind == "WALK" then answer = walk(chosen) else answer = gather(chosen) end
if answered then return answered(answer) end
return answer
