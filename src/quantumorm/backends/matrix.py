"""The capability matrix: what every registered backend supports, as a table.

``quantumorm.capabilities()`` returns it; ``print()`` shows it; the README carries the same
table, generated from here (a test keeps the two identical).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engine.contract import Capabilities
from ..query.lookups import Lookup
from . import available_backends, backend_capabilities

#: (row label, how to read it from Capabilities), in display order
_FEATURES: list[tuple[str, str]] = [
    ("ordering (order_by)", "ordering"),
    ("keyset pagination", "keyset_pagination"),
    ("unique indexes", "unique_indexes"),
    ("TTL", "ttl"),
    ("transactions", "transactions"),
    ("change events", "change_events"),
    ("partitions (Meta.partitions > 1)", "partitions"),
]


@dataclass(frozen=True)
class CapabilityMatrix:
    backends: dict[str, Capabilities]

    def rows(self) -> list[tuple[str, list[str]]]:
        names = list(self.backends)
        rows = []
        for label, attr in _FEATURES:
            rows.append((label, [_mark(getattr(self.backends[n], attr)) for n in names]))
        for lookup in Lookup:
            rows.append((f"lookup `{lookup.value}`",
                         [_mark(lookup in self.backends[n].lookups) for n in names]))
        kinds = sorted({k for caps in self.backends.values() for k in caps.index_kinds})
        for kind in kinds:
            rows.append((f"index: {kind}",
                         [_mark(kind in self.backends[n].index_kinds) for n in names]))
        return rows

    def markdown(self) -> str:
        names = list(self.backends)
        lines = ["| feature | " + " | ".join(names) + " |",
                 "|---|" + "---|" * len(names)]
        lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in self.rows()]
        return "\n".join(lines)

    def __str__(self) -> str:
        rows = self.rows()
        names = list(self.backends)
        width = max(len(label) for label, _ in rows)
        head = " " * width + "  " + "  ".join(f"{n:>8}" for n in names)
        body = [f"{label:<{width}}  " + "  ".join(f"{c:>8}" for c in cells)
                for label, cells in rows]
        return "\n".join([head, *body])


def _mark(value: bool) -> str:
    return "yes" if value else "no"


def capabilities() -> CapabilityMatrix:
    """The capability matrix of every registered backend (imports them; opens nothing)."""
    return CapabilityMatrix({name: backend_capabilities(name) for name in available_backends()})
