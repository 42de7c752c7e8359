"""The top-level statements of a shared Lua part, and which of them a script needs.

Redis 7.0 runs a script's whole text on every EVALSHA, so each ``local function`` of the
shared parts (``lua/_prelude.lua``, ``lua/_write.lua``...) is made again per call even where
the script never calls it. ``commands.script()`` keeps, of the shared parts, only what the
script uses: this module splits a part into its top-level statements (a small Lua 5.1
tokenizer and a parser of statements and expressions, exact about long strings and
comments, nested blocks and expressions) and chooses among them.

The choice is conservative: a definition (``local function f``, ``local a, b = ...`` with no
call in its values, ``f = function ... end`` for a local declared before) is kept when one of
its names appears as an identifier in kept code (the script's body, or a kept statement,
transitively; strings and comments are not code; a name after ``.`` or ``:`` is a field, not
an identifier; the body's names count up to its own top-level ``local`` of that name, which
hides the shared one from all code after it). Every other statement (one that calls
something, a ``do`` block...) is kept as it is. Kept statements stay in their order, so each
identifier resolves to the same local as in the full text: every definition of a name in
use is kept, and none moves. A chunk ends at a newline outside comments (a long comment is
never cut in two) and takes the ``;`` that ends its statement.

A script may also name, in ``-- cold:`` lines, the shared definitions only its rare paths
use: those, and what only they need, are made inside one function, ``cold_paths()``, that
the script calls on a rare path and that returns them in a table (see :func:`prune`), so
that the common path does not make them on every call. ``cold_paths`` is declared before
the shared parts, so that their own rare branches can name a definition as
``cold_paths().X`` too (``store_taken()``'s clock read): X is then made there as well, and
the table is made once per call, whoever asks first. Names in ``-- colder:`` lines (and
what only they need) are made one level further, by ``cold_paths().colder_paths()``, which
puts them into the same table: a rare path that calls ``cold_paths()`` on most calls (a
query's) then makes one function for them instead of each of them.

The line numbers of a Redis script error (``user_script:NNN``) count lines of the text sent:
``commands.script(name).source``, not of the ``.lua`` file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

KEYWORDS = frozenset((
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if", "in",
    "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while"))
_UNARY = frozenset(("not", "-", "#"))
_BINARY = frozenset(("+", "-", "*", "/", "%", "^", "..", "==", "~=", "<", "<=", ">", ">=",
                     "and", "or"))
#: keywords that open a block closed by ``end`` (``while``/``for`` open with their ``do``,
#: ``if`` once for all its branches) or by ``until`` (``repeat``)
_OPENS = frozenset(("function", "do", "if", "repeat"))
_CLOSES = frozenset(("end", "until"))

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>--\[(?P<ceq>=*)\[.*?\](?P=ceq)\]|--[^\n]*)
  | (?P<string>\[(?P<seq>=*)\[.*?\](?P=seq)\]|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\.\.\.|\.\.|==|~=|<=|>=|[-+*/%^\#<>=(){}\[\];:,.])
""", re.VERBOSE | re.DOTALL)


class LuaSyntaxError(ValueError):
    """A shared Lua part this module cannot split (a bug in the part, or Lua it does not
    know): commands.py then fails loudly rather than guessing."""


@dataclass(frozen=True)
class Token:
    kind: str  # "name", "keyword", "string", "number" or "op"
    text: str
    start: int
    end: int


def tokens(source: str) -> list[Token]:
    """The tokens of Lua 5.1 source, without blanks and comments."""
    out: list[Token] = []
    pos = 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if not m:
            line = source.count("\n", 0, pos) + 1
            raise LuaSyntaxError(f"unexpected {source[pos]!r} on line {line}")
        kind = m.lastgroup
        # (tested by group: a long bracket's level is a named group of its own)
        if m.group("comment") is not None or m.group("space") is not None:
            pass
        elif m.group("string") is not None:
            out.append(Token("string", m.group(), pos, m.end()))
        else:
            text = m.group()
            if kind == "name" and text in KEYWORDS:
                kind = "keyword"
            out.append(Token(str(kind), text, pos, m.end()))
        pos = m.end()
    return out


def identifiers(toks: Iterable[Token]) -> set[str]:
    """The names used as identifiers (not as a field after ``.`` or ``:``)."""
    out: set[str] = set()
    previous = ""
    for tok in toks:
        if tok.kind == "name" and previous not in (".", ":"):
            out.add(tok.text)
        previous = tok.text if tok.kind == "op" else ""
    return out


@dataclass(frozen=True)
class Chunk:
    """One top-level statement, with the text before it since the previous one (its
    comments). ``defines``: the names it defines when it does nothing else (may be left
    out when none of them is used); empty for a statement that must be kept."""

    text: str
    defines: frozenset[str]
    #: the identifiers it uses (not the names it declares, nor a local function's own name
    #: in its body, which is that function)
    uses: frozenset[str]
    #: the names a ``local`` statement declares: after it, no code sees an earlier one
    declares: frozenset[str] = frozenset()


class _Parser:
    """Finds where each top-level statement ends (Lua 5.1 grammar; function bodies are
    skipped by counting their blocks, as any call in them runs only when called)."""

    def __init__(self, toks: list[Token]) -> None:
        self.toks = toks
        self.pos = 0
        self.calls = 0  # calls met outside function bodies
        self.declared: list[int] = []  # positions of the names a local statement declares

    def peek(self, ahead: int = 0) -> str:
        at = self.pos + ahead
        if at >= len(self.toks):
            return "<eof>"
        tok = self.toks[at]
        return tok.text if tok.kind in ("op", "keyword") else f"<{tok.kind}>"

    def take(self, wanted: str | None = None) -> Token:
        if self.pos >= len(self.toks):
            raise LuaSyntaxError(f"unexpected end, {wanted or 'more'} expected")
        tok = self.toks[self.pos]
        if wanted is not None and self.peek() != wanted:
            raise LuaSyntaxError(f"{wanted} expected, got {tok.text!r} at offset {tok.start}")
        self.pos += 1
        return tok

    def block_to_end(self) -> None:
        """Skip to just after the ``end``/``until`` closing the block already opened."""
        depth = 1
        while depth:
            text = self.peek()
            if text == "<eof>":
                raise LuaSyntaxError("unclosed block")
            self.pos += 1
            if text in _OPENS:
                depth += 1
            elif text in _CLOSES:
                depth -= 1
                if depth == 0 and text == "until":
                    self.exp()

    def funcbody(self) -> None:
        self.take("(")
        while self.peek() != ")":
            self.take()
        self.take(")")
        self.block_to_end()

    def table(self) -> None:
        self.take("{")
        while self.peek() != "}":
            if self.peek() == "[":
                self.take("[")
                self.exp()
                self.take("]")
                self.take("=")
            elif self.peek() == "<name>" and self.peek(1) == "=":
                self.pos += 2
            self.exp()
            if self.peek() in (",", ";"):
                self.take()
            elif self.peek() != "}":
                raise LuaSyntaxError(f"bad table constructor at offset {self.toks[self.pos].start}")
        self.take("}")

    def args(self) -> None:
        self.calls += 1
        if self.peek() == "<string>":
            self.take()
        elif self.peek() == "{":
            self.table()
        else:
            self.take("(")
            if self.peek() != ")":
                self.explist()
            self.take(")")

    def prefixexp(self) -> bool:
        """Returns True for a plain name (no suffix: an assignable local)."""
        if self.peek() == "(":
            self.take("(")
            self.exp()
            self.take(")")
            plain = False
        else:
            self.take("<name>")
            plain = True
        while True:
            text = self.peek()
            if text in (".", ":"):
                self.take()
                self.take("<name>")
                if text == ":":
                    self.args()
            elif text == "[":
                self.take("[")
                self.exp()
                self.take("]")
            elif text in ("(", "<string>", "{"):
                self.args()
            else:
                return plain
            plain = False

    def simple(self) -> None:
        text = self.peek()
        if text in ("nil", "true", "false", "<number>", "<string>", "..."):
            self.take()
        elif text == "function":
            self.take()
            self.funcbody()
        elif text == "{":
            self.table()
        else:
            self.prefixexp()

    def exp(self) -> None:
        while self.peek() in _UNARY:
            self.take()
        self.simple()
        while self.peek() in _BINARY:
            self.take()
            while self.peek() in _UNARY:
                self.take()
            self.simple()

    def explist(self) -> None:
        self.exp()
        while self.peek() == ",":
            self.take()
            self.exp()

    def namelist(self) -> list[str]:
        self.declared.append(self.pos)
        names = [self.take("<name>").text]
        while self.peek() == ",":
            self.take()
            self.declared.append(self.pos)
            names.append(self.take("<name>").text)
        return names

    def statement(self, locals_: set[str]) -> frozenset[str]:
        """Parse one statement; returns the names it only defines (empty: keep it)."""
        text = self.peek()
        self.calls = 0
        self.declared = []
        if text == ";":
            self.take()
            return frozenset()
        if text == "local" and self.peek(1) == "function":
            self.pos += 2
            self.declared.append(self.pos)
            name = self.take("<name>").text
            locals_.add(name)  # (before its body, which may call it)
            self.funcbody()
            return frozenset((name,))
        if text == "local":
            self.take()
            names = self.namelist()
            if self.peek() == "=":
                self.take()
                self.explist()
            locals_.update(names)  # (after the values, which cannot see them)
            return frozenset(names) if self.calls == 0 else frozenset()
        if text in ("do", "if", "repeat"):
            self.take()
            self.block_to_end()
            return frozenset()
        if text == "while":
            self.take()
            self.exp()
            self.take("do")
            self.block_to_end()
            return frozenset()
        if text == "for":
            self.take()
            if self.peek(1) == "=":
                self.take("<name>")
                self.take("=")
            else:
                self.namelist()
                self.take("in")
            self.explist()
            self.take("do")
            self.block_to_end()
            return frozenset()
        if text == "function":
            self.take()
            self.take("<name>")
            while self.peek() in (".", ":"):
                self.take()
                self.take("<name>")
            self.funcbody()
            return frozenset()
        if text == "return":
            self.take()
            if self.peek() not in ("<eof>", ";", "end"):
                self.explist()
            return frozenset()
        if text == "break":
            self.take()
            return frozenset()
        # an assignment or a call
        start = self.pos
        targets = [self.toks[start].text] if self.prefixexp() else []
        if self.peek() not in ("=", ","):
            return frozenset()  # a call
        while self.peek() == ",":
            self.take()
            at = self.pos
            if self.prefixexp():
                targets.append(self.toks[at].text)
            else:
                targets.append("")
        before = self.calls
        self.take("=")
        self.explist()
        # (a local's value given later, as a function: part of its definition)
        if self.calls == before and targets and all(t in locals_ for t in targets):
            return frozenset(targets)
        return frozenset()


def _breaks(source: str, start: int, stop: int) -> list[int]:
    """The newlines of ``source[start:stop]`` (blanks and comments between two tokens) that
    are in no comment: where a chunk may end (a long comment is never cut in two)."""
    out: list[int] = []
    pos = start
    while pos < stop:
        m = _TOKEN.match(source, pos)
        assert m is not None  # (tokens() read the same text)
        if m.group("space") is not None:
            out += [i for i in range(pos, m.end()) if source[i] == "\n"]
        pos = m.end()
    return out


def split(source: str) -> list[Chunk]:
    """The top-level statements of ``source`` in order; their texts put together give
    ``source`` back. A first chunk of the leading comments (up to the last blank line
    before the first statement) defines nothing, so it is always kept."""
    toks = tokens(source)
    parser = _Parser(toks)
    chunks: list[Chunk] = []
    locals_: set[str] = set()
    cut = 0
    if toks:
        breaks = _breaks(source, 0, toks[0].start)
        blank = [i for i, j in zip(breaks, breaks[1:], strict=False) if j == i + 1]
        if blank:
            cut = blank[-1] + 2
            chunks.append(Chunk(source[:cut], frozenset(), frozenset()))
    while parser.pos < len(toks):
        first = parser.pos
        defines = parser.statement(locals_)
        while parser.pos < len(toks) and toks[parser.pos].text == ";":
            parser.pos += 1  # (a ";" ends its statement: left out with it, never alone)
        last = toks[parser.pos - 1]
        # (a comment after the statement on its line goes with it)
        following = toks[parser.pos].start if parser.pos < len(toks) else len(source)
        breaks = _breaks(source, last.end, following)
        end = breaks[0] + 1 if breaks else last.end
        if parser.pos == len(toks):
            end = len(source)
        declared = [toks[i] for i in parser.declared] if toks[first].text == "local" else []
        uses = identifiers(t for t in toks[first:parser.pos] if t not in declared)
        if declared and toks[first + 1].text == "function":
            uses.discard(declared[0].text)
        chunks.append(Chunk(source[cut:end], defines, frozenset(uses),
                            frozenset(t.text for t in declared)))
        cut = end
    if cut < len(source):
        chunks.append(Chunk(source[cut:], frozenset(), frozenset()))
    return chunks


def needed(chunks: Sequence[Chunk], used: set[str]) -> list[bool]:
    """Which chunks to keep for code that uses the identifiers ``used``: every statement
    that is not only a definition, and every definition of a name kept code uses."""
    names = set(used)
    for chunk in chunks:
        if not chunk.defines:
            names |= chunk.uses
    keep = [False] * len(chunks)
    grown = True
    while grown:
        grown = False
        for i, chunk in enumerate(chunks):
            if not keep[i] and (not chunk.defines or chunk.defines & names):
                keep[i] = True
                if not chunk.uses <= names:
                    names |= chunk.uses
                    grown = True
    return keep


def free_names(source: str) -> set[str]:
    """The identifiers ``source`` uses before declaring them at its top level: after a
    top-level ``local x``, no code of the chunk (at any depth) sees an ``x`` defined before
    it, such as one of the shared parts."""
    out: set[str] = set()
    shadowed: set[str] = set()
    for chunk in split(source):
        out |= chunk.uses - shadowed
        shadowed |= chunk.declares
    return out


#: the function that makes a script's rare paths' definitions (see :func:`prune`)
COLD_MAKER = "cold_paths"


#: the field of ``cold_paths()``'s table that makes the rarer paths' definitions (a body's
#: ``-- colder:`` names): see :func:`prune`
COLDER_MAKER = "colder_paths"


def colder_names(body: str) -> tuple[str, ...]:
    """The names a script body's ``-- colder:`` lines list: shared definitions that even
    its rare paths seldom use, made only when ``cold_paths().colder_paths()`` is called
    (see :func:`prune`); the body reads them as fields of the table that returns."""
    return tuple(name for line in body.splitlines() if line.startswith("-- colder:")
                 for name in line.removeprefix("-- colder:").split())


def cold_names(body: str) -> tuple[str, ...]:
    """The names a script body's ``-- cold:`` lines list: the shared definitions only its
    rare paths use (a purge, a sweep, a unique claim...), which it reads as fields of the
    table ``cold_paths()`` returns (see :func:`prune`), in their order, then its
    ``-- colder:`` names (:func:`colder_names`). Every field the body reads from that
    table must be listed (a field left out would be a nil call, maybe after a write): one
    that is not raises :class:`LuaSyntaxError`."""
    names = tuple(name for line in body.splitlines() if line.startswith("-- cold:")
                  for name in line.removeprefix("-- cold:").split())
    colder = colder_names(body)
    names += colder
    toks = tokens(body)
    # (the locals the body assigns cold_paths()'s table to: ``rare = rare or cold_paths()``)
    tables = {toks[i].text for i in range(len(toks) - 2)
              if toks[i].kind == "name" and toks[i + 1].text == "="
              and any(t.text == COLD_MAKER for t in toks[i + 2:i + 5])}
    read = {toks[i + 2].text for i in range(len(toks) - 2)
            if toks[i].text in tables and toks[i + 1].text == "." and toks[i + 2].kind == "name"}
    missing = sorted(read - set(names) - ({COLDER_MAKER} if colder else set()))
    if missing:
        raise LuaSyntaxError(f"{missing} read from {COLD_MAKER}()'s table but not listed in "
                             "the script's '-- cold:' lines")
    return names


def cold_reads(texts: Iterable[str]) -> set[str]:
    """The names shared code reads as ``cold_paths().X`` (a rare branch of a definition the
    common path makes, e.g. ``store_taken()``'s clock read for an expiry when the write
    took no version): made by ``cold_paths()`` too, which is declared before the shared
    parts so that they can name it."""
    out: set[str] = set()
    for text in texts:
        if COLD_MAKER not in text:
            continue
        toks = tokens(text)
        out.update(toks[i + 4].text for i in range(len(toks) - 4)
                   if toks[i].text == COLD_MAKER and toks[i + 1].text == "("
                   and toks[i + 2].text == ")" and toks[i + 3].text == "."
                   and toks[i + 4].kind == "name")
    return out


def cold_kept(chunks: Sequence[Chunk], body: str) -> tuple[list[str], list[bool]]:
    """The names ``cold_paths()`` returns for ``body`` (its ``-- cold:`` names, then those
    the kept shared code reads as ``cold_paths().X``), and which chunks are kept."""
    used = free_names(body)
    cold = list(cold_names(body))
    keep = needed(chunks, used | set(cold))
    while True:
        extra = sorted(cold_reads(c.text for c, k in zip(chunks, keep, strict=True) if k)
                       - set(cold))
        if not extra:
            return cold, keep
        cold += extra
        keep = needed(chunks, used | set(cold))


def _hot(chunks: Sequence[Chunk], keep: Sequence[bool], used: set[str]) -> list[bool]:
    """Which kept chunks the common path needs: every statement that is not only a
    definition, and the definitions of the names ``used`` (the body's) or that such a chunk
    uses, transitively."""
    names = set(used)
    hot = [kept and not chunk.defines for chunk, kept in zip(chunks, keep, strict=True)]
    for chunk, is_hot in zip(chunks, hot, strict=True):
        if is_hot:
            names |= chunk.uses
    grown = True
    while grown:
        grown = False
        for i, chunk in enumerate(chunks):
            if keep[i] and not hot[i] and chunk.defines & names:
                hot[i] = True
                if not chunk.uses <= names:
                    names |= chunk.uses
                    grown = True
    return hot


def _cold_maker(chunks: Sequence[Chunk], keep: Sequence[bool], hot: Sequence[bool],
                cold: Sequence[str], listed: Sequence[str], body: str = "") -> str:
    """``cold_paths()``: a function that makes the kept definitions the common path does not
    need, as its own locals, and returns the table of the names ``cold`` (the same table
    from then on: shared code and the body may both ask). Placed after every other kept
    chunk, each of its definitions must mean what it meant in place: no name is declared
    twice, and none names a local declared only after it (a global there). ``listed``: the
    body's ``-- cold:`` names, which the common path must not use (a name shared code reads
    as ``cold_paths().X`` may be one the common path makes anyway)."""
    declared: dict[str, int] = {}
    for i, chunk in enumerate(chunks):
        if keep[i]:
            for name in chunk.declares:
                if name in declared:
                    raise LuaSyntaxError(f"{name} is declared twice: cold_paths() cannot "
                                         "move its definitions")
                declared[name] = i
    made = [i for i, kept in enumerate(keep) if kept and not hot[i]]
    for i in made:
        later = {name for name in chunks[i].uses if declared.get(name, -1) > i}
        if later:
            raise LuaSyntaxError(f"a cold definition names locals declared after it: "
                                 f"{sorted(later)}")
    for name in cold:
        if name not in declared or (name in listed and hot[declared[name]]):
            raise LuaSyntaxError(f"{name} is listed cold but the common path uses it "
                                 "(or no shared part defines it)")
    colder = _colder(chunks, keep, hot, made, listed, colder_names(body))
    texts = "".join(chunks[i].text for i in made if i not in colder)
    if texts and not texts.endswith("\n"):
        texts += "\n"
    later_made = {name for i in colder for name in chunks[i].declares}
    fields = ", ".join(f"{name} = {name}" for name in cold if name not in later_made)
    if not colder:
        return (f"{COLD_MAKER} = function()  -- (the rare paths' definitions: luachunks.py)\n"
                f"{texts}local made = {{{fields}}}\n"
                f"{COLD_MAKER} = function() return made end  -- (made once per call)\n"
                "return made\nend\n")
    # (the rarer definitions, made by one function of the table, which puts their names
    # into it: a call of cold_paths() makes one function for them all, in the table's
    # constructor, which sizes the table for it)
    inner = "".join(chunks[i].text for i in made if i in colder)
    if not inner.endswith("\n"):
        inner += "\n"
    puts = "".join(f"made.{name} = {name}\n" for name in cold if name in later_made)
    return (f"{COLD_MAKER} = function()  -- (the rare paths' definitions: luachunks.py)\n"
            f"{texts}local made\nmade = {{{fields}, {COLDER_MAKER} = function()"
            "  -- (the rarer paths': luachunks.py)\n"
            f"{inner}{puts}made.{COLDER_MAKER} = function() return made end\n"
            "return made\nend}\n"
            f"{COLD_MAKER} = function() return made end  -- (made once per call)\n"
            "return made\nend\n")


def _colder(chunks: Sequence[Chunk], keep: Sequence[bool], hot: Sequence[bool],
            made: Sequence[int], listed: Sequence[str], colder: Sequence[str]) -> set[int]:
    """Of the chunks ``cold_paths()`` makes (``made``), those that only the body's
    ``-- colder:`` names need: not a definition of a ``-- cold:`` name, nor one that such a
    definition (or the common path's) names or reads as ``cold_paths().X``, transitively.
    Empty without ``-- colder:`` names."""
    if not colder:
        return set()
    of_name = {name: i for i in made for name in chunks[i].declares}
    wanted = [name for name in listed if name not in colder]
    for i, chunk in enumerate(chunks):  # (what the common path's chunks name or read)
        if keep[i] and hot[i]:
            wanted += [*chunk.uses, *cold_reads([chunk.text])]
    tier: set[int] = set()
    while wanted:
        i = of_name.get(wanted.pop(), -1)
        if i < 0 or i in tier:
            continue
        tier.add(i)
        wanted += [*chunks[i].uses, *cold_reads([chunks[i].text])]
    return {i for i in made if i not in tier}


#: the first line of a text with a ``cold_paths()``: declared before the shared parts,
#: whose common path may name it on a rare branch (``cold_paths().now_ms()``)
COLD_DECLARED = f"local {COLD_MAKER}  -- (made after the shared parts: luachunks.py)\n"


def prune(parts: Sequence[Sequence[Chunk]], body: str, lazy: bool = True) -> str:
    """The shared parts (in order) reduced to what ``body`` needs, followed by nothing: the
    caller appends the body.

    Where ``body`` lists names in ``-- cold:`` lines, or kept shared code reads names as
    ``cold_paths().X``, the definitions that only they need (the rare paths') are made by
    ``cold_paths()``, which returns them in a table, instead of on every call: the body
    calls it on a rare path and reads the names as fields of that table. (A function made
    per call costs the server about 800 instructions, most of them finding its upvalues;
    ``cold_paths`` itself has only the common path's names as upvalues.) ``cold_paths`` is
    declared first (:data:`COLD_DECLARED`) and made after the shared parts. ``lazy`` False
    (a library, whose definitions are made once at load): every definition is made in
    place and ``cold_paths()`` only makes the table."""
    flat = [chunk for part in parts for chunk in part]
    used = free_names(body)
    cold, keep = cold_kept(flat, body)
    hot = _hot(flat, keep, used) if cold and lazy else list(keep)
    out: list[str] = [COLD_DECLARED] if cold else []
    for chunk, kept in zip(flat, hot, strict=True):
        if not kept:
            continue
        # (two statements of one line with the one between them left out: "local F" and
        # "local H" must not run together)
        if out and not out[-1][-1:].isspace() and not chunk.text[:1].isspace():
            out.append("\n")
        out.append(chunk.text)
    if out and not out[-1][-1:].isspace():
        out.append("\n")
    if cold:
        out.append(_cold_maker(flat, keep, hot, cold, cold_names(body), body) if lazy
                   else _cold_gatherer(cold, bool(colder_names(body))))
    return "".join(out)


def _cold_gatherer(cold: Sequence[str], colder: bool = False) -> str:
    fields = ", ".join(f"{name} = {name}" for name in cold)
    if colder:  # (every definition made in place: colder_paths() gives the same names)
        fields += f", {COLDER_MAKER} = {COLD_MAKER}"
    return f"{COLD_MAKER} = function() return {{{fields}}} end\n"


def cold_table(body: str, shared: str = "") -> tuple[str, str]:
    """The declaration and the ``cold_paths()`` of a text whose definitions are all made in
    place (the shared parts whole, ``shared``, for tests and measurements): to put before
    and after the shared parts; ("", "") when ``body`` lists no cold names and ``shared``
    reads none."""
    cold = list(cold_names(body))
    cold += sorted(cold_reads([shared]) - set(cold))
    if not cold:
        return "", ""
    return COLD_DECLARED, _cold_gatherer(cold, bool(colder_names(body)))
