"""`iscsiha upgrade stage FILE`: write a new root into the standby slot and arm one trial
boot of it (docs/upgrade.md).

In order, each step only once the one before held:

1. the checksum file and the manifest next to FILE are read and agree; FILE has the
   manifest's size and holds an ext4 of that UUID that fits in it (a truncated file
   is refused here, before minutes of hashing); its SHA-256 is the published one;
2. the standby slot is the one that is neither booted nor good; a box running a
   trial that is not yet marked good has no standby slot (refused);
3. anything armed is disarmed first, so a reboot while the slot is half written
   boots the good slot; then FILE is written, fsynced, and read back from the disk
   (page cache dropped) to the same SHA-256;
4. unless told not to, the slot is mounted and this box's state carried into it
   (iscsiha.commands.upgrade_carry), flushed and unmounted, whatever happened;
5. only then is the slot armed: its root UUID set, one trial boot.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from iscsiha.commands import upgrade_carry
from iscsiha.commands.upgrade_carry import Carried
from iscsiha.commands.upgrade_env import LOCK, UpgradeEnv
from iscsiha.errors import PARTLY_APPLIED, IscsihaError, Report
from iscsiha.executors import files
from iscsiha.executors.locks import exclusive_or_refuse
from iscsiha.executors.partitions import read_at, sha256_of, write_image, write_stream
from iscsiha.model import bootenv, pair_upgrade
from iscsiha.model.bootenv import BootEnv, Slot, other, partition_name
from iscsiha.model.root_image import (
    SUPERBLOCK_OFFSET,
    SUPERBLOCK_SIZE,
    Manifest,
    ext4_superblock,
    parse_manifest,
    parse_sha256_file,
    sidecars,
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Staged:
    slot: Slot
    partition: str
    manifest: Manifest
    seconds: float
    carried: Carried | None  # None: staged as published (--no-carry)


def standby_slot(env: BootEnv, booted: Slot | None) -> Slot:
    """The slot an upgrade may overwrite: neither the booted one nor the good one."""
    if booted is not None and booted != env.good:
        raise IscsihaError.single(
            "trial-not-good", "booted slot", booted,
            f"a box running its good slot ({env.good})",
            f"slot {booted} runs on trial and is not marked good yet: slot {env.good} is "
            "the way back, so neither may be overwritten (reboot to go back to "
            f"{env.good}, or wait for iscsiha-boot-good.service to mark {booted} good)")
    return other(env.good)


def checked_image(path: str) -> Manifest:
    """FILE's manifest once FILE, its checksum file and its manifest agree (no hashing)."""
    sha_path, manifest_path = sidecars(path)
    expected = parse_sha256_file(files.read_text(sha_path), sha_path)
    manifest = parse_manifest(files.read_text(manifest_path), manifest_path)
    if manifest.sha256 != expected:
        raise IscsihaError.single("checksum-mismatch", "file", manifest_path,
                                  f"the SHA-256 of {sha_path} ({expected})",
                                  f"says {manifest.sha256}: the two files are not of one build")
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise IscsihaError.single("unreadable", "file", path, "a root image file",
                                  exc.strerror or str(exc)) from exc
    if size != manifest.size:
        raise IscsihaError.single("wrong-size", "file", path,
                                  f"{manifest.size} bytes, as its manifest says",
                                  f"is {size} bytes: truncated, or another file")
    fs = ext4_superblock(read_at(path, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE), path)
    if fs.uuid != manifest.release.root_uuid:
        raise IscsihaError.single("wrong-filesystem", "file", path,
                                  f"the root filesystem {manifest.release.root_uuid} of its "
                                  "manifest", f"holds filesystem {fs.uuid}")
    if fs.size > size:
        raise IscsihaError.single("truncated", "file", path,
                                  f"at least the {fs.size} bytes its filesystem spans",
                                  f"is {size} bytes")
    return manifest


def percent(progress: Progress, what: str, total: int) -> Callable[[int], None]:
    """A byte counter that reports each tenth of ``total`` done."""
    shown = [-1]

    def tick(done: int) -> None:
        tenth = done * 10 // max(total, 1)
        if tenth != shown[0]:
            shown[0] = tenth
            progress(f"{what}: {tenth * 10}%")
    return tick


def carry_state(env: UpgradeEnv, slot: Slot, good: Slot, progress: Progress) -> Carried:
    """Mount the written slot, carry this box's state into it, flush, unmount; an error
    says the slot is left unarmed."""
    name = partition_name(slot)
    progress(f"mounting {name} to carry this box's state into it")
    try:
        with env.mounts.mounted(env.node(slot)) as point:
            carried = upgrade_carry.carry(env.state_root, point, progress)
    except IscsihaError as exc:
        raise IscsihaError([*exc.reports, Report(
            PARTLY_APPLIED, "slot", slot, "",
            f"{name} holds the new root but not this box's state, and is not armed: the "
            f"box boots slot {good} as before (stage again once the problem is solved)")]
        ) from exc
    progress(f"carried {len(carried.entries)} entries ({carried.files} files, "
             f"{carried.bytes} bytes) into {name}, flushed and unmounted it")
    return carried


# Writes the image to the device, reporting bytes done; returns the SHA-256 of what it
# wrote when it hashed as it went (a stream read once), None when it was checked before.
Writer = Callable[[str, Callable[[int], None]], "str | None"]


def stage(env: UpgradeEnv, path: str, progress: Progress, carry: bool = True,
          record_from: str | None = None) -> Staged:
    """Stage the image file at ``path``; ``record_from`` (the release this box runs) also
    records the stage as this box's part of a pair upgrade (iscsiha.model.pair_upgrade)."""
    start = time.monotonic()
    manifest = checked_image(path)
    with exclusive_or_refuse(LOCK, "upgrade command"):
        current, slot = _target(env, manifest, path)
        release = manifest.release
        progress(f"checking {path} ({manifest.size} bytes, iscsiha {release.version}, "
                 f"commit {release.commit})")
        digest = sha256_of(path, manifest.size, percent(progress, "checksum", manifest.size))
        if digest != manifest.sha256:
            raise IscsihaError.single("corrupt-image", "file", path,
                                      f"SHA-256 {manifest.sha256}", f"has SHA-256 {digest}")

        def write(device: str, tick: Callable[[int], None]) -> str | None:
            write_image(path, manifest.size, device, tick)
            return None
        return _write_and_arm(env, current, slot, manifest, write, progress, carry,
                              record_from, start)


def stage_stream(env: UpgradeEnv, manifest: Manifest, chunks: Iterator[bytes],
                 progress: Progress, record_from: str | None = None) -> Staged:
    """Stage an image arriving as ``chunks`` (the other box sends it: stage-root), hashed
    as it is written, then read back like a file's."""
    start = time.monotonic()
    with exclusive_or_refuse(LOCK, "upgrade command"):
        current, slot = _target(env, manifest, "the image sent")

        def write(device: str, tick: Callable[[int], None]) -> str | None:
            return write_stream(chunks, manifest.size, device, tick)
        return _write_and_arm(env, current, slot, manifest, write, progress, True,
                              record_from, start)


def _target(env: UpgradeEnv, manifest: Manifest, what: str) -> tuple[BootEnv, Slot]:
    """The boot environment and the slot to write, once nothing refuses the image."""
    current = env.boot_env.read()
    slot = standby_slot(current, env.booted)
    part = env.layout.slots[slot]
    good_fs = env.filesystem(current.good)
    release = manifest.release
    if manifest.size > part.size:
        raise IscsihaError.single("image-too-big", "file", what,
                                  f"at most the {part.size} bytes of "
                                  f"{partition_name(slot)}", f"is {manifest.size} bytes")
    if release.root_uuid in (current.uuid(current.good), good_fs.uuid if good_fs else None):
        raise IscsihaError.single(
            "same-root-uuid", "file", what,
            f"a root filesystem UUID other than the good slot {current.good}'s",
            f"holds {release.root_uuid}, as slot {current.good} does: it is the build "
            "this box runs (a new build has a new UUID: image/build derives it from "
            "SOURCE_DATE_EPOCH)")
    return current, slot


def _write_and_arm(env: UpgradeEnv, current: BootEnv, slot: Slot, manifest: Manifest,
                   write: Writer, progress: Progress, carry: bool, record_from: str | None,
                   start: float) -> Staged:
    release = manifest.release
    if current != bootenv.disarmed(current):
        progress(f"disarming the trial of slot {current.trial} first")
        current = bootenv.disarmed(current)
        env.boot_env.write(current)
    device = env.node(slot)
    name = partition_name(slot)
    not_armed = Report(PARTLY_APPLIED, "slot", slot, "",
                       f"{name} was overwritten but is not armed; the box boots slot "
                       f"{current.good} as before")
    progress(f"writing {name} ({device})")
    sent = write(device, percent(progress, f"writing {name}", manifest.size))
    if sent is not None and sent != manifest.sha256:
        raise IscsihaError([Report("corrupt-image", "image", "the image sent",
                                   f"SHA-256 {manifest.sha256}", f"arrived as {sent}"),
                            not_armed])
    progress(f"reading {name} back")
    back = sha256_of(device, manifest.size, percent(progress, "read back", manifest.size),
                     uncached=True)
    if back != manifest.sha256:
        raise IscsihaError([
            Report("read-back-mismatch", "partition", device, f"SHA-256 {manifest.sha256}",
                   f"reads back as {back}: the disk did not keep what was written"),
            not_armed])
    if record_from is not None:  # before the carry: the new root holds it too
        files.write_atomic(env.record_path, pair_upgrade.record_json(
            pair_upgrade.Record("staged", slot, release, record_from)).encode(), 0o600)
    carried = carry_state(env, slot, current.good, progress) if carry else None
    env.boot_env.write(bootenv.armed(current, slot, release.root_uuid))
    return Staged(slot, name, manifest, time.monotonic() - start, carried)


def cancel(env: UpgradeEnv) -> BootEnv | None:
    """Disarm the armed trial; the block as it was when something was armed, else None."""
    with exclusive_or_refuse(LOCK, "upgrade command"):
        current = env.boot_env.read()
        if current.armed is None:
            return None
        env.boot_env.write(bootenv.disarmed(current))
        return current
