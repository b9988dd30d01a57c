"""The soak's tally: counts of faults survived, of verified writes and of committed
transactions, stop at a failure."""

from __future__ import annotations

from typing import Any

import pytest
from iscsiha_lab import faults, soak
from iscsiha_lab.pair import CheckFailed


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """faults.run replaced by a script: each run's scenario is recorded; the fourth fails."""
    ran: list[str] = []

    def run(lab: Any, initiator: Any, disks: list[str], scenario: str) -> dict[str, Any]:
        ran.append(scenario)
        if len(ran) == 4:
            err = CheckFailed("alpha is not running anywhere")
            err.add_note("the verifier during x: {}")
            raise err
        db = {"commits": 300, "errors": 0, "missing": 0, "bad_checksums": 0,
              "fsck_clean": True, "committed": 300 * len(ran), "pause_s": 10.0 * len(ran)}
        return {"writes": 1000, "checked": 512, "lost": 0, "errors": 0, "unreadable": 0,
                "max_gap_s": float(len(ran)), "db": db}

    monkeypatch.setattr(faults, "run", run)
    monkeypatch.setattr(soak, "Initiator", lambda lab: object())
    monkeypatch.setattr(soak, "prepare", lambda lab, initiator: ["/dev/sda"])
    monkeypatch.setattr(soak, "logout_all", lambda initiator: None)
    return ran


def test_soak_counts_survived_faults_and_stops_at_the_first_failure(
        scripted: list[str]) -> None:
    tally = soak.soak(object(), 10, seed=7, max_minutes=60, progress=lambda m: None)  # type: ignore[arg-type]
    assert tally["faults_injected"] == 4 and tally["faults_survived"] == 3
    assert tally["acknowledged_writes"] == 3000 and tally["blocks_verified"] == 3 * 512
    assert tally["lost"] == 0 and tally["io_errors"] == 0
    assert tally["max_pause_s"] == 3.0 and tally["median_pause_s"] == 2.0
    assert tally["db_commits"] == 900 and tally["db_committed"] == 900
    assert tally["db_missing"] == tally["db_errors"] == tally["fsck_unclean"] == 0
    assert tally["db_max_pause_s"] == 30.0
    assert tally["failure"]["fault"] == 4
    assert tally["failure"]["scenario"] == scripted[3]
    assert "not running" in tally["failure"]["error"]
    assert sum(tally["by_scenario"].values()) == 3


def test_the_same_seed_injects_the_same_faults(scripted: list[str]) -> None:
    soak.soak(object(), 3, seed=11, max_minutes=60, progress=lambda m: None)  # type: ignore[arg-type]
    first = list(scripted)
    scripted.clear()
    soak.soak(object(), 3, seed=11, max_minutes=60, progress=lambda m: None)  # type: ignore[arg-type]
    assert scripted == first and set(first) <= set(faults.SCENARIOS)


def test_no_fault_is_injected_once_the_time_is_up(scripted: list[str]) -> None:
    tally = soak.soak(object(), 5, seed=1, max_minutes=0, progress=lambda m: None)  # type: ignore[arg-type]
    assert scripted == [] and tally["faults_injected"] == 0 and tally["failure"] is None
