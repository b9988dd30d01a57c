"""Executors that need a real appliance box, run inside a lab node with the image's python:
systemd over D-Bus, and LIO via rtslib with the lab's initiator logging in for real."""

from __future__ import annotations

import json

import pytest

from iscsiha.lab.initiator import HV_SECRET, Initiator
from iscsiha.lab.lab import Lab
from iscsiha.lab.topology import NetworkRole
from iscsiha.model.identity import lun_identity

pytestmark = pytest.mark.lab

BOX = "san-a"
IQN = "iqn.2026-11.org.example.lab:executor-test"
VOLUME = "lio-test"

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
    ini = Initiator(lab)
    storage = lab.topology.network_with(NetworkRole.STORAGE)[0].name
    portal = str(lab.topology.address(lab.topology.node(BOX), storage))
    ident = lun_identity(IQN, VOLUME)
    params = {"iqn": IQN, "portals": f"{portal}:3260", "initiators": ini.iqn,
              "luns": f"0:{VOLUME}:/dev/data/{VOLUME}:{ident.serial}",
              "auth": "chap", "chap_user": "hv", "chap_secret": HV_SECRET}
    _run(lab, BOX, "lvcreate", "-q", "-y", "-L", "64M", "-n", VOLUME, "data")
    try:
        state = json.loads(_run(lab, BOX, "python3", "-c", LIO, "apply",
                                input=json.dumps(params)))
        assert state == {"enabled": True, "luns": {"0": f"/dev/data/{VOLUME}"},
                         "acls": [ini.iqn], "portals": [[portal, 3260]]}
        ini.configure(IQN, portal, mutual=False)
        (disk,) = ini.login(IQN, portal, 1)
        try:
            assert ini.identity(disk) == (ident.serial, f"0x{ident.naa[len('naa.'):]}")
            model = f"/sys/block/{disk.removeprefix('/dev/')}/device/model"
            assert ini.run("cat", model).strip() == VOLUME
            ini.write_and_read_back(disk, mib=8)
        finally:
            ini.logout(IQN, portal)
        ini.configure(IQN, portal, secret="wrong-Secret-1", mutual=False)
        login = ini.try_run(*ini.node(IQN, portal), "--login")
        assert login.returncode == 24, login.out + login.err  # authorization failure
    finally:
        ini.try_run(*ini.node(IQN, portal), "-o", "delete")
        removed = lab.exec(BOX, ["python3", "-c", LIO, "remove"], input=json.dumps(params))
        # No backstore may hold the device open: removing the LV proves it is free.
        freed = lab.exec(BOX, ["lvremove", "-q", "-y", f"data/{VOLUME}"])
    assert removed.ok and removed.out.strip() == "null", removed.err
    assert freed.ok, freed.err
