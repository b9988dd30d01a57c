"""The GRUB environment block on the ESP: read it, and write it with grub-editenv.

The ESP stays unmounted (iscsiha-provision only reads it once, at the first boot):
mtools reads and writes its FAT directly, so this works on a box and on any Linux
machine, with or without vfat in its kernel, and nothing else has the ESP open.

A write never edits the block in place. grub-editenv makes the new block in a
temporary folder; it must hold exactly the variables meant; it goes onto the ESP as
grubenv.new, the device is flushed, it is renamed over grubenv, flushed again, and
read back. A power cut leaves the old block or the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile

from iscsiha.errors import IscsihaError
from iscsiha.executors import files
from iscsiha.executors.runner import Runner
from iscsiha.model import bootenv
from iscsiha.model.bootenv import BootEnv

ENV_PATH = "EFI/iscsiha/grubenv"  # on the ESP; image/lib/grub-ab.cfg reads the same
GRUB_EDITENV = "/usr/bin/grub-editenv"
MCOPY = "/usr/bin/mcopy"
MMOVE = "/usr/bin/mmove"
# mtools otherwise refuses a FAT whose geometry fields it finds unusual.
MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}
MOUNTINFO = "/proc/self/mountinfo"


class EspBootEnv:
    """The block on the ESP partition ``device`` (block device ``devnum``)."""

    def __init__(self, runner: Runner, device: str, devnum: tuple[int, int],
                 mountinfo: str = MOUNTINFO) -> None:
        self.runner = runner
        self.device = device
        self.devnum = devnum
        self.mountinfo = mountinfo

    @property
    def where(self) -> str:
        return f"{self.device}:/{ENV_PATH}"

    def read(self) -> BootEnv:
        with tempfile.TemporaryDirectory(prefix="iscsiha-env-") as tmp:
            return bootenv.read(self._fetch(tmp, "read"), self.where)

    def write(self, env: BootEnv) -> None:
        self._not_mounted()
        meant = bootenv.to_variables(env)
        with tempfile.TemporaryDirectory(prefix="iscsiha-env-") as tmp:
            new = os.path.join(tmp, "grubenv")
            self.runner.run([GRUB_EDITENV, new, "create"])
            self.runner.run([GRUB_EDITENV, new, "set", *(f"{k}={v}" for k, v in meant.items())])
            data = files.read(new) or b""
            written = bootenv.parse_block(data, new)
            if list(written.items()) != list(meant.items()):
                raise IscsihaError.single("boot-env-mismatch", "file", new,
                                          f"the variables {meant}",
                                          f"grub-editenv wrote {written}; the ESP's block is "
                                          "left as it was")
            self._mtools([MCOPY, "-o", "-i", self.device, new, f"::/{ENV_PATH}.new"])
            self._flush()
            self._mtools([MMOVE, "-D", "o", "-i", self.device, f"::/{ENV_PATH}.new",
                          f"::/{ENV_PATH}"])
            self._flush()
            if self._fetch(tmp, "check") != data:
                raise IscsihaError.single("boot-env-mismatch", "file", self.where,
                                          "reading back the block just written",
                                          "reads back as something else")

    def _fetch(self, tmp: str, name: str) -> bytes:
        local = os.path.join(tmp, name)
        done = self.runner.run([MCOPY, "-n", "-i", self.device, f"::/{ENV_PATH}", local],
                               check=False, env=MTOOLS_ENV, timeout=30.0)
        data = files.read(local)
        if not done.ok or data is None:
            detail = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
            raise IscsihaError.single("no-boot-env", "file", self.where,
                                      "the boot environment image/build puts on the ESP",
                                      f"cannot be read: {detail[-1]}")
        return data

    def _mtools(self, argv: list[str]) -> None:
        self.runner.run(argv, env=MTOOLS_ENV, timeout=30.0)

    def _flush(self) -> None:
        """Write the device's dirty pages out (fsync of a block device flushes them all)."""
        fd = os.open(self.device, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _not_mounted(self) -> None:
        """A mounted FAT caches its directory: writing under it could be undone."""
        wanted = f"{self.devnum[0]}:{self.devnum[1]}"
        text = files.read(self.mountinfo) or b""
        for line in text.decode(errors="replace").splitlines():
            fields = line.split()
            if len(fields) > 4 and fields[2] == wanted:
                raise IscsihaError.single("esp-mounted", "partition", self.device,
                                          "an ESP nothing has mounted (umount it first)",
                                          f"is mounted at {fields[4]}")
