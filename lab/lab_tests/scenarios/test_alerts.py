"""Alerts from a real pair to a webhook receiver on the management network.

The pair gets a webhook recipient (the receiver listens on the lab namespace's
management address, where a site's monitoring host would be); then a power cut of
the active box and a replication link cut, each the fault scenario test_failover
runs, under the same I/O verifier. What arrives must be the events of the fault, in
the order the cluster lived them, each once: Pacemaker runs the alert agent on both
boxes for node and fencing events, and only one box may report each.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from iscsiha_lab import faults
from iscsiha_lab.alert_receiver import Receiver, received
from iscsiha_lab.initiator import Initiator, wait_for
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import (
    BOXES,
    TARGETS,
    converge,
    failover_desired,
    logout_all,
    other,
    prepare,
    target_on,
)

pytestmark = pytest.mark.lab
# The last alerts (resync finished) are sent in the background, one per volume. The
# database volume's resync after a power cut is whole (its 4 MiB activity-log extents
# cover it) and ran for about 290 s in the lab under the workload.
RESYNC_ARRIVAL_S = 480.0


def with_webhook(lab: Lab, initiator: Initiator, url: str) -> dict[str, Any]:
    data = failover_desired(lab, initiator.iqn)
    data["alerts"] = {"recipients": [{"name": "lab-monitor", "kind": "webhook", "url": url}]}
    return data


@pytest.fixture(scope="module")
def alerted(lab: Lab, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[Receiver, Initiator, list[str]]]:
    receiver = Receiver(lab, tmp_path_factory.mktemp("alerts") / "received.jsonl")
    initiator = Initiator(lab)
    receiver.start()
    try:
        disks = prepare(lab, initiator)  # the failover state, healthy, logged in
        converge(lab, with_webhook(lab, initiator, receiver.url))
        yield receiver, initiator, disks
    finally:
        logout_all(initiator)
        receiver.stop()
        # Later tests start from the cluster without alerts.
        plain = failover_desired(lab, initiator.iqn)
        plain.pop("alerts", None)
        converge(lab, plain)


def events_since(out: Path, t: float) -> list[dict[str, Any]]:
    return [e for e in received(out) if e["at"] >= t]


def keyed(events: list[dict[str, Any]], kind: str, box: str | None = None,
          **details: str) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == kind and box in (None, e["box"])
            and all(e["details"].get(k) == v for k, v in details.items())]


def index(events: list[dict[str, Any]], kind: str, box: str | None = None,
          **details: str) -> int:
    """Where the one event of ``kind`` (from ``box``, with ``details``) arrived; fails
    unless exactly one did."""
    found = [i for i, e in enumerate(events) if e in keyed(events, kind, box, **details)]
    assert len(found) == 1, f"{kind} {box} {details}: {len(found)} times in {summary(events)}"
    return found[0]


def resyncs(events: list[dict[str, Any]], target: str) -> dict[str, tuple[int, int]]:
    """Minor -> where its resync's started and finished alerts arrived, for each volume of
    ``target``'s resource that resynced (its LUNs and its reservations volume: DRBD runs
    the handlers per volume); each once, and at least one volume."""
    minors = {e["details"].get("minor") for e in keyed(events, "drbd-resync-started",
                                                        resource=target)}
    assert minors, f"no resync of {target} in {summary(events)}"
    return {m: (index(events, "drbd-resync-started", resource=target, minor=m),
                index(events, "drbd-resync-finished", resource=target, minor=m))
            for m in sorted(str(m) for m in minors)}


def resynced(events: list[dict[str, Any]]) -> bool:
    """Every target resynced something, and every volume that began has finished."""
    begun = {(e["details"].get("resource"), e["details"].get("minor"))
             for e in keyed(events, "drbd-resync-started")}
    done = {(e["details"].get("resource"), e["details"].get("minor"))
            for e in keyed(events, "drbd-resync-finished")}
    return {r for r, _ in begun} >= set(TARGETS) and begun <= done


def summary(events: list[dict[str, Any]]) -> list[str]:
    return [f"{e['box']} {e['kind']} {e['details']}" for e in events]


def test_a_power_cut_alerts_lost_fenced_failover_then_rejoin_and_resync_each_once(
        lab: Lab, alerted: tuple[Receiver, Initiator, list[str]]) -> None:
    receiver, initiator, disks = alerted
    active = target_on(lab, "alpha")
    assert active in BOXES
    survivor = other(active)
    moved = [t for t in TARGETS if target_on(lab, t) == active]
    result = faults.run(lab, initiator, disks, "power cut")
    start = result["fault_at"] - 1

    def complete() -> bool:
        events = events_since(receiver.out, start)
        return resynced(events) and bool(keyed(events, "node-member", node=active))

    wait_for("the rejoin's alerts", complete, timeout=RESYNC_ARRIVAL_S)
    events = events_since(receiver.out, start)
    print("\nalerts of the power cut:\n" + "\n".join(summary(events)))
    lost = index(events, "node-lost", node=active)
    fenced = index(events, "fenced", node=active)
    assert events[lost]["box"] == events[fenced]["box"] == survivor
    assert events[fenced]["details"]["action"] == "off"
    assert lost < fenced
    for target in moved:
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


def test_a_replication_cut_alerts_degraded_then_resync_with_no_failover(
        lab: Lab, alerted: tuple[Receiver, Initiator, list[str]]) -> None:
    receiver, initiator, disks = alerted
    where = {t: target_on(lab, t) for t in TARGETS}
    result = faults.run(lab, initiator, disks, "replication link cut")
    start = result["fault_at"] - 1

    def complete() -> bool:
        events = events_since(receiver.out, start)
        return resynced(events)

    wait_for("the resync's alerts", complete, timeout=RESYNC_ARRIVAL_S)
    events = events_since(receiver.out, start)
    print("\nalerts of the replication cut:\n" + "\n".join(summary(events)))
    for target, primary in where.items():
        # The Primary that lost its peer says so, once; the stale side catches up.
        cut = index(events, "drbd-disconnected", resource=target)
        assert events[cut]["box"] == primary
        for began, done in resyncs(events, target).values():
            assert cut < began < done and events[done]["box"] == other(primary)
    for kind in ("node-lost", "fenced", "target-started", "target-stopped", "quorum-lost"):
        assert keyed(events, kind) == [], f"{kind} on a replication cut: {summary(events)}"
