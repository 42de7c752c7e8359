"""Griffe extensions for the API reference.

:class:`RstToMarkdown`: the library's docstrings use a few reStructuredText forms (Sphinx
roles, ``::`` literal blocks, ``>>>`` examples) that Markdown would render as text or nested
quotes; they are rewritten as Markdown when mkdocstrings loads them. The source docstrings
stay as they are (read in editors and ``help()``).

:class:`Operations`: a method decorated with ``@operation`` / ``@self_operation`` is written
as a builder returning ``OpFactory[T]``; what a user calls is an async method returning
``T`` and its blocking twin ``name_sync``. The reference shows that.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|data|attr|exc|obj):`(~?)([^`]+)`")
LITERAL = re.compile(r"::[ \t]*$")


def _role(match: re.Match[str]) -> str:
    target = match[2]
    if match[1]:  # ~a.b.c shows as c
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def to_markdown(text: str) -> str:
    lines = ROLE.sub(_role, text).split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith(">>>"):
            pad = line[: _indent(line)]
            out.append(f"{pad}```pycon")
            # prompts, continuation lines and the output shown, up to a blank line
            while i < len(lines) and lines[i].strip():
                out.append(lines[i])
                i += 1
            out.append(f"{pad}```")
            continue
        if LITERAL.search(line) and i + 1 < len(lines):
            # "text::" then a blank line and an indented block: a code block
            base = _indent(line)
            out.append(LITERAL.sub(":", line) if stripped != "::" else "")
            j = i + 1
            block: list[str] = []
            while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
                block.append(lines[j])
                j += 1
            while block and not block[-1].strip():
                block.pop()
            body = block
            while body and not body[0].strip():
                body.pop(0)
            if body:
                cut = min(_indent(b) for b in body if b.strip())
                pad = " " * base
                out += ["", f"{pad}```"] + [pad + b[cut:] for b in body] + [f"{pad}```", ""]
                i = j
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


OPERATION_DECORATORS = ("operation", "self_operation")
OP_FACTORY = re.compile(r"OpFactory\[(.*)\]\Z", re.S)


class Operations(griffe.Extension):
    def on_function_instance(self, *, func: griffe.Function, **kwargs: Any) -> None:
        names = {str(decorator.value).rsplit(".", 1)[-1] for decorator in func.decorators}
        if not names & set(OPERATION_DECORATORS):
            return
        func.labels.add("async")
        found = OP_FACTORY.match(str(func.returns or ""))
        if found:
            func.returns = found[1]
        twin = f"Blocking twin: `{func.name}_sync(...)`, the same arguments, returns the result."
        if func.docstring is None:
            func.docstring = griffe.Docstring(twin, parent=func)
        else:
            func.docstring.value = f"{func.docstring.value}\n\n{twin}"


class RstToMarkdown(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
