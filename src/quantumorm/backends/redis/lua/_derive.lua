-- _derive.lua: a document's index entries made in Lua from its stored JSON (format 3's plan,
-- bench/format3.md section 3), the same bytes as Python's encoders (sortable.py, the fields'
-- index_keys) or none at all. A script includes it with "-- uses: _derive" (after _prelude,
-- whose NULL it uses): patch.lua and expire.lua, for format-3 documents (step 3).
--
-- The input is the raw JSON text of one top-level member value as stored (the bytes between
-- '"name":' and the next delimiter, as patch.lua's plain search or json_members finds
-- them), and the kind of its field: the code quantumorm/backends/redis/derived.py gives
-- (derivation()). The answer is the entry Python's encoder makes of the value that text
-- reads as (json, then the field's loader), or nil: "not derivable here, fall back". Never
-- another entry: a text is read only in the forms Python writes for that kind, and a few
-- that every reader reads alike (blanks between an array's strings, "-00:00" for UTC, a
-- Decimal's leading zeros); anything else ("1.0" or "01" for an int, "Z" for an offset, a
-- lone surrogate, an unknown escape...) is nil, as are "null" elements of an array and
-- numbers out of the encodable range. One exception, for the cost of a search per call:
-- the bytes of a string without escapes are not checked for what the ORM never writes and
-- its reads refuse as damage (invalid UTF-8, a raw control character: Python's json reads
-- neither), and are taken as they are (in an escaped string, raw control characters are
-- refused).
--
-- Kinds: "bool", "int" (any size: digits as text, never a Lua number), "str" (a string's
-- UTF-8; escapes decoded exactly, NUL as "\0\255"), "uuid" (a str in canonical lowercase
-- form only), "date" ("YYYY-MM-DD"), "datetime" (isoformat: its UTC instant, for any offset
-- of whole minutes), "number" (a float's repr: any JSON number), "decimal" (str(Decimal) in
-- a JSON string), "enum" (a string, true/false or a number, each as above), and "[" followed
-- by one of those: an array, one entry per distinct element. "null" is NULL for every kind.
-- luacheck: globals redis cjson cold_paths NULL

-- The rare kinds' helpers below are made only by cold_paths() (luachunks.py) in a script
-- whose common path does not need them: derived_entry() itself handles null, booleans,
-- ints and strings without escapes, and asks cold_paths().derived_rare for the rest.

-- sortable.encode_number of the number -0.<digits> * 10^position (``negative``) or
-- 0.<digits> * 10^position: ``digits`` starts with 1-9; ``position`` an integer (exact in
-- a double: every caller bounds it far below 2^53). nil out of the encodable range.
local function derived_number(negative, digits, position)
  local biased = position + 5000000000
  if biased < 0 or biased >= 10000000000 then return nil end
  local last = #digits
  while string.byte(digits, last) == 48 do last = last - 1 end  -- (trailing zeros dropped)
  local body = string.format("%010d", biased) .. string.sub(digits, 1, last)
  if negative then  -- (digits flipped: sortable._DIGIT_FLIP; the table made only here)
    return "\16" .. (string.gsub(body, "%d", {["0"] = "9", ["1"] = "8", ["2"] = "7",
      ["3"] = "6", ["4"] = "5", ["5"] = "4", ["6"] = "3", ["7"] = "2", ["8"] = "1",
      ["9"] = "0"})) .. "~\0"
  end
  return "\24" .. body .. "\0"
end

-- encode_number(Decimal(text)) of a number's text: -?digits(.digits)?([eE][+-]?digits)?
-- (a JSON number, or a Decimal's str: leading zeros are read as Decimal reads them).
-- The exponent is read as a Lua number only up to 11 digits (exact); longer is nil.
local function derived_decimal(t)
  local sign, whole, rest = string.match(t, "^(%-?)(%d+)(.*)$")
  if not whole then return nil end
  local fraction, exponent = "", 0
  if rest ~= "" then
    local f, after = string.match(rest, "^%.(%d+)(.*)$")
    if f then fraction, rest = f, after end
    if rest ~= "" then
      local e = string.match(rest, "^[eE]([%+%-]?%d+)$")
      if not e or #e > 12 then return nil end
      exponent = tonumber(e)
    end
  end
  local digits = whole .. fraction
  local first = string.find(digits, "[1-9]")
  if not first then return "\20\0" end  -- (zero, of either sign)
  digits = string.sub(digits, first)
  return derived_number(sign == "-", digits, #digits + exponent - #fraction)
end

-- the string a JSON string's text (quotes included) reads as, or nil: not one string, a
-- raw control character, an escape JSON has not, a lone surrogate
local function derived_text(t)
  local n = #t
  if n < 2 or string.byte(t, 1) ~= 34 or string.byte(t, n) ~= 34 then return nil end
  local out, k, pos, escapes = {}, 0, 2, nil
  while true do
    local at = string.find(t, '[%z\1-\31"\\]', pos)
    if at == n then
      out[k + 1] = string.sub(t, pos, n - 1)
      return table.concat(out)
    end
    if not at or string.byte(t, at) ~= 92 then return nil end
    k = k + 1
    out[k] = string.sub(t, pos, at - 1)
    local c = string.sub(t, at + 1, at + 1)
    if c == "u" then
      local hex = string.match(t, "^%x%x%x%x", at + 2)
      if not hex then return nil end
      local code = tonumber(hex, 16)
      pos = at + 6
      if code >= 0xD800 and code <= 0xDBFF then  -- (a pair: one code point)
        local low = string.match(t, "^\\u(%x%x%x%x)", pos)
        low = low and tonumber(low, 16)
        if not low or low < 0xDC00 or low > 0xDFFF then return nil end
        code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
        pos = pos + 6
      elseif code >= 0xDC00 and code <= 0xDFFF then
        return nil
      end
      k = k + 1
      if code < 0x80 then
        out[k] = string.char(code)
      elseif code < 0x800 then
        out[k] = string.char(0xC0 + math.floor(code / 64), 0x80 + code % 64)
      elseif code < 0x10000 then
        out[k] = string.char(0xE0 + math.floor(code / 4096), 0x80 + math.floor(code / 64) % 64,
                             0x80 + code % 64)
      else
        out[k] = string.char(0xF0 + math.floor(code / 262144),
                             0x80 + math.floor(code / 4096) % 64,
                             0x80 + math.floor(code / 64) % 64, 0x80 + code % 64)
      end
    else
      escapes = escapes or {['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f",
                            n = "\n", r = "\r", t = "\t"}
      local e = escapes[c]
      if not e then return nil end
      k = k + 1
      out[k] = e
      pos = at + 2
    end
  end
end

-- the number of days of the month ``m`` of the year ``y`` (numbers)
local function derived_days(y, m)
  if m == 2 then return (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) and 29 or 28 end
  if m == 4 or m == 6 or m == 9 or m == 11 then return 30 end
  return 31
end

-- whether year, month and day (texts of digits) make a date Python has (datetime.date)
local function derived_day(y, m, d)
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  return y >= 1 and m >= 1 and m <= 12 and d >= 1 and d <= derived_days(y, m)
end

-- The entry of every kind and text derived_entry() does not answer on its own.
local function derived_rare(t, kind)
  local b = string.byte(t, 1)
  if kind == "enum" then  -- (by the value's JSON type, as EnumField.sort_key)
    if b == 34 then kind = "str"
    elseif b == 116 or b == 102 then kind = "bool"
    else kind = "number" end
  end
  if kind == "bool" then
    if t == "true" then return "\3\0" end
    return t == "false" and "\2\0" or nil
  elseif kind == "str" then
    local s = derived_text(t)
    return s and " " .. (string.gsub(s, "%z", "\0\255")) .. "\0"
  elseif kind == "number" then
    -- (a JSON number: no leading zero before other digits, as json reads one)
    local whole = string.match(t, "^%-?(%d+)")
    if not whole or #whole > 1 and string.byte(whole, 1) == 48 then return nil end
    return derived_decimal(t)
  elseif kind == "decimal" then
    local text = string.match(t, '^"(%-?%d+[%.%deE%+%-]*)"$')
    return text and derived_decimal(text)
  elseif kind == "uuid" then
    if not string.find(t, '^"%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-'
                          .. '%x%x%x%x%x%x%x%x%x%x%x%x"$')
        or string.find(t, "[A-F]") then
      return nil
    end
    return " " .. string.sub(t, 2, -2) .. "\0"
  elseif kind == "date" then
    local y, m, d = string.match(t, '^"(%d%d%d%d)%-(%d%d)%-(%d%d)"$')
    if not y or not derived_day(y, m, d) then return nil end
    return "\49" .. y .. m .. d .. "\0"
  elseif kind == "datetime" then
    local y, m, d, hh, mm, ss, rest = string.match(
      t, '^"(%d%d%d%d)%-(%d%d)%-(%d%d)T(%d%d):(%d%d):(%d%d)(.*)$')
    if not y or not derived_day(y, m, d) or tonumber(hh) > 23 or tonumber(mm) > 59
        or tonumber(ss) > 59 then
      return nil
    end
    if rest == '+00:00"' then  -- (UTC: the common form, its digits as they are)
      return "\48" .. y .. m .. d .. hh .. mm .. ss .. "000000\0"
    end
    local micro, sign, oh, om = string.match(rest, '^(%.?%d*)([%+%-])(%d%d):(%d%d)"$')
    if not micro or micro ~= "" and (#micro ~= 7 or string.byte(micro, 1) ~= 46)
        or tonumber(oh) > 23 or tonumber(om) > 59 then
      return nil
    end
    micro = #micro == 7 and string.sub(micro, 2) or "000000"
    if oh == "00" and om == "00" then
      return "\48" .. y .. m .. d .. hh .. mm .. ss .. micro .. "\0"
    end
    -- (the UTC instant, as astimezone makes it: the offset taken from the local minutes,
    -- a day at most carried to the date; out of the years 1-9999 Python refuses the
    -- value, never stored)
    local offset = tonumber(oh) * 60 + tonumber(om)
    local minutes = tonumber(hh) * 60 + tonumber(mm) + (sign == "+" and -offset or offset)
    local year, month, day = tonumber(y), tonumber(m), tonumber(d)
    if minutes < 0 then
      minutes, day = minutes + 1440, day - 1
      if day < 1 then
        month = month - 1
        if month < 1 then month, year = 12, year - 1 end
        day = derived_days(year, month)
      end
    elseif minutes >= 1440 then
      minutes, day = minutes - 1440, day + 1
      if day > derived_days(year, month) then
        day, month = 1, month + 1
        if month > 12 then month, year = 1, year + 1 end
      end
    end
    if year < 1 or year > 9999 then return nil end
    return "\48" .. string.format("%04d%02d%02d%02d%02d", year, month, day,
                                   math.floor(minutes / 60), minutes % 60)
           .. ss .. micro .. "\0"
  end
  return nil
end

-- The entry of one value's text ``t`` of the kind ``kind`` (a scalar kind: not "[..."), or
-- nil. Null, booleans, ints and strings without escapes (an enum's too) here, the rest in
-- derived_rare (made only when asked).
local function derived_entry(t, kind)
  local b = string.byte(t, 1)
  if b == 110 then return t == "null" and NULL or nil end
  if b == 34 and (kind == "str" or kind == "enum") then
    -- (two plain searches: the first quote after the opening one ends the text, and no
    -- backslash; raw control characters are not looked for here, see the top)
    local n = #t
    if n >= 2 and string.find(t, '"', 2, true) == n and not string.find(t, "\\", 2, true) then
      return " " .. string.sub(t, 2, n - 1) .. "\0"
    end
  elseif kind == "bool" then
    if t == "true" then return "\3\0" end
    return t == "false" and "\2\0" or nil
  elseif kind == "int" then
    local digits, c = t, b
    if b == 45 then
      digits = string.sub(t, 2)
      c = string.byte(digits, 1)
    end
    if not c or c < 49 or c > 57 or not string.find(digits, "^%d+$") then
      return t == "0" and "\20\0" or nil
    end
    -- (the exponent's 10 digits: 5000000000 + the number of digits, as string.char
    -- below 10 digits (sprintf costs more); trailing zeros dropped)
    local n = #digits
    local last = n
    while string.byte(digits, last) == 48 do last = last - 1 end
    if last < n then digits = string.sub(digits, 1, last) end
    if b == 45 then  -- (every digit flipped: the exponent's as 4999999999 - n, the others
      -- by a table made only for a negative int)
      return "\16" .. (n < 10 and "499999999" .. string.char(57 - n)
                       or string.format("%010d", 4999999999 - n))
             .. (string.gsub(digits, "%d", {["0"] = "9", ["1"] = "8", ["2"] = "7",
                 ["3"] = "6", ["4"] = "5", ["5"] = "4", ["6"] = "3", ["7"] = "2",
                 ["8"] = "1", ["9"] = "0"})) .. "~\0"
    end
    return "\24" .. (n < 10 and "500000000" .. string.char(48 + n)
                     or string.format("%010d", 5000000000 + n)) .. digits .. "\0"
  end
  return cold_paths().derived_rare(t, kind)
end

-- The entries of a value's text ``t`` of the kind ``kind``: a list, one entry per distinct
-- element for an array kind ("[" then the element's kind; {NULL} for "null", {} for "[]"),
-- else the one entry derived_entry gives; nil where any of them is not derived.
local function derived_entries(t, kind)
  if string.byte(kind, 1) ~= 91 then
    local e = derived_entry(t, kind)
    return e and {e}
  end
  if t == "null" then return {NULL} end
  local n = #t
  if string.byte(t, 1) ~= 91 or string.byte(t, n) ~= 93 then return nil end
  local element, out, seen, count, pos = string.sub(kind, 2), {}, {}, 0, 2
  if n == 2 then return out end
  if element == "str" and not string.find(t, "\\", 2, true)
      and not string.find(t, "\0", 2, true) then
    -- (no escape, no NUL: cjson reads the whole text, an array, each string as its bytes;
    -- an element of another type is nil)
    local ok, list = pcall(cjson.decode, t)
    if not ok then return nil end
    for i = 1, #list do
      local s = list[i]
      if type(s) ~= "string" then return nil end
      local e = " " .. s .. "\0"
      if not seen[e] then
        seen[e] = true
        count = count + 1
        out[count] = e
      end
    end
    return out
  end
  while true do
    -- (the element's last byte: a string's closing quote, else the byte before the next
    -- comma; each derived element's text holds no comma, bracket or quote of its own, so
    -- the array is exactly "[", the elements with commas between, "]")
    local stop
    if string.byte(t, pos) == 34 then
      local j = pos + 1
      while true do
        local q = string.find(t, '["\\]', j)
        if not q then return nil end
        if string.byte(t, q) == 92 then j = q + 2 else stop = q; break end
      end
    else
      stop = (string.find(t, ",", pos, true) or n) - 1
    end
    local e = stop >= pos and derived_entry(string.sub(t, pos, stop), element)
    if not e or e == NULL then return nil end
    if not seen[e] then
      seen[e] = true
      count = count + 1
      out[count] = e
    end
    if stop == n - 1 then return out end
    if string.byte(t, stop + 1) ~= 44 or stop + 2 >= n then return nil end
    pos = stop + 2
  end
end
