"""The boot disk's partitions by GPT name, and raw reads and writes of one of them.

Partitions are found through sysfs on the disk the running root is on (or the disk
given), by the name the kernel read from the GPT (``PARTNAME`` in each partition's
uevent). /dev/disk/by-partlabel would do on one disk, but a second disk flashed
with the same image (a spare, or one being prepared) has the same names, and udev's
link then points at whichever it saw last.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from iscsiha.errors import IscsihaError
from iscsiha.executors import files

CHUNK = 4 << 20
SECTOR = 512
Progress = Callable[[int], None]  # bytes done so far


@dataclass(frozen=True)
class Partition:
    name: str  # the GPT partition name (root-a, root-b, esp)
    kname: str  # the kernel's name (vda3, loop0p3, nvme0n1p3)
    devnum: tuple[int, int]
    size: int  # bytes

    @property
    def path(self) -> str:
        return f"/dev/{self.kname}"


class Disks:
    """Reads sysfs under ``sys`` and device nodes under ``dev``; the running root is the
    filesystem mounted at ``root`` (tests pass trees of their own)."""

    def __init__(self, sys: str = "/sys", dev: str = "/dev", root: str = "/") -> None:
        self.sys = sys
        self.dev = dev
        self.root = root

    def root_devnum(self) -> tuple[int, int]:
        st = os.stat(self.root)
        return os.major(st.st_dev), os.minor(st.st_dev)

    def disk_of_root(self) -> str:
        """The kernel name of the disk holding the mounted root filesystem."""
        part = self._block(self.root_devnum())
        if not os.path.exists(os.path.join(part, "partition")):
            raise IscsihaError.single("root-not-on-partition", "root filesystem",
                                      os.path.basename(part),
                                      "a partition of the boot disk (root-a or root-b)")
        return os.path.basename(os.path.dirname(part))

    def disk_of_root_or_none(self) -> str | None:
        try:
            return self.disk_of_root()
        except IscsihaError:
            return None

    def disk_at(self, path: str) -> str:
        """The kernel name of the whole disk at the device node ``path``."""
        try:
            st = os.stat(path)
        except OSError as exc:
            raise IscsihaError.single("no-such-disk", "disk", path, "a block device",
                                      exc.strerror or str(exc)) from exc
        if not stat.S_ISBLK(st.st_mode):
            raise IscsihaError.single("no-such-disk", "disk", path, "a block device",
                                      "is not one")
        block = self._block((os.major(st.st_rdev), os.minor(st.st_rdev)))
        if os.path.exists(os.path.join(block, "partition")):
            raise IscsihaError.single("not-a-whole-disk", "disk", path,
                                      "a whole disk (e.g. /dev/sdb, /dev/loop0)",
                                      "is a partition")
        return os.path.basename(block)

    def partitions(self, disk: str) -> dict[str, Partition]:
        """The named partitions of ``disk``; a name found twice is refused."""
        folder = os.path.join(self.sys, "class", "block", disk)
        found: dict[str, Partition] = {}
        try:
            children = sorted(os.listdir(folder))
        except OSError as exc:
            raise IscsihaError.single("no-such-disk", "disk", disk, "a disk in /sys/class/block",
                                      exc.strerror or str(exc)) from exc
        for child in children:
            part = os.path.join(folder, child)
            if not os.path.exists(os.path.join(part, "partition")):
                continue
            uevent = _uevent(os.path.join(part, "uevent"))
            name = uevent.get("PARTNAME")
            if not name:
                continue
            if name in found:
                raise IscsihaError.single("partition-name-twice", f"disk {disk}", name,
                                          "each partition name once on the boot disk",
                                          f"on {found[name].kname} and {child}")
            try:
                devnum = (int(uevent["MAJOR"]), int(uevent["MINOR"]))
                sectors = int(_read_text(os.path.join(part, "size")))
            except (KeyError, ValueError) as exc:
                raise IscsihaError.single("sysfs-unreadable", "partition", child,
                                          "MAJOR, MINOR in its uevent and a size", str(exc)
                                          ) from exc
            found[name] = Partition(name, uevent.get("DEVNAME", child), devnum, sectors * SECTOR)
        return found

    def node(self, part: Partition) -> str:
        """The device node of ``part``, checked to be that device (not a stale node)."""
        path = os.path.join(self.dev, part.kname)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise IscsihaError.single("no-device-node", "partition", part.name,
                                      f"a device node {path}", exc.strerror or str(exc)) from exc
        if not stat.S_ISBLK(st.st_mode) or (os.major(st.st_rdev),
                                            os.minor(st.st_rdev)) != part.devnum:
            raise IscsihaError.single("no-device-node", "partition", part.name,
                                      f"{path} being block device {part.devnum[0]}:"
                                      f"{part.devnum[1]}", "it is something else")
        return path

    def _block(self, devnum: tuple[int, int]) -> str:
        link = os.path.join(self.sys, "dev", "block", f"{devnum[0]}:{devnum[1]}")
        if not os.path.exists(link):
            raise IscsihaError.single("sysfs-unreadable", "block device",
                                      f"{devnum[0]}:{devnum[1]}", f"an entry {link}")
        return os.path.realpath(link)


def _read_text(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read(4096).strip()


def _uevent(path: str) -> dict[str, str]:
    try:
        text = _read_text(path)
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


# -- raw data -----------------------------------------------------------------------------------

def read_at(path: str, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` of a file or device (fewer at its end)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)
    except OSError as exc:
        raise IscsihaError.single("unreadable", "file", path, "a file root may read",
                                  exc.strerror or str(exc)) from exc


def sha256_of(path: str, size: int, progress: Progress, *, uncached: bool = False) -> str:
    """The SHA-256 of the first ``size`` bytes of ``path``; a shorter file is refused.

    ``uncached``: drop the page cache of the range first, so a device is hashed as
    it reads back from the disk, not from what was just written.
    """
    digest = hashlib.sha256()
    done = 0
    try:
        with open(path, "rb", buffering=0) as f:
            if uncached:
                os.posix_fadvise(f.fileno(), 0, size, os.POSIX_FADV_DONTNEED)
            while done < size:
                chunk = f.read(min(CHUNK, size - done))
                if not chunk:
                    break
                digest.update(chunk)
                done += len(chunk)
                progress(done)
    except OSError as exc:
        raise IscsihaError.single("unreadable", "file", path, "a file root may read",
                                  exc.strerror or str(exc)) from exc
    if done != size:
        raise IscsihaError.single("truncated", "file", path, f"{size} bytes",
                                  f"ends after {done} bytes")
    return digest.hexdigest()


def write_stream(chunks: Iterator[bytes], size: int, device: str, progress: Progress) -> str:
    """Write ``chunks`` (``size`` bytes in all, as they arrive) to the start of ``device``,
    then fsync; the SHA-256 of what was written (the caller does not arm a slot whose
    image came short or different)."""
    digest = hashlib.sha256()

    def hashed() -> Iterator[bytes]:
        for chunk in chunks:
            digest.update(chunk)
            yield chunk
    _write_chunks(hashed(), size, device, progress)
    return digest.hexdigest()


def write_image(source: str, size: int, device: str, progress: Progress) -> None:
    """Copy the first ``size`` bytes of ``source`` to the start of ``device``, then fsync."""
    try:
        with open(source, "rb", buffering=0) as src:
            _write_chunks(_chunks(src.read, size, source), size, device, progress)
    except OSError as exc:
        raise IscsihaError.single("unreadable", "file", source, "a file root may read",
                                  exc.strerror or str(exc)) from exc


def _chunks(read: Callable[[int], bytes], size: int, source: str) -> Iterator[bytes]:
    done = 0
    while done < size:
        try:
            chunk = read(min(CHUNK, size - done))
        except OSError as exc:  # not the device's write error
            raise IscsihaError.single("unreadable", "file", source, "a file root may read",
                                      exc.strerror or str(exc)) from exc
        if not chunk:
            raise IscsihaError.single("truncated", "file", source, f"{size} bytes",
                                      f"ended after {done} bytes while being written")
        done += len(chunk)
        yield chunk


def _write_chunks(chunks: Iterator[bytes], size: int, device: str, progress: Progress) -> None:
    """Write ``chunks`` (``size`` bytes in all) to the start of ``device``, then fsync.

    The device is opened with O_EXCL: the kernel refuses that while the partition is
    mounted or held (device mapper, md), so a slot in use is never written.
    """
    try:
        dst = os.open(device, os.O_WRONLY | os.O_EXCL | os.O_CLOEXEC)
    except OSError as exc:
        raise IscsihaError.single("partition-busy", "partition", device,
                                  "a partition nothing has mounted or open",
                                  exc.strerror or str(exc)) from exc
    done = 0
    try:
        for chunk in chunks:
            files.write_all(dst, chunk)
            done += len(chunk)
            progress(done)
        os.fsync(dst)
    except OSError as exc:
        raise IscsihaError.single("write-failed", "partition", device,
                                  f"{size} bytes written", f"after {done}: "
                                  f"{exc.strerror or exc}") from exc
    finally:
        os.close(dst)
