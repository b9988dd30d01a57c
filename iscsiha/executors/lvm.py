"""LVM logical volumes, via the lvm2 tools and the runner. Sizes are bytes."""

from __future__ import annotations

from iscsiha.errors import IscsihaError
from iscsiha.executors.runner import Runner
from iscsiha.model.names import SIZE_MAX, parse_decimal

LVS, VGS = "/usr/sbin/lvs", "/usr/sbin/vgs"
LVCREATE, LVEXTEND, LVREMOVE = "/usr/sbin/lvcreate", "/usr/sbin/lvextend", "/usr/sbin/lvremove"
BLKDISCARD = "/usr/sbin/blkdiscard"
ZEROOUT_BYTES_PER_S = 20e6  # a slow disk's worst, for the timeout only
_BYTES = ["--noheadings", "--units", "b", "--nosuffix"]
# Marks the LVs the cluster made: its volumes, exported or not, on every box.
TAG = "iscsiha"
# Marks the LVs under the targets' reservations volumes (no volume of the model).
RESERVATIONS_TAG = "iscsiha-reservations"


class Lvm:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    def size(self, vg: str, name: str) -> int | None:
        """The volume's size, or None when it does not exist."""
        result = self._runner.run([LVS, *_BYTES, "-o", "lv_size", "--", f"{vg}/{name}"],
                                  check=False)
        if not (result.ok and result.stdout.strip()):
            return None
        (size,) = _numbers(result.stdout, 1, f"lvs {vg}/{name}")
        return size

    def free_and_extent(self, vg: str) -> tuple[int, int]:
        """(free bytes, extent size) of a volume group."""
        free, extent = self._vg_numbers(vg, "vg_free,vg_extent_size")
        return free, extent

    def size_and_free(self, vg: str) -> tuple[int, int]:
        """(size, free bytes) of a volume group."""
        size, free = self._vg_numbers(vg, "vg_size,vg_free")
        return size, free

    def _vg_numbers(self, vg: str, fields: str) -> list[int]:
        result = self._runner.run([VGS, *_BYTES, "-o", fields, "--", vg], check=False)
        if not result.ok:
            raise IscsihaError.single("no-volume-group", "volume_group", vg,
                                      "a volume group on this box", result.stderr.strip())
        return _numbers(result.stdout, fields.count(",") + 1, f"vgs {vg}")

    def create(self, vg: str, name: str, size: int, tag: str = TAG) -> None:
        """A new LV, zeroed whole: DRBD skips the initial sync on the grounds that both
        boxes' copies are identical, and reused extents hold each box's own old bytes
        (other volumes' data and DRBD metadata), which lvcreate's zeroing of the first
        4 KiB leaves. BLKZEROOUT lets the disk write zeroes the fast way if it can."""
        self._runner.run([LVCREATE, "-q", "-y", "-W", "y", "-Z", "y", "-L", f"{size}b",
                          "--addtag", tag, "-n", name, "--", vg], timeout=120)
        self._runner.run([BLKDISCARD, "--zeroout", "--", f"/dev/{vg}/{name}"],
                         timeout=max(120.0, size / ZEROOUT_BYTES_PER_S))

    def tagged(self, tag: str = TAG) -> dict[str, str]:
        """LV name -> its volume group, for every LV the cluster made on this box."""
        result = self._runner.run([LVS, "--noheadings", "-o", "lv_name,vg_name", f"@{tag}"],
                                  check=False)
        if not result.ok:
            raise IscsihaError.single("lvs-failed", "command", f"lvs @{tag}",
                                      "a listing of this box's LVs", result.stderr.strip())
        rows = [line.split() for line in result.stdout.splitlines() if line.strip()]
        if any(len(row) != 2 for row in rows):
            raise IscsihaError.single("lvm-output-unexpected", "command", f"lvs @{tag}",
                                      "lines of an LV name and its volume group",
                                      result.stdout.strip()[:200])
        return {lv: vg for lv, vg in rows}

    def extend(self, vg: str, name: str, size: int) -> None:
        self._runner.run([LVEXTEND, "-q", "-L", f"{size}b", "--", f"{vg}/{name}"], timeout=120)

    def remove(self, vg: str, name: str) -> None:
        self._runner.run([LVREMOVE, "-q", "-y", "--", f"{vg}/{name}"], timeout=120)


def _numbers(out: str, count: int, command: str) -> list[int]:
    """``count`` whole numbers of bytes from an lvm report, or a report naming the output."""
    numbers = [parse_decimal(w, 0, SIZE_MAX) for w in out.split()]
    if len(numbers) != count or None in numbers:
        raise IscsihaError.single("lvm-output-unexpected", "command", command,
                                  f"{count} whole number(s) of bytes", out.strip()[:200])
    return [n for n in numbers if n is not None]
