"""The steps `iscsiha apply` and `iscsiha split-brain` run on each box (`iscsiha node
STEP`, JSON in and out).

Each step is idempotent where it can be, so a repeated or rolled-back apply
converges. Volumes are (name, volume group, size in bytes).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iscsiha.errors import IscsihaError
from iscsiha.executors import files
from iscsiha.executors.drbd import DOWN, UNCONFIGURED, Drbd
from iscsiha.executors.lio import Lio, refused_initiators
from iscsiha.executors.lvm import Lvm
from iscsiha.executors.runner import Runner
from iscsiha.plan.drbd import resource_path

SECRETS_DIR = "/var/lib/pacemaker/lrm/secrets"  # where Pacemaker resolves lrm:// values
DESIRED_PATH = "/etc/iscsiha/desired.toml"
_WRITABLE = (re.compile(r"/etc/drbd\.d/[a-z][a-z0-9-]*\.res"),
             re.compile(re.escape(DESIRED_PATH)))


@dataclass(frozen=True)
class Box:
    runner: Runner
    read: Callable[[str], str] = files.read_text  # kernel files (/proc/drbd)

    @property
    def lvm(self) -> Lvm:
        return Lvm(self.runner)

    @property
    def drbd(self) -> Drbd:
        return Drbd(self.runner, self.read)


def facts(box: Box, args: dict[str, Any]) -> dict[str, Any]:
    """What apply checks before changing anything: the cluster's LVs (tagged), LV
    sizes, VG space, and exported volumes' DRBD states (volume -> minor)."""
    proc = box.drbd.proc()
    return {
        "vgs": {vg: box.lvm.free_and_extent(vg) for vg in args["vgs"]},
        "lvs": {name: box.lvm.size(vg, name) for name, vg in args["volumes"]},
        "tagged": box.lvm.tagged(),
        "drbd": {name: [d.role, d.connection, d.disk, d.peer_disk]
                 for name, minor in args["drbd"].items()
                 for d in [proc.get(int(minor), UNCONFIGURED)]},
    }


def create_volumes(box: Box, args: dict[str, Any]) -> None:
    """The LVs alone: DRBD metadata comes when a target first exports one."""
    for name, vg, size in args["volumes"]:
        box.lvm.create(vg, name, size)


def drbd_metadata(box: Box, args: dict[str, Any]) -> list[str]:
    """DRBD metadata on the RES/NUMBER volumes whose disks have none yet; those."""
    made = []
    for volume in args["volumes"]:
        if not box.drbd.has_metadata(volume):
            box.drbd.create_md(volume)
            made.append(volume)
    return made


def up(box: Box, args: dict[str, Any]) -> None:
    """Bring resources up (to prepare them before Pacemaker takes them over)."""
    for res in args["resources"]:
        if box.drbd.state(res) == DOWN:
            box.drbd.up(res)


def sync_new(box: Box, args: dict[str, Any]) -> list[str]:
    """Once connected, declare never-written volumes in sync (no initial full sync).

    ``volumes`` is [RES/NUMBER, minor] pairs. Only a volume Inconsistent on both sides
    is touched, and DRBD itself allows the clear-bitmap path only on metadata that
    was never used, so a volume with history is never declared in sync.
    """
    deadline = time.monotonic() + float(args.get("timeout", 60.0))
    skipped = []
    for volume, minor in args["volumes"]:
        while (now := box.drbd.proc().get(int(minor), UNCONFIGURED)).connection != "Connected":
            if time.monotonic() > deadline:
                raise IscsihaError.single(
                    "drbd-not-connected", "volume", volume, "connected to the peer",
                    f"still {now.connection}: check the replication link")
            time.sleep(0.5)
        if now.disk == now.peer_disk == "Inconsistent":
            box.drbd.skip_initial_sync(volume)
            skipped.append(volume)
    return skipped


def down(box: Box, args: dict[str, Any]) -> None:
    """Hand the resources to Pacemaker, which brings them up itself."""
    for res in args["resources"]:
        if box.drbd.state(res) != DOWN:
            box.drbd.down(res)


def drbd_role(box: Box, args: dict[str, Any]) -> None:
    """Promote or demote single RES/NUMBER volumes of a resource whose role Pacemaker
    holds (volumes joining or leaving a Primary resource)."""
    for volume in args["volumes"]:
        if args["role"] == "primary":
            box.drbd.primary(volume)
        else:
            box.drbd.secondary(volume)


def remove_resources(box: Box, args: dict[str, Any]) -> None:
    """Deleted targets' resources: down (if Pacemaker left them up) and their files gone."""
    for res in args["resources"]:
        path = resource_path(res)
        if os.path.exists(path):
            if box.drbd.state(res) != DOWN:
                box.drbd.down(res)
            files.remove(path)


def delete_volumes(box: Box, args: dict[str, Any]) -> None:
    """The cluster's LVs (in no DRBD resource any more); tolerates any already gone."""
    tagged = box.lvm.tagged()
    for name, vg in args["volumes"]:
        if tagged.get(name) == vg:
            box.lvm.remove(vg, name)


def grow_volumes(box: Box, args: dict[str, Any]) -> None:
    for name, vg, size in args["volumes"]:
        current = box.lvm.size(vg, name)
        if current is not None and current < size:
            box.lvm.extend(vg, name, size)


def drbd_resize(box: Box, args: dict[str, Any]) -> None:
    """DRBD takes the grown disks (RES/NUMBER volumes), moving its metadata to the end."""
    for volume in args["volumes"]:
        box.drbd.resize(volume)


def write_files(box: Box, args: dict[str, Any]) -> list[str]:
    """Write the files that differ; their paths."""
    bad = [path for path, _, _ in args["files"] if not any(p.fullmatch(path) for p in _WRITABLE)]
    if bad:
        raise IscsihaError.single("path-not-writable", "path", ", ".join(bad),
                                  "DRBD resource files or the desired state")
    return [path for path, content, mode in args["files"]
            if files.write_if_changed(path, content.encode(), int(mode))]


def adjust(box: Box, args: dict[str, Any]) -> None:
    """Running resources take their rewritten files (options, peer secret, volumes
    added or removed); stopped ones read them at start."""
    for res in args["resources"]:
        if box.drbd.state(res) != DOWN:
            box.drbd.adjust(res)


def write_secrets(box: Box, args: dict[str, Any]) -> None:
    """Pacemaker's lrm:// store: the value and its MD5 (how cibsecret lays it out)."""
    for rsc, params in args["secrets"].items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", rsc):
            raise IscsihaError.single("bad-resource-id", "resource", rsc, "a CIB resource id")
        folder = f"{SECRETS_DIR}/{rsc}"
        os.makedirs(folder, mode=0o700, exist_ok=True)
        for param, value in params.items():
            files.write_atomic(f"{folder}/{param}", value.encode(), 0o600)
            digest = hashlib.md5(value.encode(), usedforsecurity=False).hexdigest()
            files.write_atomic(f"{folder}/{param}.sign", digest.encode(), 0o600)


def target_sessions(box: Box, args: dict[str, Any]) -> dict[str, list[str]]:
    """Target IQN -> initiators logged in to it on this box."""
    lio = Lio()
    return {iqn: list(lio.sessions(iqn)) for iqn in args["iqns"]}


def seen_initiators(box: Box, args: dict[str, Any]) -> list[str]:
    """Initiators that tried to log in here and were refused (not in an ACL)."""
    return list(refused_initiators(box.drbd.kernel_log()))


def split_brain_facts(box: Box, args: dict[str, Any]) -> dict[str, Any]:
    """Each volume's DRBD state, generation identifiers and kernel lines (volume ->
    [RESOURCE/NUMBER, minor])."""
    proc = box.drbd.proc()
    kernel = box.drbd.kernel_log()
    return {name: box.drbd.detail(ref, int(minor), proc, kernel).to_json()
            for name, (ref, minor) in args["volumes"].items()}


def split_brain_discard(box: Box, args: dict[str, Any]) -> list[str]:
    """This box gives up its changes: disconnect, Secondary, connect discarding its data.

    Refuses a Primary (checked again here, at the moment it counts): demoting it
    would take the volume from under its target. The commands run, in order.
    """
    name, node = args["resource"], args["node"]
    now = box.drbd.proc().get(int(args["minor"]), UNCONFIGURED)
    if now.role != "Secondary":
        raise IscsihaError.single(
            "discard-side-not-secondary", "node", node, "a box where the volume is Secondary",
            f"target {name}'s DRBD resource is {now.role} on {node}: nothing was changed")
    ran = []
    # 8.4 refuses to disconnect a StandAlone resource ("unknown connection"): it has
    # no connection left to drop.
    if now.connection != "StandAlone":
        box.drbd.disconnect(name)
        ran.append(f"drbdadm disconnect {name}")
    box.drbd.secondary(name)
    box.drbd.connect(name, discard_my_data=True)
    return [*ran, f"drbdadm secondary {name}", f"drbdadm connect --discard-my-data {name}"]


def split_brain_connect(box: Box, args: dict[str, Any]) -> list[str]:
    """The kept box connects again if DRBD gave up on its peer (StandAlone)."""
    name = args["resource"]
    if box.drbd.proc().get(int(args["minor"]), UNCONFIGURED).connection != "StandAlone":
        return []  # already waiting for the peer (WFConnection) or talking to it
    box.drbd.connect(name)
    return [f"drbdadm connect {name}"]


STEPS: dict[str, Callable[[Box, dict[str, Any]], Any]] = {
    "facts": facts,
    "create-volumes": create_volumes,
    "drbd-metadata": drbd_metadata,
    "up": up,
    "sync-new": sync_new,
    "down": down,
    "drbd-role": drbd_role,
    "remove-resources": remove_resources,
    "delete-volumes": delete_volumes,
    "grow-volumes": grow_volumes,
    "drbd-resize": drbd_resize,
    "write-files": write_files,
    "adjust": adjust,
    "write-secrets": write_secrets,
    "target-sessions": target_sessions,
    "seen-initiators": seen_initiators,
    "split-brain-facts": split_brain_facts,
    "split-brain-discard": split_brain_discard,
    "split-brain-connect": split_brain_connect,
}
