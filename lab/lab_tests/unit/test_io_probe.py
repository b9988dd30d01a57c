"""The verifier's read-back verdict: a block newer than the last acknowledged write is a
write whose error reached the initiator but whose data landed; anything else is lost,
and told apart as an older write of the probe's own, zeros, or foreign bytes."""

from __future__ import annotations

from iscsiha_lab.io_probe import BLOCK, Pause, _block, _kind


def test_a_later_write_of_the_same_block_is_newer_not_lost() -> None:
    assert _kind(_block(1, 120, 8192), dev=1, acked=100, offset=8192) == "newer"


def test_an_earlier_write_at_that_offset_is_older() -> None:
    assert _kind(_block(1, 80, 8192), dev=1, acked=100, offset=8192) == "older"


def test_a_zeroed_block_is_zeros() -> None:
    assert _kind(bytes(BLOCK), dev=1, acked=100, offset=8192) == "zeros"


def test_another_device_or_offset_or_a_torn_block_is_foreign() -> None:
    assert _kind(_block(2, 120, 8192), dev=1, acked=100, offset=8192) == "foreign"
    assert _kind(_block(1, 120, 4096), dev=1, acked=100, offset=8192) == "foreign"
    torn = bytearray(_block(1, 120, 8192))
    torn[-1] ^= 0xFF
    assert _kind(bytes(torn), dev=1, acked=100, offset=8192) == "foreign"


def test_a_disk_s_pause_is_not_ended_by_another_disk_resuming_first() -> None:
    """Round robin over two disks: disk 1 resumes at 16.5 s, disk 0 only at 33 s."""
    pause = Pause(start=100.0, disks=2)
    for disk, at in ((0, 100.1), (1, 100.2), (1, 116.5), (0, 133.0), (1, 133.1)):
        pause.completed(disk, at)
    assert (round(pause.longest, 3), round(pause.at, 3)) == (32.9, 0.1)
