"""Server instructions of the operations whose cost format 3 (``bench/format3.md``: no index
encodings stored per document) moves: prototype scripts in this file, not the product's.

One private redis-server runs under callgrind (``callgrind_support.py``). The ORM loads
``--n`` documents of issue 12's workload (format 2: a document string ``\\0<version>\\0<JSON>``
and a meta hash ``v``, ``r``, ``f:<field>``), and a copy of them is made in format 3
(``\\x01<version>\\0<recent write ids>\\0<JSON>``, no meta hash; the indexes, the id index and
the state hash copied as they are). Each operation is a pair of prototype cores with the
same commands around what format 3 changes, run with the same arguments on its own copy:

* ``patch_int`` / ``patch_str``: ``filter(id=).update(age=...)`` / ``(name=...)`` with no
  read: format 2 reads the version, the recent writes and the field's entry from the meta
  hash (HMGET) and writes them back (HSET); format 3 reads the version and the write ids
  from the document's header (which its GET brings anyway) and derives the old entry from
  the stored JSON's member text (an int: its digits; a str: its bytes when the text has no
  backslash), writing no meta hash;
* ``save``: the save of a loaded document (age changed): format 2 reads version, writes and
  the field's entry with HMGET and writes the meta hash back; format 3 reads the header with
  GETRANGE and removes the old entry the client sent (computed from the loaded document,
  exact because the version is compared);
* ``save_get``: the same, format 3 reading its header with GET (the whole document) rather
  than GETRANGE, which the published ACL rule (``acl.py``) does not list;
* ``delete``: the delete of a loaded document: format 2 reads the version and every index's
  entries with one HMGET and deletes two keys; format 3 reads the header with GETRANGE and
  removes the entries the client sent (one packed list per index, as the meta hash keeps
  them), deleting one key;
* ``bulk100``: a bulk insert's per-document writes, 100 documents per call (reported per
  document): format 2 sets the document and its meta hash (version, write id, the index
  fields as a MessagePack stream unpacked into HSET, as ``insert_many.lua`` does); format 3
  sets the document alone, the write id in its header (the index ZADDs, the same in both, are
  left out of both);
* ``rows600``: the same range returning its rows: format 2 reads each candidate's entry and
  version (HMGET), then the passing rows' documents (MGET per 100); format 3 reads every
  candidate's document (MGET per 100) and tests it (``rows``),
  or reads the range's entries as a set and then only the passing rows' documents (MGET);
* ``range600``: a query's range test (``18 <= age < 48``) on 600 candidates: format 2 reads
  each candidate's age entry from its meta hash (HMGET, as ``query.lua``'s values table
  does); format 3 either derives it from each candidate's document (``get``: a GET per
  candidate; ``mget``: an MGET per 100 candidates; ``num``: the same, the member's text
  compared as a number, no entry made) or reads the range's index entries as
  a set (``set``: one ZRANGE BYLEX, then a lookup per candidate, which ``query.lua`` already
  does for small ranges).

Before counting, a check: the format-3 derivations of every document's name, age, active
and tags entries (in Lua, from the stored JSON) are compared with what the ORM's meta hash
lists (computed by Python): any difference is printed and fails the run. After the counting,
both copies' indexes and documents are compared: the two formats must end alike.

Usage: bench/bench_format3.py [--n 2000] [--calls 150] [--reps 3] [--port P]
[--ops patch_int,patch_str,save,delete,range600]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from importlib import resources
from typing import Any

import redis
from bench_workload import Person, batches, make_docs
from callgrind_support import callgrind_server, dumped_instructions, free_port

from quantumorm import create_connection, jsoncodec, sortable
from quantumorm.backends.redis import luachunks, wire

TAG2 = "{qbenchwl:people:p0}:"  # the ORM's keys (format 2)
TAG3 = "{qbenchwl:people:p0}:f3:"  # the format-3 copy, in the same slot
INDEXES = ("name", "age", "active", "tags")

# -- shared Lua ------------------------------------------------------------------------------


def _shared(part: str, name: str) -> str:
    """The definition of ``name`` in the package's shared Lua part ``part``, as it is (no
    copy here to drift from it)."""
    text = (resources.files("quantumorm.backends.redis") / "lua" / part).read_text()
    (chunk,) = [c for c in luachunks.split(text) if name in c.defines]
    return chunk.text + "\n"


# _prelude.lua's read_list (both formats parse netstring lists: format 2 from the meta hash,
# format 3 from the client's arguments)
READ_LIST = _shared("_prelude.lua", "read_list")

# The entry (sortable encoding) of a JSON value's text, for the types where the text gives
# it exactly: an int (sortable.encode_number of int(text)), a string without a backslash
# (encode_str: its UTF-8 bytes, which ensure_ascii=False writes as they are), true, false,
# null. nil for anything else (a float, an escaped string, an object...): the caller falls
# back (the client's entries, or the range read as a set).
DERIVE = r"""
local FLIP = {["0"] = "9", ["1"] = "8", ["2"] = "7", ["3"] = "6", ["4"] = "5", ["5"] = "4",
              ["6"] = "3", ["7"] = "2", ["8"] = "1", ["9"] = "0"}
local function entry_of(t)
  local b = string.byte(t, 1)
  if b == 34 then  -- a string
    if string.find(t, "\\", 2, true) then return nil end
    return " " .. string.sub(t, 2, -2) .. "\0"
  elseif b == 116 then return t == "true" and "\3\0" or nil
  elseif b == 102 then return t == "false" and "\2\0" or nil
  elseif b == 110 then return t == "null" and "\1\0" or nil
  elseif t == "0" then return "\20\0"
  end
  local digits = string.match(t, "^%-?([1-9]%d*)$")
  if not digits then return nil end
  -- (the exponent's 10 digits: 5000000000 + the number of digits; string.char rather
  -- than a number's text, which Lua makes with sprintf; trailing zeros dropped)
  local n = #digits
  local body = n < 10 and "500000000" .. string.char(48 + n) or tostring(5000000000 + n)
  if string.byte(digits, n) == 48 then body = body .. string.match(digits, "^(.-)0*$")
  else body = body .. digits end
  if b == 45 then return "\16" .. (string.gsub(body, "%d", FLIP)) .. "~\0" end
  return "\24" .. body .. "\0"
end
"""

# -- the check: Lua's derivations against the meta hash's lists --------------------------------

CHECK = READ_LIST + DERIVE + r"""
-- ARGV: document key prefix, meta key prefix (format 2: the meta hash is the reference),
-- then escaped ids. Returns the ids whose derived entries differ, with what differs.
local bad = {}
for i = 3, #ARGV do
  local stored = redis.call("GET", ARGV[1] .. ARGV[i])
  local json = string.sub(stored, string.find(stored, "\0", 2, true) + 1)
  local doc = cjson.decode(json)
  for _, f in ipairs({"name", "age", "active"}) do
    local k, k_end = string.find(json, '"' .. f .. '":', 1, true)
    local first = k_end + 1
    local after
    if string.byte(json, first) == 34 then after = string.find(json, '"', first + 1, true) + 1
    else after = string.find(json, "[,}]", first) end
    local got = entry_of(string.sub(json, first, after - 1))
    local listed = read_list(redis.call("HGET", ARGV[2] .. ARGV[i], "f:" .. f))[1]
    if got ~= listed then bad[#bad + 1] = ARGV[i] .. " " .. f end
  end
  -- an array of strings: its distinct elements' entries (cjson reads strings exactly)
  local want = {}
  for _, e in ipairs(read_list(redis.call("HGET", ARGV[2] .. ARGV[i], "f:tags"))) do
    want[e] = true
  end
  local n = 0
  for _, tag in ipairs(doc.tags) do
    local e = " " .. tag .. "\0"
    if not want[e] then bad[#bad + 1] = ARGV[i] .. " tags " .. tag end
    if want[e] ~= "seen" then n = n + 1 end
    want[e] = "seen"
  end
  for e, state in pairs(want) do
    if state ~= "seen" then bad[#bad + 1] = ARGV[i] .. " tags missing" end
  end
end
return bad
"""

# -- patch: filter(id=).update(<field>=value), no read ------------------------------------------
# KEYS: document, meta hash (format 2; format 3: unused but named alike), index, stream, state
# ARGV: write id, member key text ('"age":'), new value text, new entry, id key, meta field

PATCH2 = READ_LIST + r"""
local stored = redis.call("GET", KEYS[1])
if not stored then return {"MISSING"} end
local got = redis.call("HMGET", KEYS[2], "v", "r", ARGV[6])
local r = got[2] or ""
local at = string.find(r, ARGV[1], 1, true)
if at and at % 32 == 1 then return {"APPLIED"} end
local e = string.find(stored, "\0", 2, true)
local _, k_end = string.find(stored, ARGV[2], e + 1, true)
local first = k_end + 1
local after
if string.byte(stored, first) == 34 then after = string.find(stored, '"', first + 1, true) + 1
else after = string.find(stored, "[,}]", first) end
local old = read_list(got[3])[1]
local t = redis.call("TIME")
local shown = t[1] .. string.format("%06d", t[2])
redis.call("SET", KEYS[1], "\0" .. shown .. "\0" .. string.sub(stored, e + 1, first - 1)
           .. ARGV[3] .. string.sub(stored, after))
redis.call("HSET", KEYS[2], "v", shown, "r", ARGV[1] .. string.rep("0", 16 - #shown) .. shown
           .. string.sub(r, 1, 96), ARGV[6], #ARGV[4] .. ":" .. ARGV[4])
redis.call("ZREM", KEYS[3], old .. ARGV[5])
redis.call("ZADD", KEYS[3], 0, ARGV[4] .. ARGV[5])
redis.call("XADD", KEYS[4], "MAXLEN", "~", "10000", "*", "op", "update", "id", ARGV[5],
           "v", shown)
redis.call("HSET", KEYS[5], "clock", shown)
return {"OK", shown}
"""

PATCH3 = DERIVE + r"""
local stored = redis.call("GET", KEYS[1])
if not stored then return {"MISSING"} end
-- the header: \1 version \0 recent writes \0 (the newest write's id, then 32 characters
-- per older write: id and version)
local e1 = string.find(stored, "\0", 2, true)
local e2 = string.find(stored, "\0", e1 + 1, true)
local at = string.find(stored, ARGV[1], e1 + 1, true)
if at and at < e2 and (at == e1 + 1 or (at - e1 - 17) % 32 == 0) then return {"APPLIED"} end
local _, k_end = string.find(stored, ARGV[2], e2 + 1, true)
local first = k_end + 1
local after
if string.byte(stored, first) == 34 then after = string.find(stored, '"', first + 1, true) + 1
else after = string.find(stored, "[,}]", first) end
local old = entry_of(string.sub(stored, first, after - 1))
if not old then return {"FALLBACK"} end  -- (format3.md: the client's round trip)
local t = redis.call("TIME")
local shown = t[1] .. string.format("%06d", t[2])
local version = string.sub(stored, 2, e1 - 1)
-- (the new write first, then the last newest with its version, then up to 2 older ones:
-- RECENT = 4)
redis.call("SET", KEYS[1], "\1" .. shown .. "\0" .. ARGV[1] .. string.sub(stored, e1 + 1, e1 + 16)
           .. string.rep("0", 16 - #version) .. version
           .. string.sub(stored, e1 + 17, math.min(e1 + 80, e2 - 1))
           .. "\0" .. string.sub(stored, e2 + 1, first - 1) .. ARGV[3] .. string.sub(stored, after))
redis.call("ZREM", KEYS[3], old .. ARGV[5])
redis.call("ZADD", KEYS[3], 0, ARGV[4] .. ARGV[5])
redis.call("XADD", KEYS[4], "MAXLEN", "~", "10000", "*", "op", "update", "id", ARGV[5],
           "v", shown)
redis.call("HSET", KEYS[5], "clock", shown)
return {"OK", shown}
"""

# -- save of a loaded document (one indexed field changed) ----------------------------------------
# KEYS: document, meta hash, index, stream, state
# ARGV: write id, expected version, new JSON, new entry, id key, meta field, old entry (format 3)

SAVE2 = READ_LIST + r"""
local got = redis.call("HMGET", KEYS[2], "v", "r", ARGV[6])
if got[1] ~= ARGV[2] then
  local at = string.find(got[2] or "", ARGV[1], 1, true)
  if at and at % 32 == 1 then return {"APPLIED"} end
  return {"VERSION", got[1]}
end
local old = read_list(got[3])[1]
local t = redis.call("TIME")
local shown = t[1] .. string.format("%06d", t[2])
redis.call("SET", KEYS[1], "\0" .. shown .. "\0" .. ARGV[3], "KEEPTTL")
redis.call("HSET", KEYS[2], "v", shown, "r", ARGV[1] .. string.rep("0", 16 - #shown) .. shown
           .. string.sub(got[2] or "", 1, 96), ARGV[6], #ARGV[4] .. ":" .. ARGV[4])
redis.call("ZREM", KEYS[3], old .. ARGV[5])
redis.call("ZADD", KEYS[3], 0, ARGV[4] .. ARGV[5])
redis.call("XADD", KEYS[4], "MAXLEN", "~", "10000", "*", "op", "update", "id", ARGV[5],
           "v", shown, "f", "age")
redis.call("HSET", KEYS[5], "clock", shown)
return {"OK", shown}
"""

SAVE3 = r"""
-- the header alone (at most 1 + 20 + 1 + 112 + 1 bytes)
local head = redis.call("GETRANGE", KEYS[1], 0, 159)
if head == "" then return {"MISSING"} end
local e1 = string.find(head, "\0", 2, true)
local e2 = string.find(head, "\0", e1 + 1, true)
if string.sub(head, 2, e1 - 1) ~= ARGV[2] then
  local at = string.find(head, ARGV[1], e1 + 1, true)
  if at and at < e2 then return {"APPLIED"} end
  return {"VERSION", string.sub(head, 2, e1 - 1)}
end
local t = redis.call("TIME")
local shown = t[1] .. string.format("%06d", t[2])
redis.call("SET", KEYS[1], "\1" .. shown .. "\0" .. ARGV[1] .. string.sub(head, e1 + 1, e1 + 16)
           .. string.rep("0", 16 - #ARGV[2]) .. ARGV[2]
           .. string.sub(head, e1 + 17, math.min(e1 + 80, e2 - 1))
           .. "\0" .. ARGV[3], "KEEPTTL")
redis.call("ZREM", KEYS[3], ARGV[7] .. ARGV[5])
redis.call("ZADD", KEYS[3], 0, ARGV[4] .. ARGV[5])
redis.call("XADD", KEYS[4], "MAXLEN", "~", "10000", "*", "op", "update", "id", ARGV[5],
           "v", shown, "f", "age")
redis.call("HSET", KEYS[5], "clock", shown)
return {"OK", shown}
"""

# the same with GET (the published ACL rule, acl.py, has no GETRANGE: format 3 either adds it
# or reads the whole document)
SAVE3_GET = SAVE3.replace('redis.call("GETRANGE", KEYS[1], 0, 159)', 'redis.call("GET", KEYS[1])') \
    .replace('if head == "" then', 'if not head then')

# -- delete of a loaded document -------------------------------------------------------------------
# KEYS: document, meta hash, id index, stream, then the 4 indexes
# ARGV: expected version, id key, then (format 3) one packed list of entries per index

DELETE2 = READ_LIST + r"""
local got = redis.call("HMGET", KEYS[2], "v", "f:name", "f:age", "f:active", "f:tags")
if got[1] ~= ARGV[1] then return {"VERSION", got[1]} end
for i = 1, 4 do
  local members = read_list(got[i + 1], ARGV[2])
  if #members > 0 then redis.call("ZREM", KEYS[4 + i], unpack(members)) end
end
redis.call("DEL", KEYS[1], KEYS[2])
redis.call("ZREM", KEYS[3], ARGV[2])
redis.call("XADD", KEYS[4], "MAXLEN", "~", "10000", "*", "op", "delete", "id", ARGV[2],
           "v", ARGV[1])
return {"OK"}
"""

DELETE3 = READ_LIST + r"""
local head = redis.call("GETRANGE", KEYS[1], 0, 40)
local e1 = string.find(head, "\0", 2, true)
if not e1 or string.sub(head, 2, e1 - 1) ~= ARGV[1] then return {"VERSION"} end
for i = 1, 4 do
  local members = read_list(ARGV[2 + i], ARGV[2])
  if #members > 0 then redis.call("ZREM", KEYS[4 + i], unpack(members)) end
end
redis.call("DEL", KEYS[1])
redis.call("ZREM", KEYS[3], ARGV[2])
redis.call("XADD", KEYS[4], "MAXLEN", "~", "10000", "*", "op", "delete", "id", ARGV[2],
           "v", ARGV[1])
return {"OK"}
"""

# -- a bulk insert's per-document writes (100 documents per call) ---------------------------------
# KEYS: per document: document key, meta hash key. ARGV[1]: the first version; per document:
# id key, JSON, write id, and (format 2) the meta pairs as a MessagePack stream (unpacked
# straight into HSET's arguments, as insert_many.lua does). The index ZADDs, the id index and
# the event are the same in both formats (per batch): left out of both.

BULK2 = r"""
local first, n = tonumber(ARGV[1]), (#ARGV - 1) / 4
for d = 1, n do
  local base = 1 + 4 * (d - 1)
  local shown = string.format("%.0f", first + d)
  redis.call("SET", KEYS[2 * d - 1], "\0" .. shown .. "\0" .. ARGV[base + 2])
  redis.call("HSET", KEYS[2 * d], "v", shown, "r", ARGV[base + 3] .. string.rep("0", 16 - #shown)
             .. shown, cmsgpack.unpack(ARGV[base + 4]))
end
return n
"""

BULK3 = r"""
local first, n = tonumber(ARGV[1]), (#ARGV - 1) / 3
for d = 1, n do
  local base = 1 + 3 * (d - 1)
  local shown = string.format("%.0f", first + d)
  redis.call("SET", KEYS[2 * d - 1], "\1" .. shown .. "\0" .. ARGV[base + 3] .. "\0"
             .. ARGV[base + 2])
end
return n
"""

# -- a range test on 600 candidates ----------------------------------------------------------------
# KEYS: id index, age index. ARGV: document prefix, meta prefix, low entry, high entry
# (exclusive), candidates (the id index's first 600). Returns how many pass.

RANGE2 = READ_LIST + r"""
local ids, n = redis.call("ZRANGE", KEYS[1], 0, 599), 0
local lo, hi = ARGV[3], ARGV[4]
for _, idkey in ipairs(ids) do
  local meta_key = ARGV[2] .. string.sub(idkey, 3)
  local raw = redis.call("HMGET", meta_key, "f:age")
  local e = read_list(raw[1])[1]
  if e and e >= lo and e < hi then n = n + 1 end
end
return n
"""

RANGE3_GET = DERIVE + r"""
local ids, n = redis.call("ZRANGE", KEYS[1], 0, 599), 0
local lo, hi = ARGV[3], ARGV[4]
for _, idkey in ipairs(ids) do
  local stored = redis.call("GET", ARGV[1] .. string.sub(idkey, 3))
  -- (the header holds digits and hex only: no '"', so the key's text is searched from 1)
  local _, k_end = string.find(stored, '"age":', 1, true)
  local e = entry_of(string.sub(stored, k_end + 1, string.find(stored, "[,}]", k_end + 1) - 1))
  if e and e >= lo and e < hi then n = n + 1 end
end
return n
"""

RANGE3_MGET = DERIVE + r"""
local ids, n = redis.call("ZRANGE", KEYS[1], 0, 599), 0
local lo, hi = ARGV[3], ARGV[4]
for start = 1, #ids, 100 do
  local keys = {}
  for i = start, math.min(start + 99, #ids) do
    keys[#keys + 1] = ARGV[1] .. string.sub(ids[i], 3)
  end
  for _, stored in ipairs(redis.call("MGET", unpack(keys))) do
    local _, k_end = string.find(stored, '"age":', 1, true)
    local e = entry_of(string.sub(stored, k_end + 1,
                                  string.find(stored, "[,}]", k_end + 1) - 1))
    if e and e >= lo and e < hi then n = n + 1 end
  end
end
return n
"""

# the same by number: an int member of at most 15 digits compared as a Lua number (exact
# below 2^53) with numeric bounds, no entry made (ARGV[5], ARGV[6]: the bounds as numbers)
RANGE3_NUM = r"""
local ids, n = redis.call("ZRANGE", KEYS[1], 0, 599), 0
local lo, hi = tonumber(ARGV[5]), tonumber(ARGV[6])
for start = 1, #ids, 100 do
  local keys = {}
  for i = start, math.min(start + 99, #ids) do
    keys[#keys + 1] = ARGV[1] .. string.sub(ids[i], 3)
  end
  for _, stored in ipairs(redis.call("MGET", unpack(keys))) do
    local _, k_end = string.find(stored, '"age":', 1, true)
    local after = string.find(stored, "[,}]", k_end + 1)
    -- (at most 15 characters: exact as a double; else the entry, as entry_of makes it)
    local v = after - k_end <= 16 and tonumber(string.sub(stored, k_end + 1, after - 1))
    if v and v >= lo and v < hi then n = n + 1 end
  end
end
return n
"""

# rows: the passing candidates' documents returned, as a query of rows does (format 2 reads
# each candidate's entry and version with one HMGET, then the rows' documents with MGET;
# format 3 reads every candidate's document with MGET and tests it)
RANGE2_ROWS = READ_LIST + r"""
local ids, n = redis.call("ZRANGE", KEYS[1], 0, 599), 0
local lo, hi = ARGV[3], ARGV[4]
local keys, versions, rows = {}, {}, {}
for _, idkey in ipairs(ids) do
  local eid = string.sub(idkey, 3)
  local raw = redis.call("HMGET", ARGV[2] .. eid, "f:age", "v")
  local e = read_list(raw[1])[1]
  if e and e >= lo and e < hi then
    n = n + 1; keys[n] = ARGV[1] .. eid; versions[n] = raw[2]
  end
end
for start = 1, n, 100 do
  for _, stored in ipairs(redis.call("MGET", unpack(keys, start, math.min(start + 99, n)))) do
    rows[#rows + 1] = stored
  end
end
return #rows
"""

RANGE3_ROWS = DERIVE + r"""
local ids, n = redis.call("ZRANGE", KEYS[1], 0, 599), 0
local lo, hi = ARGV[3], ARGV[4]
local rows = {}
for start = 1, #ids, 100 do
  local keys = {}
  for i = start, math.min(start + 99, #ids) do
    keys[#keys + 1] = ARGV[1] .. string.sub(ids[i], 3)
  end
  for _, stored in ipairs(redis.call("MGET", unpack(keys))) do
    local _, k_end = string.find(stored, '"age":', 1, true)
    local e = entry_of(string.sub(stored, k_end + 1,
                                  string.find(stored, "[,}]", k_end + 1) - 1))
    if e and e >= lo and e < hi then n = n + 1; rows[n] = stored end
  end
end
return #rows
"""

RANGE3_ROWS_SET = r"""
local ids, n = redis.call("ZRANGE", KEYS[1], 0, 599), 0
local inside, keys, rows = {}, {}, {}
for _, member in ipairs(redis.call("ZRANGE", KEYS[2], "[" .. ARGV[3], "(" .. ARGV[4], "BYLEX")) do
  inside[string.sub(member, string.find(member, "\0", 2, true) + 1)] = true
end
for _, idkey in ipairs(ids) do
  if inside[idkey] then n = n + 1; keys[n] = ARGV[1] .. string.sub(idkey, 3) end
end
for start = 1, n, 100 do
  for _, stored in ipairs(redis.call("MGET", unpack(keys, start, math.min(start + 99, n)))) do
    rows[#rows + 1] = stored
  end
end
return #rows
"""

RANGE3_SET = r"""
local ids, n = redis.call("ZRANGE", KEYS[1], 0, 599), 0
local inside = {}
for _, member in ipairs(redis.call("ZRANGE", KEYS[2], "[" .. ARGV[3], "(" .. ARGV[4], "BYLEX")) do
  -- (the id key after the entry's last \0: an int entry has one \0, at its end)
  inside[string.sub(member, string.find(member, "\0", 2, true) + 1)] = true
end
for _, idkey in ipairs(ids) do
  if inside[idkey] then n = n + 1 end
end
return n
"""

SCRIPTS = {"patch2": PATCH2, "patch3": PATCH3, "save2": SAVE2, "save3": SAVE3,
           "save3_get": SAVE3_GET,
           "delete2": DELETE2, "delete3": DELETE3, "range2": RANGE2, "range3_get": RANGE3_GET,
           "range3_mget": RANGE3_MGET, "range3_num": RANGE3_NUM, "range3_set": RANGE3_SET,
           "bulk2": BULK2, "bulk3": BULK3, "range2_rows": RANGE2_ROWS, "range3_rows": RANGE3_ROWS,
           "range3_rows_set": RANGE3_ROWS_SET, "check": CHECK}


def idkey(id: str) -> bytes:
    return sortable.id_key(id)


def format3(stored: bytes, recent: bytes) -> bytes:
    """A format-2 document string and its meta hash's "r", in format 3 (see bench_layouts)."""
    end = stored.index(b"\x00", 1)
    return b"\x01" + stored[1:end] + b"\x00" + recent[:16] + recent[32:] + b"\x00" \
        + stored[end + 1:]


def build(r: redis.Redis, url: str, n: int) -> None:
    """The ORM's documents (format 2) and their format-3 copy."""
    create_connection("redis", url, name="format3", make_default=True)
    for batch in batches(make_docs(n, max(1, n // 10), seed=1)):
        Person.objects.bulk_create_sync([Person(**d) for d in batch])
    pipe = r.pipeline(transaction=False)
    for i in range(1, n + 1):
        pipe.get(f"{TAG2}d:{i}")
        pipe.hget(f"{TAG2}m:{i}", "r")
    got = pipe.execute()
    pipe = r.pipeline(transaction=False)
    for i in range(1, n + 1):
        pipe.set(f"{TAG3}d:{i}", format3(got[2 * i - 2], got[2 * i - 1]))
    for name in [*(f"i:{x}" for x in INDEXES), "ids", "state"]:
        pipe.restore(TAG3 + name, 0, r.dump(TAG2 + name), replace=True)
    pipe.execute()


def check(r: redis.Redis, sha: dict[str, str], n: int) -> None:
    bad: list[bytes] = []
    for start in range(1, n + 1, 200):
        bad += r.evalsha(sha["check"], 0, TAG2 + "d:", TAG2 + "m:",
                         *[str(i) for i in range(start, min(n + 1, start + 200))])
    if bad:
        raise SystemExit(f"Lua's entries differ from the meta hash's: {bad[:10]}")
    print(f"check: Lua's entries of name, age, active, tags = the meta hashes' for {n} documents")


def entries(doc: dict[str, Any]) -> list[bytes]:
    """What the client sends a format-3 delete: one packed list per index (name, age,
    active, tags), computed from the loaded document as the fields compute them."""
    return [sortable.pack_list([sortable.encode_str(doc["name"])]),
            sortable.pack_list([sortable.encode_number(doc["age"])]),
            sortable.pack_list([sortable.encode_bool(doc["active"])]),
            sortable.pack_list(sorted({sortable.encode_str(t) for t in doc["tags"]}))]


def loaded(r: redis.Redis, tag: str, ids: list[str]) -> list[tuple[bytes, dict[str, Any]]]:
    """Each document's version and JSON as a load gives them (outside the counted calls)."""
    out = []
    for stored in r.mget([f"{tag}d:{id}" for id in ids]):
        end = stored.index(b"\x00", 1)
        payload = stored[end + 1:]
        if stored[:1] == b"\x01":
            payload = payload[payload.index(b"\x00") + 1:]
        out.append((stored[1:end], json.loads(payload)))
    return out


def calls(op: str, fmt: int, r: redis.Redis, ids: list[str], rng: random.Random
          ) -> list[tuple[list[str | bytes], list[str | bytes]]]:
    """(KEYS, ARGV) of each call; what a client reads first (a load) is read here."""
    tag = TAG2 if fmt == 2 else TAG3
    out: list[tuple[list[str | bytes], list[str | bytes]]] = []
    if op in ("patch_int", "patch_str"):
        field = "age" if op == "patch_int" else "name"
        for id in ids:
            if field == "age":
                value = rng.randrange(100)
                text, entry = str(value).encode(), sortable.encode_number(value)
            else:
                value_s = f"name{rng.randrange(1000):06d}"
                text, entry = json.dumps(value_s).encode(), sortable.encode_str(value_s)
            out.append(([f"{tag}d:{id}", f"{tag}m:{id}", f"{tag}i:{field}", f"{tag}x",
                         f"{tag}state"],
                        ["%016x" % rng.getrandbits(64), f'"{field}":', text, entry, idkey(id),
                         f"f:{field}"]))
    elif op in ("save", "save_get"):
        for id, (version, doc) in zip(ids, loaded(r, tag, ids), strict=True):
            old = sortable.encode_number(doc["age"])
            doc["age"] = (doc["age"] + 1 + rng.randrange(98)) % 100
            out.append(([f"{tag}d:{id}", f"{tag}m:{id}", f"{tag}i:age", f"{tag}x",
                         f"{tag}state"],
                        ["%016x" % rng.getrandbits(64), version,
                         json.dumps(doc, separators=(",", ":")).encode(),
                         sortable.encode_number(doc["age"]), idkey(id), "f:age", old]))
    elif op == "delete":
        for id, (version, doc) in zip(ids, loaded(r, tag, ids), strict=True):
            out.append(([f"{tag}d:{id}", f"{tag}m:{id}", f"{tag}ids", f"{tag}x",
                         *(f"{tag}i:{x}" for x in INDEXES)],
                        [version, idkey(id), *(entries(doc) if fmt == 3 else [])]))
    elif op == "bulk100":  # (ids past the loaded ones, the same in both copies)
        for k, id in enumerate(ids):
            docs = make_docs(100, 200, seed=k)
            keys: list[str | bytes] = []
            argv: list[str | bytes] = [str(1796633094290888 + 1000 * k)]
            for j, doc in enumerate(docs):
                new = f"{id}-{j}"
                keys += [f"{tag}d:{new}", f"{tag}m:{new}"]
                doc = {**doc, "created_at": doc["created_at"].isoformat()}
                argv += [idkey(new), json.dumps(doc, separators=(",", ":")).encode(),
                         "%016x" % rng.getrandbits(64)]
                if fmt == 2:
                    argv.append(b"".join(wire.item(x) for x in (
                        b"f:name", sortable.pack_list([sortable.encode_str(doc["name"])]),
                        b"f:age", sortable.pack_list([sortable.encode_number(doc["age"])]),
                        b"f:active", sortable.pack_list([sortable.encode_bool(doc["active"])]),
                        b"f:tags", sortable.pack_list(
                            sorted({sortable.encode_str(t) for t in doc["tags"]})))))
            out.append((keys, argv))
    else:  # range600, rows600
        out = [([f"{tag}ids", f"{tag}i:age"],
                [f"{tag}d:", f"{tag}m:", sortable.encode_number(18),
                 sortable.encode_number(48), "18", "48"])] * len(ids)
    return out


SIDES = {"patch_int": ("patch2", "patch3"), "patch_str": ("patch2", "patch3"),
         "save": ("save2", "save3"), "save_get": ("save2", "save3_get"),
         "delete": ("delete2", "delete3"), "bulk100": ("bulk2", "bulk3"),
         "range600": ("range2", "range3_get", "range3_mget", "range3_num", "range3_set"),
         "rows600": ("range2_rows", "range3_rows", "range3_rows_set")}


def compare(r: redis.Redis, n: int) -> None:
    """Both copies end alike: the same index entries, the same documents (but versions)."""
    for name in INDEXES + ("ids",):
        a, b = r.zrange(f"{TAG2}i:{name}" if name != "ids" else f"{TAG2}ids", 0, -1), \
            r.zrange(f"{TAG3}i:{name}" if name != "ids" else f"{TAG3}ids", 0, -1)
        if a != b:
            raise SystemExit(f"index {name} differs between the copies")
    for i in range(1, n + 1):
        a, b = r.get(f"{TAG2}d:{i}"), r.get(f"{TAG3}d:{i}")
        if (a is None) != (b is None):
            raise SystemExit(f"document {i} exists in one copy only")
        if a is not None:
            assert b is not None
            pa = a[a.index(b"\x00", 1) + 1:]
            pb = b[b.index(b"\x00", b.index(b"\x00", 1) + 1) + 1:]
            if pa != pb:
                raise SystemExit(f"document {i} differs between the copies")
    print("compare: both copies hold the same index entries and documents")


def kinds(url: str, count: int, seed: int = 5) -> None:
    """Lua's ``entry_of`` against Python's encoders on random values of the kinds it derives
    (ints of up to 60 digits, str with quotes, backslashes, control characters, NUL and
    non-ASCII, bools, null), each as the ORM's JSON codec writes it: every entry Lua gives
    must be Python's; where it gives none (a string with an escape) the caller falls back."""
    r, rng = redis.Redis.from_url(url), random.Random(seed)
    alphabet = ['"', "\\", "\n", "\x00", "\x1f", "a", "Z", "0", " ", "é", "€", "😀", "/", "'"]
    values: list[Any] = []
    for _ in range(count):
        pick = rng.random()
        if pick < 0.45:
            digits = rng.randint(1, 60)
            value = rng.randrange(10 ** (digits - 1), 10 ** digits) * 10 ** rng.choice([0, 0, 1, 3])
            values.append(rng.choice([value, -value, 0]))
        elif pick < 0.9:
            values.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))))
        else:
            values.append(rng.choice([True, False, None]))
    src = DERIVE + "local out = {} for i, t in ipairs(ARGV) do out[i] = entry_of(t) or false end " \
        "return out"
    same = fallback = 0
    for start in range(0, len(values), 500):
        chunk = values[start:start + 500]
        got = r.eval(src, 0, *[jsoncodec.encode(v) for v in chunk])
        for value, entry in zip(chunk, got, strict=True):
            if value is None:
                want = sortable.NULL
            elif isinstance(value, bool):
                want = sortable.encode_bool(value)
            elif isinstance(value, int):
                want = sortable.encode_number(value)
            else:
                want = sortable.encode_str(value)
            if entry is None:
                fallback += 1
            elif entry != want:
                raise SystemExit(f"Lua's entry of {value!r} is {entry!r}, Python's {want!r}")
            else:
                same += 1
    print(f"kinds: {same} of {count} random values derived by Lua exactly as Python encodes "
          f"them, {fallback} left to the fallback (strings with an escape), none different")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument("--port", type=int)
    parser.add_argument("--kinds", type=int, metavar="N",
                        help="only check Lua's entries against Python's on N random values, "
                        "on the server at $REDIS_URL (no callgrind)")
    parser.add_argument("--ops",
                        default="patch_int,patch_str,save,save_get,bulk100,range600,rows600,delete")
    args = parser.parse_args()
    if args.kinds:
        kinds(os.environ["REDIS_URL"], args.kinds)
        return
    ops = args.ops.split(",")
    counts: dict[tuple[str, str], list[float]] = {}
    rng = random.Random(3)
    pool = [str(i) for i in range(1, args.n + 1)]
    rng.shuffle(pool)  # (a delete's ids are used once: taken from the end)
    with tempfile.TemporaryDirectory(prefix="qorm-format3-") as work:
        port = args.port or free_port()
        with callgrind_server(port, work) as (url, pid):
            r = redis.Redis.from_url(url)
            build(r, url, args.n)
            sha = {name: r.script_load(source) for name, source in SCRIPTS.items()}
            check(r, sha, args.n)
            for op in ops:
                for rep in range(args.reps):
                    many = args.calls if not op.endswith("600") else max(3, args.calls // 15)
                    warm = args.warm if not op.endswith("600") else 2
                    if op == "bulk100":  # (100 documents per call: per document below)
                        many, warm = max(3, args.calls // 15), 2
                    size = warm + many
                    ids = [pool.pop() for _ in range(size)] if op == "delete" \
                        else rng.sample(pool, size)
                    if op == "bulk100":  # (new ids: "b<rep>-<k>-<j>")
                        ids = [f"b{rep}-{k}" for k in range(size)]
                    seed = rng.getrandbits(32)
                    sides = SIDES[op] if rep % 2 == 0 else SIDES[op][::-1]
                    for script in sides:
                        fmt = 2 if script.endswith("2") or script.startswith("range2") else 3
                        made = calls(op, fmt, r, ids, random.Random(seed))
                        replies = []
                        for k, (keys, argv) in enumerate(made):
                            if k == warm:
                                subprocess.run(["callgrind_control", "-z", str(pid)],
                                               check=True, capture_output=True)
                            replies.append(r.evalsha(sha[script], len(keys), *keys, *argv))
                        label = f"{op}-{script}-{rep}"
                        subprocess.run(["callgrind_control", f"--dump={label}", str(pid)],
                                       check=True, capture_output=True)
                        per = dumped_instructions(work, label) / many
                        if op == "bulk100":
                            per /= 100
                        counts.setdefault((op, script), []).append(per)
                        oks = {str(x[0] if isinstance(x, list) else x) for x in replies}
                        unit = "document" if op == "bulk100" else "call"
                        print(f"{label}: {per:,.0f} instructions per {unit}; replies {oks}",
                              flush=True)
            compare(r, args.n)
    print(f"\n{args.n} documents, {args.calls} calls per block ({max(3, args.calls // 15)} "
          f"for the 600-candidate tests and the bulk's calls of 100 documents, reported per "
          f"document), {args.reps} repeats "
          "(median [min - max] instructions per call):")
    for op in ops:
        base = None
        for script in SIDES[op]:
            values = counts[(op, script)]
            med = statistics.median(values)
            base = base or med
            print(f"  {op:<10} {script:<12} {med:>11,.0f}  [{min(values):,.0f} - "
                  f"{max(values):,.0f}]  {med / base:.3f}x  {med - base:+,.0f}")
    sys.stdout.flush()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
