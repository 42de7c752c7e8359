"""Shared Lua definitions that scripts write out in place on their common paths.

Redis 7.0 makes every function a script defines again on each call (about 1,100 server
instructions each), so the single writes' common paths (insert.lua, save.lua, delete.lua,
patch.lua, and count.lua's layout check) carry copies of shared definitions of
``_prelude.lua`` and ``_write.lua`` instead of calling them, each script's header saying
which. A change to a shared definition must then be made in its copies too: this test keeps
a fingerprint of each copied definition's code (its tokens: comments and blanks do not
count) and fails when one changes, naming the scripts to check. After updating the copies,
update the fingerprint here.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import pytest

from quantumorm.backends.redis import luachunks

#: shared definition -> (the part that defines it, fingerprint, the scripts that copy it)
WRITTEN_OUT = {
    "applied_in": ("_write.lua", "a66736cd4f7a9c88", ("patch.lua",)),
    "state_check": ("_write.lua", "9757ecb98c0e17d1", ("insert.lua", "save.lua", "patch.lua")),
    "layout_refusal": ("_prelude.lua", "1d99e49400fcf184",
                       ("delete.lua", "count.lua", "query.lua")),
    "schedule_and_locks": ("_write.lua", "3f9c6c5242cac58c",
                           ("insert.lua", "save.lua", "delete.lua", "patch.lua")),
    "events_unchecked": ("_write.lua", "4614757a5f6cd029",
                         ("insert.lua", "save.lua", "delete.lua")),
    "typed": ("_write.lua", "0ceb43f2d4329a3f",
              ("insert.lua", "save.lua", "delete.lua", "patch.lua")),
    "take_version_text": ("_write.lua", "0e108269ef38732e",
                          ("insert.lua", "save.lua", "patch.lua")),
    "emit_first": ("_write.lua", "b201106c6a69d733",
                   ("insert.lua", "save.lua", "delete.lua", "patch.lua")),
    "write_clock": ("_write.lua", "177c0946965af09b", ("insert.lua", "save.lua", "patch.lua")),
    "store_taken": ("_write.lua", "9b3a32d4626b19fa", ("insert.lua", "save.lua", "patch.lua")),
    "read_list": ("_prelude.lua", "63d092a06bfd0b63", ("save.lua", "delete.lua")),
    "entries_diff": ("_write.lua", "78d2fc846c79408c", ("save.lua",)),
    "change_entries": ("_write.lua", "b702482144e9939f", ("save.lua", "patch.lua")),
    "proving": ("_write.lua", "6567fda6c7f4547d", ("delete.lua",)),
    "json_plain_span": ("_write.lua", "b4eb92e2b183babd", ("patch.lua",)),
    # format 3's (bench/format3.md, step 3): written out on its own paths, where a function
    # named in cold_paths() would be made whenever a rare path makes them (check_version,
    # _write.lua's, writes header_of and written_in out too)
    "header_of": ("_prelude.lua", "2fee79c786acdcdc", ("save.lua", "delete.lua", "patch.lua")),
    "written_in": ("_prelude.lua", "abdc023ba434ebd6", ("save.lua", "patch.lua")),
    "headed": ("_write.lua", "20df249931b6bb4f", ("save.lua", "patch.lua")),
    "headed_meta": ("_write.lua", "bea96218be3747f5", ("save.lua",)),
    # (query.lua's plain search makes a format-3 candidate's common entries in place, where
    # _derive.lua's definition is made only by the colder tier)
    "derived_entry": ("_derive.lua", "aa37a7e02330e6c2", ("query.lua", "patch.lua")),
    # (query.lua's exact walk, the common query, makes no function: it writes out
    # escaped_id and the script's own helpers, which the rest of the script makes)
    "escaped_id": ("_prelude.lua", "9ed2e2878d0cd8cd", ("query.lua",)),
    "lead_of": ("query.lua", "b5639b4cf52faaf6", ("query.lua",)),
    "ids_of": ("query.lua", "4cc2e21a2e7df090", ("query.lua",)),
    "no_strings": ("query.lua", "94f35a10af7b5fef", ("query.lua",)),
    "escaped_at": ("query.lua", "39349a1814ac477e", ("query.lua",)),
    "doc_keys": ("query.lua", "98a1bfb7df46836a", ("query.lua",)),
}

LUA = resources.files("quantumorm.backends.redis") / "lua"


def fingerprints(part: str) -> dict[str, str]:
    """The fingerprint of each definition of a shared part, by the names it defines."""
    out: dict[str, str] = {}
    text = (LUA / part).read_text()
    if text.startswith("#!"):  # (a script's flags line)
        text = text.partition("\n")[2]
    for chunk in luachunks.split(text):
        code = " ".join(token.text for token in luachunks.tokens(chunk.text))
        for name in chunk.defines:
            out[name] = hashlib.sha256(code.encode()).hexdigest()[:16]
    return out


@pytest.mark.parametrize("name", sorted(WRITTEN_OUT))
def test_a_copied_definition_is_unchanged(name: str) -> None:
    part, expected, copies = WRITTEN_OUT[name]
    got = fingerprints(part).get(name)
    assert got == expected, (
        f"{part}'s {name} changed: {', '.join(copies)} write it out in place on their common "
        f"paths; make the change there too, then set its fingerprint here to {got!r}")


def header(script: str) -> str:
    """A script's opening comments (up to its first line of code), but its ``-- cold:`` lines
    (which name what its rare paths call, not what it writes out)."""
    out = []
    for line in (LUA / script).read_text().splitlines():
        if not line.startswith(("--", "#!")) and line.strip():
            break
        if not line.startswith("-- cold:"):
            out.append(line)
    return "\n".join(out)


@pytest.mark.parametrize("name", sorted(WRITTEN_OUT))
def test_each_copying_script_says_so(name: str) -> None:
    # (each script's header names what it writes out, so a reader of the script knows)
    for script in WRITTEN_OUT[name][2]:
        assert name in header(script), (script, name)


def test_the_fingerprint_sees_code_and_not_comments() -> None:
    source = "local function f(a)\n  return a + 1\nend\n"
    commented = "-- a comment\nlocal function f(a)\n  return a + 1 -- why\nend\n"
    changed = "local function f(a)\n  return a + 2\nend\n"
    code = [" ".join(t.text for t in luachunks.tokens(c.text))
            for text in (source, commented, changed) for c in luachunks.split(text)]
    assert code[0] == code[1] != code[2]


def test_the_exact_walk_of_query_lua_makes_no_function() -> None:
    """query.lua's exact walk (the common query: an equality or a range on one index, its
    rows returned as they are) runs with no function made on its way but ``cold_paths``
    (luachunks.py's, called only on its rare path) and ``answered`` (made only while the
    partition has locks): the top-level statements before it, and it, make none."""
    from quantumorm.backends.redis.commands import script

    body = script("query").source.partition("\n")[2]
    made = []
    for chunk in luachunks.split(body):
        toks = [t.text for t in luachunks.tokens(chunk.text)]
        if toks[:3] == ["cold_paths", "=", "function"] or toks[:3] == ["if", "flagged", "then"]:
            continue
        if "function" in toks:
            made.append(chunk.text.strip().splitlines()[-1 if not toks else 0][:60])
        if toks[0] == "if" and '"WALK"' in toks:  # (the walk: its own text included)
            break
    else:
        raise AssertionError("no exact walk found in query.lua")
    assert made == []
