"""Where targets and volumes run, and a planned move of a target to the other box."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from iscsiha.errors import IscsihaError
from iscsiha.executors.pacemaker import Pacemaker
from iscsiha.plan.cib import nvpairs

Progress = Callable[[str], None]
GROUP_PREFIX = "target-"


@dataclass(frozen=True)
class TargetStatus:
    name: str
    iqn: str
    running_on: tuple[str, ...]
    preferred: str | None
    failback: str  # auto or manual, from the group's stickiness
    healthy: bool  # every member started


@dataclass(frozen=True)
class VolumeStatus:
    name: str
    roles: tuple[tuple[str, str], ...]  # (node, Promoted/Unpromoted)


@dataclass(frozen=True)
class ClusterStatus:
    nodes: tuple[tuple[str, bool], ...]  # (name, online)
    targets: tuple[TargetStatus, ...]
    volumes: tuple[VolumeStatus, ...]


def status(pacemaker: Pacemaker) -> ClusterStatus:
    cib = ET.fromstring(pacemaker.query())
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
            gid[len(GROUP_PREFIX):], iqn, tuple(sorted(where)), _preferred(cib, gid),
            "auto" if nvpairs(group.find("meta_attributes")).get(
                "resource-stickiness") == "0" else "manual",
            bool(members) and all(r.get("role") == "Started" for r in members)))
    volumes = []
    for clone in mon.iter("clone"):
        cid = clone.get("id", "")
        if cid.startswith("drbd-") and cid.endswith("-clone"):
            roles = tuple(sorted((n.get("name", "?"), r.get("role", "?"))
                                 for r in clone.iter("resource") for n in r.iter("node")))
            volumes.append(VolumeStatus(cid[len("drbd-"):-len("-clone")], roles))
    return ClusterStatus(nodes, tuple(targets), tuple(volumes))


def move(pacemaker: Pacemaker, name: str, node: str, timeout: float,
         progress: Progress) -> float:
    """Move target ``name`` to ``node`` and wait until it runs there; the seconds it took."""
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
    started = time.monotonic()
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
    return time.monotonic() - started


def _preferred(cib: ET.Element, gid: str) -> str | None:
    return next((loc.get("node") for loc in cib.iter("rsc_location")
                 if loc.get("rsc") == gid and loc.get("id", "").startswith(f"{gid}-prefers-")),
                None)
