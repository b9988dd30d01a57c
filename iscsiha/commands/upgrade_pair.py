"""`iscsiha upgrade pair FILE`: the rolling upgrade of both boxes (docs/upgrade.md).

From either box, the other box first, then this one; for each:

1. the new root is staged in its standby slot (sent over the peer channel to the other
   box, which hashes it as it arrives, reads it back, carries its state and arms one
   trial boot), with a record of the upgrade (iscsiha.model.pair_upgrade);
2. its targets move to the other box, as `target move` moves them (a planned move's
   pause), and then the box goes into standby, which then stops only what a box runs
   beside its targets: standby alone would stop the box's DRBD in the same transition
   and hold each promotion on the other box until then (docs/upgrade.md);
3. it reboots into the trial. iscsiha-boot-good.service marks the new root good once
   the box is healthy, or reboots, and GRUB boots the old root again;
4. iscsiha-upgrade-resume.service, on whichever root came up, records how it ended and
   takes the box out of standby: targets come back as their failback policy says.

For the other box this command waits for that, then for the pair to be healthy again
(in sync, targets placed). A box that came back on its old root stops the upgrade
with a report; this box is then left as it is. For this box the command ends with
the reboot, and the resume service finishes its part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from iscsiha import __version__
from iscsiha.commands import upgrade_stage, upgrade_steps
from iscsiha.commands.cluster_env import Boxes, Clock, ClusterEnv
from iscsiha.commands.standby import standby
from iscsiha.commands.targets import GROUP_PREFIX, live_status, status
from iscsiha.commands.upgrade_env import UpgradeEnv
from iscsiha.errors import IscsihaError, Report
from iscsiha.executors.partitions import sha256_of
from iscsiha.model.root_image import Manifest
from iscsiha.protocol import frames
from iscsiha.protocol import messages as m
from iscsiha.status_report import Health, assess
from iscsiha.views import format_report

Progress = Callable[[str], None]
T = TypeVar("T")
POLL = 5.0
REPORT_EVERY = 30.0  # seconds between two progress lines while waiting


@dataclass(frozen=True)
class Timeouts:
    move: float = 300.0  # standby: the box's targets moved away
    send: float = 3600.0  # the image sent to the other box and staged there
    back: float = 1800.0  # the other box rebooted, settled and out of standby
    healthy: float = 3600.0  # the pair healthy again (resync, failback)


@dataclass(frozen=True)
class PairUpgrade:
    manifest: Manifest
    upgraded: tuple[str, ...]  # boxes whose part is done, in order
    skipped: tuple[str, ...]  # boxes that already ran this root
    rebooting: str | None  # this box, rebooting into the new root; None: not needed


def summary(done: PairUpgrade) -> str:
    r = done.manifest.release
    return (f"iscsiha {r.version} (commit {r.commit}): upgraded "
            f"{', '.join(done.upgraded) or 'none'}"
            + (f"; already on it: {', '.join(done.skipped)}" if done.skipped else "")
            + (f"; {done.rebooting} reboots now and finishes its part at boot"
               if done.rebooting else ""))


def upgrade_pair(uenv: UpgradeEnv, cenv: ClusterEnv, path: str, progress: Progress,
                 timeouts: Timeouts = Timeouts()) -> PairUpgrade:
    boxes = cenv.both_boxes()
    here = boxes.here
    peer = next(n for n in boxes.names if n != here)
    manifest = upgrade_stage.checked_image(path)
    target = manifest.release
    states = _preflight(cenv, boxes, (peer, here))
    progress(f"upgrading the pair to iscsiha {target.version} (commit {target.commit}), "
             f"{peer} first, then {here}")
    digest = sha256_of(path, manifest.size,
                       upgrade_stage.percent(progress, "checksum", manifest.size))
    if digest != manifest.sha256:
        raise IscsihaError.single("corrupt-image", "file", path, f"SHA-256 {manifest.sha256}",
                                  f"has SHA-256 {digest}")
    upgraded: list[str] = []
    skipped: list[str] = []
    if states[peer].good_root == target.root_uuid:
        progress(f"{peer} already runs this root: nothing to do there")
        skipped.append(peer)
    else:
        _upgrade_peer(cenv, boxes, peer, path, manifest, progress, timeouts)
        upgraded.append(peer)
    if states[here].good_root == target.root_uuid:
        progress(f"{here} already runs this root: nothing to do here")
        return PairUpgrade(manifest, tuple(upgraded), (*skipped, here), None)
    progress(f"{here}: staging the new root in this box's standby slot")
    upgrade_stage.stage(uenv, path, progress, record_from=__version__)
    _vacate(cenv, here, progress, timeouts.move)
    progress(f"{here}: rebooting into the new root in {upgrade_steps.REBOOT_DELAY} s; it "
             "leaves standby by itself once healthy (`iscsiha upgrade status` shows how "
             "its part ended)")
    upgrade_steps.reboot(cenv.runner)
    return PairUpgrade(manifest, tuple(upgraded), tuple(skipped), here)


def _preflight(cenv: ClusterEnv, boxes: Boxes, nodes: tuple[str, ...]
               ) -> dict[str, m.UpgradeState]:
    """Each box's slots, once the pair is healthy and neither box is in an upgrade."""
    health, reasons = assess(live_status(cenv, sessions=False))
    if health is not Health.HEALTHY:
        raise IscsihaError.single(
            "pair-not-healthy", "cluster", health.word, "a healthy pair (`iscsiha status` "
            "exit 0): both boxes online and out of standby, every volume in sync",
            "; ".join(reasons))
    states = {}
    reports: list[Report] = []
    for node in nodes:
        st = boxes.call(node, m.UPGRADE_STATE, m.Nothing(), timeout=120.0)
        states[node] = st
        if st.booted is None:
            reports.append(Report("not-ab-booted", "node", node, "a box booted through the "
                                  "A/B boot logic", "its boot did not name its slot"))
        elif st.trial in ("armed", "on-trial"):
            reports.append(Report("trial-pending", "node", node, "no trial boot armed or "
                                  "running", f"its trial is {st.trial} (iscsiha upgrade "
                                  "status on that box; cancel or reboot first)"))
    if reports:
        raise IscsihaError(reports)
    return states


def _vacate(cenv: ClusterEnv, node: str, progress: Progress, timeout: float) -> None:
    """Move ``node``'s targets to the other box, then put ``node`` in standby; the moves'
    temporary preferences go either way (standby keeps the targets away)."""
    state = status(cenv.pacemaker)
    away = [n for n, up in state.nodes if up and n != node]
    leaving = [GROUP_PREFIX + t.name for t in state.targets if node in t.running_on]
    try:
        if leaving and away:
            progress(f"{node}: moving {', '.join(g[len(GROUP_PREFIX):] for g in leaving)} "
                     f"to {away[0]}")
            for gid in leaving:
                cenv.pacemaker.move(gid, away[0])
            cenv.pacemaker.wait(timeout)
        standby(cenv, node, True, timeout, progress)
    finally:
        for gid in leaving:
            cenv.pacemaker.clear(gid)


def _upgrade_peer(cenv: ClusterEnv, boxes: Boxes, peer: str, path: str, manifest: Manifest,
                  progress: Progress, timeouts: Timeouts) -> None:
    r = manifest.release
    progress(f"{peer}: sending the new root ({manifest.size} bytes) into its standby slot")
    tick = upgrade_stage.percent(progress, f"sent to {peer}", manifest.size)
    try:
        with open(path, "rb", buffering=0) as image:
            sent = 0

            def read(n: int) -> bytes:
                nonlocal sent
                chunk = image.read(n)
                sent += len(chunk)
                tick(sent)
                return chunk
            staged = boxes.call_feeding(
                peer, m.STAGE_ROOT, m.RootImage(r.version, r.commit, r.root_uuid,
                                                manifest.size, manifest.sha256),
                frames.encode(read, manifest.size, path), timeouts.send)
    except OSError as exc:
        raise IscsihaError.single("unreadable", "file", path, "a file root may read",
                                  exc.strerror or str(exc)) from exc
    progress(f"{peer}: staged in slot {staged.slot}, read back, its state carried, trial "
             f"armed ({staged.seconds:.0f} s there)")
    _vacate(cenv, peer, progress, timeouts.move)
    boxes.call(peer, m.REBOOT, m.Nothing())
    progress(f"{peer}: rebooting into slot {staged.slot}")
    back = _wait_back(cenv, boxes, peer, progress, timeouts.back)
    if not back.record_left_standby:
        raise IscsihaError([Report(
            "upgrade-stuck-in-standby", "node", peer, "out of standby after its reboot",
            f"{back.record_note}. The upgrade stops here: this box was not touched")])
    if back.record != "upgraded":
        raise IscsihaError([Report(
            "upgrade-rolled-back", "node", peer, f"running iscsiha {r.version}",
            f"{back.record_note}. The upgrade stops here: this box was not touched, and "
            f"the pair runs iscsiha {back.release} (see `iscsiha upgrade status` on {peer})")])
    progress(f"{peer}: {back.record_note}")
    _wait_healthy(cenv, progress, timeouts.healthy)


def poll(clock: Clock, check: Callable[[], tuple[T | None, str]], timeout: float,
         progress: Progress, failure: Callable[[str], IscsihaError]) -> T:
    """``check()`` until it gives a value, saying every REPORT_EVERY seconds why not yet;
    past ``timeout``, ``failure`` of the last why."""
    start = said = clock.monotonic()
    while True:
        value, why = check()
        if value is not None:
            return value
        now = clock.monotonic()
        if now - start >= timeout:
            raise failure(why)
        if now - said >= REPORT_EVERY:
            progress(f"{why} ({now - start:.0f} s)")
            said = now
        clock.sleep(POLL)


def first_line(exc: IscsihaError) -> str:
    return format_report(exc.reports[0]).splitlines()[0]


def _wait_back(cenv: ClusterEnv, boxes: Boxes, peer: str, progress: Progress,
               timeout: float) -> m.UpgradeState:
    """The peer's state once its part is settled (its resume service ran)."""
    def check() -> tuple[m.UpgradeState | None, str]:
        boxes.forget(peer)  # it may answer from another release now
        try:
            st = boxes.call(peer, m.UPGRADE_STATE, m.Nothing(), timeout=30.0)
        except IscsihaError as exc:
            return None, f"{peer}: not answering yet ({first_line(exc)[:120]})"
        if st.record in ("upgraded", "rolled-back"):
            return st, ""
        return None, f"{peer}: up, iscsiha {st.release}, slot {st.booted}, trial {st.trial}"
    return poll(cenv.clock, check, timeout, progress, lambda why: IscsihaError.single(
        "upgrade-not-back", "node", peer, f"back within {timeout:.0f} s", why))


def _wait_healthy(cenv: ClusterEnv, progress: Progress, timeout: float) -> None:
    seen = [Health.UNKNOWN]

    def check() -> tuple[bool | None, str]:
        try:
            health, reasons = assess(live_status(cenv, sessions=False))
        except IscsihaError as exc:
            health, reasons = Health.UNKNOWN, (first_line(exc),)
        seen[0] = health
        if health is Health.HEALTHY:
            return True, ""
        return None, f"waiting for the pair to be healthy: {'; '.join(reasons)}"
    poll(cenv.clock, check, timeout, progress, lambda why: IscsihaError.single(
        "pair-not-healthy", "cluster", seen[0].word, f"healthy within {timeout:.0f} s", why))
    progress("the pair is healthy again: in sync, targets placed by their policy")
