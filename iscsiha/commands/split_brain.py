"""Split brain: find the volumes both boxes changed while apart, and resolve one by
throwing away one box's changes (DRBD's manual recovery, driven on both boxes).

A target's volumes are one DRBD resource, and DRBD's recovery works per resource:
discarding a box's changes to one volume discards its changes to every volume of
that target (each resyncs what either side changed).

DRBD finds a split brain when the two sides reconnect and each holds writes the
other lacks. With this cluster's policies (plan/drbd.py) it settles that on its own
only when one side wrote nothing; otherwise both sides stay StandAlone, each with
its own data, until an admin picks the box whose changes are discarded. That box
then resyncs from the other: only the blocks either side changed, not the volume.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from iscsiha.commands import targets as targets_cmd
from iscsiha.commands.apply import exported_volumes
from iscsiha.commands.cluster_env import Boxes, ClusterEnv
from iscsiha.commands.maintenance import hold, release
from iscsiha.errors import PARTLY_APPLIED, IscsihaError, Report
from iscsiha.executors.drbd import DrbdDetail, GenerationIds
from iscsiha.model.identity import volume_slots
from iscsiha.model.names import check_timeout
from iscsiha.plan.cib import drbd_clone_id, previous_drbd
from iscsiha.protocol import messages as m
from iscsiha.views import activity_text, how_to_keep

Progress = Callable[[str], None]
UUID_JUST_CREATED = 4  # DRBD's current identifier of fresh metadata: no history to compare
_WILL_SYNC = re.compile(r"Began resync as SyncTarget \(will sync (\d+) KB", re.A)


@dataclass(frozen=True)
class Side:
    """One box's half of a volume."""

    node: str
    drbd: DrbdDetail
    cluster_role: str  # Pacemaker's view of the clone instance: Promoted, Unpromoted, Stopped
    serves: tuple[str, ...]  # targets exporting the volume that run on this box now

    @property
    def active(self) -> bool:
        """Primary, promoted or serving: its data is what initiators see."""
        return self.drbd.role == "Primary" or self.cluster_role == "Promoted" or bool(self.serves)


@dataclass(frozen=True)
class VolumeState:
    name: str
    resource: str  # the DRBD resource: the target exporting it
    number: int  # the volume's number in it
    minor: int
    sides: tuple[Side, Side]
    targets: tuple[str, ...]  # the targets exporting the volume, wherever they run

    @property
    def split_brain(self) -> bool:
        return in_split_brain(self.sides[0].drbd, self.sides[1].drbd)

    def side(self, node: str) -> Side:
        return next(s for s in self.sides if s.node == node)

    def other(self, node: str) -> Side:
        return next(s for s in self.sides if s.node != node)


@dataclass(frozen=True)
class Choice:
    """A volume in split brain, the box that keeps its data and the box that discards."""

    state: VolumeState
    keep: Side
    discard: Side


@dataclass(frozen=True)
class Resolution:
    volume: str
    kept: str
    discarded: str
    resynced_kib: int | None  # what the resync copied, from the kernel's own count
    seconds: float
    commands: dict[str, list[str]]  # node -> the DRBD commands run there, in order
    held_by: str  # how Pacemaker was kept off the clone meanwhile


def diverged(a: GenerationIds, b: GenerationIds) -> bool:
    """Both sides changed since they last agreed: what DRBD calls a split brain.

    Not when one current identifier is in the other side's past (that side is only
    behind, and DRBD resyncs it on its own), yet the two share an ancestor (DRBD's
    handshake rules 90 and 100; unrelated data is not a split brain).
    """
    ca, ba, *ha = a.ids()
    cb, bb, *hb = b.ids()
    if ca == cb or {ca, cb} & {0, UUID_JUST_CREATED}:
        return False
    if ca in (bb, *hb) or cb in (ba, *ha):
        return False
    return bool(ba and ba == bb) or bool({h for h in ha if h} & {h for h in hb if h})


def in_split_brain(a: DrbdDetail, b: DrbdDetail) -> bool:
    """Apart (neither side talks to the other) with data that diverged."""
    return (a.gi is not None and b.gi is not None and not a.connected and not b.connected
            and diverged(a.gi, b.gi))


def survey(env: ClusterEnv, volumes: Sequence[str] | None = None) -> list[VolumeState]:
    """The cluster's volumes (or ``volumes``) as both boxes and Pacemaker see them."""
    boxes = env.both_boxes()
    cib = env.pacemaker.query()
    resources = previous_drbd(cib)
    slots = volume_slots(resources)
    resource_of = {v: t for t, res in resources.items() for v in res.volumes}
    wanted = sorted(slots) if volumes is None else list(volumes)
    unknown = [v for v in wanted if v not in slots]
    if unknown:
        raise IscsihaError.single("unknown-volume", "volume", ", ".join(unknown),
                                  ", ".join(sorted(slots)) or "no volume yet",
                                  "is not a volume of the cluster")
    if not wanted:
        return []
    cluster = targets_cmd.status(env.pacemaker)
    roles = {v.name: dict(v.roles) for v in cluster.volumes}
    running = {t.name: t.running_on for t in cluster.targets}
    exported = exported_volumes(cib)
    facts = boxes.on_both(m.SPLIT_BRAIN_FACTS, m.SplitBrainVolumes({
        v: (f"{resource_of[v]}/{slots[v].number}", slots[v].minor) for v in wanted}))
    states = []
    for name in wanted:
        rsc = exported.get(name)
        targets = (rsc.removeprefix(targets_cmd.GROUP_PREFIX).removesuffix("-lio"),) \
            if rsc else ()
        first, second = (Side(node, drbd_detail(facts[node].volumes[name]),
                              roles.get(name, {}).get(node, "Stopped"),
                              tuple(t for t in targets if node in running.get(t, ())))
                         for node in boxes.names)
        states.append(VolumeState(name, resource_of[name], slots[name].number,
                                  slots[name].minor, (first, second), targets))
    return states


def choose(env: ClusterEnv, volume: str, discard: str) -> Choice:
    """Check that ``discard``'s changes to ``volume`` may be thrown away; refuse otherwise."""
    boxes = env.both_boxes()
    if discard not in boxes.names:
        raise IscsihaError.single("unknown-node", "--discard", discard,
                                  " or ".join(boxes.names), "is not one of the two boxes")
    (state,) = survey(env, [volume])
    gone, keep = state.side(discard), state.other(discard)
    if not state.split_brain:
        raise IscsihaError.single(
            "not-in-split-brain", "volume", volume, "a volume in split brain",
            "; ".join(f"{s.node}: {s.drbd.role}, {s.drbd.connection}, {s.drbd.disk}"
                      for s in state.sides) + ": there is nothing to resolve")
    reports = []
    if gone.active:
        reports.append(Report(
            "discard-side-active", "--discard", discard,
            f"--discard {keep.node}, or {discard} once it is Secondary and serves no target",
            f"{volume} is {activity_text(gone)} on {discard}: its data is the one in use. To "
            f"keep {keep.node}'s data instead: {how_to_keep(state, keep.node)}"))
    if keep.drbd.disk != "UpToDate":
        reports.append(Report(
            "kept-side-not-up-to-date", "volume", f"{volume} on {keep.node}",
            "a kept side whose disk is UpToDate",
            f"is {keep.drbd.disk}: it cannot be the source of the resync"))
    if reports:
        raise IscsihaError(reports)
    return Choice(state, keep, gone)


def resolve(env: ClusterEnv, volume: str, discard: str, progress: Progress,
            timeout: float = 600.0, poll: float = 1.0) -> Resolution:
    """Discard ``discard``'s changes to ``volume``; wait until both boxes are in sync again.

    Every check is made again here, right before anything changes.
    """
    check_timeout(timeout)
    choice = choose(env, volume, discard)
    pacemaker, boxes = env.pacemaker, env.both_boxes()
    keep, gone = choice.keep.node, choice.discard.node
    clone = drbd_clone_id(choice.state.resource)
    started = env.clock.monotonic()
    # Pacemaker is kept off the target's DRBD clone (resource maintenance: no actions, no
    # monitors) while its DRBD state is changed under it. The linbit agent's monitor only
    # reads DRBD and sets promotion scores, but its start and its start notifications run a
    # plain `drbdadm adjust`, which connects a StandAlone resource without
    # --discard-my-data (DRBD would find the split brain again and drop the connection),
    # and were the kept box to fail meanwhile, Pacemaker would promote the very data being
    # thrown away. Holding it off costs nothing: the discarded side cannot take over anyway
    # (its data is the one given up, then Inconsistent until the resync ends).
    held = hold(pacemaker, clone, progress)
    commands: dict[str, list[str]] = {}
    reports: list[Report] = []
    resynced: int | None = None
    running: str | None = None  # the box whose step is under way
    try:
        resource, minor = choice.state.resource, choice.state.minor
        progress(f"{gone}: discarding its changes to {volume} and to every other volume of "
                 f"target {choice.state.resource} (one DRBD resource)")
        running = gone
        commands[gone] = list(boxes.call(gone, m.SPLIT_BRAIN_DISCARD,
                                         m.SplitBrainSide(resource, minor, gone)).commands)
        progress(f"{keep}: connecting {volume} to {gone} again")
        running = keep
        commands[keep] = list(boxes.call(keep, m.SPLIT_BRAIN_CONNECT,
                                         m.SplitBrainSide(resource, minor, keep)).commands)
        running = None
        resynced = _wait_in_sync(env, choice, timeout, poll, progress)
    except IscsihaError as exc:
        reports += exc.reports
        # The discard step refuses before it runs anything: then nothing changed.
        if running != gone or exc.reports[0].code != "discard-side-not-secondary":
            done = [f"ran on {node}: {', '.join(ran) or 'nothing'}"
                    for node, ran in commands.items()]
            if running:
                done.append(f"on {running} the step failed, maybe partway")
            reports.append(Report(PARTLY_APPLIED, "volume", volume,
                                  f"`iscsiha split-brain {volume}` to check", "; ".join(done)))
    finally:
        if held:
            reports += release(pacemaker, clone, progress)
    if reports:
        raise IscsihaError(reports)
    return Resolution(volume, keep, gone, resynced, env.clock.monotonic() - started, commands,
                      f"{clone} in maintenance meanwhile" if held
                      else f"{clone} was already left alone by Pacemaker")


# -- the procedure ------------------------------------------------------------------------


def _details(boxes: Boxes, choice: Choice) -> dict[str, DrbdDetail]:
    state = choice.state
    volume = state.name
    facts = boxes.on_both(m.SPLIT_BRAIN_FACTS, m.SplitBrainVolumes({
        volume: (f"{state.resource}/{state.number}", state.minor)}))
    return {node: drbd_detail(f.volumes[volume]) for node, f in facts.items()}


def drbd_detail(d: m.Detail) -> DrbdDetail:
    """A box's reply as the executor's own record."""
    gi = GenerationIds(d.gi.current, d.gi.bitmap, d.gi.history, d.gi.flags) if d.gi else None
    return DrbdDetail(d.role, d.peer_role, d.connection, d.disk, d.peer_disk,
                      d.out_of_sync_kib, d.synced_percent, d.resync_total_kib, gi, d.kernel)


def _wait_in_sync(env: ClusterEnv, choice: Choice, timeout: float, poll: float,
                  progress: Progress) -> int | None:
    """Until Connected and UpToDate on both boxes; the KiB the resync copied if known."""
    volume, keep, gone = choice.state.name, choice.keep.node, choice.discard.node
    deadline = env.clock.monotonic() + timeout
    shown: float | None = None
    total: int | None = None
    while True:
        now = _details(env.both_boxes(), choice)
        k, g = now[keep], now[gone]
        total = max((t for t in (total, k.resync_total_kib, g.resync_total_kib) if t),
                    default=None)
        if all(d.connection == "Connected" and d.disk == d.peer_disk == "UpToDate"
               for d in (k, g)):
            copied = _resynced(choice.discard.drbd, g)
            return total if copied is None else copied
        if "StandAlone" in (k.connection, g.connection):
            said = [line for d in (g, k) for line in d.kernel
                    if line not in choice.discard.drbd.kernel + choice.keep.drbd.kernel]
            raise IscsihaError.single(
                "split-brain-not-resolved", "volume", volume, f"connected to {gone} again",
                f"DRBD dropped the connection again ({said[-1] if said else 'no kernel line'});"
                f" {keep}'s data is unchanged: check both boxes' kernel log")
        percent = g.synced_percent if g.synced_percent is not None else k.synced_percent
        if percent is not None and percent != shown:
            progress(f"resyncing {volume} from {keep} to {gone}: {percent:.1f}%")
            shown = percent
        if env.clock.monotonic() > deadline:
            where = f" at {percent:.1f}%" if percent is not None else ""
            raise IscsihaError.single(
                "resync-not-finished", "volume", volume,
                f"Connected and UpToDate on both boxes within {timeout:.0f} s",
                f"still {g.connection}, {g.disk} on {gone}{where}; DRBD goes on by itself "
                f"(`iscsiha split-brain {volume}` shows it)")
        env.clock.sleep(poll)


def _resynced(before: DrbdDetail, after: DrbdDetail) -> int | None:
    """The size of the resync the discarded side began, from its kernel line."""
    new = [line for line in after.kernel if line not in before.kernel]
    sizes = [int(m.group(1)) for line in new if (m := _WILL_SYNC.search(line))]
    return sizes[-1] if sizes else None
