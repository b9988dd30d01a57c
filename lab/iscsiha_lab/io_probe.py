"""An I/O probe run on the lab's initiator (stdlib only; sent as source text).

Writes numbered 4 KiB blocks round-robin over the given block devices with
O_DIRECT|O_DSYNC (each write acknowledged only once it is stable), times every
completion, and stops at a stop file or a time limit. Then it reads back the
last acknowledged block at every offset it wrote and counts any that differ: lost
when older, zeros or foreign (counted apart), "newer_than_acked" when it is a later
write of its own that returned an error yet landed (and any it cannot read back).
Prints one JSON line: writes, errors, the longest time one disk went without a
completed write (the I/O pause) and when it began and ended, and blocks lost.

    python3 -c "$(cat io_probe.py)" --seconds 120 --stop-file /tmp/stop /dev/sda ...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mmap
import os
import struct
import time

BLOCK = 4096
SPAN = 256  # blocks per device the probe cycles over (1 MiB)


def _block(dev: int, seq: int, offset: int) -> bytes:
    head = struct.pack("<8sQQQ", b"ISCSIHA1", dev, seq, offset)
    body = hashlib.sha256(head).digest() * ((BLOCK - len(head)) // 32)
    return (head + body).ljust(BLOCK, b"\0")


def _kind(found: bytes, dev: int, acked: int, offset: int) -> str:
    """What a block that is not the last acknowledged write holds instead: "newer" (this
    probe's own later write, whose error reached us but whose data landed), "older" (an
    earlier write of its own at that offset), "zeros", or "foreign"."""
    magic, fdev, seq, foffset = struct.unpack_from("<8sQQQ", found)
    if (magic == b"ISCSIHA1" and (fdev, foffset) == (dev, offset)
            and found == _block(dev, seq, offset)):
        return "newer" if seq > acked else "older"
    return "zeros" if not found.strip(b"\0") else "foreign"


class Pause:
    """The longest time one disk went without a completed write. A disk's pause runs
    from its last completed write to its next: writes completing on the other disks
    meanwhile (one may resume before another) do not end it."""

    def __init__(self, start: float, disks: int) -> None:
        self.start = start
        self.done_at = [start] * disks
        self.longest = self.at = 0.0  # seconds; when it began, after start

    def completed(self, disk: int, now: float) -> None:
        if now - self.done_at[disk] > self.longest:
            self.longest, self.at = now - self.done_at[disk], self.done_at[disk] - self.start
        self.done_at[disk] = now


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--stop-file", default="/tmp/io-probe.stop")
    parser.add_argument("devices", nargs="+")
    args = parser.parse_args()
    fds = [os.open(d, os.O_RDWR | os.O_DIRECT | os.O_DSYNC) for d in args.devices]
    buf = mmap.mmap(-1, BLOCK)  # page-aligned, as O_DIRECT needs
    acked: dict[tuple[int, int], int] = {}
    writes = errors = 0
    error_text: list[str] = []
    start = last = time.monotonic()
    wall = time.time() - start  # the wall clock at monotonic 0: the timeline's clock
    pause = Pause(start, len(fds))
    deadline = start + args.seconds
    seq = 0
    while time.monotonic() < deadline and not os.path.exists(args.stop_file):
        dev = seq % len(fds)
        offset = (seq // len(fds)) % SPAN * BLOCK
        buf.seek(0)
        buf.write(_block(dev, seq, offset))
        try:
            os.pwrite(fds[dev], buf, offset)
            acked[(dev, offset)] = seq
            writes += 1
        except OSError as exc:
            errors += 1
            if len(error_text) < 5:
                error_text.append(f"{args.devices[dev]}@{offset}: {exc}")
        last = time.monotonic()
        pause.completed(dev, last)
        seq += 1
    lost_kinds = {"older": 0, "zeros": 0, "foreign": 0}
    unreadable = newer = 0
    for (dev, offset), wrote in acked.items():
        buf.seek(0)
        try:
            got = os.preadv(fds[dev], [buf], offset)
            if got != BLOCK:  # past the end of a disk that shrank in the initiator's view
                raise OSError(f"read {got} of {BLOCK} bytes")
        except OSError as exc:  # a dead path: still report what was seen
            unreadable += 1
            if len(error_text) < 10:
                error_text.append(f"read back {args.devices[dev]}@{offset}: {exc}")
            continue
        found = bytes(buf)
        if found == _block(dev, wrote, offset):
            continue
        kind = _kind(found, dev, wrote, offset)
        if kind == "newer":
            newer += 1  # a write reported failed had landed after all: newer, not lost
        else:
            lost_kinds[kind] += 1
    print(json.dumps({"writes": writes, "errors": errors, "error_text": error_text,
                      "max_gap_s": round(pause.longest, 3), "gap_at_s": round(pause.at, 3),
                      "gap_from_wall": round(wall + start + pause.at, 3),
                      "gap_to_wall": round(wall + start + pause.at + pause.longest, 3),
                      "lost": sum(lost_kinds.values()), "lost_kinds": lost_kinds,
                      "unreadable": unreadable, "newer_than_acked": newer,
                      "checked": len(acked), "seconds": round(last - start, 3)}))


if __name__ == "__main__":
    main()
