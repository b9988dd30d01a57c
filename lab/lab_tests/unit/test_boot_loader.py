"""The boot loader's stand-in: grub-ab.cfg's choice, the boot disk's layout, and both on a
real disk file (sfdisk, mkfs.vfat, mtools, grub-editenv and mke2fs, no root needed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from iscsiha_lab import boot_disk, boot_loader
from iscsiha_lab.boot_choice import BootChoice, choose
from iscsiha_lab.uml import REBOOT_EXIT, reboot_program

from iscsiha.errors import IscsihaError
from iscsiha.executors.runner import Runner
from iscsiha.model import bootenv
from iscsiha.model.bootenv import BootEnv
from lab_tests.conftest import skip_or_fail

UUID_A = "aaaaaaaa-0000-4000-8000-000000000001"
UUID_B = "bbbbbbbb-0000-4000-8000-000000000002"
FLASHED = UUID_A
ON_DISK = {UUID_A: "root-a", UUID_B: "root-b"}


class Saves:
    """The ESP's block as the stand-in would write it; ``works`` False: the write fails."""

    def __init__(self, works: bool = True) -> None:
        self.works = works
        self.saved: list[BootEnv] = []

    def __call__(self, env: BootEnv) -> bool:
        self.saved.append(env)
        return self.works


def run(env: BootEnv | None, on_disk: dict[str, str] = ON_DISK,
        saves: Saves | None = None) -> tuple[BootChoice, Saves]:
    saves = saves or Saves()
    return choose(env, on_disk, FLASHED, saves), saves


# -- grub-ab.cfg's cases -----------------------------------------------------------------------


def test_the_good_slot_boots_when_nothing_is_armed() -> None:
    for good, part in (("a", "root-a"), ("b", "root-b")):
        choice, saves = run(BootEnv(good, None, 0, UUID_A, UUID_B))
        assert (choice.slot, choice.partition, choice.trial) == (good, part, False)
        assert saves.saved == []


def test_an_armed_trial_boots_once_its_try_is_saved_as_used() -> None:
    env = BootEnv("a", "b", 1, UUID_A, UUID_B)
    choice, saves = run(env)
    assert (choice.slot, choice.partition, choice.trial, choice.good) == ("b", "root-b", True, "a")
    assert saves.saved == [BootEnv("a", "b", 0, UUID_A, UUID_B)]
    assert choice.summary == "slot b (trial, good a)"


def test_a_used_up_trial_boots_the_good_slot_again() -> None:
    choice, saves = run(BootEnv("a", "b", 0, UUID_A, UUID_B))
    assert (choice.slot, choice.trial) == ("a", False)
    assert saves.saved == []


def test_a_trial_that_cannot_be_saved_is_not_tried() -> None:
    choice, saves = run(BootEnv("b", "a", 1, UUID_A, UUID_B), saves=Saves(works=False))
    assert (choice.slot, choice.partition, choice.trial) == ("b", "root-b", False)
    assert len(saves.saved) == 1


def test_a_trial_whose_root_is_not_found_uses_its_try_and_boots_the_good_slot() -> None:
    choice, saves = run(BootEnv("a", "b", 1, UUID_A, UUID_B), on_disk={UUID_A: "root-a"})
    assert (choice.slot, choice.partition, choice.trial) == ("a", "root-a", False)
    assert saves.saved[0].tries == 0


def test_nothing_found_boots_the_flashed_root_a() -> None:
    lost = "cccccccc-0000-4000-8000-000000000003"
    # good b, but no filesystem has b's UUID, and a's UUID is not recorded: root A.
    choice, _ = run(BootEnv("b", None, 0, None, lost))
    assert (choice.slot, choice.partition, choice.trial) == ("a", "root-a", False)
    assert "flashed root A" in choice.line
    # The block unreadable: as GRUB without variables, the flashed root A.
    choice, saves = run(None)
    assert (choice.slot, choice.partition) == ("a", "root-a")
    assert saves.saved == []
    # The flashed root is found by its UUID, wherever it is.
    choice, _ = run(None, on_disk={FLASHED: "root-b"})
    assert (choice.slot, choice.partition) == ("a", "root-b")
    # Not even that: root-a still, and the line says why.
    choice, _ = run(None, on_disk={})
    assert choice.partition == "root-a" and f"no filesystem {FLASHED}" in choice.line


# -- the disk's layout -------------------------------------------------------------------------


def test_layout_puts_esp_then_two_equal_root_slots_aligned_to_mib() -> None:
    parts = boot_disk.layout(2048 * boot_disk.MIB + 1)
    assert [(p.number, p.name) for p in parts] == [(1, "esp"), (2, "root-a"), (3, "root-b")]
    assert parts[1].size == parts[2].size == 2049 * boot_disk.MIB
    assert all(p.offset % boot_disk.MIB == 0 for p in parts)
    assert parts[1].offset == parts[0].offset + parts[0].size
    assert boot_disk.disk_bytes(parts) == parts[2].offset + parts[2].size + boot_disk.MIB
    script = boot_disk.sfdisk_script(parts)
    assert 'name="root-b"' in script and script.startswith("label: gpt\n")


def sfdisk_json(entries: list[dict[str, object]], label: str = "gpt") -> str:
    return json.dumps({"partitiontable": {"label": label, "sectorsize": 512,
                                          "partitions": entries}})


ENTRIES: list[dict[str, object]] = [
    {"node": "/x/boot.img1", "start": 2048, "size": 65536, "name": "esp"},
    {"node": "/x/boot.img2", "start": 67584, "size": 100, "name": "root-a"},
    {"node": "/x/boot.img3", "start": 67684, "size": 100, "name": "root-b"},
]


def test_partitions_are_read_by_name_with_the_kernels_numbers() -> None:
    parts = boot_disk.parse_partitions(sfdisk_json(ENTRIES), "boot.img")
    assert parts["root-b"] == boot_disk.DiskPartition(3, "root-b", 67684 * 512, 100 * 512)
    assert parts["esp"].number == 1


@pytest.mark.parametrize(("text", "says"), [
    ("not json", "sfdisk --json gave"),
    (sfdisk_json(ENTRIES, label="dos"), "partition table"),
    (sfdisk_json(ENTRIES[:2]), "no partition named: 'root-b'"),
    (sfdisk_json([*ENTRIES, {**ENTRIES[0], "node": "/x/boot.img4"}]), "a partition name twice"),
    (sfdisk_json([{**ENTRIES[0], "start": "2048"}, *ENTRIES[1:]]), "partition entry"),
])
def test_a_disk_not_as_the_lab_makes_it_is_refused_by_name(text: str, says: str) -> None:
    with pytest.raises(IscsihaError) as caught:
        boot_disk.parse_partitions(text, "boot.img")
    report = caught.value.reports[0]
    assert (report.code, report.value) == ("bad-boot-disk", "boot.img")
    assert says in report.message


def test_the_reboot_program_exits_with_the_code_the_supervisor_waits_for(
        tmp_path: Path) -> None:
    script = tmp_path / "reboot"
    script.write_text(reboot_program())
    script.chmod(0o755)
    assert subprocess.run([str(script)], check=False).returncode == REBOOT_EXIT


# -- on a real disk file -----------------------------------------------------------------------


def need_tools() -> None:
    for tool in ("/usr/sbin/mke2fs", boot_disk.SFDISK.path, boot_disk.MKFS_VFAT.path,
                 boot_disk.MCOPY.path, boot_disk.MMD.path, boot_disk.GRUB_EDITENV.path,
                 "/usr/bin/mmove"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is not installed")


def make_ext4(path: Path, mib: int, fs_uuid: str) -> None:
    with path.open("wb") as f:
        f.truncate(mib * boot_disk.MIB)
    subprocess.run(["/usr/sbin/mke2fs", "-q", "-F", "-t", "ext4", "-U", fs_uuid, str(path)],
                   check=True, capture_output=True)


def test_a_made_disk_boots_root_a_then_an_armed_b_once_then_a_again(tmp_path: Path) -> None:
    need_tools()
    runner = Runner()
    root, disk = tmp_path / "root.ext4", tmp_path / "boot.img"
    make_ext4(root, 16, UUID_A)
    seconds = boot_disk.make(runner, disk, root)
    assert seconds > 0 and not (tmp_path / "boot.img.partial").exists()
    parts = boot_disk.read_partitions(runner, disk)
    assert boot_disk.filesystem_uuid(disk, parts["root-a"]) == UUID_A
    assert boot_disk.filesystem_uuid(disk, parts["root-b"]) is None
    # The disk stays sparse: about the root's data, not its three partitions.
    assert disk.stat().st_blocks * 512 < 8 * boot_disk.MIB

    first = boot_loader.choose_boot(runner, disk, UUID_A)
    assert first.kernel_words() == ["root=/dev/ubda2", "iscsiha.slot=a"]
    assert first.notes == ()

    # What `iscsiha upgrade stage` does on the box: root B written, then armed.
    make_ext4(tmp_path / "b.ext4", 16, UUID_B)
    assert boot_disk.copy_sparse(tmp_path / "b.ext4", disk, parts["root-b"].offset) > 0
    block = boot_loader.DiskFileBootEnv(runner, disk, parts["esp"].offset)
    block.write(bootenv.armed(block.read(), "b", UUID_B))

    trial = boot_loader.choose_boot(runner, disk, UUID_A)
    assert trial.kernel_words() == ["root=/dev/ubda3", "iscsiha.slot=b"]
    assert trial.choice.trial
    assert block.read() == BootEnv("a", "b", 0, UUID_A, UUID_B)  # the try saved as used

    after = boot_loader.choose_boot(runner, disk, UUID_A)  # never marked good: back to a
    assert after.kernel_words() == ["root=/dev/ubda2", "iscsiha.slot=a"]
    assert not after.choice.trial


def test_an_unreadable_block_boots_the_flashed_root_and_says_why(tmp_path: Path) -> None:
    need_tools()
    runner = Runner()
    root, disk = tmp_path / "root.ext4", tmp_path / "boot.img"
    make_ext4(root, 16, UUID_A)
    boot_disk.make(runner, disk, root)
    esp = boot_disk.read_partitions(runner, disk)["esp"]
    subprocess.run([boot_disk.MCOPY.path, "-o", "-i", f"{disk}@@{esp.offset}", str(root),
                    "::/EFI/iscsiha/grubenv"], check=True, capture_output=True,
                   env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"})
    boot = boot_loader.choose_boot(runner, disk, UUID_A)
    assert boot.kernel_words() == ["root=/dev/ubda2", "iscsiha.slot=a"]
    assert boot.notes and "boot environment unreadable" in boot.notes[0]
    assert not boot.choice.trial
