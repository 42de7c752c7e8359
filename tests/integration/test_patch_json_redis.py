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
