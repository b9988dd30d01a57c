"""Apply a desired state to the running cluster.

Order, so that a refused or failed apply leaves the cluster as it was:
1. check everything first (both boxes reachable, volume group space, no shrink,
   deletions confirmed and not exported, growth only while DRBD is connected);
2. create new volumes on both boxes (LV, DRBD metadata, initial sync skipped);
   if anything later fails before the CIB changes, they are removed again;
3. DRBD resource files and Pacemaker's lrm:// secrets on both boxes;
4. one versioned CIB patch (Pacemaker refuses it whole if the configuration moved
   on); a volume being deleted stays in it, stopped;
5. then what needs the new CIB: grow LVs and DRBD; once deleted volumes have
   stopped, a second patch drops them and their LVs go. (Dropping a running
   promotable clone in one step orphans it: Pacemaker then cannot demote it.)
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from iscsiha.commands.node_steps import DESIRED_PATH
from iscsiha.errors import PARTLY_APPLIED, IscsihaError, Report
from iscsiha.executors import files
from iscsiha.executors.pacemaker import Pacemaker
from iscsiha.executors.peers import Boxes
from iscsiha.executors.runner import Runner
from iscsiha.model.load import load_text
from iscsiha.model.types import Config, NetworkRole, Volume
from iscsiha.plan.agent_params import decode_luns
from iscsiha.plan.cib import drbd_clone_id, nvpairs, previous_slots
from iscsiha.plan.cib_merge import merge
from iscsiha.plan.drbd import AUTHKEY_PATH
from iscsiha.plan.plan import Plan, make_plan

Progress = Callable[[str], None]
DRBD_FILES = "/etc/drbd.d/"


@dataclass(frozen=True)
class Changes:
    create: tuple[Volume, ...]
    grow: tuple[Volume, ...]
    delete: tuple[str, ...]
    cib_changed: bool = False


def boxes_for(config: Config, runner: Runner, here: str | None = None) -> Boxes:
    """The boxes, reached over the first cluster link."""
    link = config.cluster.networks_with(NetworkRole.CLUSTER)[0].name
    return Boxes(runner, {n.name: n.address_on(link) for n in config.cluster.nodes}, here)


def boxes_from_desired(path: str, runner: Runner) -> Boxes | None:
    """The boxes of the desired state kept at ``path``; None off a cluster box."""
    try:
        return boxes_for(load_text(files.read_text(path), path), runner)
    except IscsihaError:
        return None


def apply(config: Config, text: str, pacemaker: Pacemaker, boxes: Boxes,
          confirmed_deletes: frozenset[str], progress: Progress) -> Changes:
    live = pacemaker.query()
    live_slots = previous_slots(live)
    plan = make_plan(config, live_slots, _authkey())
    desired = {v.name: v for v in config.volumes}
    create = tuple(v for v in config.volumes if v.name not in live_slots)
    delete = tuple(sorted(set(live_slots) - set(desired)))
    _check_deletes(delete, confirmed_deletes, exported_volumes(live))

    progress(f"checking both boxes ({', '.join(boxes.names)})")
    facts = boxes.on_both("facts", {
        "vgs": sorted({v.volume_group for v in config.volumes}),
        "volumes": [(v.name, v.volume_group) for v in config.volumes],
        "drbd": sorted(set(live_slots) & set(desired)),
    })
    grow = _check_facts(config, create, facts)

    made = False
    try:
        if create:
            progress(f"creating {len(create)} volume(s) on both boxes: "
                     f"{', '.join(v.name for v in create)}")
            files = _drbd_files(plan, boxes.here, {v.name for v in create})
            made = True
            boxes.on_both("create-volumes", {
                "files": files,
                "volumes": [(v.name, v.volume_group, v.size) for v in create]})
            names = {"volumes": [v.name for v in create]}
            boxes.step(boxes.here, "skip-sync", names)
            boxes.on_both("down", names)
        progress("writing DRBD resource files and secrets on both boxes")
        res_files = _drbd_files(plan, boxes.here, set(desired))
        written = boxes.on_both("write-files", {"files": [(p, c, 0o600) for p, c in res_files]})
        rewritten = {path for paths in written.values() for path in paths}
        running = sorted(name for name in set(desired) - {v.name for v in create}
                         if f"{DRBD_FILES}{name}.res" in rewritten)
        if running:
            progress(f"adjusting DRBD to the rewritten files: {', '.join(running)}")
            boxes.on_both("adjust", {"volumes": running})
        secrets: dict[str, dict[str, str]] = {}
        for (rsc, param), value in plan.secrets.items():
            secrets.setdefault(rsc, {})[param] = str(value)
        boxes.on_both("write-secrets", {"secrets": secrets})
        progress("updating the cluster configuration (one versioned CIB patch)")
        changed = _patch(pacemaker, _keep_stopped(plan.cib, live, delete), live)
    except IscsihaError as exc:
        if made:
            progress("failed: removing the volumes this apply created")
            _undo(boxes, create, exc)
        raise
    try:
        if grow:
            progress(f"growing {', '.join(f'{v.name} to {v.size} bytes' for v in grow)}")
            boxes.on_both("grow-volumes", {"volumes": [(v.name, v.volume_group, v.size)
                                                       for v in grow]})
            boxes.step(boxes.here, "drbd-resize", {"volumes": [v.name for v in grow]})
        if delete:
            # Stopping takes a few seconds per volume (a demote, a stop and
            # notifications for each), so the wait scales with how many go.
            settle = 120.0 + 30.0 * len(delete)
            progress(f"waiting for the cluster to stop {', '.join(delete)}")
            pacemaker.wait(timeout=settle)
            _patch(pacemaker, plan.cib, pacemaker.query())
            pacemaker.wait(timeout=settle)
            progress(f"deleting {', '.join(delete)} on both boxes")
            boxes.on_both("delete-volumes", {"volumes": list(delete)})
        boxes.on_both("write-files", {"files": [(DESIRED_PATH, text, 0o600)]})
    except IscsihaError as exc:
        raise IscsihaError([*exc.reports, Report(
            PARTLY_APPLIED, "apply", "after the CIB patch", "apply run again to finish",
            "the cluster configuration was changed; the steps after it did not all finish")]
        ) from exc
    return Changes(create, grow, delete, changed)


def _patch(pacemaker: Pacemaker, fragment: str, read: str) -> bool:
    """Patch the CIB to hold ``fragment``, as long as its configuration is still the one
    read as ``read`` (status updates in between are fine)."""
    def change(live: str) -> str:
        if _epochs(live) != _epochs(read):
            raise IscsihaError.single(
                "cib-changed", "CIB", " ".join(_epochs(live)), " ".join(_epochs(read)),
                "the cluster configuration changed while applying; nothing more was "
                "changed: check `iscsiha status` and apply again")
        return merge(live, fragment)

    return pacemaker.update(change)


def _epochs(cib_xml: str) -> tuple[str, str]:
    root = ET.fromstring(cib_xml)
    return root.get("admin_epoch", "0"), root.get("epoch", "0")


def _keep_stopped(fragment: str, live: str, volumes: tuple[str, ...]) -> str:
    """``fragment`` plus the live clones of ``volumes``, told to stop."""
    if not volumes:
        return fragment
    root = ET.fromstring(fragment)
    resources = root.find("resources")
    assert resources is not None
    for clone in ET.fromstring(live).iter("clone"):
        if clone.get("id") in {drbd_clone_id(v) for v in volumes}:
            meta = clone.find("meta_attributes")
            if meta is None:
                meta = ET.SubElement(clone, "meta_attributes", id=f"{clone.get('id')}-meta")
            for nv in [nv for nv in meta if nv.get("name") == "target-role"]:
                meta.remove(nv)
            ET.SubElement(meta, "nvpair", id=f"{meta.get('id')}-target-role",
                          name="target-role", value="Stopped")
            resources.append(clone)
    return ET.tostring(root, encoding="unicode")


def exported_volumes(cib_xml: str) -> dict[str, str]:
    """Volume -> the resource of the target that exports it, in a CIB."""
    found = {}
    for prim in ET.fromstring(cib_xml).iter("primitive"):
        if prim.get("provider") == "iscsiha" and prim.get("type") == "target":
            params = nvpairs(prim.find("instance_attributes"))
            for lun in decode_luns(params.get("luns", "")):
                found[lun.volume] = prim.get("id", "?")
    return found


def _check_deletes(delete: tuple[str, ...], confirmed: frozenset[str],
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


def _check_facts(config: Config, create: tuple[Volume, ...],
                 facts: Mapping[str, Any]) -> tuple[Volume, ...]:
    reports: list[Report] = []
    grow: dict[str, Volume] = {}
    for node, f in facts.items():
        need: dict[str, int] = {}
        for v in config.volumes:
            free, extent = f["vgs"][v.volume_group]
            size = -(-v.size // extent) * extent  # LVM rounds up to whole extents
            current = f["lvs"][v.name]
            if v in create:
                if current is not None:
                    reports.append(Report(
                        "volume-exists", "volume", v.name, "a name no LV on either box has",
                        f"{node} already has {v.lv_path} outside the cluster"))
                need[v.volume_group] = need.get(v.volume_group, 0) + size
            elif current is None:
                reports.append(Report("volume-missing", "volume", v.name,
                                      "an LV on both boxes", f"{v.lv_path} is gone on {node}"))
            elif current > size:
                reports.append(Report(
                    "volume-shrink", "size", f"{v.name}: {v.size}",
                    f"at least the current {current} bytes",
                    "shrinking would cut off data; make a new, smaller volume instead"))
            elif current < size:
                grow[v.name] = v
                need[v.volume_group] = need.get(v.volume_group, 0) + size - current
                role, connection, disk, peer = f["drbd"].get(v.name, ["?"] * 4)
                if connection != "Connected" or disk != "UpToDate" or peer != "UpToDate":
                    reports.append(Report(
                        "volume-not-replicating", "volume", v.name,
                        "connected and up to date on both boxes to grow",
                        f"DRBD on {node} is {role}, {connection}, {disk}/{peer}"))
        for vg, bytes_needed in need.items():
            free = f["vgs"][vg][0]
            if bytes_needed > free:
                reports.append(Report("no-space", "volume_group", f"{node}:{vg}",
                                      f"at most {free} bytes more",
                                      f"needs {bytes_needed} bytes"))
    if reports:
        raise IscsihaError(reports)
    return tuple(grow[name] for name in sorted(grow))


def _authkey() -> bytes:
    key = files.read(AUTHKEY_PATH)
    if not key:
        raise IscsihaError.single("missing-authkey", "file", AUTHKEY_PATH,
                                  "the cluster's corosync authkey, present on both boxes",
                                  "is missing or empty: is this box a cluster member?")
    return key


def _drbd_files(plan: Plan, node: str, volumes: set[str]) -> list[tuple[str, str]]:
    return [(f.path, f.content) for f in plan.node_files[node]
            if f.path.startswith(DRBD_FILES) and f.path[len(DRBD_FILES):-4] in volumes]


def _undo(boxes: Boxes, create: tuple[Volume, ...], cause: IscsihaError) -> None:
    try:
        boxes.on_both("delete-volumes", {"volumes": [v.name for v in create]})
    except IscsihaError as exc:
        raise IscsihaError([*cause.reports, Report(
            "undo-failed", "volumes", ", ".join(v.name for v in create),
            "removed again after a failed apply",
            "could not be removed; remove them by hand (lvremove) before retrying",
        ), *exc.reports]) from exc
