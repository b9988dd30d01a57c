"""`iscsiha-lab lio-bench`: how long the LIO executor takes to create and to remove one
target with N LUNs on a box, the work a target's start and stop do in a failover.

Runs the product's own executor (iscsiha.executors.lio, as installed in the image) on
scratch volumes (8 MiB) of the box's data volume group, outside Pacemaker and DRBD;
rtslib is imported before the clock starts, as the agent helper holds it. Prints JSON.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from iscsiha.errors import IscsihaError, Report
from iscsiha_lab.failover_bench import lun_counts
from iscsiha_lab.lab import Lab
from iscsiha_lab.topology import NetworkRole

BOX = "san-a"
MAX_RUNS = 20

# Sent to the box as source text; argv: LUN count, runs, portal address.
SCRIPT = r"""
import json, subprocess, sys, time
from iscsiha.executors.lio import Lio, Secrets
from iscsiha.model.identity import lun_identity
from iscsiha.plan.agent_params import TargetParams

count, runs, portal = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
iqn = "iqn.2026-12.org.example.lab:lio-bench"
names = [f"liobench{i}" for i in range(count)]
luns = " ".join(f"{i}:{n}:/dev/data/{n}:{lun_identity(iqn, n).serial}"
                for i, n in enumerate(names))
spec = TargetParams.from_params({
    "iqn": iqn, "portals": f"{portal}:3260", "auth": "none", "luns": luns,
    "initiators": "iqn.2026-12.org.example.lab:lio-bench-initiator"})
made = []
try:
    for name in names:
        subprocess.run(["lvcreate", "-q", "-y", "-L", "8M", "-n", name, "data"], check=True,
                       capture_output=True)
        made.append(name)
    lio = Lio()
    lio.target_state(iqn)  # imports rtslib, which the agent helper holds: not timed
    timings = {"apply_s": [], "remove_s": []}
    for _ in range(runs):
        start = time.monotonic()
        lio.apply_target(spec, Secrets())
        timings["apply_s"].append(round(time.monotonic() - start, 3))
        start = time.monotonic()
        lio.remove_target(spec.iqn, spec.luns)
        timings["remove_s"].append(round(time.monotonic() - start, 3))
    print(json.dumps(timings))
finally:
    Lio().remove_target(iqn, spec.luns)
    for name in made:
        subprocess.run(["lvremove", "-q", "-y", f"data/{name}"], capture_output=True)
"""


def parse_options(text: str, runs: int) -> list[int]:
    """The LUN counts of ``--luns``, or every problem with them and ``--runs`` at once."""
    problems: list[Report] = []
    counts = lun_counts(text, problems)
    if not 1 <= runs <= MAX_RUNS:
        problems.append(Report("bad-run-count", "--runs", runs, f"1 to {MAX_RUNS}"))
    if problems:
        raise IscsihaError(problems)
    return counts


def bench(lab: Lab, counts: Sequence[int], runs: int,
          progress: Callable[[str], None]) -> dict[str, Any]:
    lab.require_running()
    storage = lab.topology.network_with(NetworkRole.STORAGE)[0].name
    portal = str(lab.topology.address(lab.topology.node(BOX), storage))
    results = []
    for count in counts:
        progress(f"lio-bench: {count} LUNs on {BOX}, {runs} runs")
        done = lab.exec(BOX, ["python3", "-c", SCRIPT, str(count), str(runs), portal],
                        timeout=120 + 10 * count * runs).check()
        timings = json.loads(done.out)
        results.append({"luns": count, **timings,
                        "apply_median_s": statistics.median(timings["apply_s"]),
                        "remove_median_s": statistics.median(timings["remove_s"])})
    return {"box": BOX, "runs": runs, "results": results}
