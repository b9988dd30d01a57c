"""Faults on a running pair, each under the acknowledged-write verifier and a database
on ext4 (iscsiha_lab.faults holds the scenarios; `iscsiha-lab soak` runs them at random).

Every scenario ends the same way: 0 I/O errors at the initiator, 0 acknowledged
writes lost, 0 committed transactions lost, e2fsck clean, both boxes back with every
volume UpToDate on both, one Primary per volume, no split brain, and identical bytes on
both boxes. The scenarios share
one lab and run in file order; each leaves the pair healthy for the next. The
figures print with pytest -s.

The pair sends its alerts to a webhook receiver on the management network (where a
site's monitoring host would be). After the power cut and the replication cut, what
arrived must be the events of the fault, in the order the cluster lived them, each
once: Pacemaker runs the alert agent on both boxes for node and fencing events, and
only one box may report each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from iscsiha_lab import db_load, faults, timeline
from iscsiha_lab.alert_receiver import Receiver
from iscsiha_lab.initiator import Initiator, wait_for
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import TARGETS, logout_all, other, prepare

from lab_tests.scenarios.alert_events import (
    RESYNC_ARRIVAL_S,
    events_since,
    index,
    keyed,
    resynced,
    resyncs,
    summary,
)

pytestmark = pytest.mark.lab
FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module")
def receiver(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    receiver = Receiver(lab, tmp_path_factory.mktemp("alerts") / "received.jsonl")
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(scope="module")
def pair(lab: Lab, receiver: Receiver) -> Iterator[tuple[Initiator, list[str]]]:
    initiator = Initiator(lab)
    try:
        yield initiator, prepare(lab, initiator, alerts_url=receiver.url)
    finally:
        logout_all(initiator)
        print("\nfailover figures: " + ", ".join(
            f"{k}: pause {v['max_gap_s']} s, database pause {v['db']['pause_s']} s"
            for k, v in FIGURES.items()))


def _run(lab: Lab, pair: tuple[Initiator, list[str]], scenario: str) -> dict[str, Any]:
    result = faults.run(lab, *pair, scenario)
    FIGURES[scenario] = result
    print(f"\n{scenario}: " + json.dumps({k: v for k, v in result.items() if k != "timeline"},
                                          sort_keys=True))
    print(f"timeline of the {scenario} (s after the fault):\n{timeline.table(result['timeline'])}")
    return result


def test_planned_move(lab: Lab, pair: tuple[Initiator, list[str]]) -> None:
    to = _run(lab, pair, "planned move")["to"]
    assert to in ("san-a", "san-b")
    # The box now serving shows the move as its last one: alpha promoted and started.
    result = lab.exec(to, ["iscsiha", "status", "--timeline"], timeout=120)
    shown = result.out
    # Healthy, or degraded while DRBD resyncs what the move wrote: served either way.
    assert result.returncode in (0, 1), result.err
    print(f"iscsiha status --timeline on {to}:\n{shown}")
    assert f"{to}  promote drbd-alpha done" in shown
    assert f"{to}  start target-alpha-lio done" in shown
    assert "target  alpha: served on " + to in shown


def test_standby_moves_the_targets_off_under_io_and_back_fails_back_by_policy(
        lab: Lab, pair: tuple[Initiator, list[str]]) -> None:
    result = _run(lab, pair, "standby and back")
    assert result["status_in_standby"] == "degraded"


def test_power_cut_of_the_active_box_then_it_returns_and_resyncs_only_changes(
        lab: Lab, pair: tuple[Initiator, list[str]]) -> None:
    result = _run(lab, pair, "power cut")
    # Only what changed while it was away went over, never the whole volume.
    assert result["resynced_kib"] > 0
    assert all(kib < faults.RESYNC_LIMIT_KIB[volume]
               for volume, kib in result["resynced_kib_by_volume"].items())
    assert result["written_away_kib"] > 0
    # The timeline has the failover's phases, in the order fencing allows: nothing is
    # promoted before the lost box is confirmed off, and I/O resumes only after that.
    first = {}
    for row in result["timeline"]:
        first.setdefault(row["phase"], row["t"])
    fenced = first["fence confirmed (off)"]
    assert first["corosync: peer left"] < first["fence requested (off)"] < fenced
    promoted = [t for phase, t in first.items() if phase.startswith("promote ")
                and phase.endswith(" done") and t > 0]
    assert promoted and min(promoted) > fenced
    assert first["I/O: first write after the pause"] > fenced


def _alerts_of(receiver: Receiver, scenario: str) -> tuple[dict[str, Any],
                                                            list[dict[str, Any]]]:
    """The scenario's figures and the alerts since its fault, once every resync's arrived."""
    result = FIGURES.get(scenario)
    if result is None:
        pytest.fail(f"the {scenario} scenario did not run to its end: no alerts to check")
    start = result["fault_at"] - 1
    cut = result.get("cut")

    def complete() -> bool:
        events = events_since(receiver.out, start)
        return resynced(events) and (cut is None or bool(keyed(events, "node-member",
                                                               node=cut)))

    wait_for(f"the {scenario}'s alerts", complete, timeout=RESYNC_ARRIVAL_S)
    events = events_since(receiver.out, start)
    print(f"\nalerts of the {scenario}:\n" + "\n".join(summary(events)))
    return result, events


def test_the_power_cut_alerts_lost_fenced_failover_then_rejoin_and_resync_each_once(
        receiver: Receiver) -> None:
    result, events = _alerts_of(receiver, "power cut")
    active = result["cut"]
    survivor = other(active)
    lost = index(events, "node-lost", node=active)
    fenced = index(events, "fenced", node=active)
    assert events[lost]["box"] == events[fenced]["box"] == survivor
    assert events[fenced]["details"]["action"] == "off"
    assert lost < fenced
    for target in result["moved"]:
        # (A target that fails back on its own starts once more on the returning box.)
        assert index(events, "target-started", survivor, target=target) > fenced
    # The survivor kept quorum through the tiebreaker.
    assert keyed(events, "quorum-lost") == []
    # Back: the DC tells the rejoin once; the returning box is brought up to date.
    member = index(events, "node-member", node=active)
    assert events[member]["box"] == survivor and member > fenced
    for target in TARGETS:
        for began, done in resyncs(events, target).values():
            assert events[began]["box"] == events[done]["box"] == active
            assert fenced < began < done
    # Nothing on the data path failed (a fence device's start on the returning box may
    # time out and be retried: that is not this test's subject), and fencing worked.
    failed = [e for e in keyed(events, "resource-failed")
              if e["details"]["resource"].startswith(("target-", "drbd-"))]
    assert failed == [], summary(events)
    assert keyed(events, "fence-failed") == []


# Right after the power cut's alerts: the last resync alerts of a scenario may arrive after
# the next one began, and this one's count would then be off.
def test_cut_replication_link_keeps_serving_and_forbids_promoting_the_stale_side(
        lab: Lab, pair: tuple[Initiator, list[str]]) -> None:
    assert _run(lab, pair, "replication link cut")["constraints"]


def test_the_replication_cut_alerts_degraded_then_resync_with_no_failover(
        receiver: Receiver) -> None:
    result, events = _alerts_of(receiver, "replication link cut")
    for target, primary in result["primaries"].items():
        # The Primary that lost its peer says so, once; the stale side catches up.
        cut = index(events, "drbd-disconnected", resource=target)
        assert events[cut]["box"] == primary
        for began, done in resyncs(events, target).values():
            assert cut < began < done and events[done]["box"] == other(primary)
    for kind in ("node-lost", "fenced", "target-started", "target-stopped", "quorum-lost"):
        assert keyed(events, kind) == [], f"{kind} on a replication cut: {summary(events)}"


def test_power_cut_that_takes_the_bmc_too_is_fenced_by_the_watchdog_level(
        lab: Lab, pair: tuple[Initiator, list[str]]) -> None:
    result = _run(lab, pair, "power cut with its BMC")
    first: dict[str, float] = {}
    for row in result["timeline"]:
        first.setdefault(row["phase"], row["t"])
    # IPMI cannot answer; the survivor counts the box off only after the watchdog
    # wait, and promotes nothing before that.
    fenced = first["fence confirmed (off)"]
    promoted = [t for phase, t in first.items() if phase.startswith("promote ")
                and phase.endswith(" done") and t > 0]
    assert promoted and min(promoted) > fenced
    assert first["I/O: first write after the pause"] > fenced


def test_freeze_of_the_active_box_is_fenced_then_thawed(
        lab: Lab, pair: tuple[Initiator, list[str]]) -> None:
    _run(lab, pair, "freeze")


def test_cut_of_both_cluster_links_on_the_active_box_leaves_one_serving_side(
        lab: Lab, pair: tuple[Initiator, list[str]]) -> None:
    assert len(_run(lab, pair, "both cluster links cut")["fenced"]) == 1


def test_cut_of_both_storage_networks_on_the_active_box_moves_its_targets(
        lab: Lab, pair: tuple[Initiator, list[str]]) -> None:
    _run(lab, pair, "storage network cut")


def test_cut_of_one_storage_network_loses_a_path_not_io_and_moves_nothing(
        lab: Lab, pair: tuple[Initiator, list[str]]) -> None:
    result = _run(lab, pair, "one storage path cut")
    # Multipath sent the I/O down the other path: a short pause, not a failover's.
    assert result["stayed_on"]["alpha"] is not None
    assert result["path_failed_after_s"] < 30


# Last in file order: it leaves the database one row short (the next prepare makes a new one).
def test_the_database_check_on_the_lun_finds_a_committed_transaction_that_is_gone(
        lab: Lab, pair: tuple[Initiator, list[str]]) -> None:
    initiator, _ = pair
    load = db_load.Workload(initiator)
    load.start()
    time.sleep(10)
    before = load.stop()
    assert db_load.problems(before) == [] and before["fsck_clean"] is True
    initiator.run("python3", "-c", "import sqlite3; db = sqlite3.connect("
                  f"'{db_load.MOUNT}/workload.sqlite', isolation_level=None); "
                  "db.execute('DELETE FROM tx WHERE n = 2'); db.close()")
    after = db_load.check(initiator)
    assert after["fsck_clean"] is True and after["integrity"] == "ok"
    assert after["missing"] == 1 and after["missing_first"] == [2]
    assert after["total_ok"] is False
    assert "1 committed transactions missing (first [2])" in "; ".join(
        db_load.problems(after))
