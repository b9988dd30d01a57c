"""The booted image exposes only what it needs: its listeners, and its filter on a real kernel.

One boot under qemu (TCG, BIOS) of a sparse copy of image/out/iscsiha.img, into
whose root filesystem the test writes (debugfs, no mount, no loop device):

- /etc/iscsiha/desired.toml naming this box ("iscsiha", the image's host name)
  and declaring qemu's first user network, 10.0.2.0/24, the storage network;
- a probe unit that, once the box is up, writes `ss -lntu`, the firewall's log
  line and iperf3.service's state to the second serial port; then, when the test
  knocks on port 5201 of the management NIC (its storage checks are over by then),
  removes the desired state and reports the storage chain's drop counter and that
  iscsiha-firewall.path brought back the base policy.

The second NIC is on another qemu user network (10.0.3.0/24), which the desired
state does not declare: management. qemu forwards host ports to the guest's SSH
port on each NIC and to 5201 (iperf3) on the storage NIC; connections from qemu's
user network come from its gateway (10.0.2.2 / 10.0.3.2). The same sshd must
greet on the management NIC and stay silent on the storage NIC: the filter drops
the SYN, so nothing comes back. Only the VM's forwarded ports on 127.0.0.1 are
contacted.

Marker `lab` like the other boots: it needs the built image (CI builds it first).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.image.conftest import IMAGE, root_offset

pytestmark = pytest.mark.lab

BOOT_TIMEOUT = 420  # TCG on a busy 2-core machine: ~80 s usually
SILENCE = 8.0  # seconds a dropped connection gets to say anything

DESIRED = """\
[cluster]
name = "probe"
volume_group = "data"

[[networks]]
name = "link0"
role = "cluster"
subnet = "10.1.0.0/24"

[[networks]]
name = "link1"
role = "cluster"
subnet = "10.2.0.0/24"

[[networks]]
name = "repl"
role = "replication"
subnet = "10.3.0.0/24"

[[networks]]
name = "storage"          # qemu's first user network: the host connects from 10.0.2.2
role = "storage"
subnet = "10.0.2.0/24"

[[nodes]]
name = "iscsiha"
addresses = { link0 = "10.1.0.11", link1 = "10.2.0.11", repl = "10.3.0.11", storage = "10.0.2.15" }
bmc = { address = "10.4.0.21", user = "fence", password = "bmc-secret-1" }

[[nodes]]
name = "iscsiha-peer"
addresses = { link0 = "10.1.0.12", link1 = "10.2.0.12", repl = "10.3.0.12", storage = "10.0.2.16" }
bmc = { address = "10.4.0.22", user = "fence", password = "bmc-secret-2" }
"""

PROBE_UNIT = """\
[Unit]
Description=image test probe: listeners and firewall state to the second serial port
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh /usr/local/sbin/image-test-probe
"""

PROBE_SCRIPT = """\
#!/bin/sh
{
  echo PROBE-BEGIN
  echo "iperf3: $(systemctl is-enabled iperf3.service)"
  echo "nftables: $(systemctl is-enabled nftables.service)"
  journalctl -b -o cat -u iscsiha-firewall.service | sed 's/^/firewall: /'
  ss -lntuH | awk '{ print "listen: " $1 " " $5 }'
  echo PROBE-END
} > /dev/ttyS1 2>&1
# Phase 2: when the host has finished its storage checks it knocks on 5201 through
# the management NIC, which the management chain drops and counts; then remove the
# desired state: iscsiha-firewall.path must bring back the base policy.
count() { nft list chain inet iscsiha "$1" | awk '$1 == "counter" { print $3 }'; }
knocks=$(count management)
i=0
until [ "$(count management)" -gt "$knocks" ] || [ $i -ge 180 ]; do sleep 1; i=$((i + 1)); done
n=$(count net_storage)
rm /etc/iscsiha/desired.toml
i=0
until journalctl -b -o cat -u iscsiha-firewall.service | grep -q 'loaded the base policy'; do
  [ $i -ge 60 ] && break; sleep 1; i=$((i + 1))
done
{
  echo "storage drops: $n"
  journalctl -b -o cat -u iscsiha-firewall.service | grep 'loaded the base' | sed 's/^/firewall: /'
  echo PROBE2-END
} > /dev/ttyS1 2>&1
"""

# Every socket the fresh box listens on, and why it may:
#   sshd, TCP 22 on all addresses: the admin's way in, and the peer's for apply's
#     steps; the filter narrows it to management and the peer's cluster addresses.
#   systemd-resolved's stub, 127.0.0.53 and 127.0.0.54 port 53, TCP and UDP: the
#     box's own DNS resolver, loopback only. (LLMNR 5355 and mDNS 5353: turned off.)
#   systemd-networkd's DHCPv4 client, UDP 68 bound to each leased address on its
#     link: lease renewals (the filter lets in only replies from port 67, and only
#     on management).
# Not listening: corosync (UDP 5405), pacemaker, DRBD (7789-7999), LIO (3260) and
# the join listener (TCP 5407) start only when a cluster is set up; iperf3.service
# is masked; systemd-timesyncd's socket is connected to its server, not listening.
EXPECTED = {
    "tcp 0.0.0.0:22", "tcp [::]:22",
    "tcp 127.0.0.53%lo:53", "udp 127.0.0.53%lo:53", "tcp 127.0.0.54:53", "udp 127.0.0.54:53",
    "udp 10.0.2.15%IF:68", "udp 10.0.3.15%IF:68",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _inject(image: Path, work: Path) -> None:
    """Write the desired state and the probe unit into root A of the copy."""
    files = {"desired.toml": DESIRED, "probe.service": PROBE_UNIT, "probe.sh": PROBE_SCRIPT}
    for name, text in files.items():
        (work / name).write_text(text)
    wants = "/etc/systemd/system/multi-user.target.wants"
    commands = "\n".join([
        f"write {work / 'desired.toml'} /etc/iscsiha/desired.toml",
        "sif /etc/iscsiha/desired.toml mode 0100600",
        f"write {work / 'probe.service'} /etc/systemd/system/image-test-probe.service",
        f"symlink {wants}/image-test-probe.service /etc/systemd/system/image-test-probe.service",
        f"write {work / 'probe.sh'} /usr/local/sbin/image-test-probe",
    ]) + "\n"
    done = subprocess.run(["debugfs", "-w", "-f", "-", f"{image}?offset={root_offset(image)}"],
                          input=commands, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "rror" not in done.stdout + done.stderr, done.stderr


def _first_bytes(port: int, wait: float) -> bytes:
    """What a TCP connection to the VM's forwarded port says first (b"" if nothing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.settimeout(wait)
        try:
            return s.recv(64)
        except (TimeoutError, ConnectionResetError):
            return b""


def _probe_lines(log: Path, start: str, end: str) -> list[str] | None:
    """The probe's lines between two markers, once the end marker is there."""
    text = log.read_text(errors="replace").replace("\r", "") if log.exists() else ""
    if end not in text:
        return None
    return text.split(start, 1)[1].split(end, 1)[0].strip().splitlines()


def _wait_for(qemu: subprocess.Popen[bytes], log: Path, start: str, end: str,
              deadline: float) -> list[str]:
    while True:
        lines = _probe_lines(log, start, end)
        if lines is not None:
            return lines
        assert qemu.poll() is None, f"qemu exited: {qemu.stdout.read() if qemu.stdout else ''}"
        assert time.monotonic() < deadline, f"no {end} from the probe in time; see {log}"
        time.sleep(1)


def test_the_image_listens_only_where_it_must_and_filters_the_storage_network(
        tmp_path: Path) -> None:
    if not IMAGE.is_file():
        skip_or_fail(f"no appliance image at {IMAGE}: build it first with `sudo image/build`")
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("debugfs", "e2fsprogs"),
                          ("sfdisk", "fdisk")):
        if shutil.which(tool) is None:
            skip_or_fail(f"{tool} is not installed (apt-get install {package}; "
                         "image/install-build-deps installs it)")
    started = time.monotonic()
    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(IMAGE), str(disk)], check=True)
    _inject(disk, tmp_path)
    storage_ssh, storage_iperf, mgmt_ssh, mgmt_iperf = (_free_port() for _ in range(4))
    serial, probe = tmp_path / "serial.log", tmp_path / "probe.log"
    # restrict=on: the guest reaches nothing outside qemu; the host forwards still work.
    # Under timeout(1), as image/smoke-test does: should this test be killed before its
    # `finally` runs, qemu still ends shortly after the deadline.
    argv = ["timeout", "--kill-after=10", str(BOOT_TIMEOUT + 120),
            "qemu-system-x86_64", "-machine", "pc", "-m", "1024", "-smp", "1", "-accel", "tcg",
            "-nodefaults", "-display", "none", "-monitor", "none", "-no-reboot",
            "-drive", f"file={disk},format=raw,if=virtio",
            "-nic", "user,model=virtio-net-pci,restrict=on,net=10.0.2.0/24,"
                    f"hostfwd=tcp:127.0.0.1:{storage_ssh}-:22,"
                    f"hostfwd=tcp:127.0.0.1:{storage_iperf}-:5201",
            "-nic", "user,model=virtio-net-pci,restrict=on,net=10.0.3.0/24,"
                    f"hostfwd=tcp:127.0.0.1:{mgmt_ssh}-:22,"
                    f"hostfwd=tcp:127.0.0.1:{mgmt_iperf}-:5201",
            "-serial", f"file:{serial}", "-serial", f"file:{probe}"]
    qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = started + BOOT_TIMEOUT
        lines = _wait_for(qemu, probe, "PROBE-BEGIN", "PROBE-END", deadline)
        booted = time.monotonic() - started
        greeting = _first_bytes(mgmt_ssh, 30.0)
        with ThreadPoolExecutor(2) as pool:
            storage = list(pool.map(lambda p: _first_bytes(p, SILENCE),
                                    [storage_ssh, storage_iperf]))
        # Phase 2: the knock (dropped on management too), then the guest removes the
        # desired state and the base policy comes back.
        knock = _first_bytes(mgmt_iperf, 2.0)
        after = _wait_for(qemu, probe, "PROBE-END", "PROBE2-END", deadline + 60)
        base_greeting = _first_bytes(storage_ssh, 30.0)
    finally:
        qemu.terminate()
        try:
            qemu.wait(timeout=20)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()
        disk.unlink()  # ~600 MB on disk; pytest keeps the last runs' tmp_path folders
    print(f"booted to the probe in {booted:.0f} s, whole test {time.monotonic() - started:.0f} s")
    print("\n".join(lines))

    listening = {re.sub(r"%\w+:68$", "%IF:68", line.removeprefix("listen: "))
                 for line in lines if line.startswith("listen: ")}
    assert listening == EXPECTED
    assert "iperf3: masked" in lines
    assert "nftables: masked" in lines  # its `flush ruleset` would drop our table
    firewall = [line for line in lines if line.startswith("firewall: ")]
    assert any("loaded the policy of node iscsiha from /etc/iscsiha/desired.toml" in line
               for line in firewall), firewall
    # The same sshd: greets on management, silent on storage (its SYN was dropped).
    assert greeting.startswith(b"SSH-2.0-"), greeting
    assert storage == [b"", b""], storage
    assert knock == b"", knock
    # ... and the guest counted them: dropped by the storage network's chain.
    print("\n".join(after))
    drops = int(next(line for line in after if line.startswith("storage drops: ")).split()[-1])
    assert drops >= 2
    # Without the desired state the path unit reloads the base policy, and the same
    # forward to port 22 through the storage NIC now gets sshd's greeting: it was the
    # policy, not qemu's forwarding, that kept it silent.
    assert any("loaded the base policy (no desired state yet)" in line for line in after), after
    assert base_greeting.startswith(b"SSH-2.0-"), base_greeting
    serial_text = serial.read_text(errors="replace")
    assert "Failed to start" not in serial_text
