"""The build helpers in image/lib, on the host: no root, no network, no loop devices."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import skip_or_fail

IMAGE_DIR = Path(__file__).resolve().parents[2] / "image"
SECTOR = 512


@pytest.fixture(scope="module")
def install_wheel(load_script: Callable[[Path, str], ModuleType]) -> ModuleType:
    return load_script(IMAGE_DIR / "lib/install-wheel", "iscsiha_image_install_wheel")


@pytest.fixture(scope="module")
def embed(load_script: Callable[[Path, str], ModuleType]) -> ModuleType:
    return load_script(IMAGE_DIR / "lib/grub-bios-embed", "iscsiha_image_grub_bios_embed")


# ---- install-wheel -----------------------------------------------------------------------

def make_wheel(path: Path, extra: dict[str, str] | None = None,
               entry_points: str = "[console_scripts]\ndemo = demo.cli:main\n") -> Path:
    info = "demo-1.2.3.dist-info"
    files = {
        "demo/__init__.py": "",
        "demo/cli.py": "def main():\n    print('demo ran')\n    return 3\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: demo\nVersion: 1.2.3\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/entry_points.txt": entry_points,
        f"{info}/RECORD": "demo/__init__.py,,\n",
    }
    files.update(extra or {})
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "usr/bin").mkdir(parents=True)
    (r / "usr/bin/python3").symlink_to(sys.executable)
    return r


def test_wheel_is_unpacked_into_dist_packages_with_a_console_script(
        install_wheel: ModuleType, tmp_path: Path, root: Path) -> None:
    wheel = make_wheel(tmp_path / "demo-1.2.3-py3-none-any.whl")
    assert install_wheel.main(["install-wheel", str(wheel), str(root)]) == 0
    site = root / "usr/lib/python3/dist-packages"
    assert (site / "demo/cli.py").exists()
    assert (site / "demo-1.2.3.dist-info/INSTALLER").read_text() == "iscsiha-image-build\n"
    script = root / "usr/bin/demo"
    assert script.stat().st_mode & 0o777 == 0o755
    text = script.read_text()
    assert text.startswith("#!/usr/bin/python3\n")
    assert "from demo.cli import main" in text
    assert "../../../bin/demo" in (site / "demo-1.2.3.dist-info/RECORD").read_text()
    # The wrapper runs (with this Python standing in for the image's) and passes
    # main()'s return value on as the exit status.
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       env={"PYTHONPATH": str(site)}, check=False)
    assert (r.returncode, r.stdout) == (3, "demo ran\n")


def test_entry_point_with_an_attribute_path(install_wheel: ModuleType, tmp_path: Path,
                                            root: Path) -> None:
    wheel = make_wheel(tmp_path / "d.whl", entry_points="[console_scripts]\nx = demo.cli:App.run\n")
    assert install_wheel.main(["install-wheel", str(wheel), str(root)]) == 0
    text = (root / "usr/bin/x").read_text()
    assert "from demo.cli import App" in text
    assert "sys.exit(App.run())" in text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"../evil.py": ""}, "unsafe path"),
        ({"demo-1.2.3.data/scripts/tool": ""}, ".data directory"),
    ],
)
def test_unsupported_wheels_are_refused(install_wheel: ModuleType, tmp_path: Path, root: Path,
                                        capsys: pytest.CaptureFixture[str],
                                        extra: dict[str, str], message: str) -> None:
    wheel = make_wheel(tmp_path / "bad.whl", extra=extra)
    assert install_wheel.main(["install-wheel", str(wheel), str(root)]) == 1
    assert message in capsys.readouterr().err
    assert not (root / "usr/lib/python3/dist-packages/demo").exists()


def test_platform_wheel_is_refused(install_wheel: ModuleType, tmp_path: Path, root: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    wheel = make_wheel(tmp_path / "plat.whl", extra={
        "demo-1.2.3.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: false\n"})
    assert install_wheel.main(["install-wheel", str(wheel), str(root)]) == 1
    assert "not a pure-Python wheel" in capsys.readouterr().err


# ---- grub-bios-embed -------------------------------------------------------------------

def test_mbr_and_core_are_patched_like_grub_bios_setup(embed: ModuleType, tmp_path: Path) -> None:
    if not shutil.which("sfdisk"):
        skip_or_fail("sfdisk is not installed (apt-get install fdisk)")
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(8 * 1024 * 1024)
    subprocess.run(["sfdisk", "--quiet", str(disk)], check=True, capture_output=True, text=True,
                   input="label: gpt\nstart=2048, size=2048, "
                         "type=21686148-6449-6E6F-744E-656564454649\n,\n")
    protective = disk.read_bytes()[:SECTOR]
    boot = bytes(range(256)) * 2                       # stand-in boot.img
    core = b"\xcc" * (3 * SECTOR + 100)                # 4 sectors once padded
    (tmp_path / "boot.img").write_bytes(boot)
    (tmp_path / "core.img").write_bytes(core)

    argv = ["grub-bios-embed", str(disk), str(tmp_path / "boot.img"),
            str(tmp_path / "core.img"), "2048", "2048"]
    assert embed.main(argv) == 0

    data = disk.read_bytes()
    mbr = data[:SECTOR]
    assert mbr[:3] == boot[:3]                           # boot.img's jump
    assert mbr[0x03:0x5A] == protective[0x03:0x5A]       # BPB area kept from the disk
    assert struct.unpack_from("<Q", mbr, 0x5C)[0] == 2048  # where core.img starts
    assert mbr[0x64] == 0xFF                             # boot drive: as the BIOS says
    assert mbr[0x66:0x68] == b"\x90\x90"                 # hard disk: drive check off
    assert mbr[0x1B8:0x200] == protective[0x1B8:0x200]   # protective MBR untouched
    written = data[2048 * SECTOR: 2048 * SECTOR + 4 * SECTOR]
    start, length, segment = struct.unpack_from("<QHH", written, SECTOR - 12)
    assert (start, length, segment) == (2049, 3, 0x820)
    assert written[SECTOR - 24: SECTOR - 12] == b"\0" * 12  # terminator
    assert written[SECTOR:] == core[SECTOR:] + b"\0" * (4 * SECTOR - len(core))


def test_core_too_big_for_the_partition_is_refused(embed: ModuleType, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * (64 * SECTOR))
    (tmp_path / "boot.img").write_bytes(b"\0" * SECTOR)
    (tmp_path / "core.img").write_bytes(b"\0" * (5 * SECTOR))
    argv = ["x", str(disk), str(tmp_path / "boot.img"), str(tmp_path / "core.img"), "34", "4"]
    assert embed.main(argv) == 1


def test_disk_without_gpt_is_refused(embed: ModuleType, tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * (64 * SECTOR))
    (tmp_path / "boot.img").write_bytes(b"\0" * SECTOR)
    (tmp_path / "core.img").write_bytes(b"\0" * (2 * SECTOR))
    argv = ["x", str(disk), str(tmp_path / "boot.img"), str(tmp_path / "core.img"), "34", "16"]
    assert embed.main(argv) == 1


# ---- the scripts' own checks -------------------------------------------------------------

@pytest.mark.parametrize("script", ["build", "smoke-test", "install-build-deps"])
def test_help(script: str) -> None:
    r = subprocess.run([str(IMAGE_DIR / script), "--help"], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0
    assert r.stdout.startswith("Usage: image/")


@pytest.mark.parametrize("script", ["build", "smoke-test", "install-build-deps",
                                    "lib/customize", "lib/essential", "lib/prune-apt-cache",
                                    "rootfs/usr/lib/iscsiha/provision"])
def test_shell_syntax(script: str) -> None:
    subprocess.run(["bash", "-n", str(IMAGE_DIR / script)], check=True)


def test_build_refuses_unknown_option() -> None:
    r = subprocess.run([str(IMAGE_DIR / "build"), "--bogus"], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 2
    assert "unknown argument: --bogus" in r.stderr


def test_build_needs_root() -> None:
    """As a normal user the build stops at once and says why."""
    if os.geteuid() != 0:
        r = subprocess.run([str(IMAGE_DIR / "build")], capture_output=True, text=True, check=False)
    elif shutil.which("setpriv"):
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            str(IMAGE_DIR / "build")], capture_output=True, text=True,
                           check=False)
    else:
        skip_or_fail("running as root and setpriv (util-linux) is not there to drop privileges")
    assert r.returncode == 1
    assert "image/build must run as root (mmdebstrap, mkfs and chroot need it)" in r.stderr


# The wheel is installed --no-deps: each of its dependencies comes from Debian.
DEBIAN_PACKAGES = {"rtslib-fb": "python3-rtslib-fb", "pyroute2": "python3-pyroute2",
                   "dbus-python": "python3-dbus", "configshell-fb": "python3-configshell-fb",
                   "pyparsing": "python3-pyparsing", "tomlkit": "python3-tomlkit"}


def image_packages() -> set[str]:
    words = set()
    for line in (IMAGE_DIR / "packages").read_text().splitlines():
        words.update(line.split("#", 1)[0].split())
    return words


def test_package_list_has_each_python_dependency_of_the_wheel() -> None:
    project = tomllib.loads((IMAGE_DIR.parent / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0] for d in project["dependencies"]}
    unknown = declared - DEBIAN_PACKAGES.keys()
    assert not unknown, f"name the Debian package of {sorted(unknown)} in DEBIAN_PACKAGES"
    assert {DEBIAN_PACKAGES[d] for d in declared} <= image_packages()


def test_package_list_has_what_the_appliance_needs() -> None:
    words = image_packages()
    for pkg in ("linux-image-amd64", "drbd-utils", "pacemaker", "corosync", "python3-rtslib-fb",
                "python3-pyroute2", "python3-dbus", "python3-configshell-fb", "lvm2",
                "openssh-server", "grub-pc-bin", "grub-efi-amd64-bin", "fence-agents-ipmilan"):
        assert pkg in words
    assert "targetcli-fb" not in words  # the cluster owns LIO, no saveconfig tooling


def test_the_readme_names_the_login_shell_the_build_gives_admin() -> None:
    customize = (IMAGE_DIR / "lib/customize").read_text()
    (shell,) = re.findall(r"useradd [^\n]*--shell (\S+)", customize)
    assert (IMAGE_DIR / "rootfs" / shell.lstrip("/")).stat().st_mode & 0o111  # executable
    readme = " ".join((IMAGE_DIR / "README.md").read_text().split())
    assert f"`admin`'s login shell is the appliance console: `{shell}`" in readme
