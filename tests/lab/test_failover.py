"""Faults on a running pair, each under the acknowledged-write verifier.

Every scenario ends the same way: 0 I/O errors at the initiator, 0 acknowledged
writes lost, both boxes back with every volume UpToDate on both, one Primary per
volume, no split brain, and identical bytes on both boxes. The scenarios share
one lab and run in file order; each leaves the pair healthy for the next. The
figures print with pytest -s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from iscsiha.errors import IscsihaError
from iscsiha.lab.lab import Lab
from tests.lab.faults import (
    RECOVERY,
    TARGETS,
    converge,
    failover_desired,
    fence_constraints,
    fence_history,
    fenced_after,
    healthy,
    login_all,
    move,
    recovered,
    resync_kib,
    target_on,
    under_load,
    written_kib,
)
from tests.lab.storage import Initiator, wait_for

pytestmark = pytest.mark.lab
FIGURES: dict[str, Any] = {}


@pytest.fixture(scope="module")
def pair(lab: Lab) -> Iterator[tuple[Initiator, list[str]]]:
    initiator = Initiator(lab)
    converge(lab, failover_desired(lab, initiator.iqn))
    wait_for("the pair healthy", lambda: healthy(lab))
    for name, (_, preferred, _) in TARGETS.items():
        if target_on(lab, name) != preferred:
            move(lab, name, preferred)
    try:
        yield initiator, login_all(initiator)
    finally:
        initiator.try_run("sh", "-c", "iscsiadm -m node --logoutall=all; "
                                      "iscsiadm -m node -o delete")
        print("\nfailover figures: " + ", ".join(
            f"{k}: pause {v['max_gap_s']} s" for k, v in FIGURES.items()))


def _other(box: str) -> str:
    return "san-b" if box == "san-a" else "san-a"


def test_planned_move(lab: Lab, pair: tuple[Initiator, list[str]]) -> None:
    initiator, disks = pair
    with under_load(initiator, disks, "planned move", FIGURES):
        move(lab, "alpha", "san-b")
    assert target_on(lab, "alpha") == "san-b"
    recovered(lab)


def test_power_cut_of_the_active_box_then_it_returns_and_resyncs_only_changes(
        lab: Lab, pair: tuple[Initiator, list[str]]) -> None:
    initiator, disks = pair
    active = target_on(lab, "alpha")
    assert active is not None
    survivor = _other(active)
    with under_load(initiator, disks, "power cut", FIGURES) as extra:
        before = written_kib(lab, survivor)
        synced_before = resync_kib(lab, survivor)
        shots = fence_history(lab, active)
        lab.power("power-off", active)
        wait_for(f"{active} fenced", fenced_after(lab, active, shots))
        wait_for(f"every target on {survivor}", lambda: all(
            target_on(lab, t) == survivor for t in TARGETS))
        time.sleep(10)  # writes the returning box misses
        lab.power("power-on", active)  # the admin brings the fenced box back
        wait_for(f"{active} back and resynced", lambda: healthy(lab), timeout=RECOVERY)
        extra["written_away_kib"] = written_kib(lab, survivor) - before
        extra["resynced_kib"] = resync_kib(lab, survivor) - synced_before
    recovered(lab)
    # Only what changed while it was away went over, never the whole 32 MiB.
    assert 0 < extra["resynced_kib"] < 32 * 1024
    # Manual failback stays; automatic failback went home (under load) once its box was
    # back: healthy() waits for that.
    assert target_on(lab, "alpha") == survivor
    assert target_on(lab, "beta") == "san-b"


def test_freeze_of_the_active_box_is_fenced_then_thawed(
        lab: Lab, pair: tuple[Initiator, list[str]]) -> None:
    initiator, disks = pair
    active = target_on(lab, "alpha")
    assert active is not None
    survivor = _other(active)
    with under_load(initiator, disks, "freeze", FIGURES):
        shots = fence_history(lab, active)
        lab.power("freeze", active)
        wait_for(f"{active} fenced", fenced_after(lab, active, shots))
        # Fencing powered it off: what was frozen can never resume and write.
        with pytest.raises(IscsihaError, match="powered off"):
            lab.power("thaw", active)
        wait_for(f"alpha on {survivor}", lambda: target_on(lab, "alpha") == survivor)
        lab.power("power-on", active)
        wait_for(f"{active} back and resynced", lambda: healthy(lab), timeout=RECOVERY)
    recovered(lab)


def test_cut_replication_link_keeps_serving_and_forbids_promoting_the_stale_side(
        lab: Lab, pair: tuple[Initiator, list[str]]) -> None:
    initiator, disks = pair
    active = target_on(lab, "alpha")
    assert active is not None
    with under_load(initiator, disks, "replication link cut", FIGURES) as extra:
        lab.links("cut", "repl", active)
        try:
            wait_for("DRBD's fence-peer constraint", lambda: bool(fence_constraints(lab, active)),
                     timeout=120)
            extra["constraints"] = fence_constraints(lab, active)
            time.sleep(20)  # writes go on, unreplicated
            assert target_on(lab, "alpha") == active  # no failover for a replication cut
        finally:
            lab.links("heal", "repl", active)
        wait_for("resynced, constraint lifted", lambda: healthy(lab) and not fence_constraints(
            lab, active), timeout=RECOVERY)
    recovered(lab)


def test_cut_of_both_cluster_links_on_the_active_box_leaves_one_serving_side(
        lab: Lab, pair: tuple[Initiator, list[str]]) -> None:
    initiator, disks = pair
    active = target_on(lab, "alpha")
    assert active is not None
    links = ("link0", "link1")
    with under_load(initiator, disks, "both cluster links cut", FIGURES) as extra:
        shots = {box: fence_history(lab, box) for box in (active, _other(active))}
        for link in links:
            lab.links("cut", link, active)
        try:
            wait_for("one box fenced", lambda: any(
                fenced_after(lab, box, n)() for box, n in shots.items()), timeout=RECOVERY)
            wait_for("every target running", lambda: all(target_on(lab, t) for t in TARGETS))
        finally:
            for link in links:
                lab.links("heal", link, active)
        extra["fenced"] = [box for box, n in shots.items() if fenced_after(lab, box, n)()]
        for box in extra["fenced"]:
            lab.power("power-on", box)
        wait_for("the pair whole again", lambda: healthy(lab), timeout=RECOVERY)
    assert len(extra["fenced"]) == 1
    recovered(lab)


def test_cut_storage_network_on_the_active_box_moves_its_targets(
        lab: Lab, pair: tuple[Initiator, list[str]]) -> None:
    initiator, disks = pair
    active = target_on(lab, "alpha")
    assert active is not None
    with under_load(initiator, disks, "storage network cut", FIGURES):
        lab.links("cut", "storage", active)
        try:
            wait_for(f"alpha off {active}", lambda: target_on(lab, "alpha") == _other(active))
        finally:
            lab.links("heal", "storage", active)
        wait_for("healthy", lambda: healthy(lab))
    recovered(lab)
