"""The initiator node's root image ("the hypervisor"): built by the lab with mmdebstrap, cached.

Why a separate image rather than packages layered on the appliance image: the
appliance image is what ships, so it must not grow open-iscsi, multipath-tools
and fio just for the lab; and a guest cannot install packages at boot (it has
no route to a mirror). A minimal trixie with those tools builds in a minute or
two and is cached under /var/cache/iscsiha-lab/, keyed by its package list and
the UML kernel version, so it is built once per machine.

The Debian mirror is read from the host's own apt configuration at run time.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from iscsiha.errors import IscsihaError
from iscsiha.executors.runner import Runner
from iscsiha_lab.paths import DEFAULT_CACHE_DIR, UML_MODULES
from iscsiha_lab.tools import CHROOT, MKE2FS, MMDEBSTRAP

SUITE = "trixie"
PACKAGES = (
    "systemd", "systemd-sysv", "udev", "dbus", "kmod", "iproute2", "ethtool", "iputils-ping",
    "procps", "python3", "open-iscsi", "multipath-tools", "sg3-utils", "fio", "iperf3",
    "netcat-openbsd", "lsscsi", "e2fsprogs",
)
IMAGE_SIZE = "2G"
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


def host_mirror(sources: tuple[Path, ...] = APT_SOURCES) -> str:
    """The first Debian archive URI in the host's apt sources (one-line or deb822 format)."""
    files: list[Path] = []
    for source in sources:
        if source.is_dir():
            files += sorted(p for p in source.iterdir() if p.suffix in (".list", ".sources"))
        elif source.is_file():
            files.append(source)
    for file in files:
        text = file.read_text(encoding="utf-8", errors="replace")
        uris = re.findall(r"^\s*URIs:\s*(\S+)", text, re.MULTILINE)
        uris += re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.MULTILINE)
        for uri in uris:
            if uri.rstrip("/").endswith("/debian"):
                return str(uri)
    raise IscsihaError.single(
        "no-mirror", "apt sources", ", ".join(str(s) for s in sources),
        "a Debian archive (a URI ending in /debian) in the host's apt configuration",
        "none found")


def cache_key(kernel: str) -> str:
    return hashlib.sha256(" ".join((SUITE, kernel, *PACKAGES)).encode()).hexdigest()[:12]


def cached_image(kernel: str, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    return cache_dir / f"initiator-{SUITE}-{kernel}-{cache_key(kernel)}.ext4"


def build(
    runner_root: Path, kernel: str, progress: Callable[[str], None],
    cache_dir: Path = DEFAULT_CACHE_DIR,
) -> Path:
    """Build (once) and return the initiator image for this UML kernel."""
    image = cached_image(kernel, cache_dir)
    if image.exists():
        return image
    if not Path(MMDEBSTRAP.path).exists():
        raise IscsihaError.single(
            "command-missing", "command", MMDEBSTRAP.path,
            f"installed (apt-get install {MMDEBSTRAP.package}), or pass --initiator-image",
            "is needed to build the initiator image")
    cache_dir.mkdir(parents=True, exist_ok=True)
    runner = Runner()
    mirror = host_mirror()
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="build-") as work:
        root = Path(work) / "root"
        progress(f"initiator image: mmdebstrap {SUITE} from {mirror} (a minute or two)")
        runner.run([MMDEBSTRAP.path, "--variant=minbase", f"--include={','.join(PACKAGES)}",
                    SUITE, str(root), mirror], timeout=1800)
        modules = root / "lib/modules"
        modules.mkdir(parents=True, exist_ok=True)
        shutil.copytree(runner_root / UML_MODULES / kernel, modules / kernel, symlinks=True)
        # A console login without password: the lab console is only reachable by root.
        runner.run([CHROOT.path, str(root), "passwd", "-d", "root"])
        (root / "etc/hostname").write_text("initiator\n")
        # iscsid needs a unique initiator name; the Debian package makes one on
        # first start if the file says GenerateName=yes, which it does.
        partial = Path(work) / image.name
        progress("initiator image: mke2fs")
        runner.run([MKE2FS.path, "-q", "-t", "ext4", "-d", str(root), "-L", "initiator",
                    str(partial), IMAGE_SIZE], timeout=600)
        partial.replace(image)
    progress(f"initiator image: {image}")
    return image
