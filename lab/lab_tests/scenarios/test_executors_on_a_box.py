"""Executors that need a real appliance box, run inside a lab node with the image's python:
systemd over D-Bus, and LIO via rtslib with the lab's initiator logging in for real."""

from __future__ import annotations

import json

import pytest
from iscsiha_lab.initiator import HV_SECRET, Initiator
from iscsiha_lab.lab import Lab
from iscsiha_lab.topology import NetworkRole

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
        # Initiators reconnect at once after a failover (they wait the larger value).
        wait = f"/sys/kernel/config/target/iscsi/{IQN}/tpgt_1/param/DefaultTime2Wait"
        assert _run(lab, BOX, "cat", wait).strip() == "0"
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


CONCURRENT = r"""
import json, sys
from iscsiha.executors.lio import Lio, Secrets
from iscsiha.plan.agent_params import TargetParams
with open(sys.argv[2]) as f:
    spec = TargetParams.from_params(json.load(f))
if sys.argv[1] == "apply":
    Lio().apply_target(spec, Secrets())
else:
    Lio().remove_target(spec.iqn, spec.luns)
"""
TARGETS = 6  # as many agents at once as Pacemaker may run on a box taking targets over
ROUNDS = 10  # the race hit 2 rounds of 8 in the lab before the fix
ROUNDS_SCRIPT = r"""
codes() {  # run $1 for every target, each in its own process, all at once
    pids=""
    for i in $(seq 0 $((TARGETS - 1))); do
        python3 /tmp/lio-concurrent.py "$1" /tmp/lio-concurrent-$i.json \
            2>>/tmp/lio-concurrent.err & pids="$pids $!"
    done
    for pid in $pids; do wait "$pid"; printf %s $?; done
}
cd /sys/kernel/config/target/core
for round in $(seq 1 $ROUNDS); do
    applied=$(codes apply)
    shared=$(ls -d iblock_*/lioc* | cut -d/ -f1 | sort | uniq -d | wc -l)
    removed=$(codes remove)
    left=$(ls -d iblock_*/lioc* 2>/dev/null | wc -l)
    echo "round=$round applied=$applied shared=$shared removed=$removed left=$left"
done
"""


def test_lio_changes_made_at_once_by_several_agents_all_succeed_and_undo_cleanly(
        lab: Lab) -> None:
    # rtslib picks a backstore's index from a per-process cache, and may take an empty
    # iblock_N another process just made for its own: two storage objects then share it,
    # and removing one fails ("Directory not empty"), a failed stop that gets a box fenced.
    storage = lab.topology.network_with(NetworkRole.STORAGE)[0].name
    portal = str(lab.topology.address(lab.topology.node(BOX), storage))
    names = [f"lioc{i}" for i in range(TARGETS)]
    lab.exec(BOX, ["sh", "-c", "cat > /tmp/lio-concurrent.py"], input=CONCURRENT).check()
    for i, name in enumerate(names):
        _run(lab, BOX, "lvcreate", "-q", "-y", "-L", "8M", "-n", name, "data")
        params = {"iqn": f"{IQN}-{i}", "portals": f"{portal}:3260", "initiators": "",
                  "allow_any_initiator": "true",
                  "luns": f"0:{name}:/dev/data/{name}:{lun_identity(IQN, name).serial}"}
        lab.exec(BOX, ["sh", "-c", f"cat > /tmp/lio-concurrent-{i}.json"],
                 input=json.dumps(params)).check()
    try:
        out = lab.exec(BOX, ["bash", "-c", f"TARGETS={TARGETS} ROUNDS={ROUNDS}\n"
                             + ROUNDS_SCRIPT], timeout=900).check().out
        rounds = [dict(word.split("=") for word in line.split()) for line in out.splitlines()]
        print(f"\n{out}")
        ok = "0" * TARGETS
        # Every agent's start and stop succeeded; no two storage objects in one HBA.
        assert [(r["applied"], r["shared"], r["removed"], r["left"]) for r in rounds] == [
            (ok, "0", ok, "0")] * ROUNDS, out + _run(lab, BOX, "cat", "/tmp/lio-concurrent.err")
    finally:
        for i, name in enumerate(names):
            lab.exec(BOX, ["python3", "/tmp/lio-concurrent.py", "remove",
                           f"/tmp/lio-concurrent-{i}.json"])
            lab.exec(BOX, ["lvremove", "-q", "-y", f"data/{name}"])
        lab.exec(BOX, ["rm", "-f", "/tmp/lio-concurrent.err"])
