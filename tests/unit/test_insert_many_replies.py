"""``insert_many.lua``'s two reply forms, read back as one reply per document: one
``{"ALL", version}`` when every document was written (versions in turn from it), else one
reply per document."""

from __future__ import annotations

from quantumorm.backends.redis.replies import WriteReply
from quantumorm.backends.redis.writer import insert_many_replies


def test_one_reply_for_a_batch_written_whole() -> None:
    assert insert_many_replies([b"ALL", 1796545665896599], 3) == [
        WriteReply("OK", 1796545665896599), WriteReply("OK", 1796545665896600),
        WriteReply("OK", 1796545665896601)]


def test_one_reply_per_document_otherwise() -> None:
    raw = [[b"OK", 7], [b"EXISTS"], [b"UNIQUE", b"email", b"\x01!1"]]
    assert insert_many_replies(raw, 3) == [
        WriteReply("OK", 7), WriteReply("EXISTS"),
        WriteReply("UNIQUE", None, b"\x01!1", "email")]
    # two documents, both refused: a list of two replies is not the "ALL" form
    assert insert_many_replies([[b"EXISTS"], [b"EXISTS"]], 2) == [WriteReply("EXISTS")] * 2
