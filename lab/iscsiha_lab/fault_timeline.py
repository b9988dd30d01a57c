"""`iscsiha-lab fault-timeline`: named fault scenarios, several times each, on the running
lab, with each one's timeline and the median time of every phase (JSON).

The tool behind docs/failover.md's "Where the time goes" tables: a pause without its
phases cannot be cut.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from iscsiha.errors import IscsihaError
from iscsiha_lab import faults, timeline
from iscsiha_lab.initiator import Initiator
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import CheckFailed, logout_all, prepare

RUNS_MAX = 20


def parse_scenarios(text: str, runs: int) -> list[str]:
    """The comma-separated scenario names, checked against the lab's, and the run count."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in faults.SCENARIOS]
    if not names or unknown:
        raise IscsihaError.single("bad-scenario", "--scenarios", text[:80],
                                  ", ".join(sorted(faults.SCENARIOS)))
    if not 1 <= runs <= RUNS_MAX:
        raise IscsihaError.single("bad-run-count", "--runs", str(runs), f"1 to {RUNS_MAX}")
    return names


def summary(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per scenario: the pauses, their median, and each phase's median time after the
    fault over the runs that logged it (the first time each run logged it)."""
    out: dict[str, Any] = {}
    for scenario in dict.fromkeys(r["scenario"] for r in results):
        runs = [r for r in results if r["scenario"] == scenario]
        pauses = [r["max_gap_s"] for r in runs]
        phases: dict[str, list[float]] = {}
        for run in runs:
            seen: set[str] = set()
            for row in run["timeline"]:
                key = f"{row['node']}: {row['phase']}"
                if key not in seen:
                    seen.add(key)
                    phases.setdefault(key, []).append(row["t"])
        out[scenario] = {
            "pauses_s": pauses, "median_pause_s": statistics.median(pauses),
            "phases_median_s": {k: round(statistics.median(v), 2) for k, v in
                                sorted(phases.items(), key=lambda kv: statistics.median(kv[1]))},
        }
    return out


def run(lab: Lab, scenarios: Sequence[str], runs: int,
        progress: Callable[[str], None]) -> dict[str, Any]:
    """Each scenario ``runs`` times in turn, under the verifier; stops at the first one
    that fails its checks (reported with what was measured until then)."""
    initiator = Initiator(lab)
    results: list[dict[str, Any]] = []
    failure = None
    try:
        disks = prepare(lab, initiator)
        for i in range(runs):
            for scenario in scenarios:
                progress(f"run {i + 1}/{runs}: {scenario}")
                result = faults.run(lab, initiator, disks, scenario)
                results.append(result)
                progress(f"{scenario}: pause {result['max_gap_s']} s\n"
                         + timeline.table(result["timeline"]))
    except (IscsihaError, CheckFailed) as exc:
        failure = str(exc)
    finally:
        logout_all(initiator)
    return {"summary": summary(results), "failure": failure, "runs": results}
