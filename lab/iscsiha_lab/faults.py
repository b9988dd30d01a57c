"""The fault scenarios, each run under the acknowledged-write verifier on the initiator.

A scenario injects its fault, checks what must happen (who is fenced, where the
targets go) and waits for the pair's recovery; `run` wraps it in the verifier
and then checks the pair is healthy with identical bytes on both boxes. The lab
tests run each once; `iscsiha-lab soak` runs them at random.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iscsiha.errors import IscsihaError
from iscsiha.model.identity import RESERVATIONS_SIZE, RESERVATIONS_VOLUME
from iscsiha_lab import db_load, timeline
from iscsiha_lab.initiator import Initiator, wait_for
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import (
    DESIRED,
    RECOVERY,
    TARGETS,
    VOLUME_MIB,
    CheckFailed,
    clocks,
    fence_constraints,
    fence_history,
    fenced_after,
    healthy,
    iscsiha,
    move,
    other,
    recovered,
    resync_kib,
    set_standby,
    status_of,
    target_on,
    wait_healthy,
    written_kib,
)

PROBE_SECONDS = 900  # the verifier's own bound; a scenario stops it long before
# A volume's size: its full resync would reach it.
RESYNC_LIMIT_KIB = {volume: mib * 1024 for volume, mib in VOLUME_MIB.items()} | {
    f"{target}/{RESERVATIONS_VOLUME}": RESERVATIONS_SIZE // 1024 for target in TARGETS}


@dataclass
class Load:
    """The acknowledged-write verifier and the database workload, running on the
    initiator until stopped."""

    initiator: Initiator
    disks: list[str]
    seconds: int = PROBE_SECONDS
    stop_file: str = "/tmp/failover-probe.stop"
    result: dict[str, Any] = field(default_factory=dict)
    _thread: threading.Thread | None = None
    db: db_load.Workload | None = None

    def start(self) -> None:
        self.initiator.run("rm", "-f", self.stop_file)
        self.db = db_load.Workload(self.initiator, self.seconds)
        self.db.start()
        self._thread = threading.Thread(target=lambda: self.result.update(
            self.initiator.probe(self.disks, self.seconds, self.stop_file)), daemon=True)
        self._thread.start()
        time.sleep(5)  # writes flowing before the fault

    def stop(self) -> dict[str, Any]:
        """The verifier's figures, with the workload's (run, then checked) under "db"."""
        time.sleep(5)  # and after the recovery
        self.initiator.run("touch", self.stop_file)
        assert self._thread is not None and self.db is not None
        self._thread.join(timeout=300)
        db = self.db.stop()
        if not self.result:
            raise CheckFailed(f"the verifier returned nothing (the database workload: {db})")
        self.result["db"] = db
        return self.result


def verify(result: dict[str, Any]) -> None:
    """0 I/O errors, 0 acknowledged writes lost or unreadable, and writes did flow; the
    database workload: no errors, e2fsck clean, integrity ok, every committed transaction
    there with its checksum, the running total whole."""
    found = []
    if result["errors"] or result["lost"] or result.get("unreadable", 0):
        found.append(f"{result['errors']} I/O errors, {result['lost']} acknowledged "
                     f"writes lost {result.get('lost_kinds', {})}, "
                     f"{result.get('unreadable', 0)} unreadable: {result['error_text']}")
    if result["writes"] <= 100:
        found.append(f"only {result['writes']} writes completed")
    found += [f"the filesystem and database workload: {p}"
              for p in db_load.problems(result["db"])]
    if found:
        raise CheckFailed("; ".join(found))


def planned_move(lab: Lab) -> dict[str, Any]:
    here = _active(lab)
    fault_at = time.time()
    move(lab, "alpha", other(here))
    if target_on(lab, "alpha") != other(here):
        raise CheckFailed(f"alpha still not on {other(here)} after the move")
    return {"to": other(here), "fault_at": fault_at}


def standby_and_back(lab: Lab) -> dict[str, Any]:
    """The admin puts the active box in standby for maintenance: its targets move to the
    other box with the pause of a planned move and stay there; back from standby, beta
    (failback auto) returns home and alpha (manual) stays."""
    active = _active(lab)
    survivor = other(active)
    fault_at = time.time()
    set_standby(lab, active, True)
    away = {t: target_on(lab, t) for t in TARGETS}
    if set(away.values()) != {survivor}:
        raise CheckFailed(f"with {active} in standby the targets run at {away}, "
                          f"not all on {survivor}")
    seen = status_of(lab, survivor) or {}
    if {"name": active, "online": True, "standby": True} not in seen.get("nodes", []):
        raise CheckFailed(f"`iscsiha status --json` does not show {active} in standby: {seen}")
    time.sleep(5)  # served from one box for a while
    set_standby(lab, active, False)
    return {"to": survivor, "fault_at": fault_at, "status_in_standby": seen.get("health")}


def power_cut(lab: Lab) -> dict[str, Any]:
    """The active box loses power: fenced, its targets on the survivor; powered back on,
    it resyncs only what changed while it was away."""
    active = _active(lab)
    survivor = other(active)
    moved = [t for t in TARGETS if target_on(lab, t) == active]
    before, synced_before = written_kib(lab, survivor), resync_kib(lab, survivor)
    shots = fence_history(lab, active)
    fault_at = time.time()
    lab.power("power-off", active)
    wait_for(f"{active} fenced", fenced_after(lab, active, shots))
    wait_for(f"every target on {survivor}", lambda: all(
        target_on(lab, t) == survivor for t in TARGETS))
    # What a monitor sees meanwhile: served, but one box short.
    alone = status_of(lab, survivor)
    if alone is None or alone.get("exit_code") != 1 \
            or f"node {active} is offline" not in alone.get("reasons", []):
        raise CheckFailed(f"`iscsiha status --json` on {survivor} with {active} off: expected "
                          f"degraded (exit 1) because {active} is offline, got {alone}")
    time.sleep(10)  # writes the returning box misses
    lab.power("power-on", active)  # the admin brings the fenced box back
    wait_healthy(lab, f"{active} back and resynced", timeout=RECOVERY)
    # Fence devices start last: healthy once both run again.
    wait_for("`iscsiha status` healthy (exit 0) on both boxes", lambda: all(
        (status_of(lab, box) or {}).get("exit_code") == 0 for box in (active, survivor)),
        timeout=120)
    synced = resync_kib(lab, survivor)
    by_volume = {v: kib - synced_before.get(v, 0) for v, kib in synced.items()
                 if kib != synced_before.get(v, 0)}
    figures = {"written_away_kib": written_kib(lab, survivor) - before,
               "resynced_kib": sum(by_volume.values()), "resynced_kib_by_volume": by_volume,
               "fault_at": fault_at, "status_while_alone": alone["health"],
               "cut": active, "moved": moved}
    if not figures["resynced_kib"] > 0 or not all(
            kib < RESYNC_LIMIT_KIB.get(v, 0) for v, kib in by_volume.items()):
        raise CheckFailed(f"resynced {by_volume} KiB by volume: expected only what changed, "
                          f"more than 0 in all and each under its size {RESYNC_LIMIT_KIB}")
    # Manual failback stays; automatic failback went home once its box was back
    # (healthy() waits for that).
    if target_on(lab, "alpha") != survivor:
        raise CheckFailed(f"alpha (manual failback) left {survivor}")
    return figures


def power_cut_with_bmc(lab: Lab) -> dict[str, Any]:
    """The active box loses power and its BMC with it: IPMI cannot power it off, so the
    survivor counts it off once its watchdog must have reset it (the second fencing
    level), and only then serves its targets. A check of the dead BMC is running when the
    power goes, and the BMC is back just after: no stale "off" may hit the box again."""
    active = _active(lab)
    survivor = other(active)
    shots = fence_history(lab, active)
    fault_at = time.time()
    lab.power("bmc-off", active)
    # The survivor's check of the dead BMC is under way when the box goes, as its
    # periodic monitor sometimes is: the fence request must not wait behind it.
    # (`--query` runs the device's monitor action in the fencer; Pacemaker 3 has no
    # `--monitor`, which failed here unnoticed until 2026-12-06.)
    lab.exec(survivor, ["sh", "-c", f"setsid timeout 90 stonith_admin --query "
                                    f"fence-{active} --timeout 60 >/dev/null 2>&1 "
                                    f"< /dev/null &"]).check()
    time.sleep(1)
    lab.power("power-off", active)
    try:
        wait_for(f"{active} fenced by the watchdog level",
                 fenced_after(lab, active, shots))
        wait_for(f"every target on {survivor}", lambda: all(
            target_on(lab, t) == survivor for t in TARGETS))
        fencer = lab.exec(survivor, ["journalctl", "-o", "cat", "--no-pager",
                                     f"--since=@{int(fault_at)}", "-t", "pacemaker-fenced"],
                          timeout=60).out
    finally:
        lab.power("bmc-on", active)  # the power is back: the BMC first, then the admin
    lab.power("power-on", active)
    wait_healthy(lab, f"{active} back and resynced", timeout=RECOVERY)
    # pacemaker-fenced: "Waiting 20s for san-a to self-fence (off)", then "Self-fencing
    # (off) by san-a ... assumed complete".
    if not re.search(r"Self-fencing \(\w+\) by \S+ .*assumed complete", fencer):
        raise CheckFailed(f"{active} was fenced, but its fencer never used the watchdog "
                          "level:\n" + fencer[-2000:])
    return {"fault_at": fault_at}


def freeze(lab: Lab) -> dict[str, Any]:
    """The active box hangs (SIGSTOP): fenced off, so it can never resume and write."""
    active = _active(lab)
    shots = fence_history(lab, active)
    fault_at = time.time()
    lab.power("freeze", active)
    wait_for(f"{active} fenced", fenced_after(lab, active, shots))
    try:
        lab.power("thaw", active)
    except IscsihaError as exc:
        if "powered off" not in str(exc):
            raise
    else:
        raise CheckFailed(f"{active} thawed: fencing should have powered it off")
    wait_for(f"alpha on {other(active)}", lambda: target_on(lab, "alpha") == other(active))
    lab.power("power-on", active)
    wait_healthy(lab, f"{active} back and resynced", timeout=RECOVERY)
    return {"fault_at": fault_at}


def replication_cut(lab: Lab) -> dict[str, Any]:
    """The replication link breaks: writes go on unreplicated, the stale side may not be
    promoted (DRBD's fence-peer constraint), nothing fails over; healed, it resyncs."""
    active = _active(lab)
    primaries = {t: target_on(lab, t) for t in TARGETS}
    fault_at = time.time()
    lab.links("cut", "repl", active)
    try:
        # Each target's Primary places its own, at its own pace: a soak once took the
        # snapshot after beta's and saw alpha's arrive during the apply.
        wanted = {f"drbd-fence-by-handler-{t}-drbd-{t}-clone" for t in TARGETS}
        wait_for("DRBD's fence-peer constraint of every target",
                 lambda: wanted <= set(fence_constraints(lab, active)), timeout=120)
        constraints = fence_constraints(lab, active)
        time.sleep(20)  # writes go on, unreplicated
        if target_on(lab, "alpha") != active:
            raise CheckFailed("alpha failed over on a replication cut")
        # An admin's apply meanwhile must keep the constraint that forbids promoting the
        # stale side: it replaces our own constraints, never the handler's.
        applied = iscsiha(lab, "apply", DESIRED)  # where converge wrote it: san-a
        if not applied.ok:
            raise CheckFailed(f"apply during the cut: {applied.out}{applied.err}")
        if fence_constraints(lab, active) != constraints:
            raise CheckFailed(f"apply during the cut changed DRBD's fence constraints "
                              f"{constraints}: now {fence_constraints(lab, active)}")
    finally:
        lab.links("heal", "repl", active)
    wait_for("resynced, constraint lifted", lambda: healthy(lab) and not fence_constraints(
        lab, active), timeout=RECOVERY)
    return {"constraints": constraints, "fault_at": fault_at, "primaries": primaries}


def cluster_links_cut(lab: Lab) -> dict[str, Any]:
    """Both corosync links of the active box break: exactly one box is fenced, the
    other serves every target."""
    active = _active(lab)
    links = ("link0", "link1")
    shots = {box: fence_history(lab, box) for box in (active, other(active))}
    fault_at = time.time()
    for link in links:
        lab.links("cut", link, active)
    try:
        wait_for("one box fenced", lambda: any(
            fenced_after(lab, box, n)() for box, n in shots.items()), timeout=RECOVERY)
        wait_for("every target running", lambda: all(target_on(lab, t) for t in TARGETS))
    finally:
        for link in links:
            lab.links("heal", link, active)
    fenced = [box for box, n in shots.items() if fenced_after(lab, box, n)()]
    for box in fenced:
        lab.power("power-on", box)
    wait_healthy(lab, "the pair whole again", timeout=RECOVERY)
    if len(fenced) != 1:
        raise CheckFailed(f"fenced {fenced}: exactly one box must be")
    return {"fenced": fenced, "fault_at": fault_at}


STORAGE_NETWORKS = ("storage", "storage2")
PATH_CUT_S = 40.0  # how long one path stays cut: well past a move's 5 s and ping's dampening


def storage_cut(lab: Lab) -> dict[str, Any]:
    """The active box loses both its storage networks: its targets move to the box that
    still reaches the ping hosts, and the initiator finds both paths there."""
    active = _active(lab)
    fault_at = time.time()
    for network in STORAGE_NETWORKS:
        lab.links("cut", network, active)
    try:
        wait_for(f"alpha off {active}", lambda: target_on(lab, "alpha") == other(active))
    finally:
        for network in STORAGE_NETWORKS:
            lab.links("heal", network, active)
    wait_healthy(lab, "healthy")
    return {"fault_at": fault_at}


def storage_path_cut(lab: Lab, initiator: Initiator) -> dict[str, Any]:
    """The active box loses one storage network: the initiator loses a path, not I/O, and
    no target moves (the box still reaches the other network's ping hosts)."""
    active = _active(lab)
    before = {t: target_on(lab, t) for t in TARGETS}
    fault_at = time.time()
    lab.links("cut", STORAGE_NETWORKS[0], active)
    try:
        wait_for("a path of alpha failed at the initiator",
                 lambda: "failed" in initiator.multipath_paths(), timeout=60)
        failed_after = round(time.time() - fault_at, 1)
        time.sleep(PATH_CUT_S)
        during = {t: target_on(lab, t) for t in TARGETS}
    finally:
        lab.links("heal", STORAGE_NETWORKS[0], active)
    if during != before:
        raise CheckFailed(f"a target moved for the loss of one path: {before} -> {during}")
    wait_for("every path active again at the initiator",
             lambda: "failed" not in initiator.multipath_paths(), timeout=120)
    return {"fault_at": fault_at, "path_failed_after_s": failed_after, "stayed_on": during}


def _active(lab: Lab) -> str:
    """The box serving alpha, the scenarios' subject."""
    box = target_on(lab, "alpha")
    if box is None:
        raise CheckFailed("alpha is not running anywhere")
    return box


Scenario = Callable[[Lab, Initiator], dict[str, Any]]


def _on_the_pair(scenario: Callable[[Lab], dict[str, Any]]) -> Scenario:
    """A scenario that looks only at the boxes."""
    return lambda lab, _initiator: scenario(lab)


SCENARIOS: dict[str, Scenario] = {
    **{name: _on_the_pair(scenario) for name, scenario in (
        ("planned move", planned_move),
        ("standby and back", standby_and_back),
        ("power cut", power_cut),
        ("power cut with its BMC", power_cut_with_bmc),
        ("freeze", freeze),
        ("replication link cut", replication_cut),
        ("both cluster links cut", cluster_links_cut),
        ("storage network cut", storage_cut))},
    "one storage path cut": storage_path_cut,
}


def run(lab: Lab, initiator: Initiator, disks: list[str], scenario: str,
        action: Scenario | None = None, probe_seconds: int = PROBE_SECONDS) -> dict[str, Any]:
    """One scenario under the verifier (``action``, else the one SCENARIOS names); the
    verifier's figures plus the scenario's. Raises CheckFailed (after stopping the
    verifier) when anything is not as it must be."""
    since = clocks(lab)
    load = Load(initiator, disks, probe_seconds)
    load.start()
    started, started_at = time.monotonic(), time.time()
    try:
        extra = (action or SCENARIOS[scenario])(lab, initiator)
    except BaseException as exc:
        probe = load.stop()
        exc.add_note(f"the verifier during {scenario}: {json.dumps(probe)}")
        if isinstance(exc, Exception):  # not on Ctrl-C: the journals take seconds to read
            exc.add_note(f"timeline (s after {scenario} began):\n"
                         + timeline.table(timeline.rows(lab, started_at, probe)))
        raise
    result = load.stop()
    result.update(extra, scenario=scenario, scenario_s=round(time.monotonic() - started, 1))
    result["timeline"] = timeline.rows(lab, result.get("fault_at", started_at), result)
    verify(result)
    recovered(lab, since)
    return result


