"""SCSI-3 persistent reservations from an initiator, as a Windows or Linux cluster
uses them, kept across a planned move and a power cut (docs/reservations.md).

Two sessions of the lab's initiator under two initiator names (two iSCSI interfaces,
each with its own name, as two cluster nodes would be: LIO keeps a registration per
initiator name and LUN) register a key each, the first reserves; after each move the
new box must report the same keys, holder and type, a third, unregistered initiator
must get RESERVATION CONFLICT on a write, and a preempt must work.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from iscsiha_lab.initiator import Initiator, iqn, wait_for
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import (
    TARGETS,
    failover_desired,
    fence_history,
    fenced_after,
    logout_all,
    move,
    other,
    settle,
    target_on,
    wait_healthy,
)

pytestmark = pytest.mark.lab
TARGET = iqn("alpha")
PORTAL = TARGETS["alpha"][0][0]  # one path: each iface is its own initiator here
IFACES = ("pr1", "pr2", "pr3")  # two registered nodes, one stranger
NAMES = {"pr2": "iqn.2026-12.org.example:node2", "pr3": "iqn.2026-12.org.example:stranger"}
KEY_A, KEY_B = "0xa1", "0xb2"
WE_RO = "5"  # Write Exclusive, Registrants Only: what Windows clusters take


@pytest.fixture(scope="module")
def disks(lab: Lab) -> Iterator[dict[str, str]]:
    """iface -> its disk of alpha's LUN 0, each session its own I_T nexus."""
    initiator = Initiator(lab)
    logout_all(initiator)  # what an earlier module may have left logged in
    data = failover_desired(lab, initiator.iqn)
    for target in data["targets"]:
        if target["name"] == "alpha":
            target["initiators"] = [initiator.iqn, *NAMES.values()]
    settle(lab, data)
    found: dict[str, str] = {}
    try:
        for iface in IFACES:
            initiator.run("iscsiadm", "-m", "iface", "-I", iface, "-o", "new")
            if iface in NAMES:
                initiator.run("iscsiadm", "-m", "iface", "-I", iface, "-o", "update",
                              "-n", "iface.initiatorname", "-v", NAMES[iface])
            initiator.configure(TARGET, PORTAL, iface=iface)
            before = _iscsi_disks(initiator)
            initiator.run(*initiator.node(TARGET, PORTAL), "-I", iface, "--login")
            wait_for(f"{iface}'s disk",
                     lambda seen=before: bool(_iscsi_disks(initiator) - seen), 60)
            (found[iface],) = _iscsi_disks(initiator) - before
        # From a clean LUN: what an earlier run left is kept too (that is the point).
        _sg(lab, "--out", "--register-ignore", f"--param-sark={KEY_A}", found["pr1"])
        _sg(lab, "--out", "--clear", f"--param-rk={KEY_A}", found["pr1"])
        yield found
    finally:
        logout_all(initiator)
        for iface in IFACES:
            initiator.try_run("iscsiadm", "-m", "iface", "-I", iface, "-o", "delete")


def _iscsi_disks(initiator: Initiator) -> set[str]:
    """The initiator's iSCSI disks of LUN 0 (alpha's other LUN is the database's)."""
    out = initiator.try_run("lsblk", "-dno", "NAME,TRAN,HCTL").out
    return {f"/dev/{name}" for name, *rest in (line.split() for line in out.splitlines())
            if len(rest) == 2 and rest[0] == "iscsi" and rest[1].endswith(":0")}


def _sg(lab: Lab, *argv: str) -> str:
    # Retried: after a move the session logs in again within seconds.
    result = None
    for _ in range(30):
        result = lab.exec("initiator", ["sg_persist", *argv], timeout=60)
        if result.ok:
            return result.out
        lab.exec("initiator", ["sleep", "2"])
    assert result is not None
    raise AssertionError(f"sg_persist {' '.join(argv)}: {result.out}{result.err}")


def _state(lab: Lab, disk: str) -> tuple[list[str], str]:
    keys = re.findall(r"^\s+(0x[0-9a-f]+)$", _sg(lab, "--in", "-k", disk), re.M)
    shown = _sg(lab, "--in", "-r", disk)
    holder = re.search(r"Key=(0x[0-9a-f]+)\s+scope: (\S+),\s+type: (.+)$", shown, re.M)
    return sorted(keys), " ".join(holder.groups()) if holder else "none"


def _write(lab: Lab, disk: str) -> str:
    """"reservation conflict" when the write was refused for one: the block layer
    reports that SCSI status as EBADE ("Invalid exchange")."""
    result = lab.exec("initiator", ["sg_dd", "if=/dev/zero", f"of={disk}", "bs=512",
                                    "count=1", "seek=2048", "oflag=direct"], timeout=60)
    text = result.out + result.err
    return "reservation conflict" if "Invalid exchange" in text else text


def test_two_keys_and_a_reservation_are_taken_and_a_stranger_cannot_write(
        lab: Lab, disks: dict[str, str]) -> None:
    _sg(lab, "--out", "--register", f"--param-sark={KEY_A}", disks["pr1"])
    _sg(lab, "--out", "--register", f"--param-sark={KEY_B}", disks["pr2"])
    _sg(lab, "--out", "--reserve", f"--param-rk={KEY_A}", f"--prout-type={WE_RO}",
        disks["pr1"])
    assert _state(lab, disks["pr3"]) == (
        [KEY_A, KEY_B], f"{KEY_A} LU_SCOPE Write Exclusive, registrants only")
    assert "reservation conflict" in _write(lab, disks["pr3"]).lower()


def test_a_planned_move_keeps_the_keys_holder_and_type(
        lab: Lab, disks: dict[str, str]) -> None:
    before = _state(lab, disks["pr1"])
    here = target_on(lab, "alpha")
    assert here is not None
    move(lab, "alpha", other(here))
    assert target_on(lab, "alpha") == other(here)
    assert _state(lab, disks["pr1"]) == before
    assert "reservation conflict" in _write(lab, disks["pr3"]).lower()
    print(f"\nafter the move to {other(here)}:\n" + _sg(lab, "--in", "-k", disks["pr2"])
          + _sg(lab, "--in", "-r", disks["pr2"]))


def test_a_power_cut_keeps_them_and_a_preempt_works_after_it(
        lab: Lab, disks: dict[str, str]) -> None:
    before = _state(lab, disks["pr1"])
    print(f"\nbefore the power cut: {before}")
    active = target_on(lab, "alpha")
    assert active is not None
    shots = fence_history(lab, active)
    lab.power("power-off", active)
    try:
        wait_for(f"{active} fenced", fenced_after(lab, active, shots))
        wait_for("alpha on the survivor", lambda: target_on(lab, "alpha") == other(active))
        after = _state(lab, disks["pr2"])
        print(f"after the power cut, served by {other(active)}: {after}")
        assert after == before
        assert "reservation conflict" in _write(lab, disks["pr3"]).lower()
        # The second node takes the reservation over, as a cluster evicting the first.
        _sg(lab, "--out", "--preempt", f"--param-rk={KEY_B}", f"--param-sark={KEY_A}",
            f"--prout-type={WE_RO}", disks["pr2"])
        assert _state(lab, disks["pr2"]) == (
            [KEY_B], f"{KEY_B} LU_SCOPE Write Exclusive, registrants only")
        assert "reservation conflict" in _write(lab, disks["pr1"]).lower()
    finally:
        lab.power("power-on", active)
        wait_healthy(lab, f"{active} back")
    # Clean for whoever uses alpha next.
    _sg(lab, "--out", "--clear", f"--param-rk={KEY_B}", disks["pr2"])
    assert _state(lab, disks["pr2"]) == ([], "none")
