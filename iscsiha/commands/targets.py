"""Where targets and volumes run, and a planned move of a target to the other box."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from iscsiha.commands.cluster_env import Cib, ClusterEnv
from iscsiha.errors import IscsihaError
from iscsiha.executors.drbd import ProcDevice
from iscsiha.executors.lvm import Lvm
from iscsiha.model.names import check_timeout
from iscsiha.plan.cib import nvpairs, previous_drbd
from iscsiha.protocol import messages as m

Progress = Callable[[str], None]
GROUP_PREFIX = "target-"
SESSIONS_TIMEOUT = 15.0  # a frozen peer must not hold `status` up for long
# node, target IQNs -> IQN -> initiators logged in there; raises when the box cannot tell
SessionsOn = Callable[[str, Sequence[str]], Mapping[str, Sequence[str]]]


@dataclass(frozen=True)
class TargetStatus:
    name: str
    iqn: str
    running_on: tuple[str, ...]
    preferred: str | None
    failback: str  # auto or manual, from the group's stickiness
    healthy: bool  # every member started
    sessions: tuple[str, ...] | None = None  # initiators logged in; None: not asked/unknown


@dataclass(frozen=True)
class VolumeStatus:
    name: str
    roles: tuple[tuple[str, str], ...]  # (node, Promoted/Unpromoted)
    drbd: ProcDevice | None = None  # as this box's kernel sees it (both ends agree)


@dataclass(frozen=True)
class PoolStatus:
    """A thin pool on one box (each box has its own; they fill alike)."""

    name: str
    volume_group: str
    node: str
    size: int  # bytes of data space
    data_percent: float | None
    metadata_percent: float | None


@dataclass(frozen=True)
class Fencing:
    enabled: bool  # stonith-enabled
    devices: tuple[tuple[str, str | None], ...]  # (device, the node running it or None)
    failing: frozenset[str] = frozenset()  # running, but their monitor failed (ignored)

    @property
    def ready(self) -> bool:
        return (self.enabled and bool(self.devices) and not self.failing
                and all(on for _, on in self.devices))


@dataclass(frozen=True)
class ClusterStatus:
    nodes: tuple[tuple[str, bool], ...]  # (name, online)
    targets: tuple[TargetStatus, ...]
    volumes: tuple[VolumeStatus, ...]
    quorate: bool | None = None  # None: no DC elected yet
    fencing: Fencing | None = None
    standby: frozenset[str] = frozenset()  # nodes in standby: they run no resource
    pools: tuple[PoolStatus, ...] = ()  # thin pools, per box that could tell


def clone_roles(clone: ET.Element) -> tuple[tuple[str, str], ...]:
    """(node, role) of each instance of a clone in crm_mon's XML, sorted."""
    return tuple(sorted((n.get("name", "?"), r.get("role", "?"))
                        for r in clone.iter("resource") for n in r.iter("node")))


def status(pacemaker: Cib, drbd: Mapping[int, ProcDevice] | None = None,
           sessions: SessionsOn | None = None) -> ClusterStatus:
    """The cluster as Pacemaker sees it; with ``drbd`` (this box's /proc/drbd) each
    volume's replication state, with ``sessions`` each running target's initiators."""
    cib_xml = pacemaker.query()
    cib = ET.fromstring(cib_xml)
    mon = ET.fromstring(pacemaker.status())
    nodes = tuple((n.get("name", "?"), n.get("online") == "true") for n in mon.iter("node")
                  if n.get("online") is not None)
    targets = []
    for group in cib.iter("group"):
        gid = group.get("id", "")
        if not gid.startswith(GROUP_PREFIX):
            continue
        members = [r for g in mon.iter("group") if g.get("id") == gid for r in g.iter("resource")]
        where = {n.get("name", "?") for r in members for n in r.iter("node")}
        lio = group.find(f"primitive[@id='{gid}-lio']")
        iqn = nvpairs(lio.find("instance_attributes") if lio is not None else None).get("iqn", "")
        targets.append(TargetStatus(
            gid[len(GROUP_PREFIX):], iqn, tuple(sorted(where)), *target_placement(cib, gid),
            bool(members) and all(r.get("role") == "Started" for r in members)))
    if sessions is not None:
        targets = _with_sessions(targets, sessions)
    resources = previous_drbd(cib_xml)
    volumes = []
    for clone in mon.iter("clone"):
        cid = clone.get("id", "")
        target = cid[len("drbd-"):-len("-clone")]
        if not (cid.startswith("drbd-") and cid.endswith("-clone") and target in resources):
            continue
        roles = clone_roles(clone)  # the target resource's, shared by all its volumes
        for name, slot in sorted(resources[target].volumes.items()):
            local = drbd.get(slot.minor) if drbd is not None else None
            volumes.append(VolumeStatus(name, roles, local))
    dc = mon.find("summary/current_dc")
    quorate = (dc.get("with_quorum") == "true"
               if dc is not None and dc.get("present") == "true" else None)
    standby = frozenset(n.get("name", "?") for n in mon.iter("node")
                        if n.get("standby") == "true")
    return ClusterStatus(nodes, tuple(targets), tuple(volumes), quorate, _fencing(cib, mon),
                         standby)


def live_status(env: ClusterEnv, sessions: bool = True) -> ClusterStatus:
    """``status`` with this box's DRBD view and, with ``sessions`` on a cluster box, the
    targets' sessions (over SSH to the peer: not where a hung peer must not slow the
    answer)."""
    try:
        proc: Mapping[int, ProcDevice] | None = env.drbd.proc()
    except IscsihaError:
        proc = None  # no DRBD module loaded on this box
    boxes = env.boxes
    if boxes is None:
        return status(env.pacemaker, proc)
    if not sessions:
        return replace(status(env.pacemaker, proc), pools=pool_usage(env, boxes.here))
    state = status(env.pacemaker, proc, lambda node, iqns: boxes.call(
        node, m.TARGET_SESSIONS, m.Iqns(tuple(iqns)), timeout=SESSIONS_TIMEOUT).sessions)
    return replace(state, pools=pool_usage(env, boxes.here, [n for n in boxes.names
                                                              if n != boxes.here]))


def pool_usage(env: ClusterEnv, here: str, peers: Sequence[str] = ()
               ) -> tuple[PoolStatus, ...]:
    """This box's thin pools (read here), and the ``peers``' (asked, as sessions are).
    A box that cannot tell (down, lvs failing) is left out: the status shows what
    could be asked."""
    out: list[PoolStatus] = []
    with contextlib.suppress(IscsihaError):
        out += [PoolStatus(p.name, p.vg, here, p.size, p.data_percent, p.metadata_percent)
                for p in Lvm(env.runner).pools()]
    for node in peers:
        try:
            reply = env.both_boxes().call(node, m.POOL_USAGE, m.Nothing(),
                                          timeout=SESSIONS_TIMEOUT)
        except IscsihaError:
            continue
        out += [PoolStatus(p.name, p.volume_group, node, p.size, p.data_percent,
                           p.metadata_percent) for p in reply.pools]
    return tuple(out)


def _fencing(cib: ET.Element, mon: ET.Element) -> Fencing:
    enabled = next((nv.get("value", "true") for nv in cib.iter("nvpair")
                    if nv.get("name") == "stonith-enabled"), "true")
    running = {r.get("id", ""): next((n.get("name") for n in r.iter("node")), None)
               for r in mon.iter("resource") if r.get("role") == "Started"}
    devices = tuple((p.get("id", "?"), running.get(p.get("id", "")))
                    for p in cib.iter("primitive") if p.get("class") == "stonith")
    # A fence device's monitor fails with on-fail=ignore (plan/cib.py): the resource stays
    # started and crm_mon flags it until the failure expires.
    failing = frozenset(r.get("id", "") for r in mon.iter("resource")
                        if r.get("failure_ignored") == "true")
    return Fencing(enabled.lower() in ("true", "yes", "1", "on"), devices,
                   failing & {d for d, _ in devices})


def _with_sessions(targets: list[TargetStatus], sessions: SessionsOn) -> list[TargetStatus]:
    """Each running target's sessions, one question per box; unknown where it fails."""
    by_node: dict[str, list[str]] = {}
    for t in targets:
        if len(t.running_on) == 1 and t.iqn and t.healthy:
            by_node.setdefault(t.running_on[0], []).append(t.iqn)
    found: dict[str, tuple[str, ...]] = {}
    for node, iqns in by_node.items():
        try:
            answer = sessions(node, iqns)
        except IscsihaError:
            continue  # the box did not answer: its targets' sessions stay unknown
        found.update({iqn: tuple(sorted(answer.get(iqn, ()))) for iqn in iqns})
    return [replace(t, sessions=found.get(t.iqn)) for t in targets]


def move(env: ClusterEnv, name: str, node: str, timeout: float,
         progress: Progress) -> float:
    """Move target ``name`` to ``node`` and wait until it runs there; the seconds it took."""
    check_timeout(timeout)
    pacemaker = env.pacemaker
    state = status(pacemaker)
    target = next((t for t in state.targets if t.name == name), None)
    if target is None:
        raise IscsihaError.single("unknown-target", "target", name,
                                  ", ".join(t.name for t in state.targets) or "no target yet")
    online = dict(state.nodes)
    if node not in online:
        raise IscsihaError.single("unknown-node", "node", node, ", ".join(online))
    if not online[node]:
        raise IscsihaError.single("node-offline", "node", node, "an online cluster node",
                                  "is not online in the cluster")
    if target.running_on == (node,):
        progress(f"target {name} already runs on {node}")
        return 0.0
    if target.failback == "auto" and node != target.preferred:
        raise IscsihaError.single(
            "move-would-fail-back", "node", node, target.preferred or "its preferred node",
            f"target {name} has failback = auto and would return to {target.preferred} at "
            "once: change its preferred_node and apply instead")
    gid = GROUP_PREFIX + name
    progress(f"moving target {name} from {', '.join(target.running_on) or 'nowhere'} to {node}")
    started = env.clock.monotonic()
    pacemaker.move(gid, node)
    try:
        pacemaker.wait(timeout)
    finally:
        # The temporary preference goes either way; stickiness keeps the target there.
        pacemaker.clear(gid)
    now = next(t for t in status(pacemaker).targets if t.name == name)
    if now.running_on != (node,) or not now.healthy:
        raise IscsihaError.single("move-failed", "target", name, f"running on {node}",
                                  f"runs on {', '.join(now.running_on) or 'no node'}"
                                  f"{'' if now.healthy else ' (not all of it started)'}")
    return env.clock.monotonic() - started


def target_placement(cib: ET.Element, gid: str) -> tuple[str | None, str]:
    """The target group's preferred node and failback (auto or manual) in a CIB."""
    preferred = next((loc.get("node") for loc in cib.iter("rsc_location")
                      if loc.get("rsc") == gid
                      and loc.get("id", "").startswith(f"{gid}-prefers-")), None)
    group = next((g for g in cib.iter("group") if g.get("id") == gid), None)
    sticky = nvpairs(group.find("meta_attributes") if group is not None else None).get(
        "resource-stickiness")
    return preferred, "auto" if sticky == "0" else "manual"
