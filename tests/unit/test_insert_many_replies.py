"""``insert_many.lua``'s two reply forms: one ``{"ALL", version}`` when every document was
written (versions in turn from it), else one reply per document."""

from __future__ import annotations

from quantumorm.backends.redis.writer import written_whole


def test_one_reply_for_a_batch_written_whole() -> None:
    assert written_whole([b"ALL", 1796545665896599]) == 1796545665896599


def test_one_reply_per_document_otherwise() -> None:
    assert written_whole([[b"OK", 7], [b"EXISTS"], [b"UNIQUE", b"email", b"\x01!1"]]) is None
    # two documents, both refused: a list of two replies is not the "ALL" form
    assert written_whole([[b"EXISTS"], [b"EXISTS"]]) is None
    assert written_whole([[b"OK", 7], [b"OK", 8]]) is None
