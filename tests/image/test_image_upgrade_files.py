"""What image/build makes for A/B upgrades, read from image/out without booting: the
root image is root A's bytes with a checksum file and manifest that agree, root A
says which release it is, and the ESP holds GRUB's A/B script and an environment
block naming root A good by its UUID (docs/upgrade.md)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from iscsiha.commands.upgrade_stage import checked_image
from iscsiha.model import bootenv
from iscsiha.model.bootenv import BootEnv
from iscsiha.model.root_image import RELEASE_PATH, Manifest, parse_release
from tests.conftest import skip_or_fail
from tests.image.conftest import IMAGE, root_offset

ROOT_IMG = IMAGE.parent / "iscsiha-root.img"


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    if not ROOT_IMG.is_file():
        skip_or_fail(f"no root image at {ROOT_IMG} (image/build makes it)")
    for tool in ("debugfs", "sfdisk", "mcopy"):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is needed to read the image (e2fsprogs, fdisk, mtools)")
    return checked_image(str(ROOT_IMG))


def _sha256_range(path: Path, offset: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        left = size
        while left:
            chunk = f.read(min(8 << 20, left))
            assert chunk, f"{path} ends before {offset + size}"
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _partition_offset(name: str) -> int:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(IMAGE)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    (part,) = [p for p in table["partitions"] if p.get("name") == name]
    return int(part["start"]) * int(table.get("sectorsize", 512))


def test_the_root_image_is_root_a_of_the_disk_and_its_checksum_holds(
        manifest: Manifest) -> None:
    assert _sha256_range(ROOT_IMG, 0, manifest.size) == manifest.sha256
    assert _sha256_range(IMAGE, root_offset(IMAGE), manifest.size) == manifest.sha256


def test_root_a_says_which_release_it_is(manifest: Manifest) -> None:
    done = subprocess.run(["debugfs", "-R", f"cat {RELEASE_PATH}",
                           f"{IMAGE}?offset={root_offset(IMAGE)}"],
                          capture_output=True, text=True, check=True)
    assert parse_release(done.stdout, RELEASE_PATH) == manifest.release


def test_the_esp_names_root_a_good_by_its_uuid(manifest: Manifest, tmp_path: Path) -> None:
    esp = f"{IMAGE}@@{_partition_offset('esp')}"
    for name in ("grubenv", "grub.cfg"):
        subprocess.run(["mcopy", "-n", "-i", esp, f"::/EFI/iscsiha/{name}", str(tmp_path)],
                       check=True, capture_output=True,
                       env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    env = bootenv.read((tmp_path / "grubenv").read_bytes(), "grubenv")
    assert env == BootEnv("a", uuid_a=manifest.release.root_uuid)
    script = (tmp_path / "grub.cfg").read_text()
    assert f"--set=root {manifest.release.root_uuid}" in script  # the flashed root, last
    assert "@ROOT_UUID@" not in script
