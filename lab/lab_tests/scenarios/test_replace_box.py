"""Replacing a dead box (docs/replace.md): san-b loses its power and its disks (its root
back to the image, its data disk all zeros), and a new san-b takes its place the way an
admin sets one up: its addresses, `iscsiha cluster replace san-b` on san-a, `iscsiha
cluster join` on the new box. DRBD copies the volume in full from san-a, and the
target, preferred on san-b with failback auto, returns there with the data it had.

On a target and volume of their own, deleted at the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from iscsiha_lab import cluster
from iscsiha_lab.desired import cluster_data
from iscsiha_lab.initiator import MUTUAL, iqn, wait_for
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import converge, fence_history, fenced_after, kernel_log, target_on

pytestmark = pytest.mark.lab
TARGET = "replt"  # its DRBD resource and its volume have the same name
PORTAL = "10.99.30.108"  # apart from the other lab tests' portals
DEAD, STAYS = "san-b", "san-a"
SIZE_MIB = 64
DATA_MIB = 16  # written before the box dies, read back from the new one
REF = f"{TARGET}/0"


def state(lab: Lab, box: str) -> list[str]:
    return lab.exec(box, ["sh", "-c", f"drbdadm role {REF}; drbdadm cstate {REF}; "
                                      f"drbdadm dstate {REF}"]).out.split()


def in_sync_on(lab: Lab, primary: str) -> bool:
    return state(lab, primary) == ["Primary/Secondary", "Connected", "UpToDate/UpToDate"]


@pytest.fixture(scope="module")
def exported(lab: Lab) -> Iterator[None]:
    data = cluster_data(lab)
    plain = dict(data, volumes=[], targets=[])
    data["volumes"] = [{"name": TARGET, "size": f"{SIZE_MIB}M"}]
    data["targets"] = [{"name": TARGET, "iqn": iqn(TARGET), "portals": [PORTAL],
                        "preferred_node": DEAD, "failback": "auto",
                        "initiators": [iqn("replace-hv")], "auth": MUTUAL,
                        "luns": [{"lun": 0, "volume": TARGET}]}]
    converge(lab, data)
    try:
        wait_for(f"{TARGET} Primary on {DEAD}, connected, in sync",
                 lambda: in_sync_on(lab, DEAD))
        yield
    finally:
        converge(lab, plain)


def digest(lab: Lab, box: str, device: str) -> str:
    return lab.exec(box, ["sh", "-c", f"dd if={device} iflag=direct bs=1M count={DATA_MIB} "
                                      "status=none | sha256sum"]).check().out.split()[0]


def test_a_box_with_wiped_disks_replaces_the_dead_one_and_gets_every_volume_back(
        lab: Lab, exported: None) -> None:
    device = lab.exec(DEAD, ["drbdadm", "sh-dev", REF]).check().out.strip()
    lab.exec(DEAD, ["dd", "if=/dev/urandom", f"of={device}", "bs=1M", f"count={DATA_MIB}",
                    "oflag=direct", "status=none"]).check()
    written = digest(lab, DEAD, device)

    shots = fence_history(lab, DEAD)
    lab.power("power-off", DEAD)
    wait_for(f"{DEAD} fenced", fenced_after(lab, DEAD, shots))
    wait_for(f"{TARGET} on {STAYS}", lambda: target_on(lab, TARGET) == STAYS)
    lab.wipe(DEAD)
    lab.power("power-on", DEAD)
    lab.wait_booted([DEAD], 600)
    # As flashed: no cluster, no volume.
    fresh = lab.exec(DEAD, ["sh", "-c", "test -e /etc/corosync/authkey; echo $?; "
                                        f"lvs --noheadings data/{TARGET} 2>/dev/null | wc -l"])
    assert fresh.out.split() == ["1", "0"], fresh.out

    since = int(lab.exec(STAYS, ["date", "+%s"]).check().out)
    joined = cluster.replace(lab, DEAD, print)
    print(joined.err.strip())  # the join's progress: the rebuild and the resync
    # The join made the volume anew, left standby and showed the resync to its end.
    assert "fresh DRBD metadata" in joined.err, joined.err
    assert re.search(r"resync: (\d+) of \1 volumes in sync, 100\.0%", joined.err), joined.err

    wait_for(f"{TARGET} back on {DEAD} (failback auto), in sync",
             lambda: target_on(lab, TARGET) == DEAD and in_sync_on(lab, DEAD), timeout=600)
    assert digest(lab, DEAD, device) == written
    backing = f"/dev/data/{TARGET}"
    assert {digest(lab, box, backing) for box in (DEAD, STAYS)} == {written}
    # A full resync, not a bitmap one: the whole volume went over.
    synced = [int(n) for n in re.findall(rf"drbd {re.escape(REF)} .*will sync (\d+) KB",
                                         kernel_log(lab, STAYS, "as SyncSource", since))]
    assert synced and max(synced) >= (SIZE_MIB - 1) * 1024, synced
    standby = lab.exec(STAYS, ["crm_attribute", "--node", DEAD, "--name", "standby",
                               "--query", "--quiet"]).out.strip()
    assert standby == "off"
