"""The library text of each script (``functions.py``): its name, its flags, and the
per-call state of the shared parts set again at the start of every call."""

from __future__ import annotations

from quantumorm.backends.redis.commands import SCRIPT_NAMES, script
from quantumorm.backends.redis.functions import library


def test_each_script_has_its_own_library_named_by_its_text() -> None:
    names = [library(name).name for name in SCRIPT_NAMES]
    assert len(set(names)) == len(SCRIPT_NAMES)
    for name in SCRIPT_NAMES:
        lib = library(name)
        assert lib.name.startswith("qorm_") and len(lib.name) == len("qorm_") + 20
        assert lib.source.splitlines()[0] == f"#!lua name={lib.name}"
        assert f'function_name = "{lib.name}", callback = call' in lib.source


def test_flags_are_the_scripts_own() -> None:
    assert library("query").source.rstrip().endswith('flags = {"no-writes"}}')
    assert library("delete").source.rstrip().endswith('flags = {"allow-oom"}}')
    assert library("save").source.rstrip().endswith("flags = {}}")
    assert script("save").source.startswith("#!lua\n")


def test_per_call_state_is_set_again_in_each_call() -> None:
    source = library("patch").source
    callback = source[source.index("local function call(keys, args)"):]
    for reset in ("EVENTS = nil", "CLOCK, NEW_LAYOUT = nil, nil", "DEFERRED, DIRTY = false, false",
                  "NOW_MS = nil"):
        assert reset in callback.split("\n-- ", 1)[0]


def test_globals_are_read_per_call_never_at_load() -> None:
    source = library("count").source
    lines = source.splitlines()
    assert lines[1] == "local register_function = redis.register_function"
    assert lines[2].startswith("local function globals_now() return redis, ")
    assert lines[3].startswith("local redis, ")
    callback = source[source.index("local function call(keys, args)"):]
    assert "= globals_now()" in callback.splitlines()[2]
