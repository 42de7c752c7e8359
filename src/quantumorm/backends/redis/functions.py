"""Scripts as Redis Functions: one library per script, loaded once, called with FCALL.

Redis runs an EVALSHA script's whole text on every call, so each shared ``local function``
the script keeps (``commands.script``) is made again per call. A library's top-level code
runs once, at FUNCTION LOAD; the function it registers keeps those definitions as upvalues.
:func:`library` wraps a script so::

    #!lua name=qorm_<hash>
    local register_function = redis.register_function
    local function globals_now() return redis, string, tonumber end
    local redis, string, tonumber
    local KEYS, ARGV
    <the shared definitions the script uses, as commands.script() keeps them>
    local function call(keys, args)
      KEYS, ARGV = keys, args
      redis, string, tonumber = globals_now()
      <each shared top-level variable set again to its first value>
      <the script's body>
    end
    register_function{function_name = "qorm_<hash>", callback = call, flags = {...}}

* The globals a script reads (:data:`GLOBALS` that its text names) are upvalues, read once
  per call by ``globals_now`` (defined before the locals that hide them): a function's
  globals table is empty, and each read of a global goes through its metatable (a miss,
  then a second lookup; measured 84 more instructions per read than in a script, which made
  a query slower as a function than by EVALSHA). Nothing is read at load time, where
  ``redis`` is the loading API (``register_function`` is taken from it) and the other
  globals are not there.
* ``KEYS``/``ARGV`` are globals in a script but arguments of a function: the shared parts
  read them too (``_prelude.lua``'s index records), so they are upvalues set per call (no
  call of one function can run inside another's).
* The shared parts keep per-call state in top-level locals (``EVENTS``, ``CLOCK``,
  ``NEW_LAYOUT``, ``DEFERRED``, ``DIRTY``, ``NOW_MS``): in a library these would outlive the
  call, so every top-level ``local a, b = <values>`` (values with no call and no function,
  see ``luachunks.Chunk.defines``) is run again at the start of each call. No top-level
  table exists to be shared between calls (a new one would be made per call the same way).
* The name is the hash of the library's text, so two versions of an application sharing a
  server never call each other's code, and loading a library that exists is success.
* Flags are the script's shebang flags (``no-writes``, ``allow-oom``): FCALL_RO, which
  replicas accept, needs ``no-writes``, as EVALSHA_RO did.

The line numbers of an error in a function count lines of :attr:`Library.source`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

from .commands import _assemble, _part
from .luachunks import cold_kept, identifiers, prune, tokens

#: the prefix of every library (and function) name QuantumORM loads
PREFIX = "qorm_"
#: hex digits of the text's SHA1 in a name (80 bits: no clash between versions)
HASH_DIGITS = 20
_NAME = "@QORM_NAME@"

#: the globals of Redis's Lua a script may read. A function reads a global through the
#: metatable of an empty globals table (Redis 7.0-7.2), a miss and a second lookup per
#: read: a library reads those its text names once per call, into upvalues.
GLOBALS = ("redis", "string", "table", "math", "bit", "cjson", "cmsgpack", "struct",
           "tonumber", "tostring", "type", "ipairs", "pairs", "next", "select", "unpack",
           "error", "pcall", "assert", "setmetatable", "getmetatable", "rawget", "rawset",
           "rawequal")


@dataclass(frozen=True)
class Library:
    #: the library's name, also the name of its one function (FCALL's first argument)
    name: str
    #: what FUNCTION LOAD is given
    source: str


def _flags(shebang: str) -> list[str]:
    for word in shebang.split()[1:]:
        if word.startswith("flags="):
            return [flag for flag in word.removeprefix("flags=").split(",") if flag]
    return []


def _resets(text: str) -> str:
    """A top-level ``local a, b = <values>`` as ``a, b = <values>``; "" for any other
    statement (a local function, a local declared without a value)."""
    toks = tokens(text)
    if (len(toks) < 4 or toks[0].text != "local" or toks[1].text == "function"
            or not any(t.text == "=" for t in toks)
            or any(t.text == "function" for t in toks)):
        return ""
    return text[toks[1].start:toks[-1].end]


@cache
def library(name: str) -> Library:
    """The library of script ``name`` (see the module's docstring)."""
    shebang, parts, body = _assemble(name)
    chunks = [chunk for part in parts for chunk in _part(part)]
    # (what the rare paths use counts too: their state is reset per call like any other)
    kept = cold_kept(chunks, body)[1]
    resets = [_resets(chunk.text) for chunk, keep in zip(chunks, kept, strict=True)
              if keep and chunk.defines]
    flags = ", ".join(f'"{flag}"' for flag in _flags(shebang))
    # (the definitions are made once, at load: none is left for cold_paths() to make)
    shared = prune([_part(part) for part in parts], body, lazy=False)
    named = identifiers(tokens(shared + body))
    used = ", ".join(name for name in GLOBALS if name in named)
    # (the getter is defined before the locals of the same names: it reads the globals)
    text = ("local register_function = redis.register_function\n"  # (the load-time API)
            f"local function globals_now() return {used} end\n"
            f"local {used}\n"
            "local KEYS, ARGV\n"
            + shared
            + f"local function call(keys, args)\nKEYS, ARGV = keys, args\n{used} = globals_now()\n"
            + "".join(f"{reset}\n" for reset in resets if reset)
            + body
            + "\nend\n"
            + f'register_function{{function_name = "{_NAME}", callback = call, '
            + f"flags = {{{flags}}}}}\n")
    lib = PREFIX + hashlib.sha1(text.encode("utf-8")).hexdigest()[:HASH_DIGITS]
    return Library(lib, f"#!lua name={lib}\n" + text.replace(_NAME, lib))


__all__ = ["HASH_DIGITS", "PREFIX", "Library", "library"]
