"""Executors that need a real appliance box, run inside a lab node with the image's python:
systemd over D-Bus, and LIO via rtslib with the lab's initiator logging in for real."""

from __future__ import annotations

import json

import pytest

from iscsiha.lab.lab import Lab
from iscsiha.lab.topology import NetworkRole
from iscsiha.model.identity import lun_identity

pytestmark = pytest.mark.lab

BOX = "san-a"
IQN = "iqn.2026-11.org.example.lab:executor-test"
VOLUME = "lio-test"
SECRET = "hv-Secret-0001"

SYSTEMD = r"""
import os
from iscsiha.executors.systemd import Systemd
unit = "iscsiha-lab-test.service"
path = "/etc/systemd/system/" + unit
with open(path, "w") as f:
    f.write("[Unit]\nDescription=test\n[Service]\nExecStart=/bin/sleep 300\n"
            "[Install]\nWantedBy=multi-user.target\n")
s = Systemd()
try:
    s.enable(unit); print(s.unit_file_state(unit))
    s.start(unit); print(s.active_state(unit))
    s.stop(unit); print(s.active_state(unit))
    s.disable(unit); print(s.unit_file_state(unit))
finally:
    os.remove(path)
"""

LIO = r"""
import json, sys
from iscsiha.executors.lio import Lio, Secrets
from iscsiha.plan.agent_params import TargetParams
params = json.load(sys.stdin)  # secrets on stdin, never argv
spec, lio = TargetParams.from_params(params), Lio()
if sys.argv[1] == "apply":
    lio.apply_target(spec, Secrets.from_params(params))
elif sys.argv[1] == "remove":
    lio.remove_target(spec.iqn, spec.luns)
state = lio.target_state(spec.iqn)
print(json.dumps(None if state is None else {
    "enabled": state.enabled, "luns": {str(k): v for k, v in state.luns.items()},
    "acls": sorted(state.acls), "portals": sorted(map(list, state.portals))}))
"""


def test_systemd_executor_enables_starts_stops_and_disables_a_unit(lab: Lab) -> None:
    result = lab.exec(BOX, ["python3", "-c", SYSTEMD], timeout=120)
    assert result.ok, result.err
    assert result.out.split() == ["enabled", "active", "inactive", "disabled"]


def _run(lab: Lab, node: str, *argv: str, input: str | None = None) -> str:
    return lab.exec(node, list(argv), input=input, timeout=120).check().out


def test_lio_executor_exports_a_lun_the_initiator_uses_with_chap(lab: Lab) -> None:
    initiator = lab.topology.initiators[0].name
    storage = lab.topology.network_with(NetworkRole.STORAGE)[0].name
    portal = str(lab.topology.address(lab.topology.node(BOX), storage))
    _run(lab, initiator, "systemctl", "start", "iscsid")
    initiator_iqn = _run(lab, initiator, "sed", "-n", "s/^InitiatorName=//p",
                         "/etc/iscsi/initiatorname.iscsi").strip()
    ident = lun_identity(IQN, VOLUME)
    params = {"iqn": IQN, "portals": f"{portal}:3260", "initiators": initiator_iqn,
              "luns": f"0:{VOLUME}:/dev/data/{VOLUME}:{ident.serial}",
              "auth": "chap", "chap_user": "hv", "chap_secret": SECRET}
    _run(lab, BOX, "lvcreate", "-q", "-y", "-L", "64M", "-n", VOLUME, "data")
    try:
        state = json.loads(_run(lab, BOX, "python3", "-c", LIO, "apply",
                                input=json.dumps(params)))
        assert state == {"enabled": True, "luns": {"0": f"/dev/data/{VOLUME}"},
                         "acls": [initiator_iqn], "portals": [[portal, 3260]]}
        _login_write_read_and_check_identity(lab, initiator, portal, ident.serial, ident.naa)
        _wrong_secret_is_refused(lab, initiator, portal)
    finally:
        lab.exec(initiator, ["iscsiadm", "-m", "node", "-T", IQN, "-o", "delete"])
        removed = lab.exec(BOX, ["python3", "-c", LIO, "remove"], input=json.dumps(params))
        # No backstore may hold the device open: removing the LV proves it is free.
        freed = lab.exec(BOX, ["lvremove", "-q", "-y", f"data/{VOLUME}"])
    assert removed.ok and removed.out.strip() == "null", removed.err
    assert freed.ok, freed.err


def _login_write_read_and_check_identity(lab: Lab, initiator: str, portal: str, serial: str,
                                         naa: str) -> None:
    node = ["iscsiadm", "-m", "node", "-T", IQN, "-p", portal]
    _run(lab, initiator, "iscsiadm", "-m", "discovery", "-t", "st", "-p", portal)
    for name, value in (("authmethod", "CHAP"), ("username", "hv"), ("password", SECRET)):
        _run(lab, initiator, *node, "-o", "update", "-n", f"node.session.auth.{name}",
             "-v", value)
    _run(lab, initiator, *node, "--login")
    try:
        disk = _run(lab, initiator, "sh", "-c",
                    "for i in $(seq 50); do d=$(iscsiadm -m session -P 3 | sed -n "
                    "'s/.*Attached scsi disk \\(sd[a-z]*\\).*/\\1/p'); [ -n \"$d\" ] && "
                    "[ -b /dev/$d ] && { echo $d; exit 0; }; sleep 0.2; done; exit 1").strip()
        sysfs = f"/sys/block/{disk}/device"
        assert _run(lab, initiator, "cat", f"{sysfs}/wwid").strip() == naa
        assert _run(lab, initiator, "tail", "-c", "+5", f"{sysfs}/vpd_pg80").strip(
            "\x00 \n") == serial
        assert _run(lab, initiator, "cat", f"{sysfs}/model").strip() == VOLUME
        _run(lab, initiator, "sh", "-c",
             f"dd if=/dev/urandom of=/tmp/pattern bs=1M count=8 status=none && "
             f"dd if=/tmp/pattern of=/dev/{disk} bs=1M oflag=direct status=none && "
             f"dd if=/dev/{disk} of=/tmp/back bs=1M count=8 iflag=direct status=none && "
             f"cmp /tmp/pattern /tmp/back")
    finally:
        _run(lab, initiator, *node, "--logout")


def _wrong_secret_is_refused(lab: Lab, initiator: str, portal: str) -> None:
    node = ["iscsiadm", "-m", "node", "-T", IQN, "-p", portal]
    _run(lab, initiator, *node, "-o", "update", "-n", "node.session.auth.password",
         "-v", "wrong-Secret-1")
    login = lab.exec(initiator, [*node, "--login"], timeout=120)
    assert login.returncode == 24, login.out + login.err  # iscsiadm: authorization failure
