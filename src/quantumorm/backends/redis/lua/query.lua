#!lua flags=no-writes
-- query.lua: answer one query on one partition in one call (read only).
--
-- The planner (planner.py) sends a driver (where candidate ids come from), a predicate the
-- candidates must satisfy (evaluated on the value encodings kept in each meta hash), an
-- ordering and a keyset position. This script estimates the cost of each driver with
-- ZLEXCOUNT/ZCARD, takes the cheapest, and returns the documents in order. Ids whose document
-- is gone are dropped, so a dangling index entry is never returned nor counted.
--
-- Document and meta keys are built from the prefixes in ARGV[1..2]: they share the
-- partition's hash tag with KEYS, so they are in the same slot.
--
-- KEYS[1]   the partition's id index (ZSET, member = id key)
-- KEYS[2..] index keys of the model, then the partition's state hash (schema layout, see
--           _prelude.lua), then its TTL schedule (ZSET, last)
-- ARGV[1]   document key prefix          ARGV[2]  meta key prefix
-- ARGV[3]   "rows" | "keyed" (rows with their sort keys, to merge partitions) | "count"
--           | "exists" | "plan"
-- ARGV[4]   offset                       ARGV[5]  limit, or -1
-- ARGV[6]   "1" to check that each candidate's document exists (also done whenever the TTL
--           schedule is not empty)
-- ARGV[7]   the program, a MessagePack array of strings: DRIVER, NEED, PRED, ORDER, AFTER
--           (grammar in planner.py)
-- ARGV[8]   the caller's schema layout
-- Returns   rows: flat {id key, version, json, ...}; keyed: flat {id key, version, json,
--           then per ORDER entry the encoding the rows are ordered by, ...} (the id key
--           breaks ties); count: integer; exists: 0|1;
--           plan: {estimated candidates, 1 if exact, the chosen driver, the drivers it
--           reads...}, each driver named by its position in the program's DRIVER (depth
--           first, from 1);
--           in every mode {"LAYOUT", stored layout} when the caller's schema is outdated
-- luacheck: globals redis KEYS ARGV cmsgpack

do
  local refused = layout_refusal(KEYS[#KEYS - 1], ARGV[8], false)
  if refused and refused[1] == "LAYOUT" then return refused end
  if refused then return redis.error_reply("WRONGTYPE " .. KEYS[#KEYS - 1] .. " is not a hash") end
end
local doc_prefix, meta_prefix, mode = ARGV[1], ARGV[2], ARGV[3]
-- keyed: rows, each followed by its sort keys (the caller merges partitions with them)
local keyed = mode == "keyed"
if keyed then mode = "rows" end
local offset, limit, verify = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == "1"
-- documents with an expiry are scheduled in the partition's TTL set (the last key): while it
-- is not empty, index entries may outlive their document, so every candidate is checked
verify = verify or redis.call("ZCARD", KEYS[#KEYS]) > 0

local program, argi = cmsgpack.unpack(ARGV[7]), 0
local function nxt() argi = argi + 1; return program[argi] end

-- Byte order, independent of the server's locale (Lua's < uses strcoll).
local function cmp(a, b)
  if a == b then return 0 end
  local n = math.min(#a, #b)
  local i = 1
  while i <= n do
    local j = math.min(i + 15, n)
    if string.sub(a, i, j) ~= string.sub(b, i, j) then
      for k = i, j do
        local x, y = string.byte(a, k), string.byte(b, k)
        if x ~= y then return x < y and -1 or 1 end
      end
    end
    i = j + 1
  end
  return #a < #b and -1 or 1
end

local function id_of_member(member)  -- the id key follows the last \0 (it has none)
  local i = #member
  while string.byte(member, i) ~= 0 do i = i - 1 end
  return string.sub(member, i + 1)
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

local ndrivers = 0  -- each driver's position in the program (depth first): plan mode
local function parse_driver()
  local kind = nxt()
  ndrivers = ndrivers + 1
  local d = {kind = kind, n = ndrivers}
  if kind == "RANGE" then
    d.key = KEYS[tonumber(nxt())]
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
    d.key = KEYS[tonumber(nxt())]
    d.is_ids, d.desc, d.min, d.max = nxt() == "1", nxt() == "1", nxt(), nxt()
  end
  d.exact = nxt() == "1"
  parse_covers(d)
  return d
end

-- PRED := T | F | AND n PRED* | OR n PRED* | NOT PRED | EQ f v | IN f n v* | GT f v
--       | GE f v | LT f v | LE f v | PRE f p | HAS f v | NULL f | ID n idkey*
--       | ZIN keypos n v*  (index membership of v .. id: equality without reading meta)
-- The predicate is compiled once into closures test(vals, idkey) -> boolean, where vals
-- maps meta fields to their lists of value encodings. A top-level AND also returns its
-- children, so the conditions a driver covers can be left out. One compiler per op, in a
-- table keyed by the op's token (the planner's tables emit them: lookup_plans.py).
local compile_pred
local compilers = {}

compilers.AND = function()
  local cs = {}
  for i = 1, tonumber(nxt()) do cs[i] = compile_pred() end
  local n = #cs
  return function(vals, id)
    for i = 1, n do if not cs[i](vals, id) then return false end end
    return true
  end, cs
end

compilers.OR = function()
  local cs = {}
  for i = 1, tonumber(nxt()) do cs[i] = compile_pred() end
  local n = #cs
  return function(vals, id)
    for i = 1, n do if cs[i](vals, id) then return true end end
    return false
  end
end

compilers.NOT = function()
  local c = compile_pred()
  return function(vals, id) return not c(vals, id) end
end

compilers.T = function() return function() return true end end
compilers.F = function() return function() return false end end

compilers.ID = function()
  local set = {}
  for _ = 1, tonumber(nxt()) do set[nxt()] = true end
  return function(_, id) return set[id] == true end
end

compilers.ZIN = function()
  local key, values = KEYS[tonumber(nxt())], {}
  for i = 1, tonumber(nxt()) do values[i] = nxt() end
  local n = #values
  return function(_, id)
    for i = 1, n do
      if redis.call("ZSCORE", key, values[i] .. id) then return true end
    end
    return false
  end
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
local function estimate(d)
  if d.est then return d.est end
  local n = 0
  if d.kind == "ALL" then n = redis.call("ZCARD", KEYS[1])
  elseif d.kind == "RANGE" then
    for _, r in ipairs(d.ranges) do n = n + redis.call("ZLEXCOUNT", d.key, r[1], r[2]) end
  elseif d.kind == "IDS" then n = #d.ids
  elseif d.kind == "WALK" then n = redis.call("ZLEXCOUNT", d.key, d.min, d.max)
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
      for _, m in ipairs(redis.call("ZRANGEBYLEX", d.key, r[1], r[2])) do add(id_of_member(m)) end
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

local EMPTY = {}
local function load_values(idkey)
  if #need == 0 then return EMPTY end
  local vals = {}
  local raw = redis.call("HMGET", meta_prefix .. escaped_id(idkey), unpack(need))
  for i, f in ipairs(need) do
    vals[f] = unpack_list(raw[i])
    vals[f].missing = not raw[i]  -- an empty array is "", a never-indexed field is nil
  end
  return vals
end

-- the test a candidate of driver d must pass: nil when d yields only matches; the
-- conditions of a top-level AND that d covers are left out
local function make_test(d)
  if d.exact then return nil end
  if not (d.skip and pred_children) then return pred end
  local rest = {}
  for i, c in ipairs(pred_children) do
    if not d.skip[i] then rest[#rest + 1] = c end
  end
  local n = #rest
  if n == 0 then return nil end
  if n == 1 then return rest[1] end
  return function(vals, id)
    for i = 1, n do if not rest[i](vals, id) then return false end end
    return true
  end
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

local function emit(rows)
  if mode == "count" then return #rows end
  if mode == "exists" then return #rows > 0 and 1 or 0 end
  local out = {}
  for _, row in ipairs(rows) do
    local eid = escaped_id(row.id)
    local json = redis.call("GET", doc_prefix .. eid)
    if json then
      out[#out + 1] = row.id
      out[#out + 1] = redis.call("HGET", meta_prefix .. eid, "v") or "0"
      out[#out + 1] = json
      if keyed then
        local keys = row.keys  -- (a walk's rows have none yet)
        if not keys then
          local vals = load_values(row.id)
          keys = {}
          for i, o in ipairs(order) do
            if o.field == "@id" then keys[i] = row.id else keys[i] = vals[o.field][1] or NULL end
          end
        end
        for i = 1, #order do out[#out + 1] = keys[i] end
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
  local rows, skipped, pos = {}, 0, 0
  local test = make_test(d)
  while true do
    local members
    if d.desc then
      members = redis.call("ZREVRANGEBYLEX", d.key, d.max, d.min, "LIMIT", pos, chunk)
    else
      members = redis.call("ZRANGEBYLEX", d.key, d.min, d.max, "LIMIT", pos, chunk)
    end
    for _, m in ipairs(members) do
      local idkey = d.is_ids and m or id_of_member(m)
      if (not test or test(load_values(idkey), idkey)) and (not verify or alive(idkey)) then
        if mode ~= "count" and skipped < offset then
          skipped = skipped + 1
        else
          rows[#rows + 1] = {id = idkey}
          if target and #rows + skipped >= target then return emit(rows) end
        end
      end
    end
    if #members < chunk then break end
    pos = pos + chunk
    chunk = math.min(chunk * 2, 4096)
  end
  if mode == "count" then return #rows end
  return emit(rows)
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
  local rows = {}
  local test = make_test(d)
  for _, idkey in ipairs(ids) do
    local vals = (not test and #order == 0) and EMPTY or load_values(idkey)
    if not test or test(vals, idkey) then
      local row = {id = idkey, keys = {}}
      for i, o in ipairs(order) do
        if o.field == "@id" then row.keys[i] = idkey else row.keys[i] = vals[o.field][1] or NULL end
      end
      local keep = true
      if after then
        local pos_row = {id = after[#after], keys = after}
        keep = compare_rows(row, pos_row) > 0
      end
      if keep and (not verify or alive(idkey)) then
        if mode == "exists" then return 1 end
        rows[#rows + 1] = row
      end
    end
  end
  if mode == "count" then return #rows end
  if mode == "exists" then return #rows > 0 and 1 or 0 end
  table.sort(rows, function(a, b) return compare_rows(a, b) < 0 end)
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
if chosen.kind == "WALK" then return walk(chosen) end
return gather(chosen)
