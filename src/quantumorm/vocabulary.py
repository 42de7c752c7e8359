"""Closed sets of strings, as enums whose members are their strings.

Python 3.10 has no ``enum.StrEnum``; :class:`Vocabulary` is the same idea: a member equals,
hashes and prints as its string (``TxState.OPEN == "open"``, ``f"{kind}"`` is ``"cluster"``),
so a member can go on the wire or into a message as it is, and code that compared strings
keeps working, while type checkers see the closed set.
"""

from __future__ import annotations

from enum import Enum


class Vocabulary(str, Enum):
    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(self, spec)


__all__ = ["Vocabulary"]
