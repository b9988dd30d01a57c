"""The boot loader's stand-in: before each boot of an appliance node, choose its root as GRUB would.

Run by the supervisor before every boot of an appliance node (its power on, a power
cycle through its BMC, a reboot the guest does itself). It reads the node's boot
disk as GRUB reads a box's: the GPT for the partitions, the environment block on the
ESP (iscsiha's own EspBootEnv, through mtools' FILE@@OFFSET), each partition's ext4
superblock for the UUIDs; boot_choice.choose decides; a trial's used-up try is saved
to the ESP before the trial boots. The answer is the kernel's root and slot words.

What it does not cover of a real box: GRUB's own code (load_env, save_env, search,
configfile: image/lib/grub-ab.cfg is pinned by text in tests/unit, and the qemu
image tier boots it for real) and the kernel and initramfs of the slot (UML boots
its own kernel with the slot's root filesystem).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from iscsiha.errors import IscsihaError
from iscsiha.executors.bootenv import EspBootEnv
from iscsiha.executors.runner import Runner
from iscsiha.model.bootenv import BootEnv
from iscsiha.views import format_report
from iscsiha_lab import boot_disk
from iscsiha_lab.boot_choice import BootChoice, choose

UBD_DISK = "/dev/ubda"  # the boot disk is the node's ubd0


class DiskFileBootEnv(EspBootEnv):
    """The block on the ESP inside a disk file that no kernel has open (the node is off)."""

    def __init__(self, runner: Runner, disk: Path, esp_offset: int) -> None:
        # mountinfo /dev/null: nothing on this host mounts a partition of a disk file.
        super().__init__(runner, f"{disk}@@{esp_offset}", (0, 0), mountinfo="/dev/null")
        self.disk = disk

    def _flush(self) -> None:
        fd = os.open(self.disk, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@dataclass(frozen=True)
class Boot:
    choice: BootChoice
    number: int  # the partition booted: /dev/ubda<number>
    notes: tuple[str, ...]  # what did not go as on a healthy disk (block unreadable, ...)

    def kernel_words(self) -> list[str]:
        return [f"root={UBD_DISK}{self.number}", f"iscsiha.slot={self.choice.slot}"]


def choose_boot(runner: Runner, disk: Path, flashed_uuid: str) -> Boot:
    """Choose the root for the next boot from ``disk``; saves the used-up try, if any."""
    parts = boot_disk.read_partitions(runner, disk)
    filesystems: dict[str, str] = {}
    for part in parts.values():
        uuid = boot_disk.filesystem_uuid(disk, part)
        if uuid is not None:
            filesystems.setdefault(uuid, part.name)  # GRUB's search takes the first
    block = DiskFileBootEnv(runner, disk, parts[boot_disk.ESP_NAME].offset)
    notes: list[str] = []
    env: BootEnv | None
    try:
        env = block.read()
    except IscsihaError as exc:
        # GRUB's load_env fails too: no variables, so good slot a, nothing armed.
        notes.append("boot environment unreadable: "
                     + format_report(exc.reports[0]).splitlines()[0])
        env = None

    def save(new: BootEnv) -> bool:
        try:
            block.write(new)
            return True
        except IscsihaError as exc:
            notes.append("cannot save the used-up try: "
                         + format_report(exc.reports[0]).splitlines()[0])
            return False

    choice = choose(env, filesystems, flashed_uuid, save)
    return Boot(choice, parts[choice.partition].number, tuple(notes))
