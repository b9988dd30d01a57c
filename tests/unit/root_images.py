"""Real root images for the upgrade tests: ext4 made with mke2fs in a tmp folder, and
the checksum file and manifest image/build puts next to one."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from iscsiha.model.root_image import Manifest, Release, manifest_json
from tests.conftest import skip_or_fail

MIB = 1 << 20


def make_ext4(path: Path, mib: int, fs_uuid: str, *extra: str) -> None:
    if shutil.which("mke2fs") is None:
        skip_or_fail("mke2fs is not installed (apt-get install e2fsprogs)")
    with open(path, "wb") as f:
        f.truncate(mib * MIB)
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-U", fs_uuid, *extra, str(path)],
                   check=True, capture_output=True)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_artifact(path: Path, mib: int, fs_uuid: str, version: str = "0.2.0") -> Manifest:
    """An ext4 image at ``path`` with its .sha256 and .json, as image/build writes them."""
    make_ext4(path, mib, fs_uuid)
    digest = sha256(path)
    manifest = Manifest(Release(version, "0123abcd" * 5, fs_uuid), mib * MIB, digest)
    Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")
    Path(f"{path}.json").write_text(manifest_json(manifest))
    return manifest
