-- _tx.lua: the body of tx.lua (its header says what it takes and returns), as a function
-- of the call's keys and arguments: tx.lua passes its own, tx_apply.lua those of the intent
-- a prepare stored (the same call, in apply mode).
-- luacheck: globals redis cmsgpack

-- Format 3 (bench/format3.md, step 3): a row of an update or a delete whose caller loaded
-- its document as format 3 sends its expected version in 20 digits (zero-padded: longer
-- than any other row's, which tells it), then a NUL and a MessagePack array
-- {per index in KEYS[4..] order, the entries its LOADED document has there (a packed list,
-- as a meta field holds them); the listed indexes' new pairs, flat (kept in the meta hash
-- whatever the expiry)}: exact, because the version is compared first. An insert sends
-- "0" so, then nothing or {the listed indexes' pairs} (a flat MessagePack array: nothing
-- for a model with no listed index, which is told by the text alone, no search, no unpack:
-- cmsgpack costs about 8,000 server instructions a call): its document is stored in
-- format 3 (in the writes, in line: the common insert, which names no cold path); a sent
-- "0" alone, in format 2. The helpers below
-- are made only on format 3's paths (read as cold_paths().X: luachunks.py), so that a
-- format-2 transaction makes no function more per call; the shared definitions they use
-- are passed by transact (which holds them), not named: each one named would be captured
-- by cold_paths() on every call (measured: +6,000 server instructions per tx.lua call).

-- The version the write ``write_id`` gave the document of a row sent as format 3 (a
-- resent transaction, step 0): from its header's W, or from its meta hash's "r" when the
-- document is not of format 3 (any more); nil if it was not among its recent writes.
local function tx_written(doc_key, meta_key, write_id, applied)
  local raw = redis.pcall("GET", doc_key)
  if type(raw) == "string" then
    local version, w = header_of(raw)
    if version then return written_in(w, version, write_id) end
    if version == false then return nil end  -- (a header that does not read: CORRUPT later)
  end
  return applied(meta_key, write_id)
end

-- A row sent as format 3 (``op.given``, see above): when its document is of format 3,
-- op.header = {its version text, its W}, op.old = the caller's entries per index, op.seen =
-- false, op.listed = the listed indexes' pairs; nothing set for a document that is gone or
-- not of format 3 (the format-2 path then reads its meta hash, the entries sent ignored).
-- A refusal (nothing written), or nil.
local function tx_headed(op, nindexes, type_ok, read_list)
  local raw = redis.pcall("GET", op.doc_key)
  if type(raw) == "table" then
    if string.find(raw.err, "WRONGTYPE", 1, true) then return {"WRONGTYPE", op.doc_key} end
    error(raw)
  end
  local version, w = header_of(raw)
  if version == nil then return nil end
  if not version then return {"CORRUPT"} end
  if not type_ok(op.meta_key, "hash") then return {"WRONGTYPE", op.meta_key} end
  local given = cmsgpack.unpack(op.given)
  local lists, old = given[1], {}
  if #lists ~= nindexes then error("a format-3 row's entries: one list per index expected") end
  for i = 1, nindexes do
    old[i] = read_list(lists[i])
    if not old[i] then error("a format-3 row's entries do not read") end
  end
  op.header, op.old, op.seen, op.listed = {version, w}, old, false, given[2] or {}
  return nil
end

-- The refusal of a row sent as format 2 (no entries) whose document turns out to be of
-- format 3, its version ``stored`` already compared: {"ENTRIES", version} (nothing written:
-- the caller reads it again), {"VERSION", version}, {"CORRUPT"} (a header that does not
-- read), or nil when the document is not of format 3.
local function tx_unsent(op)
  local raw = redis.call("GET", op.doc_key)
  local version = header_of(raw)
  if version == nil then return nil end
  if not version then return {"CORRUPT"} end
  if version ~= op.expected then return {"VERSION", version} end
  return {"ENTRIES", version}
end

-- Store a checked update of a format-3 document (its index entries already rewritten), as
-- save.lua's format-3 path does: the document keeps its format (headed(): this write's id
-- before the recent ones), its meta hash is headed_meta()'s (a sweep record, every index's
-- pairs ``op.fields``, only while it has an expiry; else the listed indexes' pairs), then
-- the change event (``emit``); ``now``: the write's time in ms. Returns the version written.
local function tx_store_headed(op, ttl_key, emit, now)
  local shown = string.format("%.0f", op.version)
  local value = headed(shown, op.write_id, op.json, op.header[1], op.header[2])
  local expiry, expiring = op.expiry, true
  if expiry == "keep" then
    expiring = redis.call("PTTL", op.doc_key) > 0
    redis.call("SET", op.doc_key, value, "KEEPTTL")
  elseif expiry == "persist" then
    redis.call("SET", op.doc_key, value)
    redis.call("ZREM", ttl_key, op.idkey)
    expiring = false
  else
    local at = now + tonumber(expiry)
    redis.call("SET", op.doc_key, value, "PXAT", at)
    redis.call("ZADD", ttl_key, at, op.idkey)
  end
  headed_meta(op.meta_key, expiring, shown, op.fields, op.listed)
  emit("update", op.idkey, shown, op.write_id, op.changed, op.json)
  return op.version
end

-- ``unpacked`` (tx_apply.lua, which checked them: nil from tx.lua): ARGV's lists already
-- unpacked, {described = ARGV[1], spec = ARGV[6], events = ARGV[4] (nil when ""),
-- fields = {[row] = its meta pairs}, lenient = {[row] = its lenient positions}}, read
-- instead of unpacking them again.
-- ``cold_paths``: the script's (luachunks.py), passed by its body, so that transact does not
-- capture it on every call (the script's first local: the longest walk of Lua's open
-- upvalues, measured).
local function transact(KEYS, ARGV, unpacked,  -- luacheck: ignore 431 (named as in a script)
                        cold_paths)
  local described = unpacked and unpacked.described or cmsgpack.unpack(ARGV[1])
  local indexes = {}
  for i = 1, #described / 3 do
    indexes[i] = {key = KEYS[i + 3], field = described[3 * i - 2],
                  unique = described[3 * i - 1] == "1", name = described[3 * i]}
  end
  local nindexes = #indexes
  local ids_key, ttl_key, state_key, doc_prefix = KEYS[1], KEYS[2], KEYS[3], ARGV[2]
  local nrows = (#ARGV - 6) / 9
  -- two-phase commit: prepare checks and locks (writing only the lock hash and the intent),
  -- apply writes what prepare checked (nothing can have changed: the documents are locked)
  local phase, record, intent_key, checked, keep = nil, nil, nil, false, nil
  if ARGV[6] ~= "" then
    local spec = unpacked and unpacked.spec or cmsgpack.unpack(ARGV[6])
    phase, record, keep = spec[1], spec[2], spec[4]
    -- (an intent made again with a schema that has a unique index its prepare could not
    -- check: its apply checks unique values, and a refusal keeps it; see twophase.py)
    checked = spec[3] == "unique"
    intent_key = KEYS[nindexes + 4 + 2 * nrows]
  end
  local locks = locks_key(state_key)
  -- (commands per write are the server's main cost: the state hash's HMGET is the layout
  -- refusal, the clock and the hash's type; one EXISTS of the schedule and the lock hash,
  -- usually both absent, else the schedule's ZCARD, its type and whether a sweep can have
  -- work: schedule_and_locks() and typed() in _write.lua)
  local scheduled, locks_there
  do
    local refused = state_check(state_key, ARGV[5], true)
    if refused then return refused end
    local bad = events_on(ARGV[4], KEYS[#KEYS], unpacked and unpacked.events)
    if bad then return {"WRONGTYPE", bad} end
    if not type_ok(ids_key, "zset") then return {"WRONGTYPE", ids_key} end
    scheduled, locks_there, refused = schedule_and_locks(ttl_key, state_key)
    if refused then return refused end
  end
  local bad = bad_index(indexes)
  if bad then return {"WRONGTYPE", bad} end

  -- locks of prepared transactions (see lock_holder() in _write.lua): the EXISTS above
  if phase == "apply" then  -- applied once: a second apply (or one after a release) is a no-op
    for n = 1, nrows do
      if redis.call("HGET", locks, ARGV[6 + 9 * (n - 1) + 3]) ~= record then
        -- (what an apply or a release left: the applied marker, or nothing. An intent still
        -- stored without its locks is damage — the lock hash deleted, a row's id key
        -- changed: the prepare writes both, the apply and the release replace or remove
        -- both — and taken for "applied", this partition's writes would be lost)
        local held = redis.call("GET", intent_key)
        if held and string.find(string.sub(held, 1, 14), "\167applied", 1, true) == nil then
          return redis.error_reply("DAMAGED " .. intent_key .. " intent")
        end
        return {"DONE", held or ""}
      end
    end
  end

  -- 0. a resent transaction whose first attempt was applied: its first write says so, and
  -- each write's meta hash the version it wrote ({"APPLIED"} if one has moved on since) ----
  for n = 1, phase and 0 or nrows do
    local base = 6 + 9 * (n - 1)
    local kind = ARGV[base + 1]
    if kind == "insert" or kind == "update" then
      -- (a row sent as format 3, longer than a version: see above)
      local found
      if #ARGV[base + 2] > 20 then
        -- (an insert stored in format 3 leaves no "r": a document absent was not written
        -- by it, told without the cold paths on a transaction's usual first row)
        if kind == "update" or redis.call("EXISTS", KEYS[nindexes + 2 + 2 * n]) == 1 then
          found = cold_paths().tx_written(KEYS[nindexes + 2 + 2 * n],
                                          KEYS[nindexes + 3 + 2 * n], ARGV[base + 5], applied)
        end
      else
        found = applied(KEYS[nindexes + 3 + 2 * n], ARGV[base + 5])
      end
      if not found then break end
      local versions = {}
      for m = 1, nrows do
        local at = 6 + 9 * (m - 1)
        local what = ARGV[at + 1]
        if what == "check" then
          versions[m] = tonumber(ARGV[at + 2])
        elseif what == "delete" then
          versions[m] = 0
        elseif #ARGV[at + 2] > 20 then
          versions[m] = cold_paths().tx_written(KEYS[nindexes + 2 + 2 * m],
                                                KEYS[nindexes + 3 + 2 * m], ARGV[at + 5],
                                                applied)
          if not versions[m] then return {"APPLIED"} end
        else
          versions[m] = applied(KEYS[nindexes + 3 + 2 * m], ARGV[at + 5])
          if not versions[m] then return {"APPLIED"} end
        end
      end
      return {"OK", versions}
    end
  end

  -- (after step 0: a resent transaction applied the first time is recognised as such even
  -- if a prepared transaction has locked one of its documents since)
  -- (nothing before has written: the lock hash is as that EXISTS found it)
  if phase ~= "apply" and locks_there > 0 then
    local mine = 0
    for n = 1, nrows do
      local holder = redis.call("HGET", locks, ARGV[6 + 9 * (n - 1) + 3])
      if holder == record and holder then
        mine = mine + 1
      elseif holder then
        return {"LOCKED", n, holder}
      end
    end
    if phase == "prepare" and mine == nrows then return {"PREPARED"} end  -- (resent)
  end

  -- 1. versions ------------------------------------------------------------------------
  -- An update's check: TYPE of the document tells its type and whether it is alive, the
  -- HGET of the version proves the meta hash's type; an expired document's leftovers are
  -- purged (every key a purge writes was checked above). A refusal, or nil.
  local function check_update(op)
    local t = redis.call("TYPE", op.doc_key).ok
    if t ~= "none" and t ~= "string" then return {"WRONGTYPE", op.doc_key} end
    local stored, refused = typed(op.meta_key, "HGET", op.meta_key, "v")
    if refused then return refused end
    if t == "none" and stored then
      refused = purge_listed(op.idkey, op.meta_key, ids_key, ttl_key, indexes)
      if refused then return refused end
      stored = nil
    end
    if not stored then
      -- (a format-3 document has no version in its meta hash unless it expires: the
      -- caller asks tx_unsent() when this says the document is alive; named here, its
      -- cold_paths would be captured by this closure on every call)
      return {"MISSING"}, t == "string"
    end
    if stored ~= op.expected then
      return bad_version(op.meta_key, stored) or {"VERSION", stored}
    end
    return nil
  end

  -- What an update's or a delete's meta hash lists (every index's entries, and an update's
  -- recent write ids), in one HMGET: op.old (per index, its value encodings) and op.seen.
  -- A list that does not read is a refusal (damaged()), made before anything is written;
  -- ``lenient`` (an apply, which refuses nothing its prepare checked): it counts as empty,
  -- its entries left for verify() to report and repair() to remove.
  local wanted = {"r"}
  for i, index in ipairs(indexes) do wanted[i + 1] = index.field end
  local function read_old(op, lenient)
    local listed = redis.call("HMGET", op.meta_key, unpack(wanted))
    op.seen, op.old = listed[1] or false, {}
    for i, index in ipairs(indexes) do
      local list = read_list(listed[i + 1] or nil)
      if not list then
        if not lenient then return damaged(op.meta_key, index.field) end
        list = {}
      end
      op.old[i] = list
    end
    return nil
  end

  -- The apply of a committed transaction refuses nothing its prepare checked: the decision
  -- is taken. Its documents were locked since, so only the server can have changed them: a
  -- document that expired meanwhile (its key gone; its leftovers purged here, with its
  -- expire event) stays gone: an update or a delete of it does nothing, a check is done.
  local function check_apply(op)
    local t = redis.call("TYPE", op.doc_key).ok
    if t ~= "none" and t ~= "string" then return {"WRONGTYPE", op.doc_key} end
    if not type_ok(op.meta_key, "hash") then return {"WRONGTYPE", op.meta_key} end
    if t == "none" and redis.call("EXISTS", op.meta_key) == 1 then
      -- (lists that do not read leave their entries: see read_old)
      local members = listed_members(op.idkey, op.meta_key, indexes)
      if not members then
        members = {}
        for i = 1, #indexes do members[i] = {} end
      end
      purge_expired(op.idkey, op.meta_key, ids_key, ttl_key, indexes, members)
    end
    if op.kind == "check" then
      op.version = tonumber(op.expected)
    elseif op.kind == "delete" or op.kind == "update" then
      -- (an update of one that expired stays gone, as a plain save of it would fail: its
      -- expire event was emitted by the purge above; written, it would live on unexpiring)
      if t == "none" then op.kind, op.version = "gone", 0 end
    else
      op.kind = t == "none" and "insert" or "update"
    end
    return nil
  end

  local ops = {}
  local headed_rows = false  -- (a row sent as format 3: see above)
  for n = 1, nrows do
    local base = 6 + 9 * (n - 1)
    local op = {kind = ARGV[base + 1], sent = ARGV[base + 1], expected = ARGV[base + 2],
                idkey = ARGV[base + 3],
                json = ARGV[base + 4], write_id = ARGV[base + 5],
                doc_key = KEYS[nindexes + 2 + 2 * n], meta_key = KEYS[nindexes + 3 + 2 * n]}
    -- (a row sent as format 3: longer than a version, see above; a length, not a search:
    -- string.find costs about 1,000 server instructions per call)
    local cut
    if op.expected == "00000000000000000000\0" then
      -- (an insert sent as format 3 of a model with no listed index: nothing to read)
      cut, op.expected, op.given = 21, "0", ""
    else
      cut = #op.expected > 20 and string.find(op.expected, "\0", 1, true)
      if cut then
        headed_rows = true
        op.given = string.sub(op.expected, cut + 1)
        op.expected = string.match(string.sub(op.expected, 1, cut - 1), "^0*(%d+)$")
      end
    end
    if phase == "apply" then
      local refused = check_apply(op)
      if refused then return refused end
      -- (an insert whose document is there now: an update without entries, read_old's)
      if cut and op.sent == "insert" and op.kind ~= "insert" then cut = false end
    end
    if phase == "apply" and op.kind ~= "insert" and op.kind ~= "update" then
      -- (checked above; a delete sent as format 3 takes its entries: see tx_headed)
      if cut and op.kind == "delete" then
        cold_paths().tx_headed(op, nindexes, type_ok, read_list)
      end
    elseif op.kind == "insert" or op.kind == "update" then
      local refused
      if op.kind == "insert" then
        refused = check_version("insert", op.expected, op.idkey, op.doc_key, op.meta_key,
                                ids_key, ttl_key, indexes)
      else
        if cut and op.kind == "update" then
          refused = cold_paths().tx_headed(op, nindexes, type_ok, read_list)
        end
        if refused then  -- luacheck: ignore 542
          -- (a key of another type, or a header that does not read)
        elseif cut and op.header then  -- (format 3: its header's version)
          if op.header[1] ~= op.expected then refused = {"VERSION", op.header[1]} end
        else
          local alive
          refused, alive = check_update(op)
          if alive then refused = cold_paths().tx_unsent(op) or refused end
        end
      end
      -- (no write id given: a transaction recognises its earlier attempt in step 0)
      if phase == "apply" then refused = nil end  -- (see check_apply)
      if not refused and op.kind == "update" and not (cut and op.header) then
        refused = read_old(op, phase == "apply")
        -- (a meta hash with a version and no recent writes: a format-3 document's sweep
        -- record, met by a caller that did not send its entries)
        if not refused and op.seen == false and phase ~= "apply" then
          refused = cold_paths().tx_unsent(op)
        end
      end
      if refused then
        if refused[1] == "WRONGTYPE" then return refused end
        return {refused[1], n, unpack(refused, 2)}
      end
      op.fields = unpacked and unpacked.fields[n] or cmsgpack.unpack(ARGV[base + 6])
      op.lenient = {}
      for _, position in ipairs(unpacked and unpacked.lenient[n]
                                or cmsgpack.unpack(ARGV[base + 7])) do
        op.lenient[tonumber(position)] = true
      end
      if ARGV[base + 8] ~= "" then op.changed = ARGV[base + 8] end
      op.expiry = ARGV[base + 9]
      -- (an insert sent as format 3: stored so, see the writes; what follows its NUL is
      -- nothing, or the listed indexes' pairs, a MessagePack array)
      if cut and op.kind == "insert" then
        op.fresh = op.given == "" and {} or cmsgpack.unpack(op.given)
      end
    else  -- "check" or "delete": the version read earlier must still be the one stored
      -- (TYPE of the document: its type and whether it is alive; the HGET proves the meta
      -- hash's type)
      local t = redis.call("TYPE", op.doc_key).ok
      if t ~= "none" and t ~= "string" then return {"WRONGTYPE", op.doc_key} end
      local stored, refused
      if cut and t == "string" then  -- (a delete sent as format 3: see above)
        refused = cold_paths().tx_headed(op, nindexes, type_ok, read_list)
        if refused then
          if refused[1] == "WRONGTYPE" then return refused end
          return {refused[1], n}
        end
        stored = op.header and op.header[1]
      end
      if not (cut and op.header) then
        stored, refused = typed(op.meta_key, "HGET", op.meta_key, "v")
        if refused then return refused end
        if not stored and t == "string" then
          -- (no version in the meta hash: a format-3 document's is in its header; a delete
          -- not sent its entries reads it again, see tx_unsent)
          local raw = redis.call("GET", op.doc_key)
          if string.byte(raw, 1) == 1 then
            stored = cold_paths().header_of(raw)
            if not stored then return {"CORRUPT", n} end
            if op.kind == "delete" then
              return {stored == op.expected and "ENTRIES" or "VERSION", n, stored}
            end
          end
        end
      end
      local actual = t == "string" and stored or false
      if op.kind == "delete" and not actual then return {"MISSING", n} end
      if (actual or "0") ~= op.expected then
        refused = actual and bad_version(op.meta_key, actual)
        if refused then return {"DAMAGED", n, refused[2], refused[3]} end
        return {"VERSION", n, actual or ""}
      end
      if op.kind == "delete" and not (cut and op.header) then
        refused = read_old(op, false)
        if refused then return {"DAMAGED", n, refused[2], refused[3]} end
        -- (a sweep record: see the update's)
        if op.seen == false then
          refused = cold_paths().tx_unsent(op)
          if refused then return {refused[1], n, unpack(refused, 2)} end
        end
      end
      op.version = tonumber(op.expected)
    end
    ops[n] = op
  end

  -- 2. unique values, as if the operations ran one after the other: a value is free for
  -- operation n if no live document holds it, or its holder was rewritten or deleted by an
  -- operation before n (then that operation's own claims count instead) ---------------------
  -- An apply (of an intent made again with a unique index its prepare could not check:
  -- "checked") refuses nothing: a write whose value is taken is left out instead (its
  -- document stays as it was, its version reported as -1), and recorded in the partition's
  -- "<tag>:conflicts" hash (id key -> MessagePack {record, index name, holder id key, the
  -- JSON not written}) that verify() reports; the rest is applied, the locks released.
  local claims, written, conflicts = {}, {}, {}
  for n, op in ipairs(ops) do
    if op.fields then
      local values = {}
      for i = 1, #op.fields, 2 do values[op.fields[i]] = op.fields[i + 1] end
      op.members = {}
      for i, index in ipairs(indexes) do
        op.members[i] = unpack_list(values[index.field])
        claims[i] = claims[i] or {}
        if index.unique and not op.lenient[i] and (phase ~= "apply" or checked)
            and not op.clash then
          for _, member in ipairs(op.members[i]) do
            if member ~= NULL then
              local other = claims[i][member]
              if not (other and other ~= op.idkey) then
                other = unique_holder(index.key, member, op.idkey, doc_prefix, written)
              end
              if other then
                if phase ~= "apply" then return {"UNIQUE", n, index.name, other} end
                op.clash = {index.name, other}
                break
              end
            end
          end
        end
      end
    end
    if op.clash then
      op.kind, op.version = "kept", -1
      conflicts[#conflicts + 1] = n
      conflicts[#conflicts + 1] = op.clash[1]
      conflicts[#conflicts + 1] = op.clash[2]
    elseif op.kind ~= "check" then
      -- what this operation's document held before is released; what it holds now is claimed
      written[op.idkey] = true
      for i, index in ipairs(indexes) do
        if claims[i] then
          for member, holder in pairs(claims[i]) do
            if holder == op.idkey then claims[i][member] = nil end
          end
          if op.members and index.unique and not op.lenient[i] then
            for _, member in ipairs(op.members[i]) do claims[i][member] = op.idkey end
          end
        end
      end
    end
  end

  if phase == "prepare" then  -- lock every document, keep the call as the intent for apply
    local held = {}
    for n = 1, nrows do
      held[2 * n - 1], held[2 * n] = ARGV[6 + 9 * (n - 1) + 3], record
    end
    redis.call("HSET", locks, unpack(held))
    redis.call("SET", lock_flag(state_key), "1")
    -- the intent: this very call in apply mode (a flat MessagePack array of strings: "call",
    -- the number of keys, the keys, the arguments), which anyone settling the transaction
    -- sends once it is committed
    local flat = {"call", tostring(#KEYS)}
    for _, key in ipairs(KEYS) do flat[#flat + 1] = key end
    for i, arg in ipairs(ARGV) do
      flat[#flat + 1] = i == 6 and cmsgpack.pack({"apply", record, "", keep or ""}) or arg
    end
    redis.call("SET", intent_key, cmsgpack.pack(flat))
    return {"PREPARED"}
  end

  -- 3. writes (nothing above has written, except purges of expired documents' leftovers) ---
  -- An update or delete removes what its meta hash lists, as read_old() read it in the
  -- checks (an apply's, and one of a document an earlier write of this call changed, read
  -- now). The versions: the clock's next ones, one TIME for the transaction and one clock
  -- write at its end.
  local versions, version = {}, nil
  local touched = {}  -- id keys written by this call so far: the operation that wrote each
  for n, op in ipairs(ops) do
    if headed_rows and op.header and touched[op.idkey] then
      -- (a format-3 document an earlier write of this call changed: what that write gave
      -- it, and its header now)
      local before = touched[op.idkey]
      for i = 1, nindexes do op.old[i] = before.members and before.members[i] or {} end
      local raw = redis.call("GET", op.doc_key)
      if raw then
        op.header = {cold_paths().header_of(raw)}
      elseif op.kind == "update" then
        op.header = nil  -- (deleted by it: written anew, as the format-2 path does)
      end
    elseif (op.kind == "delete" or op.kind == "update") and (not op.old or touched[op.idkey]) then
      read_old(op, true)
    end
    if op.kind ~= "check" then touched[op.idkey] = op end
    if op.kind == "delete" then
      local last = EVENTS and EVENTS.doc and payload_of(redis.call("GET", op.doc_key))
      for i, index in ipairs(indexes) do
        rewrite_entries(index.key, op.idkey, op.old[i], {})
      end
      redis.call("ZREM", ids_key, op.idkey)
      if scheduled > 0 then redis.call("ZREM", ttl_key, op.idkey) end
      redis.call("DEL", op.doc_key, op.meta_key)
      emit("delete", op.idkey, op.expected, nil, nil, last)
      versions[n] = 0
    elseif op.kind == "insert" or op.kind == "update" then
      for i, index in ipairs(indexes) do
        rewrite_entries(index.key, op.idkey, op.old and op.old[i] or {}, op.members[i])
      end
      -- (a delete later in the transaction must find this write's schedule entry)
      if op.expiry ~= "keep" and op.expiry ~= "persist" then scheduled = scheduled + 1 end
      if version then version = version + 1 else version = take_version(state_key) end
      CLOCK, DIRTY = version, true
      op.mode, op.version = op.kind, version
      if op.fresh then
        -- an insert sent as format 3, as insert.lua stores one (bench/format3.md, section
        -- 1): the version and its write id in the header; the meta hash (absent: the checks
        -- purged any leftover) only as a sweep record ("v" and every index's pairs) for a
        -- document with an expiry, else with the listed indexes' pairs, or none
        local shown = string.format("%.0f", version)
        local value = "\1" .. shown .. "\0" .. op.write_id .. "\0" .. op.json
        local expiry = op.expiry
        if expiry == "keep" or expiry == "persist" then
          redis.call("SET", op.doc_key, value)
          if #op.fresh > 0 then redis.call("HSET", op.meta_key, unpack(op.fresh)) end
        else
          local at = write_time_ms() + tonumber(expiry)
          redis.call("SET", op.doc_key, value, "PXAT", at)
          redis.call("ZADD", ttl_key, at, op.idkey)
          redis.call("HSET", op.meta_key, "v", shown, unpack(op.fields))
        end
        redis.call("ZADD", ids_key, 0, op.idkey)
        emit("create", op.idkey, shown, op.write_id, op.changed, op.json)
        versions[n] = version
      elseif headed_rows and op.header then  -- (format 3 stays format 3)
        versions[n] = cold_paths().tx_store_headed(op, ttl_key, emit, write_time_ms())
      else
        versions[n] = store(op, ids_key, ttl_key, state_key)
      end
    else
      versions[n] = op.version
    end
  end
  flush_clock(state_key)
  if NEW_LAYOUT then redis.call("HSET", state_key, "layout", NEW_LAYOUT) end  -- (no write)
  if phase == "apply" then
    local held = {}
    for n = 1, nrows do held[n] = ARGV[6 + 9 * (n - 1) + 3] end
    redis.call("HDEL", locks, unpack(held))
    if redis.call("EXISTS", locks) == 0 then redis.call("DEL", lock_flag(state_key)) end
    -- the intent becomes the versions written, for a while: a client whose apply comes
    -- second (someone settled its transaction first) learns them from its {"DONE", ...}
    local done = {"applied"}
    for n = 1, nrows do done[n + 1] = string.format("%.0f", versions[n]) end
    -- (kept as long as the committing client may still ask: see APPLIED_KEEP_TIMEOUTS in
    -- twophase.py; ten minutes for an intent of a client that did not say)
    redis.call("SET", intent_key, cmsgpack.pack(done), "PX", tonumber(keep) or 600000)
    for n, op in ipairs(ops) do
      if op.clash then
        redis.call("HSET", string.sub(state_key, 1, -6) .. "conflicts", op.idkey,
                   cmsgpack.pack({record, op.clash[1], op.clash[2], op.json}))
      end
    end
  end
  if scheduled > 0 then
    sweep(8, doc_prefix, ARGV[3], ids_key, ttl_key, indexes, write_time_ms())
  end
  if #conflicts > 0 then return {"OK", versions, conflicts} end
  return {"OK", versions}
end
