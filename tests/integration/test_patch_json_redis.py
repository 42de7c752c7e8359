"""``_write.lua``'s shortcut for a patch (``json_plain_spans``): on a document it accepts,
it must find exactly what the general scanner (``json_members``) finds for the patched
keys; documents it cannot prove plain (escapes, brackets inside strings, damage) are left to
the general scanner. Both run inside the server, on documents from Python's encoder."""

from __future__ import annotations

import json
import random
from typing import Any

from quantumorm.backends.redis.commands import _lua

# For each document (ARGV: the number of keys, the quoted keys, then the documents): "-"
# when the shortcut declines it, "=" when it finds what json_members finds (the span of
# each key the object has, the closing brace, whether it has members), else the document.
_COMPARE = _lua("_prelude") + _lua("_write") + r"""
local nkeys = tonumber(ARGV[1])
local given = {}
for i = 1, nkeys do given[i] = {ARGV[1 + i]} end
local out = {}
for d = nkeys + 2, #ARGV do
  local s = ARGV[d]
  local at, close, filled = json_plain_spans(s, given)
  if not at then
    out[#out + 1] = "-"
  else
    local members, mclose = json_members(s)
    local want = {}
    for _, m in ipairs(members) do want[m[1]] = m end
    local same = close == mclose and filled == (#members > 0)
    for _, g in ipairs(given) do
      local a, w = at[g[1]], want[g[1]]
      if (a == nil) ~= (w == nil) or (a and (a[2] ~= w[2] or a[3] ~= w[3])) then
        same = false
      end
    end
    out[#out + 1] = same and "=" or ("differs: " .. s)
  end
end
return out
"""

KEYS = ["age", "name", "tags", "x", "nested"]


def _value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(8 if depth < 3 else 4)
    if kind == 0:
        return rng.randrange(-1000, 1000)
    if kind == 1:
        return rng.choice(["age", "x", "plain", "", "a b", "é", "name:"])
    if kind == 2:
        return rng.choice([True, False, None, 1.5, -2e-7])
    if kind == 3:
        return rng.choice(KEYS)
    if kind in (4, 5):
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(KEYS): _value(rng, depth + 1) for _ in range(rng.randrange(4))}


def _documents(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        doc = {rng.choice(KEYS): _value(rng, 1) for _ in range(rng.randrange(6))}
        compact = rng.random() < 0.7
        out.append(json.dumps(doc, ensure_ascii=False,
                              separators=(",", ":") if compact else (", ", " : ")))
    return out


def _run(redis_client: Any, docs: list[str]) -> list[str]:
    quoted = [json.dumps(key) for key in KEYS]
    replies = redis_client.eval(_COMPARE, 0, len(quoted), *quoted, *docs)
    return [reply.decode() for reply in replies]


def test_the_shortcut_agrees_with_the_general_scanner(redis_client: Any) -> None:
    docs = _documents(12, 400)
    replies = _run(redis_client, docs)
    assert [r for r in replies if r not in ("=", "-")] == []
    assert replies.count("=") > 200  # (most documents take the shortcut)


def test_what_the_shortcut_declines(redis_client: Any) -> None:
    docs = ['{"age":1,"name":"a\\"b"}',  # an escape
            '{"x":["]",1],"age":1}',  # a bracket inside a nested string ends %b early
            '{"x":["[",1],"age":1}',  # ... or late
            '{"x":{"a":"}"},"age":1}',
            '{"x":[1,,2],"age":1}',  # damage inside a nested value
            '{"age":1,"name":"a"',  # damage at the top level
            '{"age":1,}', '{"age" 1}', '{"age":}', '{age:1}',
            '{"age":1} x',  # text after the object
            '{"age":1,"x":{"age":2},"age":3}',  # a key stored twice
            '{"age":1,"x":{"age":2}}',  # a nested key of the same name
            '[{"age":1}]',  # not an object
            '{"age":1}\0,"x":2}', '{"x":1}\0 "age":7}']  # a NUL (cjson reads up to it)
    assert _run(redis_client, docs) == ["-"] * len(docs)


# (patch_json takes each member apart: its key text and its value text, as the client
# sends them)
_PATCH = _lua("_prelude") + _lua("_write") + r"""
local out = patch_json(ARGV[1], {{'"age"', ARGV[2]}}, {"age"})
return out or "refused"
"""


def test_a_patch_refuses_a_document_with_anything_after_its_object(redis_client: Any) -> None:
    """Text after the object is damage (a read refuses the document): the patch refuses
    it too, by the shortcut's path (declined) and the general scanner's alike."""
    for doc in ['{"age":1} x', '{"age":1}\0,"zz":2}', '{"x":"a\\"b","age":1}}']:
        assert redis_client.eval(_PATCH, 0, doc, "2") == b"refused", doc
    assert redis_client.eval(_PATCH, 0, '{"age":1} ', "2") == b'{"age":2} '


def test_nested_keys_names_as_values_and_blanks(redis_client: Any) -> None:
    docs = ['{"x":[{"age":1},{"age":[2]}],"nested":{"name":{"age":0}}}',
            '{"name":"age","x":"age","tags":["age","name"]}',
            '{ "age" : [ 1 , { "x" : 2 } ] , "name" : { } }',
            '{"age":1,"name":"[x}"}',  # (a top-level string ends at its quote)
            '{}', '{ }']
    assert _run(redis_client, docs) == ["="] * len(docs)


_SOLE = _lua("_prelude") + _lua("_write") + r"""
local out = {}
for d = 1, #ARGV do
  local item = sole_item(ARGV[d])
  local ok, items = pcall(unpack_list, ARGV[d])
  if item == nil then
    out[#out + 1] = (ok and #items == 1) and "missed" or "-"
  else
    out[#out + 1] = (ok and #items == 1 and items[1] == item) and "=" or "differs"
  end
end
return out
"""


def test_sole_item_reads_a_list_of_one_as_unpack_list_does(redis_client: Any) -> None:
    """sole_item() (the index move of a scalar field) gives the one value encoding of a
    list of one, and declines every other list, damaged ones included."""
    from quantumorm.sortable import pack_list

    rng = random.Random(5)
    ones = [pack_list([bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 9, 10, 200))))])
            for _ in range(80)]
    others = [pack_list([]), pack_list([b"a", b"b"]), pack_list([b"1:x"] * 2), b"3", b"3x:abc",
              b":abc", b"-1:", b"+3:abc", b" 3:abc", b"5:abc", b"3:abc9:xy", b"0x3:abc",
              b"1e0:a", b"3:ab", b"2:abc", b"0000000000001:a"]
    replies = [r.decode() for r in redis_client.eval(_SOLE, 0, *ones, *others)]
    assert replies == ["="] * len(ones) + ["-"] * len(others)
    assert [r.decode() for r in redis_client.eval(_SOLE, 0, b"01:x", b"3:1:2",
                                                  b"000000000001:a")] == ["=", "=", "="]


_APPLIED = _lua("_prelude") + _lua("_write") + r"""
local v = applied_in(ARGV[1], ARGV[2])
return v and tostring(v) or "nil"
"""


def test_applied_in_finds_a_write_id_only_where_an_entry_starts(redis_client: Any) -> None:
    """A meta hash's "r" is 32-character entries (write id, then version): a write id made
    of digits can also appear inside a version, or across two entries; only an entry's
    own write id counts."""
    a, b = "ab" * 8, "0000000000000777"
    recent = a + "0000000000000777" + b + "0000000000000042"
    assert redis_client.eval(_APPLIED, 0, recent, a) == b"777"
    assert redis_client.eval(_APPLIED, 0, recent, b) == b"42"  # (not the version at 17)
    assert redis_client.eval(_APPLIED, 0, "x" + recent[:63], b) == b"nil"
    assert redis_client.eval(_APPLIED, 0, recent[:40], b) == b"nil"  # (an entry cut short)
    assert redis_client.eval(_APPLIED, 0, "", a) == b"nil"
    assert redis_client.eval(_APPLIED, 0, recent, a[:15]) == b"nil"
