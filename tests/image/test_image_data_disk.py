"""The first-boot data disk logic (image/rootfs/usr/lib/iscsiha/data-disk-init).

Runs on the host without root and without loop devices: blkid -p, wipefs and the
zero checks work on regular files, so each case is a sparse file made here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import skip_or_fail

SCRIPT = Path(__file__).resolve().parents[2] / "image/rootfs/usr/lib/iscsiha/data-disk-init"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def ddi(load_script: Callable[[Path, str], ModuleType]) -> ModuleType:
    return load_script(SCRIPT, "iscsiha_image_data_disk_init")


def need(*tools: str) -> None:
    for tool in tools:
        if not (shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()):
            skip_or_fail(f"{tool} is not installed (image/install-build-deps installs it)")


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    need("blkid", "wipefs")
    path = tmp_path / "disk.img"
    with open(path, "wb") as f:
        f.truncate(64 * MIB)
    return path


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "check", str(path)],
                          capture_output=True, text=True, check=False)


# ---- emptiness: real tools on sparse files --------------------------------------------

def test_all_zero_disk_is_empty(disk: Path) -> None:
    r = run_check(disk)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{disk}: empty" in r.stdout


@pytest.mark.parametrize(
    ("tool", "argv", "expect"),
    [
        ("mkfs.ext4", ["mkfs.ext4", "-q", "-F"], "ext4"),
        ("mkswap", ["mkswap"], "swap"),
        ("mkfs.vfat", ["mkfs.vfat"], "vfat"),
    ],
    ids=["ext4", "swap", "vfat"],
)
def test_filesystem_signature_is_refused(disk: Path, tool: str, argv: list[str],
                                         expect: str) -> None:
    need(tool)
    subprocess.run([*argv, str(disk)], check=True, capture_output=True)
    r = run_check(disk)
    assert r.returncode == 1
    assert "NOT empty" in r.stdout
    assert expect in r.stdout


def test_partition_table_is_refused(disk: Path) -> None:
    need("sfdisk")
    subprocess.run(["sfdisk", "--quiet", str(disk)], input="label: gpt\n,8M\n", text=True,
                   check=True, capture_output=True)
    r = run_check(disk)
    assert r.returncode == 1
    assert "PTTYPE=gpt" in r.stdout or "gpt" in r.stdout


def test_data_at_the_end_is_refused(disk: Path) -> None:
    """DRBD's internal metadata sits at the end of the disk: non-zero there = in use."""
    with open(disk, "r+b") as f:
        f.seek(64 * MIB - 4096)
        f.write(os.urandom(4096))
    r = run_check(disk)
    assert r.returncode == 1
    assert "last MiB is not all zeros" in r.stdout


def test_unknown_data_at_the_start_is_refused(disk: Path) -> None:
    with open(disk, "r+b") as f:
        f.seek(8192)
        f.write(b"\x01" * 512)
    r = run_check(disk)
    assert r.returncode == 1
    assert "first MiB is not all zeros" in r.stdout


def test_tiny_file_is_refused(tmp_path: Path) -> None:
    need("blkid", "wipefs")
    small = tmp_path / "small.img"
    small.write_bytes(b"\0" * MIB)
    r = run_check(small)
    assert r.returncode == 1
    assert "too small" in r.stdout


def test_missing_path_is_refused(tmp_path: Path) -> None:
    r = run_check(tmp_path / "nope")
    assert r.returncode == 1
    assert "cannot stat" in r.stdout


# ---- choosing the disk: pure ------------------------------------------------------------

def lsblk(*devs: dict[str, object]) -> dict[str, object]:
    return {"blockdevices": list(devs)}


def dev(name: str, **kw: object) -> dict[str, object]:
    d: dict[str, object] = {"name": name, "path": f"/dev/{name}", "type": "disk", "ro": False,
                            "rm": False, "size": 10 * 1024 * MIB}
    d.update(kw)
    return d


def test_pick_first_disk_that_is_not_root(ddi: ModuleType) -> None:
    tree = lsblk(dev("sda", children=[dev("sda1", type="part")]), dev("sdb"), dev("sdc"))
    choice = ddi.pick_disk(tree, "/dev/sda")
    assert choice.path == "/dev/sdb"
    assert "/dev/sda: root disk" in choice.skipped
    assert choice.candidates == ["/dev/sdb", "/dev/sdc"]  # run takes the first empty one


def test_pick_skips_partitioned_virtual_readonly_removable(ddi: ModuleType) -> None:
    tree = lsblk(
        dev("loop0", type="loop"),
        dev("zram0"),
        dev("drbd1"),
        dev("sr0", type="rom"),
        dev("sdb", children=[dev("sdb1", type="part")]),
        dev("sdc", ro=True),
        dev("sdd", rm="1"),  # old lsblk prints "0"/"1"
        dev("sde", size=0),
        dev("vdb", ro="0", rm="0"),
    )
    choice = ddi.pick_disk(tree, "/dev/vda")
    assert choice.path == "/dev/vdb"
    reasons = dict(line.split(": ", 1) for line in choice.skipped)
    assert reasons == {
        "/dev/loop0": "type loop",
        "/dev/zram0": "virtual or replicated device",
        "/dev/drbd1": "virtual or replicated device",
        "/dev/sr0": "type rom",
        "/dev/sdb": "has partitions or holders",
        "/dev/sdc": "read-only",
        "/dev/sdd": "removable",
        "/dev/sde": "size 0",
    }


def test_pick_none_when_only_the_root_disk(ddi: ModuleType) -> None:
    choice = ddi.pick_disk(lsblk(dev("ubda")), "/dev/ubda")
    assert choice.path is None


def test_pick_parses_real_lsblk_json(ddi: ModuleType) -> None:
    text = json.dumps({"blockdevices": [
        {"name": "vda", "path": "/dev/vda", "type": "disk", "ro": False, "rm": False,
         "size": 4404019200, "children": [
             {"name": "vda1", "path": "/dev/vda1", "type": "part", "ro": False, "rm": False,
              "size": 1048576}]},
        {"name": "vdb", "path": "/dev/vdb", "type": "disk", "ro": False, "rm": False,
         "size": 10737418240}]})
    assert ddi.pick_disk(json.loads(text), "/dev/vda").path == "/dev/vdb"


@pytest.mark.parametrize(
    ("text", "expect"),
    [("", "auto"), ("# comment only\n", "auto"), ("# c\n  none  # off\n", "none"),
     ("/dev/disk/by-id/wwn-0x5000\n", "/dev/disk/by-id/wwn-0x5000")],
)
def test_read_config(ddi: ModuleType, text: str, expect: str) -> None:
    assert ddi.read_config(text) == expect


# ---- the run command: never writes to a disk that is not empty --------------------------

class FakeLvm:
    def __init__(self, ddi: ModuleType) -> None:
        self.calls: list[list[str]] = []
        self.real_run = ddi.run

    def __call__(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        if argv[0].endswith("/lvm"):
            self.calls.append(argv)
            rc = 5 if argv[1] == "vgs" else 0  # vgs: "data" does not exist yet
            return subprocess.CompletedProcess(argv, rc, "", "")
        return self.real_run(argv)  # blkid, wipefs: the real ones, on the file


def configured(ddi: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
               setting: str) -> FakeLvm:
    config = tmp_path / "data-disk"
    config.write_text(f"# test\n{setting}\n")
    fake = FakeLvm(ddi)
    monkeypatch.setattr(ddi, "CONFIG", config)
    monkeypatch.setattr(ddi, "run", fake)
    monkeypatch.setattr(ddi, "root_disk", lambda: "/dev/vda")
    return fake


def test_run_creates_the_volume_group_on_an_empty_disk(
        ddi: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, disk: Path) -> None:
    fake = configured(ddi, monkeypatch, tmp_path, str(disk))
    assert ddi.cmd_run() == 0
    assert [c[1:] for c in fake.calls] == [
        ["vgs", "--noheadings", "-o", "vg_name", "data"],
        ["pvcreate", str(disk)],
        ["vgcreate", "data", str(disk)],
    ]


def test_run_refuses_a_disk_with_a_filesystem_and_writes_nothing(
        ddi: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, disk: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    need("mkfs.ext4")
    subprocess.run(["mkfs.ext4", "-q", "-F", str(disk)], check=True, capture_output=True)
    before = disk.read_bytes()
    fake = configured(ddi, monkeypatch, tmp_path, str(disk))
    assert ddi.cmd_run() == 1
    assert [c[1] for c in fake.calls] == ["vgs"]  # no pvcreate, no vgcreate
    assert disk.read_bytes() == before
    out = capsys.readouterr().out
    assert "REFUSED" in out and "ext4" in out and "nothing was written" in out


def test_run_refuses_the_root_disk(ddi: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                   tmp_path: Path) -> None:
    fake = configured(ddi, monkeypatch, tmp_path, "/dev/vda")
    assert ddi.cmd_run() == 1
    assert [c[1] for c in fake.calls] == ["vgs"]


def test_run_none_does_nothing(ddi: ModuleType, monkeypatch: pytest.MonkeyPatch,
                               tmp_path: Path) -> None:
    fake = configured(ddi, monkeypatch, tmp_path, "none")
    assert ddi.cmd_run() == 0
    assert [c[1] for c in fake.calls] == ["vgs"]


def test_run_auto_without_candidates_warns_and_succeeds(
        ddi: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake = configured(ddi, monkeypatch, tmp_path, "auto")
    monkeypatch.setattr(ddi, "lsblk_tree", lambda: lsblk(dev("vda")))
    assert ddi.cmd_run() == 0
    assert [c[1] for c in fake.calls] == ["vgs"]
    assert "no empty data disk found" in capsys.readouterr().out


def test_run_auto_refuses_a_disk_with_data_and_takes_the_empty_one_after_it(
        ddi: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    need("mkfs.ext4", "blkid", "wipefs")
    used, empty = tmp_path / "used.img", tmp_path / "empty.img"
    for path in (used, empty):
        with open(path, "wb") as f:
            f.truncate(64 * MIB)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(used)], check=True, capture_output=True)
    before = used.read_bytes()
    fake = configured(ddi, monkeypatch, tmp_path, "auto")
    monkeypatch.setattr(ddi, "lsblk_tree", lambda: lsblk(
        dev("vda"), {**dev("vdb"), "path": str(used)}, {**dev("vdc"), "path": str(empty)}))
    assert ddi.cmd_run() == 0
    assert [c[1:] for c in fake.calls][1:] == [["pvcreate", str(empty)],
                                               ["vgcreate", "data", str(empty)]]
    assert used.read_bytes() == before
    out = capsys.readouterr().out
    assert f"REFUSED {used}: " in out and "ext4" in out
