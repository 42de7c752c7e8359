"""The reference meaning of the case-folded and pattern lookups, and the pieces each backend
uses to agree with it (no server): SQLite's registered function, PostgreSQL's split of a
query into SQL and a Python check, Redis's planner leaving them to Python."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quantumorm import Document, IntField, Q, QueryError, StringField, sortable
from quantumorm.backends.postgres import compiler as pg_compiler
from quantumorm.backends.redis.planner import Planner
from quantumorm.backends.sqlite import executor as sqlite_executor
from quantumorm.query import evaluate
from quantumorm.query.lookups import FOLDED_LOOKUPS, PATTERN_LOOKUPS, Lookup
from quantumorm.query.nodes import TRUE, Condition, QuerySpec


class Word(Document):
    w = StringField(indexed=True)
    n = IntField(indexed=True)

    class Meta:
        backend = "redis"
        collection = "words"


def holds(lookup: Lookup, value: str | None, wanted: str) -> bool:
    return evaluate.PREDICATES[lookup](Word._meta.fields["w"], value, wanted)


@pytest.mark.parametrize(("lookup", "value", "wanted", "expected"), [
    (Lookup.IEXACT, "Straße", "STRASSE", True),  # full folding: ß -> ss
    (Lookup.IEXACT, "ΣΊΣΥΦΟΣ", "σίσυφος", True),  # final sigma folds to sigma
    (Lookup.IEXACT, "İ", "i", False),  # İ folds to i + U+0307
    (Lookup.IEXACT, "İ", "i\u0307", True),
    (Lookup.IEXACT, "é", "E\u0301", False),  # no normalisation
    (Lookup.IEXACT, "Éclair", "éCLAIR", True),
    (Lookup.ICONTAINS, "Straße", "SS", True),
    (Lookup.ICONTAINS, "Straße", "s", True),  # (a fragment of the folded "ss")
    (Lookup.ICONTAINS, "abc", "", True),
    (Lookup.ISTARTSWITH, "ǅemal", "ǆ", True),  # titlecase digraph
    (Lookup.IENDSWITH, "ΣΑΣ", "ς", True),
    (Lookup.IENDSWITH, "a\x00B", "\x00b", True),
    (Lookup.REGEX, "Straße", "^[A-Z]", True),
    (Lookup.REGEX, "straße", "^[A-Z]", False),
    (Lookup.REGEX, "abc", "b", True),  # a search, not a full match
    (Lookup.IREGEX, "ΣΑΣ", "^σας$", True),
    (Lookup.IREGEX, "Straße", "STRASSE", False),  # re's simple case folding: ß is not ss
    (Lookup.ICONTAINS, None, "", False),  # string lookups never match null
    (Lookup.REGEX, None, "", False),
])
def test_reference(lookup: Lookup, value: str | None, wanted: str, expected: bool) -> None:
    assert holds(lookup, value, wanted) is expected


@given(st.text())
def test_decode_str_inverts_encode_str(text: str) -> None:
    assert sortable.decode_str(sortable.encode_str(text)) == text


def test_decode_str_refuses_other_keys() -> None:
    with pytest.raises(ValueError):
        sortable.decode_str(sortable.NULL)


WORDS = st.text(alphabet=st.sampled_from("aAsSßẞσΣςİıiIé\u0301\x00 "), max_size=6)


@given(value=WORDS, wanted=WORDS, lookup=st.sampled_from(sorted(FOLDED_LOOKUPS,
                                                                 key=lambda lk: lk.value)))
def test_sqlite_function_is_the_evaluator(value: str, wanted: str, lookup: Lookup) -> None:
    key = sortable.encode_str(value)
    assert sqlite_executor._text_test(lookup.value, key, wanted) == int(
        holds(lookup, value, wanted))
    assert sqlite_executor._text_test(lookup.value, sortable.NULL, wanted) == 0


def test_postgres_keeps_only_a_superset_in_sql() -> None:
    where = Word.objects.filter(Q(n__gte=3), Q(w__icontains="a") | Q(n=1),
                                ~Q(w__regex="x+")).spec.where
    server, residue = pg_compiler.client_residue(QuerySpec(where, limit=5, offset=2))
    assert residue == where  # Python checks the whole condition
    assert server.where == Condition("n", Lookup.GTE, 3)  # only the AND's free part in SQL
    assert server.limit is None and server.offset == 0  # the window is Python's
    alone = Word.objects.filter(w__iregex="^a").spec.where
    assert pg_compiler.client_residue(QuerySpec(alone))[0].where == TRUE
    plain = QuerySpec(Condition("n", Lookup.GT, 1), limit=2)
    assert pg_compiler.client_residue(plain) == (plain, None)


@pytest.mark.parametrize("lookup", sorted(FOLDED_LOOKUPS | PATTERN_LOOKUPS,
                                          key=lambda lk: lk.value))
def test_redis_checks_them_in_python(lookup: Lookup) -> None:
    node = Word.objects.filter(n__gte=3, **{f"w__{lookup.value}": "a+"}).spec.where
    plan = Planner(Word._meta).plan(QuerySpec(node))
    assert plan.residual is not None and lookup.value in repr(plan.residual)
    # n's index narrows the candidates, the server tests n, Python the rest
    assert plan.driver.indexes == ("n",) and plan.server_filter == "n__gte=3"


def test_bad_pattern_names_field_and_pattern() -> None:
    with pytest.raises(QueryError, match=re.escape("Word.w__regex")):
        Word.objects.filter(w__regex="(")


@pytest.mark.parametrize(("pattern", "lookup", "value"), [
    ("abc", Lookup.CONTAINS, "abc"),
    ("", Lookup.CONTAINS, ""),
    ("^ab", Lookup.STARTSWITH, "ab"),
    ("^", Lookup.STARTSWITH, ""),
    ("ab\\Z", Lookup.ENDSWITH, "ab"),
    ("^ab\\Z", Lookup.EXACT, "ab"),
    ("Straße σ", Lookup.CONTAINS, "Straße σ"),
    ("ab$", Lookup.REGEX, "ab$"),  # $ also matches before a final newline: stays a regex
    ("a.b", Lookup.REGEX, "a.b"),
    ("a\\\\Z", Lookup.REGEX, "a\\\\Z"),
    ("(?i)ab", Lookup.REGEX, "(?i)ab"),
    ("a|b", Lookup.REGEX, "a|b"),
    ("\ud800", Lookup.REGEX, "\ud800"),
])
def test_a_literal_regex_is_the_plain_lookup(pattern: str, lookup: Lookup, value: str) -> None:
    where = Word.objects.filter(w__regex=pattern).spec.where
    assert where == Condition("w", lookup, value)
    for text in ["", "ab", "abc", "xab", "ab\n", "a.b", "Straße σ!", "a\\Z"]:
        assert evaluate.matches(Word._meta, where, {"w": text}) is (
            re.search(pattern, text) is not None), (pattern, text)


def test_iregex_is_never_rewritten() -> None:  # re's case folding is not casefold()
    assert Word.objects.filter(w__iregex="ab").spec.where == Condition("w", Lookup.IREGEX, "ab")
