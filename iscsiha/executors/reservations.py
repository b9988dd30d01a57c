"""A target's reservations store: the small ext4 on its DRBD reservations volume where
LIO keeps its LUNs' SCSI persistent reservations (APTPL files), mounted where the
target runs (docs/reservations.md).

Mounted `sync,dirsync`: LIO writes a LUN's file on every PERSISTENT RESERVE OUT
before it completes the command, without fsync; with these options the write (and
the file's creation) is on the disk, and through DRBD protocol C on the peer's, before
the initiator hears the command succeeded.
"""

from __future__ import annotations

import os

from iscsiha.errors import IscsihaError
from iscsiha.executors import files
from iscsiha.executors.runner import Runner

BLKID, MKFS = "/usr/sbin/blkid", "/usr/sbin/mkfs.ext4"
MOUNT, UMOUNT = "/usr/bin/mount", "/usr/bin/umount"
MOUNT_ROOT = "/run/iscsiha/reservations"
OPTIONS = "sync,dirsync,noatime,nodev,nosuid,noexec,errors=remount-ro"
LABEL = "iscsiha-pr"
_BLANK_BYTES = 1 << 20  # a never-used volume reads zeros here (its LV was zeroed)


class ReservationStore:
    def __init__(self, runner: Runner, root: str = MOUNT_ROOT,
                 mounts: str = "/proc/self/mounts") -> None:
        self._runner = runner
        self._root = root
        self._mounts = mounts

    def path(self, device: str) -> str:
        return os.path.join(self._root, os.path.basename(device))

    def mounted(self, device: str) -> bool:
        """Whether ``device`` is mounted at its place (read from the kernel's table)."""
        where = self.path(device)
        for line in files.read_text(self._mounts).splitlines():
            fields = line.split(" ")
            if len(fields) >= 2 and fields[1] == where:
                return fields[0] == device
        return False

    def mount(self, device: str) -> str:
        """Mount ``device`` (making its filesystem the first time) and return the folder."""
        where = self.path(device)
        if self.mounted(device):
            return where
        kind = self._filesystem(device)
        if kind is None:
            self._runner.run([MKFS, "-q", "-F", "-L", LABEL, "-m", "0", "--", device],
                             timeout=60)
        elif kind != "ext4":
            raise IscsihaError.single(
                "reservations-store-foreign", "reservations", device,
                "an ext4 made by iscsiha, or a never-used volume",
                f"holds {kind!r}: nothing was changed; the LUNs' reservations cannot be "
                "kept here")
        os.makedirs(where, mode=0o700, exist_ok=True)
        self._runner.run([MOUNT, "-t", "ext4", "-o", OPTIONS, "--", device, where],
                         timeout=60)
        return where

    def unmount(self, device: str) -> None:
        if self.mounted(device):
            self._runner.run([UMOUNT, "--", self.path(device)], timeout=60)

    def _filesystem(self, device: str) -> str | None:
        """The filesystem on ``device``; None when it is blank. Anything else found on
        it (a signature blkid names but not ext4, or bytes where a blank volume has
        zeros) is never formatted over."""
        result = self._runner.run([BLKID, "-p", "-o", "value", "-s", "TYPE", "--", device],
                                  check=False, timeout=30)
        kind = result.stdout.strip()
        if result.ok and kind:
            return kind if kind.isprintable() and len(kind) <= 32 else "unreadable"
        try:
            with open(device, "rb") as disk:
                head = disk.read(_BLANK_BYTES)
        except OSError as exc:
            raise IscsihaError.single("reservations-store-unreadable", "reservations", device,
                                      "a readable DRBD device", str(exc)) from exc
        return None if not head.strip(b"\0") else "unknown data"
