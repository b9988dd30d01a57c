"""`iscsiha-lab soak`: random faults, one after another, each under the verifier and the
filesystem + database workload.

Run by hand on a lab that is up (not in CI: 50 faults took 112 minutes in the lab). It
takes the lab over: the pair is converged on the failover scenarios' desired
state (other volumes are deleted) and the initiator logs in to its targets. It
stops at the first fault the pair does not survive, with the counts so far.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from iscsiha_lab import faults
from iscsiha_lab.initiator import Initiator
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import logout_all, prepare


def soak(lab: Lab, count: int, seed: int, max_minutes: float,
         progress: Callable[[str], None]) -> dict[str, Any]:
    """Inject ``count`` random faults (fewer if ``max_minutes`` runs out); the tally."""
    rng = random.Random(seed)
    initiator = Initiator(lab)
    disks = prepare(lab, initiator)
    survived: Counter[str] = Counter()
    totals = Counter({"acknowledged_writes": 0, "blocks_verified": 0, "lost": 0,
                      "io_errors": 0, "unreadable": 0, "db_commits": 0, "db_errors": 0,
                      "db_missing": 0, "db_bad_checksums": 0, "fsck_unclean": 0})
    pauses: list[float] = []
    db_pauses: list[float] = []
    db_committed = 0  # the highest transaction committed, and verified after each fault
    timelines: list[dict[str, Any]] = []  # each fault's, to see which phase a long pause grew
    failure = None
    started = time.monotonic()
    try:
        for n in range(1, count + 1):
            if time.monotonic() - started >= max_minutes * 60:
                progress(f"soak: {max_minutes:.0f} minutes are up after {n - 1} faults")
                break
            scenario = rng.choice(sorted(faults.SCENARIOS))
            progress(f"soak: fault {n}/{count}: {scenario}")
            try:
                result = faults.run(lab, initiator, disks, scenario)
            except AssertionError as exc:  # CheckFailed, or a wait that timed out
                failure = {"fault": n, "scenario": scenario, "error": str(exc),
                           "notes": getattr(exc, "__notes__", [])}
                break
            survived[scenario] += 1
            totals.update({"acknowledged_writes": result["writes"],
                           "blocks_verified": result["checked"], "lost": result["lost"],
                           "io_errors": result["errors"],
                           "unreadable": result.get("unreadable", 0)})
            db = result["db"]
            totals.update({"db_commits": db["commits"], "db_errors": db["errors"],
                           "db_missing": db["missing"], "db_bad_checksums": db["bad_checksums"],
                           "fsck_unclean": not db["fsck_clean"]})
            db_committed = db["committed"]
            db_pauses.append(db["pause_s"])
            pauses.append(result["max_gap_s"])
            timelines.append({"fault": n, "scenario": scenario, "pause_s": result["max_gap_s"],
                              "timeline": result.get("timeline", [])})
            progress(f"soak: survived {scenario}: pause {result['max_gap_s']} s, "
                     f"{result['writes']} writes, {result['lost']} lost, "
                     f"{result['errors']} errors; database: {db['commits']} commits, pause "
                     f"{db['pause_s']} s, {db['missing']} missing")
    finally:
        logout_all(initiator)
    return {"seed": seed, "faults_injected": sum(survived.values()) + (failure is not None),
            "faults_survived": sum(survived.values()), "by_scenario": dict(survived),
            **totals, "max_pause_s": max(pauses, default=None),
            "median_pause_s": sorted(pauses)[len(pauses) // 2] if pauses else None,
            "db_committed": db_committed, "db_max_pause_s": max(db_pauses, default=None),
            "minutes": round((time.monotonic() - started) / 60, 1), "failure": failure,
            "timelines": timelines}
