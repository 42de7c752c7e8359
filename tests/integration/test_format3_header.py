"""Format 3's header helpers (``bench/format3.md``, step 3's base): ``header_of`` and
``written_in`` in ``lua/_prelude.lua``, ``headed`` in ``lua/_write.lua``, and their Python
counterparts ``stored.header`` and ``writeids.version_in_header``, run against each other
on a real server: what Lua writes, both read alike; what one refuses, the other does."""

from __future__ import annotations

import random

import pytest
import redis

from quantumorm.backends.redis import stored, writeids
from quantumorm.backends.redis.commands import _part
from quantumorm.backends.redis.luachunks import prune

# ARGV: op, then its arguments; header_of's false/nil come back as "bad"/"none"
BODY = """
local op = ARGV[1]
if op == "read" then
  local version, w, start = header_of(ARGV[2])
  if version == nil then return "none" end
  if version == false then return "bad" end
  return {version, w, string.sub(ARGV[2], start)}
elseif op == "written" then
  local version, w = header_of(ARGV[2])
  local found = written_in(w, version, ARGV[3])
  return found and string.format("%.0f", found) or false
else  -- "headed": shown, write_id, payload, [old stored value]
  local old_version, old_w = nil, nil
  if ARGV[5] then old_version, old_w = header_of(ARGV[5]) end
  return headed(ARGV[2], ARGV[3], ARGV[4], old_version, old_w)
end
"""
SCRIPT = prune([_part("_prelude"), _part("_write")], BODY) + BODY


def run(client: redis.Redis, *args: bytes | str) -> object:
    return client.eval(SCRIPT, 0, *args)


def ids(rng: random.Random, n: int) -> list[bytes]:
    return [b"%016x" % rng.getrandbits(64) for _ in range(n)]


def test_writes_chain_their_recent_ids_as_both_sides_read_them(
        redis_client: redis.Redis) -> None:
    rng = random.Random(7)
    value: bytes | None = None
    history: list[tuple[bytes, int]] = []
    for n, write_id in enumerate(ids(rng, 9)):
        version = 1_000_000 + 17 * n + (10**15 if n > 4 else 0)  # (a long version too)
        args: list[bytes | str] = ["headed", str(version), write_id, b'{"n": %d}' % n]
        if value is not None:
            args.append(value)
        value = run(redis_client, *args)  # type: ignore[assignment]
        assert isinstance(value, bytes)
        history.insert(0, (write_id, version))
        held = stored.header(value)
        assert held is not None and held[0] == version and held[2] == b'{"n": %d}' % n
        assert len(held[1]) == 16 + 32 * min(n, 3)  # (RECENT = 4 writes kept)
        assert run(redis_client, "read", value) == [str(version).encode(), held[1], held[2]]
        for k, (old_id, old_version) in enumerate(history):
            want = old_version if k < 4 else None
            assert writeids.version_in_header(held[1], version, old_id) == want
            lua = run(redis_client, "written", value, old_id)
            assert lua == (str(want).encode() if want else None)
    assert stored.split(value)[0] == version and stored.payload(value) == b'{"n": 8}'


def test_an_empty_w_holds_no_write_and_the_next_write_starts_it(
        redis_client: redis.Redis) -> None:
    restamped = b"\x0142\x00\x00{}"
    assert stored.header(restamped) == (42, b"", b"{}")
    assert run(redis_client, "read", restamped) == [b"42", b"", b"{}"]
    assert run(redis_client, "written", restamped, b"0" * 16) is None
    assert writeids.version_in_header(b"", 42, b"0" * 16) is None
    after = run(redis_client, "headed", "43", b"a" * 16, b"{}", restamped)
    assert after == b"\x0143\x00" + b"a" * 16 + b"\x00{}"


@pytest.mark.parametrize("value", [
    b"\x01", b"\x0112", b"\x0112\x00" + b"a" * 16, b"\x01\x00\x00{}", b"\x0101\x00\x00{}",
    b"\x01+1\x00\x00{}", b"\x01 1\x00\x00{}", b"\x011a\x00\x00{}",
    b"\x011\x00" + b"a" * 15 + b"\x00{}", b"\x011\x00" + b"a" * 17 + b"\x00{}",
    b"\x011\x00" + b"A" * 16 + b"\x00{}", b"\x011\x00" + b"a" * 16 + b"g" * 32 + b"\x00{}",
    b"\x011\x00" + b"a" * 48 + b"1" + b"\x00{}",
    # (an older write's version: 16 digits, not all zero; the header's: at most 16 digits)
    b"\x012\x00" + b"a" * 32 + b"000000000000001a" + b"\x00{}",
    b"\x012\x00" + b"a" * 32 + b"0" * 16 + b"\x00{}",
    b"\x013\x00" + b"a" * 32 + b"1" * 16 + b"b" * 16 + b"abcdef0123456789" + b"\x00{}",
    b"\x01" + b"1" * 17 + b"\x00\x00{}", b"\x01" + b"9" * 17 + b"\x00" + b"a" * 16 + b"\x00{}",
])
def test_a_header_that_does_not_read_is_refused_by_both(redis_client: redis.Redis,
                                                       value: bytes) -> None:
    assert run(redis_client, "read", value) == b"bad"
    held = None
    try:
        held = stored.header(value)
        writeids.version_in_header(held[1], held[0], b"0" * 16)  # type: ignore[index]
    except ValueError:
        return
    assert held is None and value[:1] != b"\x01", held  # (both refuse, or it is not one)


@pytest.mark.parametrize("value", [b"", b"{}", b"\x001\x00{}", b"\xff\x00"])
def test_other_formats_are_not_format_3(redis_client: redis.Redis, value: bytes) -> None:
    assert run(redis_client, "read", value) == b"none"
    assert stored.header(value) is None


@pytest.mark.parametrize("value", [
    b"\x012\x00" + b"a" * 32 + b"000000000000001a" + b"\x00{}",
    b"\x012\x00" + b"a" * 32 + b"0" * 16 + b"\x00{}",
])
def test_a_damaged_older_version_is_refused_whichever_write_is_asked(
        redis_client: redis.Redis, value: bytes) -> None:
    # (the newest write's id, the older one's, one not held: every question refused alike,
    # not only the one whose version slot is read)
    for write_id in (b"a" * 16, b"b" * 16, b"c" * 16):
        assert run(redis_client, "read", value) == b"bad"  # (so no script asks written_in)
        held = stored.header(value)
        assert held is not None
        with pytest.raises(ValueError):
            writeids.version_in_header(held[1], held[0], write_id)


def test_a_version_of_16_digits_reads_and_chains_aligned(redis_client: redis.Redis) -> None:
    top = b"9" * 16
    value = b"\x01" + top + b"\x00" + b"a" * 16 + b"\x00{}"
    assert stored.header(value) == (int(top), b"a" * 16, b"{}")
    assert run(redis_client, "read", value) == [top, b"a" * 16, b"{}"]
    after = run(redis_client, "headed", "1" + "0" * 15, b"b" * 16, b"{}", value)
    assert isinstance(after, bytes)
    held = stored.header(after)
    assert held is not None and held[1] == b"b" * 16 + b"a" * 16 + top
    assert writeids.version_in_header(held[1], held[0], b"a" * 16) == int(top)
