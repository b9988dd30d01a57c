"""An appliance node's boot disk: a sparse GPT disk file laid out as image/build lays out a box.

    1  esp     32 MiB FAT with EFI/iscsiha/grubenv (root A good, its UUID), as image/build
    2  root-a  a copy of the lab root image (iscsiha-lab-root.ext4)
    3  root-b  the same size, empty (what `iscsiha upgrade stage` writes)

No BIOS boot partition (UML needs no boot loader; boot_loader.py stands in for GRUB),
and the ESP is FAT16 of 32 MiB (a FAT32 that small has too few clusters; mtools, the
one thing that reads it, does not care). Partition numbers are the kernel's: the guest
sees /dev/ubda1 to ubda3 and finds them by name, as on a box.

The root image is copied extent by extent (SEEK_DATA/SEEK_HOLE, copy_file_range), so
the disk stays as sparse as the image and only its data is read.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from iscsiha.errors import IscsihaError, bounded, clip
from iscsiha.executors.bootenv import ENV_PATH, MTOOLS_ENV
from iscsiha.executors.runner import Runner
from iscsiha.model.bootenv import partition_name
from iscsiha.model.root_image import SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE, ext4_superblock
from iscsiha_lab.tools import GRUB_EDITENV, MCOPY, MKFS_VFAT, MMD, SFDISK

MIB = 1024 * 1024
SECTOR = 512
ESP_NAME = "esp"
ESP_MIB = 32
FIRST_MIB = 1  # the GPT before the first partition, aligned as image/build aligns
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"  # Discoverable Partitions: x86-64 root
NAMES = (ESP_NAME, partition_name("a"), partition_name("b"))


@dataclass(frozen=True)
class DiskPartition:
    number: int  # the kernel's partition number: /dev/ubda<number>
    name: str  # GPT partition name
    offset: int  # bytes from the start of the disk file
    size: int  # bytes


def layout(root_bytes: int) -> list[DiskPartition]:
    """Where each partition goes for a root image of ``root_bytes`` (whole MiB each)."""
    root_mib = -(-root_bytes // MIB)
    parts, start = [], FIRST_MIB
    for number, (name, mib) in enumerate(
            ((ESP_NAME, ESP_MIB), (NAMES[1], root_mib), (NAMES[2], root_mib)), start=1):
        parts.append(DiskPartition(number, name, start * MIB, mib * MIB))
        start += mib
    return parts


def disk_bytes(parts: list[DiskPartition]) -> int:
    """The disk file's size: the last partition's end and room for the backup GPT."""
    return max(p.offset + p.size for p in parts) + FIRST_MIB * MIB


def sfdisk_script(parts: list[DiskPartition]) -> str:
    lines = ["label: gpt", "unit: sectors", f"first-lba: {FIRST_MIB * MIB // SECTOR}"]
    for p in parts:
        kind = ESP_TYPE if p.name == ESP_NAME else ROOT_TYPE
        lines.append(f"start={p.offset // SECTOR}, size={p.size // SECTOR}, type={kind}, "
                     f'name="{p.name}"')
    return "\n".join(lines) + "\n"


def parse_partitions(text: str, where: str) -> dict[str, DiskPartition]:
    """The named partitions in ``sfdisk --json``'s output for a GPT disk file."""
    def bad(what: str, value: object) -> IscsihaError:
        return IscsihaError.single("bad-boot-disk", "disk", where,
                                   "a GPT disk with partitions esp, root-a and root-b "
                                   "(as the lab makes it)", f"{what}: {bounded(value)!r}")

    try:
        table = json.loads(text)["partitiontable"]
        label, sector, entries = table["label"], table.get("sectorsize", SECTOR), \
            table["partitions"]
    except (ValueError, KeyError, TypeError) as exc:
        raise bad("sfdisk --json gave", clip(text, 120)) from exc
    if label != "gpt" or not isinstance(entries, list) or not isinstance(sector, int):
        raise bad("partition table", label)
    found: dict[str, DiskPartition] = {}
    for entry in entries:
        number = re.search(r"(\d+)$", str(entry.get("node", ""))) if isinstance(
            entry, dict) else None
        if number is None or not isinstance(entry.get("start"), int) or not isinstance(
                entry.get("size"), int):
            raise bad("partition entry", entry)
        name = str(entry.get("name", ""))
        if name in found:
            raise bad("a partition name twice", name)
        found[name] = DiskPartition(int(number.group(1)), name, entry["start"] * sector,
                                    entry["size"] * sector)
    missing = [n for n in NAMES if n not in found]
    if missing:
        raise bad("no partition named", ", ".join(missing))
    return found


def read_partitions(runner: Runner, disk: Path) -> dict[str, DiskPartition]:
    done = runner.run([SFDISK.path, "--json", str(disk)], check=False, timeout=30.0)
    if not done.ok:
        raise IscsihaError.single("bad-boot-disk", "disk", str(disk), "a GPT disk file",
                                  f"sfdisk says: {clip(done.stderr.strip(), 200)}")
    return parse_partitions(done.stdout, str(disk))


def filesystem_uuid(disk: Path, part: DiskPartition) -> str | None:
    """The UUID of the ext4 in ``part``; None: it holds none (the ESP, an empty slot)."""
    with disk.open("rb") as f:
        f.seek(part.offset + SUPERBLOCK_OFFSET)
        block = f.read(SUPERBLOCK_SIZE)
    try:
        return ext4_superblock(block, f"{disk}:{part.name}").uuid
    except IscsihaError:
        return None


def copy_sparse(source: Path, target: Path, offset: int) -> int:
    """Copy ``source``'s data extents into ``target`` at ``offset``; holes stay holes.

    Returns the bytes copied (the data, not the apparent size).
    """
    copied = 0
    with source.open("rb") as src, target.open("r+b") as dst:
        size = os.fstat(src.fileno()).st_size
        pos = 0
        while pos < size:
            try:
                start = os.lseek(src.fileno(), pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            while start < end:
                n = os.copy_file_range(src.fileno(), dst.fileno(), end - start,
                                       start, offset + start)
                if n <= 0:
                    raise IscsihaError.single("copy-failed", "file", str(source),
                                              f"{end - start} bytes copied into {target}",
                                              f"copy_file_range stopped at byte {start}")
                start += n
                copied += n
            pos = end
        os.fsync(dst.fileno())
    return copied


def make(runner: Runner, disk: Path, root_image: Path) -> float:
    """Make ``disk`` anew for ``root_image`` (root A good); returns the seconds it took."""
    started = time.monotonic()
    uuid = root_uuid(root_image)
    partial = disk.with_name(disk.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        _fill(runner, partial, root_image, uuid)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(disk)
    return time.monotonic() - started


def _fill(runner: Runner, partial: Path, root_image: Path, uuid: str) -> None:
    parts = layout(root_image.stat().st_size)
    with partial.open("wb") as f:
        f.truncate(disk_bytes(parts))
    runner.run([SFDISK.path, "--quiet", "--no-reread", "--no-tell-kernel", str(partial)],
               input=sfdisk_script(parts), timeout=60.0)
    esp = parts[0]
    # -F 16 said: mkfs.vfat would pick FAT32 from the whole disk file's size.
    runner.run([MKFS_VFAT.path, "-F", "16", "-n", "ISCSIHA-ESP", "--offset",
                str(esp.offset // SECTOR), str(partial), str(esp.size // 1024)], timeout=60.0)
    image = f"{partial}@@{esp.offset}"
    with tempfile.TemporaryDirectory(prefix="iscsiha-lab-esp-") as tmp:
        env = os.path.join(tmp, "grubenv")
        # What image/build writes: root A good, its UUID, nothing armed.
        runner.run([GRUB_EDITENV.path, env, "create"])
        runner.run([GRUB_EDITENV.path, env, "set", "iscsiha_good=a", "iscsiha_trial=",
                    "iscsiha_tries=0", f"iscsiha_uuid_a={uuid}", "iscsiha_uuid_b="])
        folder = os.path.dirname(ENV_PATH)
        runner.run([MMD.path, "-i", image, "::/EFI", f"::/{folder}"], env=MTOOLS_ENV)
        runner.run([MCOPY.path, "-i", image, env, f"::/{ENV_PATH}"], env=MTOOLS_ENV)
    copy_sparse(root_image, partial, parts[1].offset)


def _superblock(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(SUPERBLOCK_OFFSET)
            return f.read(SUPERBLOCK_SIZE)
    except OSError as exc:
        raise IscsihaError.single("unreadable", "file", str(path), "the lab root image",
                                  exc.strerror or str(exc)) from exc


def root_uuid(root_image: Path) -> str:
    """The filesystem UUID of the image the boot disks are flashed with."""
    return ext4_superblock(_superblock(root_image), str(root_image)).uuid
