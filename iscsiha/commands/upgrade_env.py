"""What the upgrade commands work on: the boot disk's slots, the boot environment on its
ESP, and which slot this box booted from (docs/upgrade.md).

The booted slot is the partition the running root is on (root-a or root-b); the
kernel command line's ``iscsiha.slot=`` (set by GRUB's A/B script) must agree with it.
With ``--disk`` the commands work on another disk (a spare boot disk, or an image on
a loop device): nothing was booted from it, and only its good slot is protected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from iscsiha.errors import IscsihaError, bounded
from iscsiha.executors.bootenv import EspBootEnv
from iscsiha.executors.partitions import Disks, Partition, read_at
from iscsiha.executors.runner import Runner
from iscsiha.executors.slot_mount import SlotMounts
from iscsiha.model import pair_upgrade
from iscsiha.model.bootenv import SLOTS, Slot, partition_name
from iscsiha.model.root_image import (
    RELEASE_PATH,
    SUPERBLOCK_OFFSET,
    SUPERBLOCK_SIZE,
    Ext4,
    Release,
    ext4_superblock,
    parse_release,
)

ESP_NAME = "esp"
CMDLINE_KEY = "iscsiha.slot"
DEBUGFS = "/usr/sbin/debugfs"
LOCK = "/run/iscsiha/upgrade.lock"


def booted_slot(cmdline: str) -> Slot | None:
    """The slot GRUB says it booted (``iscsiha.slot=a|b``); None when it says nothing."""
    values = [word.split("=", 1)[1] for word in cmdline.split()
              if word.startswith(f"{CMDLINE_KEY}=")]
    if not values:
        return None
    if len(values) > 1 or values[0] not in SLOTS:
        raise IscsihaError.single("bad-kernel-slot", "kernel command line", bounded(values),
                                  f"one {CMDLINE_KEY}=a or {CMDLINE_KEY}=b")
    return "a" if values[0] == "a" else "b"


@dataclass(frozen=True)
class Layout:
    """The boot disk: its two root slots and its ESP."""

    disk: str
    slots: dict[Slot, Partition]
    esp: Partition


def layout(partitions: dict[str, Partition], disk: str) -> Layout:
    missing = [n for n in (partition_name("a"), partition_name("b"), ESP_NAME)
               if n not in partitions]
    if missing:
        raise IscsihaError.single("not-an-ab-disk", "disk", disk,
                                  "the iscsiha image's partitions root-a, root-b and esp",
                                  f"has no {', '.join(missing)}")
    return Layout(disk, {s: partitions[partition_name(s)] for s in SLOTS},
                  partitions[ESP_NAME])


def root_slot(lay: Layout, root_devnum: tuple[int, int], cmdline: str) -> Slot:
    """The slot the running root is on, checked against what GRUB put on the command line."""
    on = [s for s, p in lay.slots.items() if p.devnum == root_devnum]
    if not on:
        raise IscsihaError.single("root-not-in-a-slot", "root filesystem",
                                  f"{root_devnum[0]}:{root_devnum[1]}",
                                  f"partition root-a or root-b of {lay.disk}")
    said = booted_slot(cmdline)
    if said is not None and said != on[0]:
        raise IscsihaError.single("slot-mismatch", "kernel command line", f"{CMDLINE_KEY}={said}",
                                  f"{CMDLINE_KEY}={on[0]}: the root is on "
                                  f"{partition_name(on[0])}")
    return on[0]


@dataclass
class UpgradeEnv:
    runner: Runner
    disks: Disks
    layout: Layout
    booted: Slot | None  # None: --disk, a disk this box did not boot from
    boot_env: EspBootEnv
    mounts: SlotMounts
    state_root: str = "/"  # the running root, whose state stage carries into the slot

    @property
    def record_path(self) -> str:
        """This box's pair-upgrade record, in the running root."""
        return os.path.join(self.state_root, pair_upgrade.PATH.lstrip("/"))

    def node(self, slot: Slot) -> str:
        return self.disks.node(self.layout.slots[slot])

    def filesystem(self, slot: Slot) -> Ext4 | None:
        """The slot's ext4 facts; None when it holds no ext4 (empty, zeroed, damaged)."""
        block = read_at(self.node(slot), SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE)
        try:
            return ext4_superblock(block, partition_name(slot))
        except IscsihaError:
            return None

    def release(self, slot: Slot) -> Release:
        """The release file inside the slot's root, read without mounting it."""
        where = f"{partition_name(slot)}:{RELEASE_PATH}"
        done = self.runner.run([DEBUGFS, "-R", f"cat {RELEASE_PATH}", self.node(slot)],
                               check=False, timeout=60.0)
        if not done.ok or not done.stdout.strip():
            detail = [ln for ln in done.stderr.splitlines() if not ln.startswith("debugfs ")]
            raise IscsihaError.single("no-release-file", "file", where,
                                      "the release file image/build writes",
                                      (detail[-1] if detail else "empty").strip())
        return parse_release(done.stdout, where)


def real_env(disk_path: str | None = None, disks: Disks | None = None,
             cmdline_path: str = "/proc/cmdline") -> UpgradeEnv:
    runner = Runner()
    disks = disks or Disks()
    if disk_path is None:
        disk = disks.disk_of_root()
    else:
        disk = disks.disk_at(disk_path)
        if disk == disks.disk_of_root_or_none():
            raise IscsihaError.single("disk-is-boot-disk", "--disk", disk_path,
                                      "another disk than the one this box runs from "
                                      "(leave --disk out for that one)")
    lay = layout(disks.partitions(disk), disk)
    booted = None
    if disk_path is None:
        with open(cmdline_path, encoding="utf-8", errors="replace") as f:
            cmdline = f.read(65536)
        booted = root_slot(lay, disks.root_devnum(), cmdline)
    esp = EspBootEnv(runner, disks.node(lay.esp), lay.esp.devnum)
    return UpgradeEnv(runner, disks, lay, booted, esp, SlotMounts(runner))
