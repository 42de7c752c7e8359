"""A read by id's ``MGET`` carries its RESP bytes (``Command.wire``), made from parts kept
packed per partition: they must be the bytes hiredis's ``pack_command`` makes of the
command, whatever the ids (escaped, long, many) and the model's keys."""

from __future__ import annotations

import pytest
from resp_support import resp

from quantumorm import Document, IntField
from quantumorm.backends.redis.commands import Command
from quantumorm.backends.redis.keys import KeySpace
from quantumorm.backends.redis.reader import mget_command
from quantumorm.backends.redis.twophase import flag_key
from quantumorm.sortable import escape_id


class Plain(Document):
    n = IntField(indexed=True)

    class Meta:
        collection = "mget_wire_plain"
        namespace = "unit"


class Odd(Document):
    n = IntField()

    class Meta:
        collection = "c-" * 520  # (a key prefix past 1,023 bytes)
        namespace = "unit.ns_9"


IDS = ["1", "007", "a b%", "{x}", "\x00\r\n*3", "x" * 1500, "é" * 400, "9" * 40, ""]


@pytest.mark.parametrize("model", [Plain, Odd])
@pytest.mark.parametrize("count", [1, 2, 9, 254, 300])
def test_a_reads_mget_wire_is_its_commandsresp(model: type[Document], count: int) -> None:
    keys = KeySpace(model._meta)
    for round in range(2):  # (the partition's parts made, then remembered)
        ids = [IDS[(i + round) % len(IDS)] + str(i // len(IDS)) for i in range(count)]
        command = mget_command(keys, ids)
        assert command.args == ("MGET", *[keys.partition(0).doc_prefix + escape_id(id)
                                          for id in ids], flag_key(keys.tag(0)))
        assert command.wire == resp(command.args), (count, round)


def test_only_a_command_read_raw_may_carry_packed_bytes() -> None:
    # a packed command skips redis-py's reply callback: a GET or HGETALL sent so would
    # answer raw bytes where its callers expect converted replies
    assert Command(("MGET", "k"), b"*2\r\n$4\r\nMGET\r\n$1\r\nk\r\n").wire is not None
    with pytest.raises(ValueError, match="HGETALL"):
        Command(("HGETALL", "k"), b"*2\r\n$7\r\nHGETALL\r\n$1\r\nk\r\n")
