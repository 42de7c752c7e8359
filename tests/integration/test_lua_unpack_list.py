"""``_prelude.lua``'s ``unpack_list``: the inverse of ``sortable.pack_list`` inside the
server, with or without a suffix (the id key that makes value encodings index members),
reading each length byte by byte; damaged lists are an error, never a wrong list."""

from __future__ import annotations

import random
from typing import Any

import pytest
import redis

from quantumorm.backends.redis.commands import _lua
from quantumorm.sortable import pack_list

# ARGV[1]: the suffix ("" for none); ARGV[2..]: lists. The reply per list: its items, then
# its items each followed by the suffix (one array of both halves, their count first).
_UNPACK = _lua("_prelude") + r"""
local out = {}
for d = 2, #ARGV do
  local plain, suffixed = unpack_list(ARGV[d]), unpack_list(ARGV[d], ARGV[1])
  local row = {#plain}
  for _, item in ipairs(plain) do row[#row + 1] = item end
  for _, item in ipairs(suffixed) do row[#row + 1] = item end
  out[#out + 1] = row
end
return out
"""


def _lists(rng: random.Random) -> list[list[bytes]]:
    special = [[], [b""], [b"", b""], [b"1:2:3"], [b"9" * 10, b":" * 11], [b"\0\1\xff"],
               [b"x" * 123456]]
    drawn = [[bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 9, 10, 99, 100, 300))))
              for _ in range(rng.randrange(1, 6))] for _ in range(60)]
    return special + drawn


def test_it_reads_back_what_pack_list_wrote(redis_client: Any) -> None:
    lists = _lists(random.Random(12))
    suffix = b"\x01\x2512345"
    replies = redis_client.eval(_UNPACK, 0, suffix, *[pack_list(items) for items in lists])
    for items, row in zip(lists, replies, strict=True):
        assert row[0] == len(items)
        assert row[1:1 + len(items)] == items
        assert row[1 + len(items):] == [item + suffix for item in items]


def test_nil_and_false_are_empty(redis_client: Any) -> None:
    assert redis_client.eval(_lua("_prelude") + r"""
return {#unpack_list(nil), #unpack_list(false), #unpack_list(nil, "x"), #unpack_list("")}
""", 0) == [0, 0, 0, 0]


@pytest.mark.parametrize("damaged", [b"3", b"3x:abc", b":abc", b"a:b", b"-1:", b"12",
                                     b"+3:abc", b" 3:abc", b"5:abc", b"3:abc9:xy",
                                     b"99999999999999999999:abc",
                                     # (the lengths of one and two digits read at once)
                                     b"x:a", b"1x:ab", b"1:", b"12:abc", b"0a:", b":1:a",
                                     b"1:a2:b", b"2:ab:", b"9"])
def test_a_damaged_list_is_an_error(redis_client: Any, damaged: bytes) -> None:
    with pytest.raises(redis.ResponseError, match="damaged list of value encodings"):
        redis_client.eval(_UNPACK, 0, b"", damaged)
