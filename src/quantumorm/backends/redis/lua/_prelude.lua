-- _prelude.lua: shared by every script; commands.py puts it after each script's shebang.
-- luacheck: globals redis

-- the encoding of a null value (quantumorm.sortable.NULL)
local NULL = "\1\0"

-- "len:bytes" repeated (quantumorm.sortable.pack_list) -> list of strings; nil -> {}
local function unpack_list(s)
  local out, pos = {}, 1
  if not s then return out end
  while pos <= #s do
    local colon = string.find(s, ":", pos, true)
    local size = tonumber(string.sub(s, pos, colon - 1))
    out[#out + 1] = string.sub(s, colon + 1, colon + size)
    pos = colon + size + 1
  end
  return out
end

-- the key is absent or holds the wanted type
local function type_ok(key, wanted)
  local t = redis.call("TYPE", key).ok
  return t == "none" or t == wanted
end
