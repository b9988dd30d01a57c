"""The lab's initiator, driven from the host: open-iscsi sessions with the lab's CHAP
secrets, its disks, and the acknowledged-write verifier (io_probe) run on it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iscsiha_lab.guest import GuestResult
from iscsiha_lab.lab import Lab

PROBE = (Path(__file__).resolve().parent / "io_probe.py").read_text()
HV_SECRET, SAN_SECRET = "hv-Secret-0001", "san-Secret-0001"
# docs/initiators.md's dm-multipath settings for the appliance, as the lab applies them.
MULTIPATH_CONF = """\
defaults {
    user_friendly_names no
    find_multipaths greedy
    polling_interval 1
}
blacklist {
    device {
        vendor ".*"
        product ".*"
    }
}
blacklist_exceptions {
    device {
        vendor "LIO-ORG"
        product ".*"
    }
}
devices {
    device {
        vendor "LIO-ORG"
        product ".*"
        path_grouping_policy multibus
        path_selector "service-time 0"
        path_checker tur
        failback immediate
        no_path_retry 180
    }
}
"""
MUTUAL = {"mode": "mutual-chap", "user": "hv", "secret": HV_SECRET, "mutual_user": "san",
          "mutual_secret": SAN_SECRET}


def iqn(name: str) -> str:
    return f"iqn.2026-11.org.example.lab:{name}"


def wait_for(what: str, check: Callable[[], bool], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(2)


class Initiator:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.name = lab.topology.initiators[0].name
        self.run("systemctl", "start", "iscsid")
        self.iqn = self.run("sed", "-n", "s/^InitiatorName=//p",
                            "/etc/iscsi/initiatorname.iscsi").strip()

    def run(self, *argv: str, input: str | None = None, timeout: float = 120) -> str:
        return self.lab.exec(self.name, list(argv), input=input, timeout=timeout).check().out

    def try_run(self, *argv: str, timeout: float = 120) -> GuestResult:
        return self.lab.exec(self.name, list(argv), timeout=timeout)

    def node(self, target: str, portal: str) -> list[str]:
        return ["iscsiadm", "-m", "node", "-T", target, "-p", portal]

    def configure(self, target: str, portal: str, secret: str = HV_SECRET,
                  iface: str | None = None, mutual: bool = True) -> None:
        self.run("iscsiadm", "-m", "discovery", "-t", "st", "-p", portal,
                 *(["-I", iface] if iface else []))
        auth = {"authmethod": "CHAP", "username": "hv", "password": secret}
        if mutual:
            auth |= {"username_in": "san", "password_in": SAN_SECRET}
        for name, value in auth.items():
            self.run(*self.node(target, portal), *(["-I", iface] if iface else []),
                     "-o", "update", "-n", f"node.session.auth.{name}", "-v", value)

    def login(self, target: str, portal: str, luns: int) -> list[str]:
        """Log in; the session's disks, by LUN number, once all of them are there."""
        self.run(*self.node(target, portal), "--login")
        disks: dict[int, str] = {}

        def complete() -> bool:
            disks.clear()
            disks.update(self.disks(target, portal))
            return sorted(disks) == list(range(luns)) and all(
                self.try_run("test", "-b", f"/dev/{d}").ok for d in disks.values())

        wait_for(f"{luns} disks of {target}", complete, timeout=60)
        return [f"/dev/{disks[i]}" for i in range(luns)]

    def disks(self, target: str, portal: str | None = None) -> dict[int, str]:
        """LUN number -> disk name, for the session with ``target`` (through ``portal``,
        an address, where there are several paths)."""
        disks: dict[int, str] = {}
        lun, inside, in_target = None, False, False
        for line in self.try_run("iscsiadm", "-m", "session", "-P", "3").out.splitlines():
            line = line.strip()
            if line.startswith("Target:"):
                in_target = inside = line.split()[1] == target
            elif in_target and portal is not None and line.startswith("Current Portal:"):
                inside = line.split()[2].split(":")[0] == portal
            elif inside and line.startswith("scsi") and "Lun:" in line:
                lun = int(line.split("Lun:")[1].split()[0])
            elif inside and lun is not None and "Attached scsi disk" in line:
                disks[lun] = line.split("Attached scsi disk")[1].split()[0]
        return disks

    def multipath_on(self) -> None:
        """dm-multipath as docs/initiators.md recommends, with a map for every path of the
        appliance's LUNs. Only while the failover scenarios run: it would claim the disks
        other lab tests use one path at a time (and the three sessions of one LUN the
        reservations test logs in, each its own initiator)."""
        self.run("sh", "-c", f"cat > /etc/multipath.conf <<'EOF'\n{MULTIPATH_CONF}EOF")
        self.run("systemctl", "restart", "multipathd")

    def multipath_off(self) -> None:
        """Every map flushed (their disks logged out first) and multipathd stopped."""
        self.try_run("systemctl", "stop", "multipathd.socket", "multipathd")
        self.try_run("multipath", "-F")
        self.try_run("rm", "-f", "/etc/multipath.conf", "/etc/multipath/wwids")

    def multipath_device(self, disks: list[str]) -> str:
        """The dm-multipath device that holds every one of ``disks`` (sdX: one LUN's paths),
        once multipathd has mapped them all."""
        names = [d.removeprefix("/dev/") for d in disks]
        holders: set[str] = set()

        def mapped() -> bool:
            holders.clear()
            holders.update(self.try_run("ls", f"/sys/block/{d}/holders").out.strip()
                           for d in names)
            return len(holders) == 1 and next(iter(holders)).startswith("dm-")

        wait_for(f"one multipath map for {', '.join(names)}", mapped, timeout=60)
        return self.mapped_device(next(iter(holders)))

    def multipath_paths(self) -> str:
        """`multipath -ll`: every map with each path's state (active/failed)."""
        return self.try_run("multipath", "-ll").out

    def mapped_device(self, dm: str) -> str:
        return "/dev/mapper/" + self.run("cat", f"/sys/block/{dm}/dm/name").strip()

    def lun_device(self, target: str, lun: int) -> str | None:
        """Where a filesystem on ``target``'s LUN is used: its multipath map, or its one
        disk where multipath holds none; None when the LUN is not attached."""
        disk = self.disks(target).get(lun)
        if disk is None:
            return None
        holder = self.try_run("ls", f"/sys/block/{disk}/holders").out.strip()
        return self.mapped_device(holder) if holder.startswith("dm-") else f"/dev/{disk}"

    def write_and_read_back(self, disk: str, mib: int = 4) -> None:
        """A random pattern written through the LUN reads back identical (direct I/O)."""
        self.run("sh", "-c", f"dd if=/dev/urandom of=/tmp/pattern bs=1M count={mib} status=none"
                             f" && dd if=/tmp/pattern of={disk} bs=1M oflag=direct status=none"
                             f" && dd if={disk} of=/tmp/back bs=1M count={mib} iflag=direct "
                             "status=none && cmp /tmp/pattern /tmp/back")

    def logout(self, target: str, portal: str) -> None:
        self.try_run(*self.node(target, portal), "--logout")

    def identity(self, disk: str) -> tuple[str, str]:
        """(unit serial, NAA designator) asked of the target now, not from a cache."""
        serial = self.run("sg_vpd", "-p", "sn", disk).split("serial number:")[1]
        naa = self.run("sh", "-c", f"sg_vpd -p di {disk} | grep -A1 'type: NAA' | tail -1")
        return serial.strip(), naa.strip()

    def probe(self, disks: list[str], seconds: float, stop_file: str) -> dict[str, Any]:
        result = self.lab.exec(self.name, ["python3", "-c", PROBE, "--seconds", str(seconds),
                                           "--stop-file", stop_file, *disks],
                               timeout=seconds + 120).check()
        data: dict[str, Any] = json.loads(result.out.strip().splitlines()[-1])
        return data
