"""`iscsiha-lab bench`: the lab's own figures, as JSON; every measurement is bounded.

- up: seconds from starting the supervisor until every node reached the end of
  its boot (systemd running or degraded), and to form the cluster;
- iperf3 between the two appliance nodes over the replication link (5 s);
- direct I/O on an appliance node's data disk (dd, 1 MiB blocks, 256 MiB), on a
  scratch logical volume in the appliance's volume group "data" (removed after);
- a fence cycle: fence_ipmilan off then on against san-b's simulated BMC, run
  on san-a, until san-b has booted and the cluster is whole again.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from iscsiha.errors import IscsihaError
from iscsiha_lab import cluster
from iscsiha_lab.initiator import wait_for
from iscsiha_lab.lab import Lab, Progress
from iscsiha_lab.pair import fence_history, fenced_after
from iscsiha_lab.paths import LabImages
from iscsiha_lab.topology import NetworkRole

IPERF_SECONDS = 5
DD_MIB = 256
BENCH_LV = "iscsiha-lab-bench"


def _dd_rate(stderr: str) -> dict[str, float]:
    # "268435456 bytes (268 MB, 256 MiB) copied, 0.21 s, 1.3 GB/s"
    match = re.search(r"^(\d+) bytes .* copied, ([\d.]+) s", stderr, re.MULTILINE)
    if match is None:
        raise IscsihaError.single("bench-parse", "dd output", stderr[-300:], "dd's summary line")
    size, seconds = int(match.group(1)), float(match.group(2))
    return {"bytes": size, "seconds": seconds, "mb_per_s": round(size / seconds / 1e6, 1)}


def iperf(lab: Lab) -> dict[str, Any]:
    client, server = (n.name for n in lab.topology.appliances)
    repl = lab.topology.network_with(NetworkRole.REPLICATION)[0].name
    address = str(lab.topology.address(lab.topology.node(server), repl))
    missing = [n for n in (client, server) if not lab.exec(n, ["which", "iperf3"]).ok]
    if missing:
        return {"link": repl, "skipped": f"iperf3 is not in the image of {', '.join(missing)}"}
    lab.exec(server, ["iperf3", "-s", "-1", "-D", "-B", address]).check()
    time.sleep(0.5)
    result = lab.exec(client, ["iperf3", "-c", address, "-t", str(IPERF_SECONDS), "-J"],
                      timeout=IPERF_SECONDS + 30).check()
    end = json.loads(result.out)["end"]
    return {
        "link": repl,
        "from": client,
        "to": server,
        "seconds": IPERF_SECONDS,
        "gbit_per_s": round(end["sum_received"]["bits_per_second"] / 1e9, 2),
        "retransmits": end["sum_sent"].get("retransmits"),
        "command": f"iperf3 -c {address} -t {IPERF_SECONDS}",
    }


def data_disk(lab: Lab) -> dict[str, Any]:
    """Direct I/O on the data disk: through a scratch LV when the appliance made its volume
    group "data" there (as it does at first boot), on the bare disk only while it is empty."""
    node = lab.topology.appliances[0].name
    has_vg = lab.exec(node, ["vgs", "data"]).ok
    if has_vg:
        lab.exec(node, ["lvcreate", "-y", "-q", "-L", f"{DD_MIB}M", "-n", BENCH_LV, "data"],
                 timeout=120).check()
        device = f"/dev/data/{BENCH_LV}"
    else:
        if lab.exec(node, ["blkid", "-p", "/dev/ubdb"]).returncode != 2:  # 2: nothing found
            raise IscsihaError.single(
                "disk-in-use", "device", f"{node}:/dev/ubdb",
                "an empty data disk, or the volume group data on it",
                "holds data that the benchmark would overwrite")
        device = "/dev/ubdb"
    try:
        write = lab.exec(node, ["dd", "if=/dev/zero", f"of={device}", "bs=1M",
                                f"count={DD_MIB}", "oflag=direct"], timeout=300).check()
        read = lab.exec(node, ["dd", f"if={device}", "of=/dev/null", "bs=1M", f"count={DD_MIB}",
                               "iflag=direct"], timeout=300).check()
    finally:
        if has_vg:
            lab.exec(node, ["lvremove", "-y", "-q", f"data/{BENCH_LV}"], timeout=120)
    return {"node": node, "device": device, "block": "1MiB", "size_mib": DD_MIB,
            "write": _dd_rate(write.err), "read": _dd_rate(read.err)}


def fence_cycle(lab: Lab, progress: Progress) -> dict[str, Any]:
    fencer, victim = (n.name for n in lab.topology.appliances)
    timings: dict[str, Any] = {"fencer": fencer, "victim": victim}
    shot = fence_history(lab, victim)
    t0 = time.monotonic()
    lab.exec(fencer, ["fence_ipmilan"], input=lab.fence_options(victim, "off"),
             timeout=120).check()
    timings["off_seconds"] = round(time.monotonic() - t0, 2)
    if lab.node_process(victim) is not None:
        raise IscsihaError.single("fence-failed", "node", victim, "powered off by its BMC",
                                  "still running after fence_ipmilan -o off")
    # Pacemaker fences the box it lost as well; powered on before that, it goes off again.
    wait_for(f"{victim} fenced by Pacemaker", fenced_after(lab, victim, shot), timeout=300)
    t1 = time.monotonic()
    lab.exec(fencer, ["fence_ipmilan"], input=lab.fence_options(victim, "on"),
             timeout=120).check()
    timings["on_seconds"] = round(time.monotonic() - t1, 2)
    boot = lab.wait_booted([victim], 300.0, progress)
    timings["boot_seconds"] = round(boot[victim], 2)
    timings["rejoin_seconds"] = round(cluster.wait_formed(lab, 180.0, progress), 2)
    timings["cycle_seconds"] = round(time.monotonic() - t0, 2)
    return timings


def run(lab: Lab, images: LabImages, progress: Progress, fence: bool = True) -> dict[str, Any]:
    started_here = lab.supervisor() is None
    if started_here:
        lab.up(images, progress)
    try:
        state = lab.require_running()
        progress("bench: iperf3 on the replication link")
        figures: dict[str, Any] = {"up": dict(state.timings), "iperf3": iperf(lab)}
        progress("bench: data disk direct I/O")
        figures["data_disk"] = data_disk(lab)
        if fence:
            progress("bench: fence cycle through the simulated BMC")
            figures["fence"] = fence_cycle(lab, progress)
        return figures
    finally:
        if started_here:
            lab.down(progress)
