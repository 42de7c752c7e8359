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
    # (insert_many.lua keeps all four; patch.lua, insert.lua and save.lua, whose common
    # paths are written out in place, only the change events')
    for name, resets in (("insert_many", ("EVENTS = nil", "CLOCK, NEW_LAYOUT = nil, nil",
                                          "DEFERRED, DIRTY = false, false")),
                         ("patch", ("EVENTS = nil",)), ("save", ("EVENTS = nil",)),
                         ("insert", ("EVENTS = nil",))):
        source = library(name).source
        callback = source[source.index("local function call(keys, args)"):]
        for reset in resets:
            assert reset in callback.split("\n-- ", 1)[0], (name, reset)


def test_globals_are_read_per_call_never_at_load() -> None:
    source = library("count").source
    lines = source.splitlines()
    assert lines[1] == "local register_function = redis.register_function"
    assert lines[2].startswith("local function globals_now() return redis, ")
    assert lines[3].startswith("local redis, ")
    callback = source[source.index("local function call(keys, args)"):]
    assert "= globals_now()" in callback.splitlines()[2]


def test_the_replies_that_say_a_function_is_missing() -> None:
    from redis import exceptions as rx

    from quantumorm.backends.redis.commands import Call
    from quantumorm.backends.redis.reloads import noscript, step_args

    assert noscript(rx.ResponseError("Function not found"))
    assert noscript(rx.NoScriptError("No matching script. Please use EVAL."))
    assert noscript(rx.NoPermissionError(
        "this user has no permissions to run the 'fcall' command"))
    assert noscript(rx.ResponseError("unknown command 'FCALL', with args beginning with: "))
    assert not noscript(rx.ResponseError("WRONGTYPE Operation against a key"))
    assert not noscript(rx.NoPermissionError(
        "this user has no permissions to access one of the keys used as arguments"))
    step = Call("count", ("k",), ("a",))
    assert step_args(step, True, False, True) == ("FCALL_RO", library("count").name, 1, "k", "a")
    assert step_args(step, False, False, False)[0] == "EVALSHA"
    assert step_args(step, False, True, True)[0] == "EVAL"  # (the last resend: the source)


def test_function_load_replies() -> None:
    import pytest
    from redis import exceptions as rx

    from quantumorm.backends.redis.reloads import _loaded

    assert _loaded([b"qorm_1", rx.ResponseError("Library 'qorm_2' already exists"),
                    rx.ReadOnlyError("You can't write against a read only replica.")])
    assert not _loaded([rx.NoPermissionError(
        "this user has no permissions to run the 'function|load' command")])
    assert not _loaded([rx.ResponseError("unknown command 'FUNCTION'")])
    with pytest.raises(rx.ResponseError, match="Error registering functions"):
        _loaded([rx.ResponseError("Error registering functions: ERR user_function:3: x")])
