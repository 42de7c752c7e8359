"""The named contracts of the Lua scripts (backends/redis/calls.py and replies.py) and the
auto-id loop every backend shares (engine/autoid.py).

A call record lays its fields out in declaration order, which must be the order of its
script's header (KEYS, then ARGV): checked here against the headers themselves. Replies are
parsed once, by status, into records read by name.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Generator
from importlib import resources
from typing import Any

import pytest

from quantumorm.backends.redis import calls, replies
from quantumorm.engine import autoid
from quantumorm.engine.contract import Expiry, WriteRequest, WriteResult
from quantumorm.errors import DuplicateIdError

#: records whose every field is one KEYS or ARGV entry, or a tuple/list of them, in order;
#: with the script and the KEYS fields before the first ARGV field
FLAT = {
    # (format 3's records: a format-2 save or delete sends their arguments less the last)
    calls.HeadedSaveCall: ("save", "op"),
    calls.HeadedDeleteCall: ("delete", "expected_version"),
    calls.RestoreCall: ("restore", "id_key"),
    calls.ExpireCall: ("expire", "id_key"),
    calls.SweepCall: ("sweep", "limit"),
    calls.QueryCall: ("query", "doc_prefix"),
    calls.CountCall: ("count", "layout"),
    calls.SchemaCall: ("schema", "layout_read"),
    calls.StampCall: ("stamp", "layout"),
    calls.NowCall: ("now", None),
    calls.GroupCall: ("group", "group"),
    calls.PreflightCall: ("preflight", "has_stream"),
    calls.EntriesCall: ("entries", "manifest"),
}

SEQUENCES = {"index_keys", "event_keys", "query_keys", "bounds", "pairs", "entries",
             "derivable"}


def parameters(record: Any) -> list[str]:
    """A record's fields that are its script's parameters: all but ``wire`` (the command's
    packed bytes, when its maker packed them: not an argument of its own) and ``format2``
    (a flag: an insert asked to store format 2 sends insert.lua's ARGV[13], see
    :func:`test_an_insert_is_sent_to_insert_lua_with_its_own_arguments`)."""
    return [f.name for f in dataclasses.fields(record) if f.name not in ("wire", "format2")]


def header(script: str) -> str:
    text = resources.files("quantumorm.backends.redis").joinpath(
        "lua", f"{script}.lua").read_text("utf-8")
    return "\n".join(line for line in text.splitlines() if line.startswith("--"))


def numbered(script: str, kind: str) -> int:
    """The highest fixed ``KEYS[n]`` / ``ARGV[n]`` its header documents."""
    found = [int(n) for n in re.findall(kind + r"\[(\d+)\]", header(script))]
    return max(found, default=0)


@pytest.mark.parametrize("record", list(FLAT), ids=lambda r: r.__name__)
def test_a_call_record_lays_its_fields_out_in_declaration_order(record: Any) -> None:
    script, first_arg = FLAT[record]
    fields = parameters(record)
    values = {name: (f"{name}.1", f"{name}.2") if name in SEQUENCES else name
              for name in fields}
    call = record(**values).call()
    assert call.script == script
    split = fields.index(first_arg) if first_arg else len(fields)

    def flat(names: list[str]) -> list[str]:
        return [item for name in names for item in (
            values[name] if name in SEQUENCES else (values[name],))]

    assert list(call.keys) == flat(fields[:split])
    assert list(call.args) == flat(fields[split:])
    # as many fixed ARGV fields as the header numbers (a variadic "ARGV[n..]" tail is a
    # sequence field)
    fixed_args = [name for name in fields[split:] if name not in SEQUENCES]
    assert len(fixed_args) == numbered(script, "ARGV"), (script, fixed_args)


def test_the_save_record_matches_its_header_keys() -> None:
    fields = parameters(calls.SaveCall)
    # KEYS[1..6] fixed, then every index key, then the stream
    assert fields.index("index_keys") == numbered("save", "KEYS") == 6
    assert fields.index("op") - fields.index("event_keys") == 1


def test_an_insert_is_sent_to_insert_lua_with_its_own_arguments() -> None:
    """insert.lua reads save.lua's KEYS (one record, SaveCall) and its own ARGV: save.lua's
    less the op, the expected version and the changed names, which an insert never reads
    (each argument costs the server a string made for the script); the record names it for
    an insert, save.lua for an update."""
    assert numbered("insert", "KEYS") == numbered("save", "KEYS") == 6
    # (insert.lua's ARGV[13]: "2" for an insert stored in format 2, writes.NEW_FORMAT)
    assert numbered("save", "ARGV") == 16 and numbered("insert", "ARGV") == 13
    fields = parameters(calls.SaveCall)
    values: dict[str, Any] = {name: ("k1", "k2") if name in SEQUENCES else name
                              for name in fields}
    insert = calls.SaveCall(**{**values, "op": "insert"}).call()
    update = calls.SaveCall(**{**values, "op": "update"}).call()
    assert (insert.script, update.script) == ("insert", "save")
    assert insert.keys == update.keys
    unread = ("op", "expected_version", "changed")
    assert list(insert.args) == [values[name] for name in fields[fields.index("op"):]
                                 if name not in unread]
    assert list(update.args) == [values[name] if name != "op" else "update"
                                 for name in fields[fields.index("op"):]]
    # format 2 asked for: ARGV[12] (the members) sent even when empty, then "2"
    for members in ("members", b""):
        old = calls.SaveCall(**{**values, "op": "insert", "members": members},
                             format2=True).call()
        assert list(old.args) == [*insert.args[:11], members, b"2"]
        assert len(old.args) == numbered("insert", "ARGV")


def test_transaction_rows_are_named_and_keep_the_wire_format() -> None:
    new = calls.NewDocument("d", "m", b"\x02a", b"{}", "w" * 16, b"V", b"L")
    call = calls.TxCall(
        "ids", "ttl", "state", ["i1"],
        [calls.TxCheck("dc", "mc", b"\x02c", 7),
         calls.TxDelete("dd", "md", b"\x02d", 3),
         calls.TxWrite(b"update", 5, new, b"C", Expiry.KEEP)],
        ("stream",), b"DESC", "dp", "mp", b"E", b"9").call()
    assert call.script == "tx"
    assert call.keys == ("ids", "ttl", "state", "i1", "dc", "mc", "dd", "md", "d", "m", "stream")
    head, rows = call.args[:6], call.args[6:]
    assert head == (b"DESC", "dp", "mp", b"E", b"9", b"")  # (b"": no two-phase commit)
    assert len(rows) == 27  # 9 values per row, as tx.lua reads them
    assert rows[:9] == (b"check", b"7", b"\x02c", b"", b"", b"", b"", b"", b"keep")
    assert rows[9:18] == (b"delete", b"3", b"\x02d", b"", b"", b"", b"", b"", b"keep")
    assert rows[18:] == (b"update", b"5", b"\x02a", b"{}", "w" * 16, b"V", b"L", b"C", "keep")


def test_insert_many_and_reindex_records_group_each_document() -> None:
    docs = [calls.BulkDocument(f"d{n}", f"m{n}", b"k%d" % n, b"{}", "w", b"V", b"M")
            for n in range(2)]
    call = calls.InsertManyCall("ids", "ttl", "state", ["i"], docs, (), b"D", "keep",
                                    "dp", "mp", b"", b"3", b"L").call()
    assert call.keys == ("ids", "ttl", "state", "i", "d0", "m0", "d1", "m1")
    assert call.args == (b"D", "keep", "dp", "mp", b"", b"3", b"L", b"k0", b"{}", "w", b"V",
                         b"M", b"k1", b"{}", "w", b"V", b"M")


@pytest.mark.parametrize(("raw", "expected"), [
    ([b"OK", 12, b"\x02a"], replies.WriteReply("OK", 12, b"\x02a")),
    ([b"OK", 12], replies.WriteReply("OK", 12)),
    ([b"VERSION", b"5"], replies.WriteReply("VERSION", 5)),
    ([b"MISSING"], replies.WriteReply("MISSING")),
    ([b"EXISTS"], replies.WriteReply("EXISTS")),
    ([b"UNIQUE", b"mail", b"\x02b"], replies.WriteReply("UNIQUE", None, b"\x02b", "mail")),
    ([b"WRONGTYPE", b"{k}:d:a"], replies.WriteReply("WRONGTYPE", None, None, "{k}:d:a")),
    ([b"LAYOUT", b"4"], replies.WriteReply("LAYOUT", None, None, "4")),
])
def test_write_replies_are_parsed_by_status(raw: list[Any],
                                            expected: replies.WriteReply) -> None:
    assert replies.write_reply(raw) == expected


def test_transaction_replies_are_parsed_by_status() -> None:
    assert replies.tx_reply([b"OK", [1, 2]]).versions == [1, 2]
    version = replies.tx_reply([b"VERSION", 2, b"9"])
    assert (version.position, version.refusal) == (2, replies.WriteReply("VERSION", 9))
    absent = replies.tx_reply([b"VERSION", 1, b""])  # the document is gone
    assert absent.refusal == replies.WriteReply("MISSING")
    unique = replies.tx_reply([b"UNIQUE", 3, b"mail", b"\x02b"])
    assert unique.position == 3 and unique.refusal == replies.WriteReply(
        "UNIQUE", None, b"\x02b", "mail")
    assert replies.tx_reply([b"APPLIED"]).status == "APPLIED"


def test_the_query_plan_reply_names_drivers_by_position() -> None:
    reply = replies.query_plan_reply([42, 1, 3, 4, 5])
    assert reply == replies.QueryPlanReply(42, True, 3, (4, 5))


def test_layout_refusals() -> None:
    assert replies.layout_refused([b"LAYOUT", b"3"])
    assert replies.layout_refused(-2)
    assert not replies.layout_refused([b"OK", 3])
    assert not replies.layout_refused([[b"OK", 1], [b"OK", 2]])


# -- engine/autoid.py -------------------------------------------------------------------------


def drive(op: Generator[Any, Any, Any]) -> Any:
    """Run an operation whose steps need no replies."""
    try:
        while True:
            op.send(None)
    except StopIteration as done:
        return done.value


def test_auto_ids_taken_by_a_user_are_replaced_and_resends_keep_theirs() -> None:
    taken = {"1", "3"}
    counter = iter(range(1, 100))
    sent: list[list[str | None]] = []
    rounds = {"stale": 1}

    def allocate(n: int) -> Generator[Any, Any, list[str]]:
        yield None
        return [str(next(counter)) for _ in range(n)]

    def send(requests: list[WriteRequest], pending: list[int]
             ) -> Generator[Any, Any, list[tuple[int, WriteResult | None]]]:
        yield None
        sent.append([requests[i].id for i in pending])
        out: list[tuple[int, WriteResult | None]] = []
        for i in pending:
            r = requests[i]
            if r.id == "known" and rounds["stale"]:  # e.g. an outdated schema: send again
                rounds["stale"] -= 1
                out.append((i, None))
            elif r.id in taken:
                out.append((i, WriteResult(r.id, None, DuplicateIdError("M", r.id))))
            else:
                out.append((i, WriteResult(r.id, 1)))
        return out

    requests = [WriteRequest("insert", None), WriteRequest("insert", "known"),
                WriteRequest("insert", None)]
    results = drive(autoid.write("M", requests, allocate, send))
    assert [r.id for r in results] == ["4", "known", "2"]
    assert all(r.error is None for r in results)
    assert sent == [["1", "known", "2"], ["3", "known"], ["4"]]


def test_auto_ids_give_up_after_the_attempts() -> None:
    def allocate(n: int) -> Generator[Any, Any, list[str]]:
        yield None
        return ["x"] * n

    def send(requests: list[WriteRequest], pending: list[int]
             ) -> Generator[Any, Any, list[tuple[int, WriteResult | None]]]:
        yield None
        return [(i, WriteResult(requests[i].id, None, DuplicateIdError("M", "x")))
                for i in pending]

    (result,) = drive(autoid.write("M", [WriteRequest("insert", None)], allocate, send))
    assert isinstance(result.error, DuplicateIdError) and result.id is None


def test_one_insert_may_leave_its_id_to_the_store() -> None:
    def allocate(n: int) -> Generator[Any, Any, list[str]]:
        raise AssertionError("not asked")
        yield None

    def send(requests: list[WriteRequest], pending: list[int]
             ) -> Generator[Any, Any, list[tuple[int, WriteResult | None]]]:
        yield None
        assert requests[0].id is None
        return [(0, WriteResult("17", 1))]

    (result,) = drive(autoid.write("M", [WriteRequest("insert", None)], allocate, send,
                                   allocate_here=False))
    assert result.id == "17"
