"""Flash the image as a user would, provision it from the ESP, boot it and use it.

Per firmware (BIOS, UEFI), under qemu TCG:

- `bmaptool copy` writes image/out/iscsiha.img onto a blank sparse file bigger than
  the image; mtools put the provisioning files on that disk's ESP (offset from
  `sfdisk --json`, no loop device): an SSH key made here, a host name, a networkd
  file giving NIC3 a static address, and a network file with a bad name;
- three NICs: NIC1 on qemu's user network (restrict=on, port 2222 forwarded to the
  guest's 22), NIC2 and NIC3 on taps inside a network namespace made here; qemu runs
  inside that namespace, so the forwarded port and the taps are reachable only
  there. Two data disks: an ext4 filesystem (refused, left untouched) and an empty
  one (becomes the volume group "data").

Then: the serial console greets with the provisioned name and the addresses; admin's
first login on the serial console sets the password and lands in the console; a
second login takes that password; SSH with the key runs a console line, SSH with a
password is refused; NIC3's provisioned address answers SSH from the namespace;
selfcheck passes and no unit failed. This covers what image/smoke-test checks (kept
as the by-hand tool), so CI boots the image here instead.

Marker `lab` like the other boots: it needs root (namespace, taps), the built image,
qemu, OVMF, bmaptool, mtools, sfdisk, mkfs.ext4 and ssh (CI has them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.image.conftest import IMAGE

pytestmark = pytest.mark.lab

BOOT_TIMEOUT = 480  # TCG on a busy 2-core machine; a boot to login took 60-110 s
STEP_TIMEOUT = 120  # one login, one console line
PASSWORD = "first-boot-pw-42"
MACS = {1: "52:54:00:1f:b0:01", 2: "52:54:00:1f:b0:02", 3: "52:54:00:1f:b0:03"}
SSH_FORWARD = 2222  # in the test's own fresh namespace, where every port is free
NIC2_BOX, NIC2_HOST = "10.99.42.11", "10.99.42.1"  # set from the console
NIC3_BOX, NIC3_HOST = "10.99.43.11", "10.99.43.1"  # from a network file on the ESP
MIB = 1024 * 1024
OVMF = [("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
        ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd")]
IP = "/usr/sbin/ip"
# Colours and terminal queries (the console colours its tree, systemd asks the size).
ANSI = re.compile(r"\x1b(\[[0-9;?!]*[A-Za-z]|[()][A-Z0-9])")

NIC3_NETWORK = f"""\
[Match]
MACAddress={MACS[3]}

[Network]
Address={NIC3_BOX}/24
"""


def _need_tools(firmware: str) -> None:
    if not IMAGE.is_file():
        skip_or_fail(f"no appliance image at {IMAGE}: build it first with `sudo image/build`")
    if os.geteuid() != 0 or not Path("/dev/net/tun").exists():
        skip_or_fail("needs root and /dev/net/tun (a network namespace with taps)")
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("bmaptool", "bmap-tools"),
                          ("mcopy", "mtools"), ("sfdisk", "fdisk"), ("mkfs.ext4", "e2fsprogs"),
                          ("ssh", "openssh-client"), ("ssh-keygen", "openssh-client"),
                          ("blkid", "util-linux")):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is not installed (apt-get install {package}; "
                         "image/install-build-deps installs the image tools)")
    if firmware == "uefi" and not any(Path(code).exists() for code, _ in OVMF):
        skip_or_fail("OVMF is not installed (image/install-build-deps installs it)")


# ---- the disk, as a user flashes and provisions it ----------------------------------

def _esp_offset(disk: Path) -> int:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    (esp,) = [p for p in table["partitions"] if p.get("name") == "esp"]
    return int(esp["start"]) * int(table.get("sectorsize", 512))


def _flash_and_provision(disk: Path, work: Path, hostname: str) -> Path:
    """The flashed boot disk with its ESP provisioned; returns the SSH private key."""
    with open(disk, "wb") as f:
        f.truncate(IMAGE.stat().st_size + 512 * MIB)  # a blank disk bigger than the image
    subprocess.run(["bmaptool", "copy", str(IMAGE), str(disk)], check=True,
                   capture_output=True, timeout=600)
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "flash-test",
                    "-f", str(key)], check=True)
    files = work / "esp"
    (files / "network").mkdir(parents=True)
    shutil.copy(f"{key}.pub", files / "authorized_keys")
    (files / "hostname").write_text(f"{hostname}\r\n")  # as an editor on Windows saves it
    (files / "network/10-nic3.network").write_text(NIC3_NETWORK)
    (files / "network/bad name.network").write_text("[Match]\n")
    esp = f"{disk}@@{_esp_offset(disk)}"
    subprocess.run(["mmd", "-i", esp, "::iscsiha/network"], check=True, capture_output=True)
    for name in ("authorized_keys", "hostname", "network/10-nic3.network",
                 "network/bad name.network"):
        subprocess.run(["mcopy", "-i", esp, str(files / name), f"::iscsiha/{name}"],
                       check=True, capture_output=True)
    return key


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


# ---- the namespace with NIC2's and NIC3's taps ---------------------------------------

@contextmanager
def _netns() -> Iterator[str]:
    """A namespace holding tap2 (NIC2, no address yet) and tap3 (NIC3's subnet)."""
    ns = f"iscsiha-flash-{uuid.uuid4().hex[:8]}"
    subprocess.run([IP, "netns", "add", ns], check=True)
    try:
        for argv in (["link", "set", "lo", "up"],
                     ["tuntap", "add", "tap2", "mode", "tap"], ["link", "set", "tap2", "up"],
                     ["tuntap", "add", "tap3", "mode", "tap"], ["link", "set", "tap3", "up"],
                     ["addr", "add", f"{NIC3_HOST}/24", "dev", "tap3"]):
            subprocess.run([IP, "-n", ns, *argv], check=True)
        yield ns
    finally:
        subprocess.run([IP, "netns", "delete", ns], check=False)


# ---- the serial console -----------------------------------------------------------------

@dataclass
class Serial:
    """The guest's first serial port through qemu's socket: read in the background."""

    sock: socket.socket
    text: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.text += data.decode(errors="replace").replace("\r", "")

    def snapshot(self) -> str:
        with self.lock:
            return ANSI.sub("", self.text)

    def wait_for(self, pattern: str, timeout: float, since: int = 0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.snapshot()[since:])
            if found:
                return found
            assert time.monotonic() < deadline, (f"serial: no {pattern!r} in {timeout:.0f} s; "
                                                 f"last output:\n{self.snapshot()[-2000:]}")
            time.sleep(0.5)

    def quiet(self, seconds: float, timeout: float) -> None:
        """Wait until nothing has come for SECONDS (the prompt is not being reprinted)."""
        deadline = time.monotonic() + timeout
        seen, since = len(self.snapshot()), time.monotonic()
        while time.monotonic() - since < seconds and time.monotonic() < deadline:
            time.sleep(0.5)
            now = len(self.snapshot())
            if now != seen:
                seen, since = now, time.monotonic()

    def type(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r")


def _connect(path: Path, qemu: subprocess.Popen[bytes]) -> Serial:
    deadline = time.monotonic() + 30
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return Serial(sock)
        except OSError:
            sock.close()
            assert qemu.poll() is None, "qemu exited before its serial socket appeared"
            assert time.monotonic() < deadline, "qemu's serial socket did not appear"
            time.sleep(0.2)


def _login(serial: Serial, answers: list[tuple[str, str]]) -> int:
    """Type admin at the login prompt, then each (prompt, answer); returns where it began.

    agetty discards a half-typed name when it reprints the prompt (an address
    changed), so the name is typed again if no prompt follows."""
    for _ in range(4):
        serial.quiet(4.0, 60)
        start = len(serial.snapshot())
        serial.type("admin")
        try:
            serial.wait_for(re.escape(answers[0][0]), 30, since=start)
            break
        except AssertionError:
            continue
    else:
        pytest.fail(f"serial: no {answers[0][0]!r} after typing admin:\n"
                    f"{serial.snapshot()[-2000:]}")
    for prompt, answer in answers:
        serial.wait_for(re.escape(prompt), STEP_TIMEOUT, since=start)
        start = len(serial.snapshot())
        serial.type(answer)
    return start


# ---- SSH, from inside the namespace -----------------------------------------------------

@dataclass
class Box:
    netns: str
    key: Path
    known_hosts: Path

    def ssh(self, *line: str, address: str = "127.0.0.1", port: int = SSH_FORWARD,
            options: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        # The box's host key is new on every run: accepted for this test only.
        argv = [IP, "netns", "exec", self.netns, "ssh", "-p", str(port), "-i", str(self.key),
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20",
                "-o", "StrictHostKeyChecking=accept-new",
                "-o", f"UserKnownHostsFile={self.known_hosts}", *options,
                f"admin@{address}", *line]
        return subprocess.run(argv, capture_output=True, text=True, timeout=STEP_TIMEOUT,
                              check=False)


def set_static_address_on_nic2_and_ssh_to_it(
        box: Box) -> tuple[str, subprocess.CompletedProcess[str], str]:
    """The console (over SSH through NIC1) refuses to take NIC1 from under the session,
    finds NIC2 by its MAC, gives it a static address and applies it as a trial; a new
    SSH session to that address confirms it.
    Returns NIC2's name, that session's result and `show` afterwards."""
    listed = ANSI.sub("", box.ssh("/box/networks", "nics").stdout)
    nic1, nic2 = (next((line.split()[0] for line in listed.splitlines() if MACS[n] in line),
                       "") for n in (1, 2))
    assert nic1 and nic2, listed
    # Taking NIC1, which this SSH session comes through, without its address: refused.
    box.ssh(*f"/box/networks add name=mgmt link={nic1} address=10.0.2.99/24".split())
    cut = box.ssh("/box/networks", "apply")
    assert cut.returncode != 0 and "would-cut-session" in cut.stdout + cut.stderr, cut
    box.ssh("/box/networks", "remove", "name=mgmt")
    for line in (f"/box/networks add name=storage link={nic2} address={NIC2_BOX}/24",
                 "/box/networks apply within=300"):
        done = box.ssh(*line.split())
        assert done.returncode == 0, (line, done.stdout, done.stderr)
    subprocess.run([IP, "-n", box.netns, "addr", "add", f"{NIC2_HOST}/24", "dev", "tap2"],
                   check=True)
    via_nic2 = box.ssh("/box/networks", "confirm", address=NIC2_BOX, port=22)
    shown = ANSI.sub("", box.ssh("/box/networks", "show").stdout)
    return nic2, via_nic2, shown


# ---- the test -----------------------------------------------------------------------------

@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_a_flashed_and_provisioned_image_boots_and_is_usable(firmware: str,
                                                             tmp_path: Path) -> None:
    _need_tools(firmware)
    hostname = f"fbtest-{firmware}"
    disk, used, empty = tmp_path / "boot.img", tmp_path / "used.img", tmp_path / "empty.img"
    key = _flash_and_provision(disk, tmp_path, hostname)
    for path in (used, empty):
        with open(path, "wb") as f:
            f.truncate(256 * MIB)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "keepme", str(used)], check=True)
    used_sha = _sha256(used)
    # A unix socket's path is limited to 108 bytes: pytest's tmp_path can be longer.
    sockdir = Path(tempfile.mkdtemp(prefix="iscsiha-flash-"))
    serial_sock, serial_log = sockdir / "serial", tmp_path / "serial.log"

    argv = ["-m", "1024", "-smp", "1", "-accel", "tcg", "-nodefaults", "-display", "none",
            "-monitor", "none", "-no-reboot",
            "-chardev", f"socket,id=s0,path={serial_sock},server=on,wait=off,logfile={serial_log}",
            "-serial", "chardev:s0",
            "-drive", f"file={disk},format=raw,if=virtio",
            "-drive", f"file={used},format=raw,if=virtio",
            "-drive", f"file={empty},format=raw,if=virtio",
            "-netdev", f"user,id=n1,restrict=on,hostfwd=tcp:127.0.0.1:{SSH_FORWARD}-:22",
            "-device", f"virtio-net-pci,netdev=n1,mac={MACS[1]}",
            "-netdev", "tap,id=n2,ifname=tap2,script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n2,mac={MACS[2]}",
            "-netdev", "tap,id=n3,ifname=tap3,script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n3,mac={MACS[3]}"]
    if firmware == "uefi":
        code, vars_template = next((c, v) for c, v in OVMF if Path(c).exists())
        shutil.copy(vars_template, tmp_path / "OVMF_VARS.fd")
        argv = ["-machine", "q35", *argv,
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                "-drive", f"if=pflash,format=raw,unit=1,file={tmp_path / 'OVMF_VARS.fd'}"]
    else:
        argv = ["-machine", "pc", *argv]

    times: dict[str, float] = {}
    with _netns() as ns:
        started = time.monotonic()
        # Under timeout(1): should this test be killed before `finally`, qemu still ends.
        qemu = subprocess.Popen(
            [IP, "netns", "exec", ns, "timeout", "--kill-after=10", str(BOOT_TIMEOUT + 600),
             "qemu-system-x86_64", *argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            serial = _connect(serial_sock, qemu)
            box = Box(ns, key, tmp_path / "known_hosts")
            # The provisioned name at the login prompt, and the greeting's addresses.
            serial.wait_for(rf"{hostname} login:", BOOT_TIMEOUT)
            times["login prompt"] = time.monotonic() - started
            greeting = serial.wait_for(r"iscsiha appliance ", 10).start()
            serial.wait_for(r"10\.0\.2\.15", 60, since=greeting)
            serial.wait_for(re.escape(NIC3_BOX), 60, since=greeting)
            serial.wait_for(r"iscsiha selfcheck: (ok|FAILED)", 120)

            # First login on the serial console: the password, then the console.
            _login(serial, [("New password for admin:", PASSWORD),
                            ("Type it again:", PASSWORD)])
            start = serial.wait_for(r"admin's password is set\.", STEP_TIMEOUT).end()
            serial.wait_for(r"/> ", STEP_TIMEOUT, since=start)
            start = len(serial.snapshot())
            serial.type("ls")
            serial.wait_for(r"o- cluster", STEP_TIMEOUT, since=start)
            serial.type("exit")
            serial.wait_for(rf"{hostname} login:", STEP_TIMEOUT, since=start)
            # From now on: a normal login with that password.
            start = _login(serial, [("Password:", PASSWORD)])
            serial.wait_for(r"/> ", STEP_TIMEOUT, since=start)
            serial.type("exit")
            times["local logins done"] = time.monotonic() - started

            by_key = box.ssh("ls")
            by_password = box.ssh("ls", options=(
                "-o", "PubkeyAuthentication=no",
                "-o", "PreferredAuthentications=password,keyboard-interactive"))
            via_nic3 = box.ssh("ls", address=NIC3_BOX, port=22)
            nic2, via_nic2, nic2_shown = set_static_address_on_nic2_and_ssh_to_it(box)
        finally:
            qemu.terminate()  # timeout(1) passes it on to qemu
            try:
                qemu.wait(timeout=30)
            except subprocess.TimeoutExpired:
                qemu.kill()
                qemu.wait()
            shutil.rmtree(sockdir, ignore_errors=True)
        times["whole boot"] = time.monotonic() - started

    text = ANSI.sub("", serial_log.read_text(errors="replace").replace("\r", ""))
    disk.unlink()  # ~600 MB on disk; pytest keeps the last runs' tmp_path folders
    print(f"{firmware}: " + ", ".join(f"{what} {secs:.0f} s" for what, secs in times.items()))

    assert "iscsiha selfcheck: ok" in text
    assert "Failed to start" not in text, [ln for ln in text.splitlines() if "Failed to" in ln]
    assert "iscsiha provision: added 1 SSH key(s) for admin" in text
    assert f"iscsiha provision: host name set to {hostname}" in text
    assert "refused iscsiha/network/bad name.network" in text
    assert by_key.returncode == 0, by_key.stderr
    listed = ANSI.sub("", by_key.stdout)
    assert "o- cluster" in listed and "not set up yet" in listed
    # sshd offers keys only, so the client cannot even try the password admin now has.
    assert by_password.returncode == 255
    assert "Permission denied (publickey)" in by_password.stderr, by_password.stderr
    assert via_nic3.returncode == 0, via_nic3.stderr
    assert "o- cluster" in ANSI.sub("", via_nic3.stdout)
    # NIC2's address, set in the console and confirmed over NIC2 itself.
    assert via_nic2.returncode == 0, via_nic2.stderr
    assert "confirmed: trial" in ANSI.sub("", via_nic2.stdout)
    assert f"{NIC2_BOX}/24" in nic2_shown and f"on {nic2}" in nic2_shown, nic2_shown
    assert nic2_shown.rstrip().endswith("applied"), nic2_shown
    # The ext4 disk (vdb, the first candidate) is refused and untouched; the empty
    # one after it became the volume group "data".
    assert re.search(r"REFUSED /dev/vdb: .*ext4", text), text[-3000:]
    assert "created volume group data on /dev/vdc" in text
    assert _sha256(used) == used_sha
    probe = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", str(empty)],
                           capture_output=True, text=True, check=False)
    assert probe.stdout.strip() == "LVM2_member"
