"""The box-local upgrade: which slot may be written, the artifact refused before anything
is written (real files made here), the boot disk found in sysfs (a tree made here),
the health that marks a trial good, and the trial's state as status words it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from iscsiha.cli import main as cli
from iscsiha.commands import upgrade_boot, upgrade_stage, upgrade_status
from iscsiha.commands.upgrade_env import booted_slot, layout, root_slot
from iscsiha.errors import IscsihaError
from iscsiha.executors.partitions import Disks, Partition, sha256_of, write_image
from iscsiha.model.bootenv import BootEnv
from tests.unit.root_images import MIB, sha256, write_artifact

UUID_A = "6f2a3c1e-0b7d-5e4f-9a8b-1c2d3e4f5a6b"
UUID_B = "0d9e8f7a-6b5c-5d4e-8f3a-2b1c0d9e8f7a"


def code(exc: pytest.ExceptionInfo[IscsihaError]) -> str:
    return exc.value.reports[0].code


# -- which slot ---------------------------------------------------------------------------

@pytest.mark.parametrize(("env", "booted", "standby"), [
    (BootEnv("a"), "a", "b"),
    (BootEnv("b"), "b", "a"),
    (BootEnv("a", "b", 1), "a", "b"),  # re-staging over an armed trial
    (BootEnv("a", "b", 0), "a", "b"),  # after a failed trial
    (BootEnv("b"), None, "a"),  # --disk: only the good slot is protected
])
def test_the_standby_slot_is_neither_booted_nor_good(env: BootEnv, booted: str | None,
                                                     standby: str) -> None:
    assert upgrade_stage.standby_slot(env, booted) == standby  # type: ignore[arg-type]


def test_a_box_running_an_unconfirmed_trial_has_no_standby_slot() -> None:
    with pytest.raises(IscsihaError) as exc:
        upgrade_stage.standby_slot(BootEnv("a", "b", 0), "b")
    assert code(exc) == "trial-not-good"
    assert "slot a is the way back" in exc.value.reports[0].message


# -- the artifact, checked before anything is written ------------------------------------------

def test_an_artifact_whose_files_agree_gives_its_manifest(tmp_path: Path) -> None:
    manifest = write_artifact(tmp_path / "iscsiha-root.img", 8, UUID_B)
    assert upgrade_stage.checked_image(str(tmp_path / "iscsiha-root.img")) == manifest


def test_a_truncated_artifact_is_refused_with_both_sizes(tmp_path: Path) -> None:
    image = tmp_path / "iscsiha-root.img"
    write_artifact(image, 8, UUID_B)
    os.truncate(image, 5 * MIB)
    with pytest.raises(IscsihaError) as exc:
        upgrade_stage.checked_image(str(image))
    assert code(exc) == "wrong-size"
    assert exc.value.reports[0].value == str(image)
    assert f"{8 * MIB} bytes" in exc.value.reports[0].allowed
    assert f"is {5 * MIB} bytes" in exc.value.reports[0].message


def test_an_artifact_cut_short_and_its_manifest_to_match_is_still_refused(
        tmp_path: Path) -> None:
    image = tmp_path / "iscsiha-root.img"
    manifest = write_artifact(image, 8, UUID_B)
    os.truncate(image, 5 * MIB)
    Path(f"{image}.json").write_text(Path(f"{image}.json").read_text().replace(
        str(manifest.size), str(5 * MIB)))
    with pytest.raises(IscsihaError) as exc:
        upgrade_stage.checked_image(str(image))
    assert code(exc) == "truncated"
    assert f"{8 * MIB} bytes its filesystem spans" in exc.value.reports[0].allowed


def test_a_checksum_file_of_another_build_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "iscsiha-root.img"
    write_artifact(image, 8, UUID_B)
    Path(f"{image}.sha256").write_text(f"{'0' * 64}  iscsiha-root.img\n")
    with pytest.raises(IscsihaError) as exc:
        upgrade_stage.checked_image(str(image))
    assert code(exc) == "checksum-mismatch"


def test_an_artifact_without_its_checksum_file_is_refused_naming_it(tmp_path: Path) -> None:
    image = tmp_path / "iscsiha-root.img"
    write_artifact(image, 8, UUID_B)
    os.remove(f"{image}.sha256")
    with pytest.raises(IscsihaError) as exc:
        upgrade_stage.checked_image(str(image))
    assert exc.value.reports[0].value == f"{image}.sha256"


def test_a_file_holding_another_filesystem_than_its_manifest_says_is_refused(
        tmp_path: Path) -> None:
    image = tmp_path / "iscsiha-root.img"
    write_artifact(image, 8, UUID_B)
    Path(f"{image}.json").write_text(Path(f"{image}.json").read_text().replace(UUID_B, UUID_A))
    with pytest.raises(IscsihaError) as exc:
        upgrade_stage.checked_image(str(image))
    assert code(exc) == "wrong-filesystem"


def test_a_corrupt_byte_changes_the_hash_the_stage_compares(tmp_path: Path) -> None:
    image = tmp_path / "iscsiha-root.img"
    manifest = write_artifact(image, 8, UUID_B)
    assert sha256_of(str(image), manifest.size, lambda n: None) == manifest.sha256
    with open(image, "r+b") as f:
        f.seek(5 * MIB)
        f.write(b"\x01")
    assert upgrade_stage.checked_image(str(image)) == manifest  # size and UUID still agree
    assert sha256_of(str(image), manifest.size, lambda n: None) != manifest.sha256


def test_writing_copies_the_bytes_and_a_source_shorter_than_said_is_refused(
        tmp_path: Path) -> None:
    source, target = tmp_path / "src.img", tmp_path / "slot.img"
    source.write_bytes(os.urandom(3 * MIB + 5))
    target.write_bytes(b"\xff" * (4 * MIB))
    done: list[int] = []
    write_image(str(source), 3 * MIB + 5, str(target), done.append)
    assert target.read_bytes()[:3 * MIB + 5] == source.read_bytes()
    assert done[-1] == 3 * MIB + 5
    assert sha256_of(str(target), 3 * MIB + 5, lambda n: None) == sha256(source)
    with pytest.raises(IscsihaError) as exc:
        write_image(str(source), 4 * MIB, str(target), lambda n: None)
    assert code(exc) == "truncated"
    with pytest.raises(IscsihaError) as exc:
        sha256_of(str(source), 4 * MIB, lambda n: None)
    assert "ends after 3145733 bytes" in exc.value.reports[0].message


def test_progress_is_reported_each_tenth() -> None:
    said: list[str] = []
    tick = upgrade_stage.percent(said.append, "writing root-b", 100)
    for n in range(0, 101, 5):
        tick(n)
    assert said == [f"writing root-b: {p}%" for p in range(0, 101, 10)]


# -- the boot disk in sysfs ----------------------------------------------------------------------

def fake_sysfs(top: Path, disk: str, parts: dict[str, tuple[int, int]],
               root_part: str | None = None) -> Disks:
    """A /sys with ``disk`` and its named partitions; ``root_part`` holds the root (the
    test folder's own device number stands for it)."""
    st = os.stat(top)
    root_devnum = (os.major(st.st_dev), os.minor(st.st_dev))
    disk_dir = top / "sys/devices/virtual/block" / disk
    disk_dir.mkdir(parents=True)
    (top / "sys/class/block").mkdir(parents=True)
    (top / "sys/dev/block").mkdir(parents=True)
    (top / "sys/class/block" / disk).symlink_to(disk_dir)
    for n, (name, devnum) in enumerate(parts.items(), start=1):
        if name == root_part:
            devnum = root_devnum
        part = disk_dir / f"{disk}p{n}"
        part.mkdir()
        (part / "partition").write_text(f"{n}\n")
        (part / "size").write_text(f"{(n * 1000)}\n")
        (part / "uevent").write_text(f"MAJOR={devnum[0]}\nMINOR={devnum[1]}\n"
                                     f"DEVNAME={disk}p{n}\nDEVTYPE=partition\nPARTN={n}\n"
                                     f"PARTNAME={name}\n")
        link = top / "sys/dev/block" / f"{devnum[0]}:{devnum[1]}"
        if not link.exists():
            link.symlink_to(part)
    return Disks(str(top / "sys"), str(top / "dev"), str(top))


PARTS = {"bios-boot": (259, 1), "esp": (259, 2), "root-a": (259, 3), "root-b": (259, 4)}


def test_the_slots_and_the_esp_are_found_by_partition_name(tmp_path: Path) -> None:
    disks = fake_sysfs(tmp_path, "nvme0n1", PARTS)
    lay = layout(disks.partitions("nvme0n1"), "nvme0n1")
    assert lay.slots["a"] == Partition("root-a", "nvme0n1p3", (259, 3), 3000 * 512)
    assert lay.slots["b"].path == "/dev/nvme0n1p4"
    assert lay.esp.kname == "nvme0n1p2"


def test_the_disk_of_the_running_root_and_its_slot(tmp_path: Path) -> None:
    disks = fake_sysfs(tmp_path, "vda", PARTS, root_part="root-b")
    assert disks.disk_of_root() == "vda"
    lay = layout(disks.partitions("vda"), "vda")
    assert root_slot(lay, disks.root_devnum(), "root=UUID=x ro iscsiha.slot=b") == "b"
    assert root_slot(lay, disks.root_devnum(), "root=UUID=x ro") == "b"


def test_a_command_line_naming_another_slot_than_the_roots_is_refused(tmp_path: Path) -> None:
    disks = fake_sysfs(tmp_path, "vda", PARTS, root_part="root-a")
    lay = layout(disks.partitions("vda"), "vda")
    with pytest.raises(IscsihaError) as exc:
        root_slot(lay, disks.root_devnum(), "ro iscsiha.slot=b")
    assert code(exc) == "slot-mismatch"


def test_a_root_outside_the_slots_is_refused(tmp_path: Path) -> None:
    disks = fake_sysfs(tmp_path, "vda", PARTS, root_part="esp")
    lay = layout(disks.partitions("vda"), "vda")
    with pytest.raises(IscsihaError) as exc:
        root_slot(lay, disks.root_devnum(), "")
    assert code(exc) == "root-not-in-a-slot"


def test_a_disk_without_the_images_partitions_is_refused_naming_what_is_missing(
        tmp_path: Path) -> None:
    disks = fake_sysfs(tmp_path, "sdb", {"data": (8, 17), "root-a": (8, 18)})
    with pytest.raises(IscsihaError) as exc:
        layout(disks.partitions("sdb"), "sdb")
    assert code(exc) == "not-an-ab-disk"
    assert exc.value.reports[0].message == "has no root-b, esp"


def test_a_partition_name_found_twice_is_refused(tmp_path: Path) -> None:
    disks = fake_sysfs(tmp_path, "vda", {"root-a": (254, 1), "esp": (254, 2)})
    (tmp_path / "sys/devices/virtual/block/vda/vdap2/uevent").write_text(
        "MAJOR=254\nMINOR=2\nDEVNAME=vdap2\nPARTNAME=root-a\n")
    with pytest.raises(IscsihaError) as exc:
        disks.partitions("vda")
    assert code(exc) == "partition-name-twice"


@pytest.mark.parametrize(("cmdline", "slot"), [
    ("BOOT_IMAGE=/boot/vmlinuz root=UUID=x ro iscsiha.slot=a panic=10", "a"),
    ("ro iscsiha.slot=b", "b"),
    ("ro quiet", None),
    ("xiscsiha.slot=b", None),
])
def test_the_slot_grub_put_on_the_command_line(cmdline: str, slot: str | None) -> None:
    assert booted_slot(cmdline) == slot


@pytest.mark.parametrize("cmdline", ["iscsiha.slot=c", "iscsiha.slot=", "iscsiha.slot=a "
                                     "iscsiha.slot=b", "iscsiha.slot=A"])
def test_a_command_line_slot_that_is_not_one_of_a_or_b_is_refused(cmdline: str) -> None:
    with pytest.raises(IscsihaError) as exc:
        booted_slot(cmdline)
    assert code(exc) == "bad-kernel-slot"


# -- health, and the trial's state ------------------------------------------------------------

HEALTHY = {"multi-user.target": "active", "iscsiha-selfcheck.service": "active",
           "corosync.service": "inactive", "pacemaker.service": "inactive"}


def test_a_box_with_selfcheck_passed_and_nothing_failed_is_healthy() -> None:
    assert upgrade_boot.health_problems(HEALTHY) == []


def test_each_reason_a_box_is_not_healthy_is_named() -> None:
    states = {**HEALTHY, "iscsiha-selfcheck.service": "failed",
              "systemd-networkd.service": "failed", "corosync.service": "failed",
              "multi-user.target": "activating"}
    assert upgrade_boot.health_problems(states) == [
        "multi-user.target is activating, not active",
        "iscsiha-selfcheck.service is failed, not active",
        "systemd-networkd.service failed", "corosync.service failed"]


@pytest.mark.parametrize(("env", "booted", "state"), [
    (BootEnv("a"), "a", "none"),
    (BootEnv("a", "b", 1), "a", "armed"),
    (BootEnv("a", "b", 0), "b", "on-trial"),
    (BootEnv("a", "b", 0), "a", "failed"),
    (BootEnv("a", "b", 0), None, "failed"),
])
def test_the_trial_state(env: BootEnv, booted: str | None, state: str) -> None:
    assert upgrade_status.trial_state(env, booted) == state  # type: ignore[arg-type]


def test_the_cli_lists_the_upgrade_actions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["upgrade", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for action in ("stage", "status", "cancel", "mark-good"):
        assert action in out
