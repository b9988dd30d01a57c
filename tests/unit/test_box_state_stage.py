"""The carry inside `iscsiha upgrade stage`: the slot mounted on a private folder, always
unmounted (a fake runner stands in for mount, sync and umount), and armed only once
the box's state is in it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from iscsiha.commands import upgrade_stage
from iscsiha.commands.upgrade_env import Layout, UpgradeEnv
from iscsiha.errors import PARTLY_APPLIED, IscsihaError
from iscsiha.executors.bootenv import EspBootEnv
from iscsiha.executors.partitions import Disks, Partition
from iscsiha.executors.runner import CommandResult, Runner
from iscsiha.executors.slot_mount import MOUNT, SYNC, UMOUNT, SlotMounts
from iscsiha.model.bootenv import BootEnv
from tests.unit.fake_roots import cluster_box, need_root, new_root
from tests.unit.root_images import MIB, make_ext4, write_artifact

UUID_A = "6f2a3c1e-0b7d-5e4f-9a8b-1c2d3e4f5a6b"
UUID_B = "0d9e8f7a-6b5c-5d4e-8f3a-2b1c0d9e8f7a"


class FakeMountRunner:
    """mount "mounts" ``root`` by putting a link to it where the slot would be mounted;
    umount takes it away again (or fails, when told to)."""

    def __init__(self, root: Path | None = None, umount_fails: bool = False) -> None:
        self.root = root
        self.umount_fails = umount_fails
        self.argv: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float | None = 60.0,
            **_: Any) -> CommandResult:
        self.argv.append(tuple(argv))
        point = argv[-1]
        rc, err = 0, ""
        if argv[0] == MOUNT and self.root is not None:
            os.rmdir(point)
            os.symlink(self.root, point)
        elif argv[0] == UMOUNT and self.umount_fails:
            rc, err = 32, f"umount: {point}: target is busy."
        elif argv[0] == UMOUNT and os.path.islink(point):
            os.unlink(point)
            os.mkdir(point)
        result = CommandResult(tuple(argv), rc, "", err, 0.0)
        if check and rc:
            raise IscsihaError.single("command-failed", "command", argv[0], "exit code 0")
        return result

    def programs(self) -> list[str]:
        return [a[0] for a in self.argv]


def mounts(runner: FakeMountRunner, run_dir: Path) -> SlotMounts:
    return SlotMounts(cast(Runner, runner), str(run_dir))


def test_the_slot_is_unmounted_when_the_work_on_it_fails(tmp_path: Path) -> None:
    runner = FakeMountRunner()
    with pytest.raises(IscsihaError) as exc, mounts(runner, tmp_path).mounted("/dev/vda4"):
        raise IscsihaError.single("carry-failed", "file", "/etc/x", "copied")
    assert runner.programs() == [MOUNT, UMOUNT]
    mount_argv = runner.argv[0]
    assert mount_argv[1:4] == ("-t", "ext4", "-o") and "rw" in mount_argv[4].split(",")
    assert mount_argv[-2:] == ("/dev/vda4", runner.argv[1][-1])
    assert os.path.dirname(mount_argv[-1]) == str(tmp_path)
    assert [r.code for r in exc.value.reports] == ["carry-failed"]
    assert list(tmp_path.iterdir()) == []  # the private folder is gone too


def test_an_unmount_that_fails_is_added_to_the_error_that_ended_the_work(
        tmp_path: Path) -> None:
    runner = FakeMountRunner(umount_fails=True)
    with pytest.raises(IscsihaError) as exc, mounts(runner, tmp_path).mounted("/dev/vda4"):
        raise IscsihaError.single("carry-failed", "file", "/etc/x", "copied")
    assert [r.code for r in exc.value.reports] == ["carry-failed", "unmount-failed"]
    assert "target is busy" in exc.value.reports[1].message


def test_work_that_succeeds_is_flushed_then_unmounted(tmp_path: Path) -> None:
    runner = FakeMountRunner()
    with mounts(runner, tmp_path).mounted("/dev/vda4") as point:
        assert os.path.isdir(point)
    assert runner.programs() == [MOUNT, SYNC, UMOUNT]
    assert runner.argv[1] == (SYNC, "-f", point)
    with pytest.raises(IscsihaError) as exc, \
            mounts(FakeMountRunner(umount_fails=True), tmp_path).mounted("/dev/vda4"):
        pass
    assert [r.code for r in exc.value.reports] == ["unmount-failed"]


# -- stage, with the carry ---------------------------------------------------------------------

class FakeBootEnv:
    def __init__(self, env: BootEnv) -> None:
        self.env = env
        self.written: list[BootEnv] = []

    def read(self) -> BootEnv:
        return self.env

    def write(self, env: BootEnv) -> None:
        self.written.append(env)
        self.env = env


class FileDisks(Disks):
    """Each slot is a file named after it."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def node(self, part: Partition) -> str:
        return str(self.folder / part.name)


def staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slot_root: Path
            ) -> tuple[UpgradeEnv, FakeMountRunner, FakeBootEnv, str]:
    need_root()
    monkeypatch.setattr(upgrade_stage, "LOCK", str(tmp_path / "upgrade.lock"))
    image = tmp_path / "iscsiha-root.img"
    write_artifact(image, 8, UUID_B)
    disks_dir = tmp_path / "disk"
    disks_dir.mkdir()
    make_ext4(disks_dir / "root-a", 8, UUID_A)
    (disks_dir / "root-b").write_bytes(b"\0" * (8 * MIB))
    slots = {s: Partition(f"root-{s}", f"vda{n}", (254, n), 16 * MIB)
             for s, n in (("a", 3), ("b", 4))}
    layout = Layout("vda", slots, Partition("esp", "vda2", (254, 2), MIB))  # type: ignore[arg-type]
    runner = FakeMountRunner(slot_root)
    boot = FakeBootEnv(BootEnv("a", uuid_a=UUID_A))
    run_dir = tmp_path / "run"
    env = UpgradeEnv(cast(Runner, runner), FileDisks(disks_dir), layout, "a",
                     cast(EspBootEnv, boot), SlotMounts(cast(Runner, runner), str(run_dir)),
                     state_root=str(cluster_box(tmp_path / "box")))
    return env, runner, boot, str(image)


def test_stage_carries_the_state_then_arms_the_slot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slot_root = new_root(tmp_path / "slot")
    env, runner, boot, image = staging(tmp_path, monkeypatch, slot_root)
    said: list[str] = []
    staged = upgrade_stage.stage(env, image, said.append)
    assert runner.programs() == [MOUNT, SYNC, UMOUNT]
    assert runner.argv[0][-2] == str(tmp_path / "disk/root-b")
    assert boot.written == [BootEnv("a", "b", 1, UUID_A, UUID_B)]
    assert staged.carried is not None and "/etc/iscsiha" in staged.carried.entries
    assert (slot_root / "etc/iscsiha/desired.toml").exists()
    assert any(line.startswith("carried ") and "into root-b" in line for line in said)
    assert list((tmp_path / "run").iterdir()) == []


def test_stage_leaves_the_slot_unmounted_and_unarmed_when_the_carry_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slot_root = tmp_path / "slot"
    slot_root.mkdir()  # no release file: not an iscsiha root
    env, runner, boot, image = staging(tmp_path, monkeypatch, slot_root)
    with pytest.raises(IscsihaError) as exc:
        upgrade_stage.stage(env, image, lambda line: None)
    assert [r.code for r in exc.value.reports] == ["not-an-iscsiha-root", PARTLY_APPLIED]
    assert "is not armed: the box boots slot a as before" in exc.value.reports[1].message
    assert runner.programs() == [MOUNT, UMOUNT]
    assert boot.written == []  # nothing was armed before, nothing is now
    assert list((tmp_path / "run").iterdir()) == []


def test_stage_without_carry_mounts_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env, runner, boot, image = staging(tmp_path, monkeypatch, tmp_path)
    staged = upgrade_stage.stage(env, image, lambda line: None, carry=False)
    assert staged.carried is None and runner.argv == []
    assert boot.written == [BootEnv("a", "b", 1, UUID_A, UUID_B)]
