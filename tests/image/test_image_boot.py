"""Boot the built appliance image under qemu (TCG) with BIOS and with UEFI.

Runs image/smoke-test once per firmware. It needs the image that `image/build`
writes to image/out/iscsiha.img (ISCSIHA_IMAGE names another) and
qemu-system-x86_64 plus OVMF (image/install-build-deps installs both). Without
them the test skips and says what is missing; with CI=true it fails instead (CI
builds the image first). Each boot takes about a minute under TCG; the smoke
test's own limit is 300 s per boot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail

IMAGE_DIR = Path(__file__).resolve().parents[2] / "image"
IMAGE = Path(os.environ.get("ISCSIHA_IMAGE", IMAGE_DIR / "out/iscsiha.img"))
OVMF = [Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), Path("/usr/share/OVMF/OVMF_CODE.fd")]
BOOT_TIMEOUT = 300

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_image_boots_to_login_and_passes_selfcheck(firmware: str, tmp_path: Path) -> None:
    if not IMAGE.is_file():
        skip_or_fail(f"no appliance image at {IMAGE}: build it first with `sudo image/build`")
    if shutil.which("qemu-system-x86_64") is None:
        skip_or_fail("qemu-system-x86_64 is not installed (image/install-build-deps installs it)")
    if firmware == "uefi" and not any(p.exists() for p in OVMF):
        skip_or_fail("OVMF is not installed (image/install-build-deps installs it)")
    proc = subprocess.Popen(
        [str(IMAGE_DIR / "smoke-test"), "--firmware", firmware, "--timeout", str(BOOT_TIMEOUT),
         "--logs", str(tmp_path), str(IMAGE)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=BOOT_TIMEOUT + 60)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM, not SIGKILL: the smoke test's trap stops its qemu
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"image/smoke-test did not finish in {BOOT_TIMEOUT + 60} s\n{out}\n{err}")
    print(out)
    assert proc.returncode == 0, f"{out}\n{err}"
    assert f"PASS {firmware}" in out
    assert "iscsiha selfcheck: ok" in out
