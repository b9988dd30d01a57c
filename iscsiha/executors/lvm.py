"""LVM logical volumes, via the lvm2 tools and the runner. Sizes are bytes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

from iscsiha.errors import IscsihaError
from iscsiha.executors.runner import CommandResult
from iscsiha.model.names import SIZE_MAX, parse_decimal, vg_name_problem

LVS, VGS = "/usr/sbin/lvs", "/usr/sbin/vgs"
LVCREATE, LVEXTEND, LVREMOVE = "/usr/sbin/lvcreate", "/usr/sbin/lvextend", "/usr/sbin/lvremove"
BLKDISCARD = "/usr/sbin/blkdiscard"
ZEROOUT_BYTES_PER_S = 20e6  # a slow disk's worst, for the timeout only
_BYTES = ["--noheadings", "--units", "b", "--nosuffix"]
# Marks the LVs the cluster made: its volumes, exported or not, and its thin pools,
# on every box.
TAG = "iscsiha"
# Marks the LVs under the targets' reservations volumes (no volume of the model).
RESERVATIONS_TAG = "iscsiha-reservations"
THIN_POOL = "thin-pool"  # lvs' segtype of a thin pool; its thin volumes' is "thin"
_REPORT_FIELDS = "lv_name,vg_name,lv_size,segtype,pool_lv,data_percent,metadata_percent"
_PERCENT = re.compile(r"[0-9]{1,3}(\.[0-9]{1,6})?\Z")
_SEGTYPE = re.compile(r"[a-z0-9+_-]{1,32}\Z")


@dataclass(frozen=True)
class LvRow:
    """One of the cluster's LVs as lvs reports it."""

    name: str
    vg: str
    size: int  # bytes; a pool's: its data space
    segtype: str  # linear, striped, thin, thin-pool...
    pool: str  # a thin volume's pool; "" for any other LV
    data_percent: float | None  # thin pools and thin volumes: data space used
    metadata_percent: float | None  # thin pools: metadata space used

    @property
    def is_pool(self) -> bool:
        return self.segtype == THIN_POOL


class RunsCommands(Protocol):
    """What Lvm needs of executors.runner.Runner."""

    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0) -> CommandResult: ...


class Lvm:
    def __init__(self, runner: RunsCommands) -> None:
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

    def create_pool(self, vg: str, name: str, size: int) -> None:
        """A thin pool that zeroes each chunk it hands out (-Z y): a thin volume then
        reads zeroes wherever nothing was written, also in the unwritten part of a chunk
        a small write took, so both boxes' copies of a new thin volume are identical
        without writing anything, and no box's old bytes show through."""
        # No -W: lvcreate refuses --wipesignatures for a thin pool (measured in the lab).
        self._runner.run([LVCREATE, "-q", "-y", "-Z", "y", "--type", THIN_POOL,
                          "-L", f"{size}b", "--addtag", TAG, "-n", name, "--", vg],
                         timeout=120)

    def create_thin(self, vg: str, pool: str, name: str, size: int) -> None:
        """A thin volume of ``pool``. Not zeroed, neither its first block nor whole
        (create's reasons do not hold: it reads zeroes until written, see create_pool),
        and writing zeroes would take the whole volume's space from the pool."""
        self._runner.run([LVCREATE, "-q", "-y", "-V", f"{size}b", "--thinpool", pool,
                          "--addtag", TAG, "-n", name, "--", vg], timeout=120)

    def tagged(self, tag: str = TAG) -> dict[str, str]:
        """LV name -> its volume group, for every volume (thick or thin) the cluster made
        on this box (``tag``: the targets' reservations LVs instead); its thin pools are
        not volumes (``pools``)."""
        return {row.name: row.vg for row in self.cluster_lvs(tag) if not row.is_pool}

    def pools(self) -> list[LvRow]:
        """The cluster's thin pools on this box, with their fill."""
        return [row for row in self.cluster_lvs() if row.is_pool]

    def cluster_lvs(self, tag: str = TAG) -> list[LvRow]:
        """Every LV the cluster made on this box (volumes and thin pools)."""
        command = f"lvs @{tag}"
        result = self._runner.run([LVS, "--reportformat", "json", "--units", "b", "--nosuffix",
                                   "-o", _REPORT_FIELDS, f"@{tag}"], check=False)
        if not result.ok:
            raise IscsihaError.single("lvs-failed", "command", command,
                                      "a listing of this box's LVs", result.stderr.strip())
        rows = lv_rows(result.stdout)
        if rows is None:
            raise IscsihaError.single("lvm-output-unexpected", "command", command,
                                      f"lvs' JSON report of {_REPORT_FIELDS}",
                                      result.stdout.strip()[:200])
        return rows

    def extend(self, vg: str, name: str, size: int) -> None:
        self._runner.run([LVEXTEND, "-q", "-L", f"{size}b", "--", f"{vg}/{name}"], timeout=120)

    def remove(self, vg: str, name: str) -> None:
        self._runner.run([LVREMOVE, "-q", "-y", "--", f"{vg}/{name}"], timeout=120)


def lv_rows(out: str) -> list[LvRow] | None:
    """lvs' JSON report (--reportformat json) as rows; None when it is not one, or a
    value is not what lvs prints (a tool's output: checked, never trusted)."""
    try:
        data: Any = json.loads(out)
    except (ValueError, RecursionError):
        return None
    report = data.get("report") if isinstance(data, dict) else None
    if not isinstance(report, list) or len(report) > 1:
        return None
    if not report:
        return []
    lvs = report[0].get("lv") if isinstance(report[0], dict) else None
    if not isinstance(lvs, list):
        return None
    rows = [_row(item) for item in lvs]
    return None if None in rows else [r for r in rows if r is not None]


def _row(item: object) -> LvRow | None:
    if not isinstance(item, dict) or not all(
            isinstance(item.get(k), str) for k in _REPORT_FIELDS.split(",")):
        return None
    name, vg, pool = item["lv_name"], item["vg_name"], item["pool_lv"]
    size = parse_decimal(item["lv_size"], 0, SIZE_MAX)
    (data_ok, data), (meta_ok, meta) = (_percent(item["data_percent"]),
                                        _percent(item["metadata_percent"]))
    if (vg_name_problem(name) or vg_name_problem(vg) or (pool and vg_name_problem(pool))
            or size is None or _SEGTYPE.match(item["segtype"]) is None
            or not data_ok or not meta_ok):
        return None
    return LvRow(name, vg, size, item["segtype"], pool, data, meta)


def _percent(text: str) -> tuple[bool, float | None]:
    """(fine, the percentage lvs printed); blank (not a thin LV) is fine and None."""
    if text == "":
        return True, None
    if _PERCENT.match(text) is None or float(text) > 100:
        return False, None
    return True, float(text)


def _numbers(out: str, count: int, command: str) -> list[int]:
    """``count`` whole numbers of bytes from an lvm report, or a report naming the output."""
    numbers = [parse_decimal(w, 0, SIZE_MAX) for w in out.split()]
    if len(numbers) != count or None in numbers:
        raise IscsihaError.single("lvm-output-unexpected", "command", command,
                                  f"{count} whole number(s) of bytes", out.strip()[:200])
    return [n for n in numbers if n is not None]
