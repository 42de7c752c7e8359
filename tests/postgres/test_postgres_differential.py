"""The differential test of :mod:`sql_differential` on PostgreSQL: random queries
answered by the backend and by the Python reference agree."""

from __future__ import annotations

from typing import Any

import pytest

from quantumorm import Document
from sql_differential import (
    check_every_single_lookup,
    check_random_queries,
    check_ties_and_nulls_order,
    make_model,
)

Indexed = make_model("sdiff_indexed", True, "postgres")
Plain = make_model("sdiff_plain", False, "postgres")


@pytest.mark.parametrize("model", [Indexed, Plain], ids=["indexed", "plain"])
def test_random_queries_agree_with_python(pg: Any, model: type[Document]) -> None:
    check_random_queries(model)


@pytest.mark.parametrize("model", [Indexed, Plain], ids=["indexed", "plain"])
def test_every_single_lookup(pg: Any, model: type[Document]) -> None:
    check_every_single_lookup(model)


def test_ties_and_nulls_order(pg: Any) -> None:
    check_ties_and_nulls_order(Indexed)
