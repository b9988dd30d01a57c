"""What an apply will change, worked out and checked before anything changes (pure).

Volumes are LVs tagged as the cluster's on both boxes; a target's LUNs are the
volumes of its DRBD resource. A volume joining or leaving a running target's
resource is a "reshape" of that target, done in phases (commands/apply.py).
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from iscsiha.errors import IscsihaError, Report
from iscsiha.model.identity import DrbdResource
from iscsiha.model.types import Config, Volume
from iscsiha.plan.agent_params import decode_luns
from iscsiha.plan.cib import nvpairs
from iscsiha.protocol.messages import DiskState, Facts


@dataclass(frozen=True)
class Delta:
    create: tuple[Volume, ...]  # LVs to make
    delete: tuple[str, ...]  # the cluster's LVs no longer desired
    new_targets: tuple[str, ...]
    gone_targets: tuple[str, ...]
    joining: Mapping[str, tuple[str, ...]]  # running target -> volumes joining it
    leaving: Mapping[str, tuple[str, ...]]  # running target -> volumes leaving it

    @property
    def reshaped(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.joining) | set(self.leaving)))


def delta(config: Config, previous: Mapping[str, DrbdResource], known: set[str]) -> Delta:
    """``previous``: the live CIB's resources; ``known``: the cluster's LVs on either box."""
    desired = {v.name for v in config.volumes}
    joining: dict[str, tuple[str, ...]] = {}
    leaving: dict[str, tuple[str, ...]] = {}
    for target in config.targets:
        if target.name not in previous:
            continue
        now = {lun.volume for lun in target.luns}
        before = set(previous[target.name].volumes)
        if now - before:
            joining[target.name] = tuple(sorted(now - before))
        if before - now:
            leaving[target.name] = tuple(sorted(before - now))
    names = {t.name for t in config.targets}
    return Delta(
        create=tuple(v for v in config.volumes if v.name not in known),
        delete=tuple(sorted(known - desired)),
        new_targets=tuple(sorted(names - set(previous))),
        gone_targets=tuple(sorted(set(previous) - names)),
        joining=joining, leaving=leaving)


def before_joining(config: Config, change: Delta) -> Config:
    """``config`` with the joining volumes left out of their targets: what the cluster
    runs while they are added to the targets' DRBD resources."""
    return dataclasses.replace(config, targets=tuple(
        dataclasses.replace(t, luns=tuple(lun for lun in t.luns
                                          if lun.volume not in change.joining.get(t.name, ())))
        for t in config.targets))


def check_reshapes(config: Config, previous: Mapping[str, DrbdResource],
                   change: Delta) -> None:
    """A volume changes target only through an apply that unexports it first, and a
    running target keeps at least one of its LUNs (its resource never runs empty)."""
    was_in = {v: t for t, res in previous.items() for v in res.volumes}
    reports = [Report("volume-changes-target", "volume", volume,
                      f"exported by {was_in[volume]} or by no target",
                      f"moves from target {was_in[volume]} to {target}: apply without its "
                      "LUN first, then export it from the new target")
               for target, volumes in change.joining.items() for volume in volumes
               if was_in.get(volume, target) != target]
    reports += [Report("volume-changes-target", "volume", volume,
                       f"exported by {was_in[volume]} or by no target",
                       f"moves from target {was_in[volume]} to new target {t.name}: apply "
                       "without its LUN first, then export it from the new target")
                for t in config.targets if t.name in change.new_targets
                for volume in (lun.volume for lun in t.luns) if volume in was_in]
    for target in change.joining:
        kept = set(previous[target].volumes) - set(change.leaving.get(target, ()))
        if not kept:
            reports.append(Report(
                "target-replaces-all-luns", "target", target,
                "a change that keeps at least one of its LUNs",
                "would swap every LUN at once: keep one LUN in this apply, or delete the "
                "target and create it again"))
    if reports:
        raise IscsihaError(reports)


def exported_volumes(cib_xml: str) -> dict[str, str]:
    """Volume -> the resource of the target that exports it, in a CIB."""
    found = {}
    for prim in ET.fromstring(cib_xml).iter("primitive"):
        if prim.get("provider") == "iscsiha" and prim.get("type") == "target":
            params = nvpairs(prim.find("instance_attributes"))
            for lun in decode_luns(params.get("luns", "")):
                found[lun.volume] = prim.get("id", "?")
    return found


def check_deletes(delete: tuple[str, ...], confirmed: frozenset[str],
                  exported: Mapping[str, str]) -> None:
    reports = [Report("delete-not-confirmed", "volume", name, f"--delete {name}",
                      "is in the cluster but not in the desired state: applying deletes it "
                      "and its data on both boxes")
               for name in delete if name not in confirmed]
    reports += [Report("delete-not-needed", "--delete", name,
                       ", ".join(delete) or "no volume (none is being deleted)",
                       "is not a volume this apply deletes")
                for name in sorted(confirmed - set(delete))]
    reports += [Report("volume-in-use", "volume", name, "a volume no target exports",
                       f"is exported by {exported[name]}: apply without its LUN first")
                for name in delete if name in exported]
    if reports:
        raise IscsihaError(reports)


def check_facts(config: Config, create: tuple[Volume, ...], running: set[str],
                facts: Mapping[str, Facts],
                pool_need: Mapping[str, Mapping[str, int]] | None = None
                ) -> tuple[Volume, ...]:
    """Space, names and sizes on both boxes; the volumes to grow. ``running``: the
    volumes a running target exports before and after this apply (only those grow,
    as DRBD moves its metadata to the disk's new end). ``pool_need``: node -> volume
    group -> bytes thin pools take (apply_pools); thin volumes take none of it."""
    reports: list[Report] = []
    grow: dict[str, Volume] = {}
    for node, f in facts.items():
        need: dict[str, int] = dict((pool_need or {}).get(node, {}))
        for v in config.volumes:
            free, extent = f.vgs[v.volume_group]
            size = -(-v.size // extent) * extent  # LVM rounds up to whole extents
            current = f.lvs[v.name]
            if v in create:
                if current is not None:
                    reports.append(Report(
                        "volume-exists", "volume", v.name, "a name no LV on either box has",
                        f"{node} already has {v.lv_path} outside the cluster"))
                if v.pool is None:
                    need[v.volume_group] = need.get(v.volume_group, 0) + size
            elif current is None or f.tagged.get(v.name) != v.volume_group:
                reports.append(Report("volume-missing", "volume", v.name,
                                      "an LV of the cluster on both boxes",
                                      f"{v.lv_path} is gone on {node}"))
            elif current > size:
                reports.append(Report(
                    "volume-shrink", "size", f"{v.name}: {v.size}",
                    f"at least the current {current} bytes",
                    "shrinking would cut off data; make a new, smaller volume instead"))
            elif current < size:
                grow[v.name] = v
                if v.pool is None:
                    need[v.volume_group] = need.get(v.volume_group, 0) + size - current
                if v.name not in running:
                    reports.append(Report(
                        "volume-not-exported", "volume", v.name,
                        "a volume a running target exports, to grow",
                        "grows only while exported: DRBD moves its metadata to the new end"))
                    continue
                state = f.drbd.get(v.name, DiskState("?", "?", "?", "?"))
                role, connection, disk, peer = (state.role, state.connection, state.disk,
                                                state.peer_disk)
                if connection != "Connected" or disk != "UpToDate" or peer != "UpToDate":
                    reports.append(Report(
                        "volume-not-replicating", "volume", v.name,
                        "connected and up to date on both boxes to grow",
                        f"DRBD on {node} is {role}, {connection}, {disk}/{peer}"))
        for vg, bytes_needed in need.items():
            free = f.vgs[vg][0]
            if bytes_needed > free:
                reports.append(Report("no-space", "volume_group", f"{node}:{vg}",
                                      f"at most {free} bytes more",
                                      f"needs {bytes_needed} bytes"))
    if reports:
        raise IscsihaError(reports)
    return tuple(grow[name] for name in sorted(grow))
