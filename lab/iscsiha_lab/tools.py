"""The host programs the lab runs, by absolute path, with the Debian package that has each."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Tool:
    path: str
    package: str


IP = Tool("/usr/sbin/ip", "iproute2")
UNSHARE = Tool("/usr/bin/unshare", "util-linux")
NSENTER = Tool("/usr/bin/nsenter", "util-linux")
MOUNT = Tool("/usr/bin/mount", "mount")
UMOUNT = Tool("/usr/bin/umount", "mount")
CHROOT = Tool("/usr/sbin/chroot", "coreutils")
CP = Tool("/usr/bin/cp", "coreutils")
MKE2FS = Tool("/usr/sbin/mke2fs", "e2fsprogs")
MMDEBSTRAP = Tool("/usr/bin/mmdebstrap", "mmdebstrap")
IPMI_SIM = Tool("/usr/bin/ipmi_sim", "openipmi")
QNETD = Tool("/usr/bin/corosync-qnetd", "corosync-qnetd")
QNETD_TOOL = Tool("/usr/bin/corosync-qnetd-tool", "corosync-qnetd")
QNETD_CERTUTIL = Tool("/usr/bin/corosync-qnetd-certutil", "corosync-qnetd")
# The appliance nodes' boot disks (boot_disk.py) and the boot loader's stand-in
# (boot_loader.py, through iscsiha's EspBootEnv, which runs mcopy, mmove, grub-editenv).
SFDISK = Tool("/usr/sbin/sfdisk", "fdisk")
MKFS_VFAT = Tool("/usr/sbin/mkfs.vfat", "dosfstools")
MMD = Tool("/usr/bin/mmd", "mtools")
MCOPY = Tool("/usr/bin/mcopy", "mtools")
MMOVE = Tool("/usr/bin/mmove", "mtools")
GRUB_EDITENV = Tool("/usr/bin/grub-editenv", "grub-common")

# Needed to run a lab (building the initiator image also needs MMDEBSTRAP).
RUN_TOOLS = (IP, CP, UNSHARE, NSENTER, MOUNT, UMOUNT, CHROOT, MKE2FS, IPMI_SIM, QNETD, QNETD_TOOL,
             QNETD_CERTUTIL, SFDISK, MKFS_VFAT, MMD, MCOPY, MMOVE, GRUB_EDITENV)


def missing(tools: tuple[Tool, ...] = RUN_TOOLS) -> list[Tool]:
    return [t for t in tools if not os.access(t.path, os.X_OK)]
