"""The steps `iscsiha apply` and `iscsiha split-brain` run on each box (`iscsiha node
STEP`, JSON in and out).

Each step is idempotent where it can be, so a repeated or rolled-back apply
converges. Volumes are (name, volume group, size in bytes).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iscsiha.errors import IscsihaError
from iscsiha.executors import files
from iscsiha.executors.drbd import DOWN, UNCONFIGURED, Drbd
from iscsiha.executors.lio import Lio, refused_initiators
from iscsiha.executors.lvm import Lvm
from iscsiha.executors.runner import Runner

SECRETS_DIR = "/var/lib/pacemaker/lrm/secrets"  # where Pacemaker resolves lrm:// values
DESIRED_PATH = "/etc/iscsiha/desired.toml"
_WRITABLE = (re.compile(r"/etc/drbd\.d/[a-z][a-z0-9-]*\.res"), re.compile(re.escape(DESIRED_PATH)))


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
    """What apply checks before changing anything: LV sizes, VG space, DRBD states."""
    return {
        "vgs": {vg: box.lvm.free_and_extent(vg) for vg in args["vgs"]},
        "lvs": {name: box.lvm.size(vg, name) for name, vg in args["volumes"]},
        "drbd": {name: list(vars(box.drbd.state(name)).values()) for name in args["drbd"]},
    }


def create_volumes(box: Box, args: dict[str, Any]) -> None:
    """LV, resource file, DRBD metadata, then up (waiting for the peer)."""
    write_files(box, {"files": [(path, content, 0o644) for path, content in args["files"]]})
    for name, vg, size in args["volumes"]:
        box.lvm.create(vg, name, size)
        box.drbd.create_md(name)
        box.drbd.up(name)


def skip_sync(box: Box, args: dict[str, Any]) -> None:
    for name in args["volumes"]:
        box.drbd.wait_connected(name, timeout=60.0)
        box.drbd.skip_initial_sync(name)


def down(box: Box, args: dict[str, Any]) -> None:
    """Hand the resources to Pacemaker, which brings them up itself."""
    for name in args["volumes"]:
        box.drbd.down(name)


def delete_volumes(box: Box, args: dict[str, Any]) -> None:
    """DRBD down, LV and resource file gone; tolerates any part already gone."""
    for name in args["volumes"]:
        res = f"/etc/drbd.d/{name}.res"
        disk = None
        if os.path.exists(res):
            disk = box.drbd.backing_device(name)
            if box.drbd.state(name).role != "Unconfigured":
                box.drbd.down(name)
            files.remove(res)
        if disk and disk.startswith("/dev/") and os.path.exists(disk):
            vg, lv = disk.split("/")[2:4]
            box.lvm.remove(vg, lv)


def grow_volumes(box: Box, args: dict[str, Any]) -> None:
    for name, vg, size in args["volumes"]:
        current = box.lvm.size(vg, name)
        if current is not None and current < size:
            box.lvm.extend(vg, name, size)


def drbd_resize(box: Box, args: dict[str, Any]) -> None:
    for name in args["volumes"]:
        box.drbd.resize(name)


def write_files(box: Box, args: dict[str, Any]) -> list[str]:
    """Write the files that differ; their paths."""
    bad = [path for path, _, _ in args["files"] if not any(p.fullmatch(path) for p in _WRITABLE)]
    if bad:
        raise IscsihaError.single("path-not-writable", "path", ", ".join(bad),
                                  "DRBD resource files or the desired state")
    return [path for path, content, mode in args["files"]
            if files.write_if_changed(path, content.encode(), int(mode))]


def adjust(box: Box, args: dict[str, Any]) -> None:
    """Running resources take their rewritten files; stopped ones read them at start."""
    for name in args["volumes"]:
        if box.drbd.state(name) != DOWN:
            box.drbd.adjust(name)


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
    """Each volume's DRBD state, generation identifiers and kernel lines (volume -> minor)."""
    proc = box.drbd.proc()
    kernel = box.drbd.kernel_log()
    return {name: box.drbd.detail(name, int(minor), proc, kernel).to_json()
            for name, minor in args["volumes"].items()}


def split_brain_discard(box: Box, args: dict[str, Any]) -> list[str]:
    """This box gives up its changes: disconnect, Secondary, connect discarding its data.

    Refuses a Primary (checked again here, at the moment it counts): demoting it
    would take the volume from under its target. The commands run, in order.
    """
    name, node = args["volume"], args["node"]
    now = box.drbd.proc().get(int(args["minor"]), UNCONFIGURED)
    if now.role != "Secondary":
        raise IscsihaError.single(
            "discard-side-not-secondary", "node", node, "a box where the volume is Secondary",
            f"{name} is {now.role} on {node}: nothing was changed")
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
    name = args["volume"]
    if box.drbd.proc().get(int(args["minor"]), UNCONFIGURED).connection != "StandAlone":
        return []  # already waiting for the peer (WFConnection) or talking to it
    box.drbd.connect(name)
    return [f"drbdadm connect {name}"]


STEPS: dict[str, Callable[[Box, dict[str, Any]], Any]] = {
    "facts": facts,
    "create-volumes": create_volumes,
    "skip-sync": skip_sync,
    "down": down,
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
