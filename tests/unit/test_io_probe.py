"""The verifier's read-back verdict: a block newer than the last acknowledged write is a
write whose error reached the initiator but whose data landed; anything else is lost."""

from __future__ import annotations

from iscsiha.lab.io_probe import BLOCK, _block, _later_write


def test_a_later_write_of_the_same_block_is_newer_not_lost() -> None:
    assert _later_write(_block(1, 120, 8192), dev=1, acked=100, offset=8192)


def test_an_older_write_is_lost() -> None:
    assert not _later_write(_block(1, 80, 8192), dev=1, acked=100, offset=8192)


def test_another_device_or_offset_or_garbage_is_lost() -> None:
    assert not _later_write(_block(2, 120, 8192), dev=1, acked=100, offset=8192)
    assert not _later_write(_block(1, 120, 4096), dev=1, acked=100, offset=8192)
    assert not _later_write(bytes(BLOCK), dev=1, acked=100, offset=8192)
    torn = bytearray(_block(1, 120, 8192))
    torn[-1] ^= 0xFF
    assert not _later_write(bytes(torn), dev=1, acked=100, offset=8192)
