"""The shared Lua parts cut to what each script uses (backends/redis/luachunks.py).

The splitter must find every top-level statement exactly (long strings and comments, nested
blocks, expressions across lines), keep every statement that does more than define, and
keep each definition that kept code names, transitively and in order. The proof for the
real scripts: compiled with ``luac5.1 -l`` (Redis runs Lua 5.1), a cut script reads no
global that the whole one does not (a dropped definition still in use would be one).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from quantumorm.backends.redis.commands import (
    SCRIPT_NAMES,
    _assemble,
    _lua,
    _part,
    full_source,
    script,
)
from quantumorm.backends.redis.functions import library
from quantumorm.backends.redis.luachunks import (
    COLDER_MAKER,
    LuaSyntaxError,
    cold_names,
    colder_names,
    free_names,
    identifiers,
    needed,
    prune,
    split,
    tokens,
)

LUAC = shutil.which("luac5.1")
#: CI sets QORM_REQUIRE_LUAC=1 (./run-tests installs Debian's lua5.1): there the compiler
#: checks fail, never skip, without luac5.1
needs_luac = pytest.mark.skipif(LUAC is None and os.environ.get("QORM_REQUIRE_LUAC") != "1",
                                reason="luac5.1 not installed (Debian: lua5.1)")

TRICKY = r'''-- a header
-- luacheck: globals redis

local A = 1  -- a trailing comment: goes with A
local B, C = "end", [[
function inside a long string: end end ]]
--[==[ a long comment: local function D() end ]] still in it ]==]
local function E(x)
  if x then
    for i = 1, 2 do x = x + i end
    while false do end
    repeat x = x - 1 until x < 0 or function() end
  elseif x == 0 then
    do return A end
  else
    return {y = B, [C] = function() return "}" end}
  end
  return x
end
local F local G = 2  -- two statements on one line
local H
local function I() return H(1) end
H = function(n) return n .. '\'end\'' end
local J = redis.call("GET", "k")  -- runs: kept
local K = {}
K.x = A  -- not a definition: kept, and A with it
local L = {nested = {1, 2, {3}}, "s"; 4}
do local M = G end
local function N(t) return t.E, t:I() end  -- fields, not identifiers
if G then K.y = 1 end
local O = E
'''


def kept_names(source: str, used: set[str]) -> set[str]:
    chunks = split(source)
    keep = needed(chunks, used)
    return set().union(*(c.defines for c, k in zip(chunks, keep, strict=True) if k))


def test_split_gives_the_text_back_statement_by_statement() -> None:
    chunks = split(TRICKY)
    assert "".join(c.text for c in chunks) == TRICKY
    assert [sorted(c.defines) for c in chunks] == [
        [], ["A"], ["B", "C"], ["E"], ["F"], ["G"], ["H"], ["I"], ["H"], [], ["K"], [],
        ["L"], [], ["N"], [], ["O"]]
    assert chunks[0].text == "-- a header\n-- luacheck: globals redis\n\n"
    assert chunks[1].text == "local A = 1  -- a trailing comment: goes with A\n"
    assert chunks[3].text.startswith("--[==[ a long comment")
    assert chunks[3].text.endswith("  return x\nend\n")
    assert chunks[4].text == "local F"
    assert chunks[9].text.startswith("local J = redis.call")  # (a call: always kept)


def test_statements_that_do_more_than_define_are_kept_with_what_they_use() -> None:
    # nothing used: the call, the field assignment (with A and K), the do block (with G)
    # and the if statement
    assert kept_names(TRICKY, set()) == {"A", "G", "K"}
    out = prune([split(TRICKY)], "")
    assert 'local J = redis.call("GET", "k")' in out
    assert "K.x = A" in out and "do local M = G end" in out and "if G then" in out
    assert "local function E" not in out and "local O" not in out
    # (statements of one line with one left out between them stay apart)
    one_line = "local x = a local y = (2)local z = 3"
    assert prune([split(one_line)], "return x, z") == "local x = a\nlocal z = 3\n"


def test_definitions_are_kept_transitively_and_in_order() -> None:
    assert kept_names(TRICKY, {"O"}) == {"A", "B", "C", "E", "G", "K", "O"}
    # a forward declaration and its later assignment go together
    assert kept_names(TRICKY, {"I"}) == {"A", "G", "K", "H", "I"}
    assert prune([split(TRICKY)], "return I()").split("\n")[3:] == [
        "local A = 1  -- a trailing comment: goes with A",
        " local G = 2  -- two statements on one line",
        "local H",
        "local function I() return H(1) end",
        "H = function(n) return n .. '\\'end\\'' end",
        'local J = redis.call("GET", "k")  -- runs: kept',
        "local K = {}",
        "K.x = A  -- not a definition: kept, and A with it",
        "do local M = G end",
        "if G then K.y = 1 end",
        ""]


def test_fields_strings_and_comments_are_not_uses() -> None:
    assert kept_names(TRICKY, {"N"}) == {"A", "G", "K", "N"}
    assert identifiers(tokens('x.E = y:I() .. "F" -- G\n')) == {"x", "y"}
    assert identifiers(tokens("a..b ... c[d]")) == {"a", "b", "c", "d"}


def test_what_it_cannot_split_is_an_error() -> None:
    with pytest.raises(LuaSyntaxError):
        split("local function f(\n")
    with pytest.raises(LuaSyntaxError):
        split("local x = 1 $")
    with pytest.raises(LuaSyntaxError):
        split("do local x = 1\n")


@needs_luac
def test_the_tricky_text_cut_still_compiles(tmp_path: Path) -> None:
    for used in (set(), {"O"}, {"I"}, {"N"}):
        chunks = split(TRICKY)
        keep = needed(chunks, used)
        path = tmp_path / "cut.lua"
        path.write_text("".join(c.text for c, k in zip(chunks, keep, strict=True) if k))
        subprocess.run([str(LUAC), "-p", str(path)], check=True)


#: shared parts whose cut must not break Lua: a long comment that starts after a statement
#: and spans lines (or sits in the leading comments, with a blank line inside), and ";"
#: after statements that are left out
EDGES = [
    "--[[ a header\n\nwith a blank line ]]\nlocal function unused0() return 0 end\n"
    "local function used() return 1 end\nlocal function other() return 3 end\n",
    "-- head\n\nlocal function used() return 1 end\n"
    "local function unused() return 2 end --[[ a note that\n  runs on ]]\n"
    "local function other() return 3 end\n",
    "local function used() return 1 end; local function unused() return 2 end;\n"
    "local function unused2() return 3 end;\nlocal function other() return 4 end;\n",
]


@pytest.mark.parametrize("part", EDGES)
def test_a_cut_never_splits_a_comment_nor_leaves_a_lone_semicolon(part: str,
                                                                  tmp_path: Path) -> None:
    chunks = split(part)
    assert "".join(c.text for c in chunks) == part
    cut = prune([chunks], "return used() + other()\n")
    names = {t.text for t in tokens(cut) if t.kind == "name"}  # (code, not comments)
    assert {"used", "other"} <= names and not names & {"unused0", "unused", "unused2"}
    assert ";;" not in cut.replace(" ", "").replace("\n", "")
    if LUAC is not None or os.environ.get("QORM_REQUIRE_LUAC") == "1":
        path = tmp_path / "cut.lua"
        path.write_text(cut + "return used() + other()\n")
        subprocess.run([str(LUAC), "-p", str(path)], check=True)


@pytest.mark.parametrize("part", ["_prelude", "_write", "_tx", "_derive"])
def test_every_shared_part_splits_back_to_its_text(part: str) -> None:
    assert "".join(c.text for c in _part(part)) == _lua(part)


def test_derive_s_rare_kinds_are_made_only_when_a_call_asks() -> None:
    # (_derive.lua: a script deriving entries makes derived_entry(ies) per call; the rare
    # kinds' helpers only inside cold_paths(), which derived_entry calls for them)
    body = "return derived_entries(ARGV[1], ARGV[2])\n"
    cut = prune([_part("_prelude"), _part("_derive")], body)
    hot, _, maker = cut.partition("\ncold_paths = function()")
    defined = set(re.findall(r"^local function (\w+)", hot, re.M))
    assert {"derived_entry", "derived_entries"} <= defined
    assert not defined & {"derived_rare", "derived_text", "derived_decimal", "derived_number"}
    assert "local function derived_rare" in maker and "derived_rare = derived_rare" in maker
    scalar = prune([_part("_prelude"), _part("_derive")], "return derived_entry(ARGV[1], 'int')")
    assert "derived_entries" not in scalar
    # (with a writer's parts and its own cold names: nothing declared twice, every rare
    # helper made inside the one cold_paths())
    for name in ("patch", "delete", "save", "tx"):
        _, parts, body = _assemble(name)
        if "_derive" in parts:  # (patch.lua derives on its rare paths: its own text)
            cut = script(name).source
        else:
            body += "\nlocal derived = derived_entries(ARGV[1], ARGV[2])\n"
            cut = prune([_part(part) for part in [*parts, "_derive"]], body)
        hot, _, maker = cut.partition("\ncold_paths = function()")
        assert "local function derived_rare" in maker
        assert "local function derived_rare" not in hot


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_a_cut_script_is_the_whole_one_less_unused_definitions(name: str) -> None:
    shebang, parts, body = _assemble(name)
    cut, whole = script(name).source, full_source(name)
    assert cut.startswith(shebang) and cut.endswith(body)
    # its lines are the whole script's, in their order; those of cold_paths() (the rare
    # paths' definitions, moved into it) too, apart
    hot, maker, colder = cut, "", ""
    if "\ncold_paths = function()" in cut:
        hot, _, rest = cut.partition("\ncold_paths = function()")
        maker, _, tail = ("\n" + rest.partition("\n")[2]).partition("\nlocal made = {")
        if "\nlocal made\nmade = {" in maker:  # (colder_paths(), made in the table's constructor)
            maker, _, tail = maker.partition("\nlocal made\nmade = {")
            colder = tail.partition("\n")[2].partition("\nmade.")[0]
            tail = tail.partition("\ncold_paths = function() return made end")[2]
        hot += "\n" + tail.partition("\nreturn made\nend\n")[2]
    for text in (hot, maker, colder):
        lines = iter(whole.splitlines())
        assert all(any(line == other for other in lines) for line in text.splitlines())
    # no definition left out is named in what is kept (checked apart from needed())
    chunks = [c for part in parts for c in _part(part)]
    kept_text = "".join(c.text for c in chunks if c.text in cut) + body
    in_use = identifiers(tokens(kept_text.removesuffix(body))) | free_names(body)
    dropped = [c for c in chunks if c.text not in cut]
    assert all(c.defines and not c.defines & in_use for c in dropped)


def test_the_hot_scripts_keep_what_they_call_and_leave_the_rest() -> None:
    def defined(name: str) -> set[str]:  # (by the shared parts)
        shared = script(name).source.removesuffix(_assemble(name)[2])
        return set(re.findall(r"^local function (\w+)", shared, re.M))

    # (fetch.lua refuses a version that does not read: bad_version() says what reads)
    assert defined("fetch") == {"bad_version", "damaged", "damaged_error"}
    # (count.lua, insert.lua, save.lua and delete.lua write their common paths out in
    # place: what they define is only their rare paths')
    assert defined("count") == set()
    assert "state_check" not in defined("save") and "store_taken" not in defined("save")
    assert {"read_list", "entries_diff", "change_entries", "purge_listed"} <= defined("save")
    # (an insert is insert.lua's: save.lua checks no free id)
    assert "check_version" not in defined("save") and "insert_refusal" in defined("insert")
    assert "patch_json" not in defined("save")  # (an update by id is patch.lua's)
    # (patch.lua writes its common path out in place: state_check() is not among its
    # shared definitions, patch_json() is, for its rare paths)
    assert "patch_json" in defined("patch") and "state_check" not in defined("patch")
    assert "flush_clock" not in defined("save") and "layout_refusal" not in defined("save")
    # (save.lua calls store_taken() itself: store()'s record is not built per call)
    assert "store" not in defined("save") and "next_version" not in defined("save")
    assert "patch_json" not in defined("delete") and "store" not in defined("delete")
    assert "transact" in defined("tx") and "transact" in defined("tx_apply")
    # (query.lua has an emit() of its own, declared before its first use of the name)
    assert "emit" not in defined("query") and "read_list" in defined("query")


def test_a_body_hides_a_shared_name_from_its_own_local_on() -> None:
    assert free_names("local x = f(y)\nlocal function y() return x, y, z end\nw = y") == {
        "f", "y", "z", "w"}
    assert free_names("local function g() return h end\nlocal h = 1") == {"h"}


def globals_read(source: str, tmp_path: Path) -> set[str]:
    path = tmp_path / "script.lua"
    path.write_text(source)
    listing = subprocess.run([str(LUAC), "-l", "-p", str(path)], check=True,
                             capture_output=True, text=True).stdout
    return set(re.findall(r"[GS]ETGLOBAL\s.*; (\S+)", listing))


@needs_luac
@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_a_cut_script_reads_no_global_the_whole_one_does_not(
        name: str, tmp_path: Path) -> None:
    whole = globals_read(full_source(name), tmp_path)
    cut = globals_read(script(name).source, tmp_path)
    assert "redis" in whole | cut or name == "now"
    assert cut <= whole, sorted(cut - whole)


# -- the rare paths' definitions, made by cold_paths() -------------------------------------

LUA = shutil.which("lua5.1")
needs_lua = pytest.mark.skipif(LUA is None and os.environ.get("QORM_REQUIRE_LUAC") != "1",
                               reason="lua5.1 not installed (Debian: lua5.1)")

#: a shared part: HOT is the common path's, RARE and its helper only a rare path's
COLD_PART = '''local COUNT = 0
local function helper(x) COUNT = COUNT + 1; return "rare " .. x end
local function HOT(x) COUNT = COUNT + 1; return "hot " .. x end
local function RARE(x) return helper(HOT(x)) end
local function unused() return 0 end
'''
COLD_BODY = '''-- cold: RARE
local rare
local out = {HOT(1)}
if COUNT == 1 then rare = rare or cold_paths(); out[2] = rare.RARE(2) end
out[3] = COUNT
return out
'''


def top_level_functions(source: str) -> set[str]:
    """The functions a cut script makes on every call (before cold_paths(), if it has one)."""
    hot = source.partition("\ncold_paths = function()")[0]
    return set(re.findall(r"^local function (\w+)", hot, re.M))


def test_cold_definitions_are_made_only_by_cold_paths() -> None:
    cut = prune([split(COLD_PART)], COLD_BODY)
    assert top_level_functions(cut) == {"HOT"}
    assert cut.startswith("local cold_paths ")  # (declared first: shared code may name it)
    maker = cut.partition("\ncold_paths = function()")[2]
    assert "local function RARE(" in maker and "local function helper(" in maker
    assert "unused" not in cut
    assert maker.rstrip().endswith("local made = {RARE = RARE}\ncold_paths = function() "
                                   "return made end  -- (made once per call)\nreturn made\nend")
    # a library makes them all at load: cold_paths() only gathers them
    eager = prune([split(COLD_PART)], COLD_BODY, lazy=False)
    assert top_level_functions(eager) == {"HOT", "RARE", "helper"}
    assert eager.startswith("local cold_paths ")
    assert eager.endswith("\ncold_paths = function() return {RARE = RARE} end\n")


@needs_lua
def test_cold_definitions_run_as_in_place(tmp_path: Path) -> None:
    """The cut text with its rare definitions moved runs as the whole text does (state
    shared through the same upvalue, COUNT)."""
    runs = {}
    for lazy in (True, False):
        path = tmp_path / f"cut{lazy}.lua"
        text = prune([split(COLD_PART)], COLD_BODY, lazy=lazy) + COLD_BODY
        path.write_text(f"local t = (function()\n{text}\nend)()\n"
                        "print(t[1], t[2], t[3])\n")
        runs[lazy] = subprocess.run([str(LUA), str(path)], check=True, capture_output=True,
                                    text=True).stdout
    assert runs[True] == runs[False] == "hot 1\trare hot 2\t3\n"


#: a shared part whose common path names a rare definition on a rare branch of its own
SHARED_COLD_PART = '''local SEEN = 0
local function RARE(x) SEEN = SEEN + 1; return "rare " .. x end
local function OTHER(x) return "other " .. x end
local function HOT(x)
  if x > 1 then return cold_paths().RARE(x) .. " " .. cold_paths().RARE(x) end
  return "hot " .. x
end
'''
SHARED_COLD_BODY = '''-- cold: OTHER
local rare
local out = {HOT(1), HOT(2)}
rare = rare or cold_paths()
out[3] = rare.OTHER(SEEN)
return out
'''


def test_shared_code_may_name_cold_definitions_through_cold_paths() -> None:
    """``cold_paths().X`` in shared code: X is made by cold_paths() (declared before the
    shared parts) and not on every call, even where the body lists no cold name."""
    cut = prune([split(SHARED_COLD_PART)], SHARED_COLD_BODY)
    assert top_level_functions(cut) == {"HOT"}
    maker = cut.partition("\ncold_paths = function()")[2]
    assert "local function RARE(" in maker and "local function OTHER(" in maker
    assert "local made = {OTHER = OTHER, RARE = RARE}" in maker
    alone = prune([split(SHARED_COLD_PART)], "return HOT(2)")
    assert top_level_functions(alone) == {"HOT"} and "local made = {RARE = RARE}" in alone
    assert "OTHER" not in alone


@needs_lua
def test_shared_cold_reads_run_as_in_place(tmp_path: Path) -> None:
    """The same table whoever asks (its state made once per call), lazy or at load."""
    runs = {}
    for lazy in (True, False):
        path = tmp_path / f"shared{lazy}.lua"
        text = prune([split(SHARED_COLD_PART)], SHARED_COLD_BODY, lazy=lazy)
        path.write_text(f"local t = (function()\n{text}{SHARED_COLD_BODY}\nend)()\n"
                        "print(t[1], t[2], t[3])\n")
        runs[lazy] = subprocess.run([str(LUA), str(path)], check=True, capture_output=True,
                                    text=True).stdout
    assert runs[True] == runs[False] == "hot 1\trare 2 rare 2\tother 2\n"


@pytest.mark.parametrize("part, body, message", [
    # the common path uses a name listed cold: it would be nil there
    ("local function A() return 1 end\nlocal function B() return A() end\n",
     "-- cold: A\nreturn B()", "common path"),
    ("local function A() return 1 end\n", "-- cold: Z\nreturn A()", "common path"),
    # moved, a cold definition would see a local declared after it in place of a global
    ("local function A() return L end\nlocal L = 1\nlocal function B() return L end\n",
     "-- cold: A\nreturn B()", "declared after"),
    ("local A = 1\nlocal function C() return A end\nlocal A = 2\nlocal function B() "
     "return A end\n", "-- cold: C\nreturn B()", "declared twice"),
    # a field read from cold_paths()'s table that no '-- cold:' line lists: a nil call
    ("local function A() return 1 end\nlocal function C() return 2 end\n",
     "-- cold: A\nlocal rare\nrare = rare or cold_paths()\nreturn rare.A() + rare.C()",
     "not listed"),
])
def test_what_cannot_be_moved_into_cold_paths_is_an_error(part: str, body: str,
                                                          message: str) -> None:
    with pytest.raises(LuaSyntaxError, match=message):
        prune([split(part)], body)


def test_the_patch_script_makes_its_rare_paths_definitions_only_when_taken() -> None:
    # (its common paths written out in place, a format-2 document's and a format-3 one's:
    # no shared function made per call but cold_paths(), which would make two dozen more;
    # typed(), header_of, written_in, headed and derived_entry are written out or made by
    # it)
    made = top_level_functions(script("patch").source)
    assert made == set()
    assert not made & {"sweep", "purge", "patch_json", "json_members", "unique_holder",
                       "read_list", "entries_diff", "take_back_entries", "state_check",
                       "patch_json_one", "store_taken", "emit_first"}


def test_a_library_resets_per_call_what_only_its_rare_paths_use() -> None:
    # (a library makes its definitions once; per-call state such as a constant the rare
    # paths read is set again at each call, or one FCALL would see another's)
    source = library("patch").source
    call = source[source.index("local function call(keys, args)"):]
    assert '\nNULL = "\\1\\0"\n' in call  # (NULL: read by the purge and sweep only)


#: per write script: shared definitions its common path makes, and some only a rare path
#: needs (a lock, a taken id, a purge, a unique claim, a refused write, a sweep)
WRITE_SCRIPTS_RARE = {
    "insert": (set(),
               {"lock_holder", "applied", "insert_refusal", "check_version", "purge_listed",
                "unique_holder", "take_back_entries", "change_entries", "sweep",
                "stream_refusal", "index_records", "emit_first", "events_unchecked"}),
    "save": (set(),
             {"lock_holder", "applied", "purge_listed", "unique_holder",
              "take_back_entries", "sweep", "stream_refusal", "index_records", "bad_index",
              "emit_first", "events_unchecked", "read_list", "entries_diff",
              "change_entries"}),
    "delete": (set(),
               {"lock_holder", "purge_listed", "stream_refusal", "index_records",
                "bad_index", "emit_first", "events_unchecked", "read_list", "proving"}),
    "insert_many": ({"state_check", "events_on", "take_version", "flush_clock", "bad_index"},
                    {"applied", "check_version", "purge_listed", "unique_holder", "sweep"}),
}


@pytest.mark.parametrize("name", sorted(WRITE_SCRIPTS_RARE))
def test_the_write_scripts_make_their_rare_paths_definitions_only_when_taken(
        name: str) -> None:
    common, rare = WRITE_SCRIPTS_RARE[name]
    source = script(name).source
    made = top_level_functions(source)
    assert common <= made
    assert not made & rare, sorted(made & rare)
    maker = source.partition("\ncold_paths = function()")[2]
    assert all(f"local function {f}(" in maker for f in rare)


#: helpers the write scripts' common paths do without (in line, or from the cold table on
#: the rare branch that needs them): none is made on every call
IN_LINE = {"type_ok", "versioned", "now_ms", "write_time_ms", "locks_key", "take_version_at",
           "bulk"}


@pytest.mark.parametrize("name", ["insert", "save", "delete"])
def test_the_write_scripts_make_no_helper_their_common_path_does_without(name: str) -> None:
    made = top_level_functions(script(name).source)
    assert not made & IN_LINE, sorted(made & IN_LINE)
    # (their common paths written out in place: no shared function made on every call)
    assert made == set(), sorted(made)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_a_script_reads_from_its_cold_table_only_what_it_returns(name: str) -> None:
    """A name read as ``rare.X`` that cold_paths() does not return would be nil only on
    the rare path that reads it, which few tests take."""
    body = _assemble(name)[2]
    returned = set(cold_names(body)) | ({COLDER_MAKER} if colder_names(body) else set())
    read = set(re.findall(r"\brare\.(\w+)", "\n".join(
        line.partition("--")[0] for line in body.splitlines())))
    assert read <= returned, sorted(read - returned)
    assert not returned or read, "a cold table nobody reads"


def test_colder_names_are_made_only_by_colder_paths() -> None:
    """``-- colder:`` names, and what only they need, are made by one function of the cold
    table (its constructor's), not by cold_paths() itself; what a ``-- cold:`` name or
    the common path needs stays where it was."""
    shared = split("local function a() return 1 end\n"
                   "local function b() return a() end\n"
                   "local function c() return 3 end\n"
                   "local function d() return c() + a() end\n"
                   "local function e() return cold_paths().c() end\n")
    body = "-- cold: b\n-- colder: d e\nlocal rare = cold_paths()\nreturn rare.b()\n"
    assert colder_names(body) == ("d", "e") and cold_names(body) == ("b", "d", "e")
    text = prune([shared], body)
    outer, _, colder = text.partition(f"{COLDER_MAKER} = function()")
    # (a and b: cold; c, d and e: colder only, c read as cold_paths().c by e alone)
    assert "local function a()" in outer and "local function b()" in outer
    assert "local function c()" not in outer and "local function d()" not in outer
    for name in "cde":
        assert f"local function {name}()" in colder and f"made.{name} = {name}\n" in colder
    assert "local made\nmade = {b = b, " in text
    # the body may not read a name it does not list, but colder_paths
    with pytest.raises(LuaSyntaxError):
        cold_names("-- colder: d\nlocal rare = cold_paths()\nreturn rare.x()\n")
    cold_names("-- colder: d\nlocal rare = cold_paths()\nreturn rare.colder_paths().d()\n")
    # without colder names, the text is as it was
    plain = prune([shared], "-- cold: d\nlocal rare = cold_paths()\nreturn rare.d()\n")
    assert COLDER_MAKER not in plain
