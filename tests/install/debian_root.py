"""Throwaway Debian roots for the install tier: bootstrapped with mmdebstrap, entered
with chroot inside private mount and PID namespaces, deleted afterwards."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
PYPI = "https://pypi.org/simple/pip/"
# Where the copy of the checkout lies inside a root.
CHECKOUT = "/srv/iscsiha"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Where a Debian admin puts a local CA; a network that inspects TLS needs its CA there.
LOCAL_CAS = Path("/usr/local/share/ca-certificates")

# Run as `sh -c ENTER sh ROOT ARGV...` under `unshare --mount --pid --fork`: /proc,
# /sys, /dev/pts and /dev/shm for the root, then chroot. The mounts live only in the
# private mount namespace, so they vanish when the command ends, however it ends, and
# the end of the PID namespace ends whatever the command left running (a daemon that a
# package's postinst started, say). mmdebstrap leaves device nodes in the root's /dev.
ENTER = ('set -e; root=$1; shift; mount -t proc proc "$root/proc"; '
         'mount -t sysfs sysfs "$root/sys"; '
         'mount -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts"; '
         'mount -t tmpfs tmpfs "$root/dev/shm"; exec chroot "$root" "$@"')


@dataclass(frozen=True)
class Ran:
    argv: tuple[str, ...]
    returncode: int
    out: str
    seconds: float

    def check(self) -> Ran:
        assert self.returncode == 0, (
            f"{' '.join(self.argv)} exited {self.returncode} after {self.seconds:.0f} s:\n"
            f"{self.out[-6000:]}")
        return self


def lacking() -> str | None:
    """What this machine lacks to run the install tier, or None."""
    if os.geteuid() != 0:
        return "needs root (mmdebstrap --mode=root, chroot and mounts)"
    for tool, package in (("mmdebstrap", "mmdebstrap"), ("unshare", "util-linux"),
                          ("git", "git")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {package})"
    for url in (f"{MIRROR}/dists/trixie/InRelease", PYPI):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"),
                                        timeout=20):
                pass
        except OSError as exc:
            return f"no network to {url} (apt-get and pip in the root need it): {exc}"
    return None


@contextmanager
def workdir() -> Iterator[Path]:
    """A directory for the roots, deleted afterwards, but never across a mount point:
    a mount that outlived its namespace would have rmtree empty the host's /dev."""
    path = Path(tempfile.mkdtemp(prefix="iscsiha-install-", dir="/var/tmp"))
    try:
        yield path
    finally:
        inside = [m for m in mount_points() if m == path or path in m.parents]
        assert not inside, f"mounts left under {path}, not deleted: {inside}"
        shutil.rmtree(path)


def mount_points() -> list[Path]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    # Field 5 is the mount point, with spaces and the like escaped as octal.
    return [Path(line.split()[4].encode().decode("unicode_escape")) for line in lines]


def bootstrap(suite: str, root: Path) -> float:
    """A minimal Debian root (essential packages and apt, as in a container image):
    whatever more tools/install-deps needs, it must install itself. Returns seconds."""
    started = time.monotonic()
    root.mkdir()
    done = subprocess.run(["mmdebstrap", "--quiet", "--mode=root", "--variant=minbase",
                           suite, str(root), MIRROR],
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, f"mmdebstrap {suite} failed:\n{done.stderr[-4000:]}"
    # The host's network: its resolver, and the local CAs it trusts (they reach pip once
    # install-deps installs ca-certificates). No daemon starts: the root has no init.
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    if LOCAL_CAS.is_dir():
        shutil.copytree(LOCAL_CAS, root / LOCAL_CAS.relative_to("/"), dirs_exist_ok=True)
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    return time.monotonic() - started


def copy_checkout(source: Path, root: Path) -> None:
    """The checkout's files as a fresh clone would have them, plus new files not yet
    committed: no .venv, no build output, nothing git ignores."""
    listed = subprocess.run(["git", "-C", str(source), "ls-files", "-z", "--cached",
                             "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout
    names = [n for n in listed.split(b"\0") if n and os.path.lexists(source / os.fsdecode(n))]
    target = root / CHECKOUT.lstrip("/")
    target.mkdir(parents=True)
    pack = subprocess.Popen(["tar", "-C", str(source), "--null", "-T", "-", "-cf", "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    unpack = subprocess.Popen(["tar", "-C", str(target), "-xf", "-"], stdin=pack.stdout)
    assert pack.stdin is not None and pack.stdout is not None
    pack.stdout.close()
    pack.stdin.write(b"\0".join(names) + b"\0")
    pack.stdin.close()
    assert (pack.wait(timeout=300), unpack.wait(timeout=300)) == (0, 0)


def run(root: Path, argv: Sequence[str], *, cwd: str = "/", timeout: float = 900) -> Ran:
    """ARGV as root inside ROOT, with a clean environment (CI passed on, so that the
    tests run there fail rather than skip); stdout and stderr together."""
    env = [f"PATH={PATH}", "HOME=/root", "LANG=C.UTF-8"]
    if "CI" in os.environ:
        env.append(f"CI={os.environ['CI']}")
    command = ["unshare", "--mount", "--pid", "--fork", "--kill-child",
               "--propagation", "private", "--", "/bin/sh", "-c", ENTER, "sh", str(root),
               "/usr/bin/env", "-i", f"--chdir={cwd}", *env, *argv]
    started = time.monotonic()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout, check=False)
    return Ran(tuple(argv), done.returncode, done.stdout, time.monotonic() - started)


@dataclass(frozen=True)
class Installed:
    """A root where tools/install-deps has run once, and the tier's timings."""

    suite: str
    root: Path
    first_run: Ran
    times: list[str]

    def run(self, *argv: str, cwd: str = CHECKOUT, timeout: float = 900) -> Ran:
        return run(self.root, argv, cwd=cwd, timeout=timeout)

    def note(self, what: str, seconds: float) -> None:
        """A timing for the run's summary (pytest captures a test's own output)."""
        self.times.append(f"{self.suite}: {what} {seconds:.1f} s")
