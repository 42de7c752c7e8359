#!lua
-- insert_many.lua: insert a batch of new documents of one partition, each with its index
-- entries, in one call (what bulk_create sends).
--
-- Each document is checked (id free, unique values) before anything of it is written; a
-- refused document is skipped and reported, the others are written. Every check of every
-- document runs first, then the writes of the accepted ones go out batched: one ZADD per
-- index (and for the id index and the schedule), per document only its SET, its meta hash
-- and its change event. (One MSET for the documents would save a command per document,
-- but MSET is not among the commands of the published ACL rule: see acl.py.) The checks
-- judge the batch as if it were written in turn: a value (or an id) an earlier document of
-- the batch takes is taken for a later one. As in save.lua, the JSON is stored verbatim
-- and the shebang makes the server refuse the script above maxmemory before it starts.
--
-- KEYS[1]     the partition's id index
-- KEYS[2]     the partition's TTL schedule
-- KEYS[3]     the partition's state hash: version clock, schema layout
-- KEYS[4..I+3] every index key of the model, in the model's index order
-- KEYS[I+4..] per document: document key, meta hash key
-- ARGV[1]     MessagePack array, per index: meta field holding its entries, "1" if unique,
--             index name
-- ARGV[2]     expiry of every document: "keep" (none) or milliseconds from now
-- ARGV[3]     document key prefix    ARGV[4]  meta key prefix
-- ARGV[5]     change events: "" (none) or the spec events_on() reads; the stream is KEYS[#KEYS]
-- ARGV[6]     the caller's schema layout ("" for none)
-- ARGV[7]     MessagePack array, per document with unique indexes not enforced for it (a
--             compound value with a null part; most have none, and this is the empty
--             array): its number in the batch, MessagePack array of their positions
-- ARGV[8..]   per document: id key, document JSON, write id, MessagePack pairs, one string
--             after another (not an array: unpacked straight into HSET's arguments; meta
--             field name, netstring list of value encodings: what its meta hash keeps),
--             its value encodings per index, in the model's index order (the same
--             encodings: decoded in C, not parsed here): MessagePack values one after
--             another, per index its count of encodings (an integer), then its encodings
--             (unpacked into one table, not one per index); or, for a document with very
--             many, a MessagePack array of one array per index (Lua's stack holds about
--             8,000 values). Format 3: the pairs are only what the meta hash keeps: every
--             index's for documents with an expiry (a sweep record), else the listed
--             indexes' (bench/format3.md, section 1), "" for none
-- ARGV[#ARGV] after the documents' (optional): "2" to store them in format 2 (a meta hash
--             with "v", "r" and every index's list), as releases before format 3 did, for
--             tests of such documents (writes.NEW_FORMAT); absent: format 3
-- Returns     {"LAYOUT", stored layout} (the caller's schema is outdated: nothing written),
--             or {"ALL", version} when every document was written now, the first with that
--             version and each next one with the next (one reply, not one per document),
--             or per document: {"OK", version} | {"EXISTS"} | {"UNIQUE", index name, holder id key}
--             | {"WRONGTYPE", key} | {"LOCKED", record key} (a prepared transaction holds it)
--             | {"DAMAGED", meta key, field} (the meta hash an expired document left does
--             not read: nothing written for it; repair() discards it)
-- luacheck: globals redis KEYS ARGV cmsgpack
-- uses: _write
-- The shared definitions only the rare paths use are made when one is taken (cold_paths(),
-- luachunks.py), not on every call, and read as fields of ``rare``: a lock, a taken id, a
-- unique claim, a sweep.
-- cold: applied check_version unique_holder sweep

-- (the globals the loops per document read, as locals: each read of a global is a lookup
-- by name in the globals' table, and of redis.call, cmsgpack.unpack a second one)
local ARGV, KEYS, call, mp_unpack = ARGV, KEYS, redis.call, cmsgpack.unpack
local described = cmsgpack.unpack(ARGV[1])
local indexes = {}
for i = 1, #described / 3 do
  local index = {key = KEYS[i + 3], field = described[3 * i - 2],
                 unique = described[3 * i - 1] == "1", name = described[3 * i]}
  indexes[i] = index
end
local nindexes = #indexes
-- a document's value encodings as one list: per index its count, then its encodings (the
-- arrays form, for a document with very many, made into that list). The two forms are told
-- apart by what unpacks, with no C call: the flat run starts with a count, an integer,
-- followed by at least one more value unless the model has one index and the document no
-- entry ({0}); the arrays form is one MessagePack array, unpacked to a table alone.
local function arrays_flat(arrays)
  local out, n = {}, 0
  for _, these in ipairs(arrays) do
    out[n + 1] = #these
    for m = 1, #these do out[n + 1 + m] = these[m] end
    n = n + 1 + #these
  end
  return out
end
local function flat_members(packed)
  if packed == "" then return {} end
  local members = {cmsgpack.unpack(packed)}
  if members[2] == nil and members[1] ~= 0 then return arrays_flat(members[1]) end
  return members
end
local rare  -- (cold_paths(), made on the first rare path taken)
local expiry, doc_prefix, meta_prefix = ARGV[2], ARGV[3], ARGV[4]
local ndocs = math.floor((#ARGV - 7) / 5)
-- (one argument after the documents' says which format to store them in: see ARGV)
local format2 = #ARGV - 7 > 5 * ndocs and ARGV[#ARGV] == "2"
local first_doc_key = nindexes + 4  -- (KEYS position of the first document key)

-- shared keys: checked once for the whole batch (a wrong type refuses every document);
-- ZCARD of the schedule proves its type and tells whether a sweep can have work; it follows
-- one EXISTS of the schedule and the lock hash only when that counts either
-- (schedule_and_locks: both are usually absent)
local shared_error, scheduled, locks_there = nil, 0, 0
do
  local refused = state_check(KEYS[3], ARGV[6], true)  -- (and the clock, in the same HMGET)
  if refused and refused[1] == "LAYOUT" then return refused end
  shared_error = refused
  local bad = events_on(ARGV[5], KEYS[#KEYS])
  if bad then shared_error = {"WRONGTYPE", bad} end
end
if not shared_error and not type_ok(KEYS[1], "zset") then shared_error = {"WRONGTYPE", KEYS[1]} end
if not shared_error then
  local counted, others, refused = schedule_and_locks(KEYS[2], KEYS[3])
  if refused then shared_error = refused else scheduled, locks_there = counted, others end
end
if not shared_error then
  local bad = bad_index(indexes)
  if bad then shared_error = {"WRONGTYPE", bad} end
end

-- One EXISTS over every document and meta key of the batch: none there (the common case,
-- fresh ids) spares a check per document; otherwise each is checked alone (a taken id, a
-- resent batch recognised by its write ids, an expired document's leftovers to purge).
local all_free = false
if not shared_error and ndocs > 0 then
  local found, last = 0, first_doc_key + 2 * ndocs - 1
  for at = first_doc_key, last, 1000 do
    found = found + redis.call("EXISTS", unpack(KEYS, at, math.min(at + 999, last)))
  end
  all_free = found == 0
end

-- documents of prepared transactions are refused (see lock_holder()): the lock hash's
-- EXISTS is the one above
local locks = locks_key(KEYS[3])
local locked = not shared_error and locks_there > 0

-- 1. checks, in batch order ---------------------------------------------------------------
local any_unique = false
for i = 1, nindexes do any_unique = any_unique or indexes[i].unique end
-- (accepted: positions of the documents to write, naccepted of them)
local results, accepted, naccepted = {}, {}, 0
local members_of = {}  -- per accepted position: its entries per index, if unpacked here
local taken = {}  -- id keys this batch inserts (or found inserted by its earlier attempt)
local claimed = {}  -- per unique index: value encoding -> id key of the document taking it
for i = 1, nindexes do claimed[i] = {} end
local lenient_of = {}  -- document number -> its lenient positions (MessagePack)
if ARGV[7] ~= "\144" then
  local listed = cmsgpack.unpack(ARGV[7])
  for k = 1, #listed, 2 do lenient_of[tonumber(listed[k])] = listed[k + 1] end
end
-- (the common batch: no shared refusal, no lock, every key free, no unique index: a
-- document is refused only for an id an earlier one of the batch takes; the loop below
-- judges it so too, with more steps per document)
if not shared_error and not locked and all_free and not any_unique then
  for d = 1, ndocs do
    local idkey = ARGV[3 + 5 * d]
    if taken[idkey] then
      results[d] = {"EXISTS"}
    else
      taken[idkey] = true
      naccepted = naccepted + 1
      accepted[naccepted] = d
    end
  end
else
  for d = 1, ndocs do
    local base = 7 + 5 * (d - 1)
    local idkey, write_id = ARGV[base + 1], ARGV[base + 3]
    local meta_key = KEYS[first_doc_key - 1 + 2 * d]
    local refused = shared_error
    if not refused and taken[idkey] then refused = {"EXISTS"} end  -- (twice in the batch)
    if not refused and locked then
      local holder = redis.call("HGET", locks, idkey)
      -- (a resent insert applied the first time is recognised by its write id below)
      rare = rare or cold_paths()
      if holder and not (type_ok(meta_key, "hash") and rare.applied(meta_key, write_id)) then
        refused = {"LOCKED", holder}
      end
    end
    if not refused and not all_free then  -- (an expired document's leftovers are purged)
      rare = rare or cold_paths()
      refused = rare.check_version("insert", "0", idkey, KEYS[first_doc_key - 2 + 2 * d],
                                   meta_key, KEYS[1], KEYS[2], indexes, write_id)
      if refused and refused[1] == "APPLIED" then  -- (resent: its first attempt was applied)
        taken[idkey] = true
        refused = {"OK", refused[2]}
      end
    end
    if not refused and any_unique then
      local lenient = {}
      if lenient_of[d] then
        for _, position in ipairs(cmsgpack.unpack(lenient_of[d])) do
          lenient[tonumber(position)] = true
        end
      end
      local members = flat_members(ARGV[base + 5])
      members_of[d] = members
      local at = 1  -- (index i's count, then its encodings)
      for i = 1, nindexes do
        local index, count = indexes[i], members[at]
        if index.unique and not lenient[i] then
          for m = at + 1, at + count do
            local member = members[m]
            if member ~= NULL then
              local other = claimed[i][member]
              if other and other ~= idkey then refused = {"UNIQUE", index.name, other}; break end
              rare = rare or cold_paths()
              local holder = rare.unique_holder(index.key, member, idkey, doc_prefix)
              if holder then refused = {"UNIQUE", index.name, holder}; break end
            end
          end
          if refused then break end
        end
        at = at + count + 1
      end
      if not refused then
        at = 1
        for i = 1, nindexes do
          local count = members[at]
          if indexes[i].unique and not lenient[i] then
            for m = at + 1, at + count do
              local member = members[m]
              if member ~= NULL then claimed[i][member] = idkey end
            end
          end
          at = at + count + 1
        end
      end
    end
    if not refused then
      taken[idkey] = true
      naccepted = naccepted + 1
      accepted[naccepted] = d
    end
    -- (a nil stored under a new key makes one in Lua 5.1, and may rehash the table)
    if refused then results[d] = refused end
  end
end

-- 2. writes of the accepted documents, batched per key ---------------------------------
-- (the versions: the clock's next ones, one per document in batch order; one TIME, one
-- clock write for the batch)
local first_version = nil
if naccepted > 0 then
  local version = take_version(KEYS[3]) - 1
  first_version = version + 1
  local every = naccepted == ndocs  -- (then one reply for all: see Returns)
  local at = expiry ~= "keep" and write_time_ms() + tonumber(expiry) or nil
  local scheduled_now = {}
  -- (the common events, a stream alone: emit()'s XADD without building its entry table)
  local stream_only = EVENTS and EVENTS.maxlen ~= "" and not EVENTS.doc and EVENTS.channel == ""
  -- per index, then the id index: ZADD arguments (score "0", member), filled as we go
  local entries, counts = {}, {}
  for i = 1, nindexes + 1 do entries[i] = {}; counts[i] = 0 end
  local listed = entries[nindexes + 1]
  -- (the versions' text: consecutive integers, so one string.format per hundred, the last
  -- two digits from DIGITS between them, a table of constants read with no C call; head is
  -- the text but those two, low their value)
  local DIGITS = {
    "00", "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "14",
    "15", "16", "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29",
    "30", "31", "32", "33", "34", "35", "36", "37", "38", "39", "40", "41", "42", "43", "44",
    "45", "46", "47", "48", "49", "50", "51", "52", "53", "54", "55", "56", "57", "58", "59",
    "60", "61", "62", "63", "64", "65", "66", "67", "68", "69", "70", "71", "72", "73", "74",
    "75", "76", "77", "78", "79", "80", "81", "82", "83", "84", "85", "86", "87", "88", "89",
    "90", "91", "92", "93", "94", "95", "96", "97", "98", "99"}
  local head, low, pad_for, pad = "", 100, nil, nil
  local events_key, events_maxlen = stream_only and EVENTS.key, stream_only and EVENTS.maxlen
  for k = 1, naccepted do
    local d = accepted[k]
    local base = 7 + 5 * (d - 1)
    local idkey, write_id = ARGV[base + 1], ARGV[base + 3]
    local doc_key, meta_key = KEYS[first_doc_key - 2 + 2 * d], KEYS[first_doc_key - 1 + 2 * d]
    version = version + 1
    low = low + 1
    local shown
    if low <= 99 then
      shown = head .. DIGITS[low + 1]
    else
      shown = string.format("%.0f", version)
      if #shown > 2 then
        head, low = string.sub(shown, 1, -3), tonumber(string.sub(shown, -2))
      end
    end
    if #shown ~= pad_for then pad_for = #shown; pad = string.rep("0", 16 - pad_for) end
    if format2 then
      if at then
        call("SET", doc_key, "\0" .. shown .. "\0" .. ARGV[base + 2], "PXAT", at)
        scheduled_now[2 * k - 1], scheduled_now[2 * k] = at, idkey
      else
        -- (versioned(shown, JSON) in line: see _prelude.lua)
        call("SET", doc_key, "\0" .. shown .. "\0" .. ARGV[base + 2])
      end
      -- (the meta field pairs: a MessagePack stream, unpacked straight into the arguments)
      call("HSET", meta_key, "v", shown, "r", write_id .. pad .. shown,
           mp_unpack(ARGV[base + 4]))
    else
      -- format 3: the version and the write id in the header (headed() in line: a new
      -- document has no older writes); the meta hash only as a sweep record (an expiry:
      -- the version and every index's pairs) or with the listed indexes' pairs
      local kept = ARGV[base + 4]
      if at then
        call("SET", doc_key, "\1" .. shown .. "\0" .. write_id .. "\0" .. ARGV[base + 2],
             "PXAT", at)
        scheduled_now[2 * k - 1], scheduled_now[2 * k] = at, idkey
        if kept == "" then
          call("HSET", meta_key, "v", shown)
        else
          call("HSET", meta_key, "v", shown, mp_unpack(kept))
        end
      else
        call("SET", doc_key, "\1" .. shown .. "\0" .. write_id .. "\0" .. ARGV[base + 2])
        if kept ~= "" then call("HSET", meta_key, mp_unpack(kept)) end
      end
    end
    listed[2 * k - 1] = "0"; listed[2 * k] = idkey  -- (the id index: counted after the loop)
    local members = members_of[d]
    if not members then  -- (flat_members() in line: its common path)
      local packed = ARGV[base + 5]
      if packed == "" then
        members = {}
      else
        members = {mp_unpack(packed)}
        if members[2] == nil and members[1] ~= 0 then members = arrays_flat(members[1]) end
      end
    end
    local from = 1  -- (index i's count, then its encodings)
    for i = 1, nindexes do
      local into, last = entries[i], from + members[from]
      local n = counts[i]
      for m = from + 1, last do
        into[n + 1] = "0"; into[n + 2] = members[m] .. idkey
        n = n + 2
      end
      counts[i] = n
      from = last + 1
    end
    if stream_only then
      call("XADD", events_key, "MAXLEN", "~", events_maxlen, "*", "op", "create", "id", idkey,
           "v", shown, "w", write_id)
    else
      emit("create", idkey, shown, write_id, nil, ARGV[base + 2])
    end
    if not every then results[d] = {"OK", version} end
  end
  counts[nindexes + 1] = 2 * naccepted
  CLOCK = version
  DIRTY = true
  local nscheduled = at and 2 * naccepted or 0
  for i = 1, nscheduled, 1000 do
    redis.call("ZADD", KEYS[2], unpack(scheduled_now, i, math.min(i + 999, nscheduled)))
  end
  -- (the id index, then each index; ZADD in chunks of 500 entries: unpack() has a stack
  -- limit)
  for k = 0, nindexes do
    local i = k == 0 and nindexes + 1 or k
    local key, args, count = k == 0 and KEYS[1] or indexes[i].key, entries[i], counts[i]
    for from = 1, count, 1000 do
      redis.call("ZADD", key, unpack(args, from, math.min(from + 999, count)))
    end
  end
  flush_clock(KEYS[3])
end
if not shared_error and scheduled > 0 then
  rare = rare or cold_paths()
  rare.sweep(8, doc_prefix, meta_prefix, KEYS[1], KEYS[2], indexes, write_time_ms())
end
if naccepted == ndocs and ndocs > 0 then return {"ALL", first_version} end
return results
