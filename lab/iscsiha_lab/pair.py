"""The lab's two boxes as the fault scenarios see them: the desired state they share,
`iscsiha` run on a box, and what "healthy" means (both online, every volume
Connected and UpToDate on both, one Primary each, every target running)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iscsiha.errors import IscsihaError
from iscsiha.model.toml_dump import dumps
from iscsiha_lab import db_load
from iscsiha_lab.desired import cluster_data
from iscsiha_lab.guest import GuestResult
from iscsiha_lab.initiator import MUTUAL, Initiator, iqn, wait_for
from iscsiha_lab.lab import Lab

BOXES = ("san-a", "san-b")
DESIRED = "/root/desired.toml"
# alpha fails back by hand, beta on its own: both policies under every fault. Each has
# a portal on both storage networks: the initiator reaches its LUNs by two paths.
TARGETS = {"alpha": (("10.99.30.110", "10.99.31.110"), "san-a", "manual"),
           "beta": (("10.99.30.111", "10.99.31.111"), "san-b", "auto")}
# Every replicated volume, in MiB: each target's LUN 0 (the block verifier's) and the
# database workload's LUN 1 of alpha.
VOLUME_MIB = {**{name: 32 for name in TARGETS}, db_load.VOLUME: db_load.SIZE_MIB}
# Each volume as DRBD names it, RESOURCE/NUMBER: numbered in LUN order in its target's
# resource, which also holds the target's reservations volume.
VOLUME_REF = {**{name: f"{name}/0" for name in TARGETS},
              db_load.VOLUME: f"{db_load.TARGET}/{db_load.LUN}"}
RECOVERY = 420.0  # a fenced box reboots, rejoins and resyncs within this

# What docs/initiators.md recommends for Linux initiators with dm-multipath: a path that
# stops answering is failed to multipath within seconds, which sends the I/O down the
# other path; while no path works (a failover) multipath queues it (no_path_retry).
INITIATOR_SETTINGS = {
    "node.session.timeo.replacement_timeout": "5",
    "node.conn[0].timeo.noop_out_interval": "3",
    "node.conn[0].timeo.noop_out_timeout": "5",
    "node.session.iscsi.DefaultTime2Wait": "0",
}


class CheckFailed(AssertionError):
    """The pair is not as a scenario needs it (pytest shows it as a failed assertion)."""


def apply(lab: Lab, data: dict[str, Any], *extra: str, box: str = "san-a",
          timeout: float = 600) -> GuestResult:
    lab.exec(box, ["sh", "-c", f"umask 077; cat > {DESIRED}"], input=dumps(data)).check()
    # --yes: the scenarios drop targets and LUNs on purpose, as an admin's script would.
    return lab.exec(box, ["iscsiha", "apply", DESIRED, "--yes", *extra], timeout=timeout)


def iscsiha(lab: Lab, *argv: str, box: str = "san-a", timeout: float = 600) -> GuestResult:
    return lab.exec(box, ["iscsiha", *argv], timeout=timeout)


def failover_desired(lab: Lab, initiator_iqn: str, alerts_url: str | None = None
                     ) -> dict[str, Any]:
    """The failover scenarios' targets; with ``alerts_url``, alerts go to that webhook."""
    data = cluster_data(lab)
    if alerts_url is not None:
        data["alerts"] = {"recipients": [{"name": "lab-monitor", "kind": "webhook",
                                          "url": alerts_url}]}
    data["volumes"] = [{"name": name, "size": f"{mib}M"} for name, mib in VOLUME_MIB.items()]
    data["targets"] = [
        {"name": name, "iqn": iqn(name), "portals": list(portals), "preferred_node": node,
         "failback": failback, "initiators": [initiator_iqn], "auth": MUTUAL,
         "luns": [{"lun": 0, "volume": name}, *_db_luns(name)]}
        for name, (portals, node, failback) in TARGETS.items()]
    return data


def _db_luns(target: str) -> list[dict[str, Any]]:
    return [{"lun": db_load.LUN, "volume": db_load.VOLUME}] if target == db_load.TARGET else []


def _applied(result: GuestResult) -> None:
    if not result.ok:
        raise CheckFailed(result.out + result.err)


def converge(lab: Lab, data: dict[str, Any], box: str = "san-a") -> None:
    """Apply ``data`` on ``box``, deleting whatever volumes earlier runs left: targets
    first (a volume still exported is never deleted), then the volumes."""
    # The cluster's LVs only (tagged): not the targets' reservations LVs.
    out = lab.exec(box, ["lvs", "--noheadings", "--units", "m", "--nosuffix", "--separator",
                         ",", "-o", "lv_name,lv_size,segtype,pool_lv", "@iscsiha"]).check().out
    rows = [[field.strip() for field in line.split(",")] for line in out.splitlines()
            if line.strip()]
    wanted = {v["name"] for v in data["volumes"]}
    pools = {name: f"{float(size):.0f}M" for name, size, segtype, _ in rows
             if segtype == "thin-pool"}
    # A thin pool is no volume: a thin one left over is kept in its pool until deleted.
    extra = {name: {"name": name, "size": f"{float(size):.0f}M",
                    **({"pool": pool} if pool else {})}
             for name, size, segtype, pool in rows
             if name not in wanted and segtype != "thin-pool"}
    # apply waits up to twice 120 + 30 s per deleted volume for the cluster to settle;
    # creating volumes takes longer the more there are.
    timeout = 600.0 + 60.0 * len(extra) + 30.0 * len(data["volumes"])
    deletes = [arg for name in extra for arg in ("--delete", name)]
    if extra:
        known = {p["name"] for p in data.get("pools", [])}
        needed = {v["pool"] for v in extra.values() if "pool" in v} - known
        keep = dict(data, volumes=[*data["volumes"], *extra.values()])
        if needed:
            keep["pools"] = [*data.get("pools", []), *(
                {"name": p, "size": pools[p], "overcommit": True} for p in sorted(needed))]
        _applied(apply(lab, keep, box=box, timeout=timeout))
        if needed:  # the thin volumes go while their pools are still in the desired state
            _applied(apply(lab, dict(keep, volumes=data["volumes"]), *deletes, box=box,
                           timeout=timeout))
            deletes = []
    _applied(apply(lab, data, *deletes, box=box, timeout=timeout))


def ask(lab: Lab, box: str, argv: list[str], timeout: float = 30) -> str | None:
    """A command's output, or None when the box is down, frozen or the command failed:
    during a fault one box may not answer."""
    try:
        result = lab.exec(box, argv, timeout=timeout)
    except IscsihaError:
        return None
    return result.out if result.ok else None


def status_of(lab: Lab, box: str) -> dict[str, Any] | None:
    """`iscsiha status --json` on the box, or None when it does not answer. Its exit
    code is the cluster's health (0-2), not whether it answered."""
    try:
        result = lab.exec(box, ["iscsiha", "status", "--json"], timeout=30)
    except IscsihaError:
        return None
    if result.returncode not in (0, 1, 2):
        return None
    try:
        data = json.loads(result.out)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def target_on(lab: Lab, name: str) -> str | None:
    """Where the target runs, fully started, asked of whichever box answers."""
    for box in BOXES:
        data = status_of(lab, box)
        if data is None:
            continue
        for target in data.get("targets", []):
            if target.get("name") == name:
                running = target.get("running_on") or []
                return running[0] if target.get("healthy") and len(running) == 1 else None
    return None


def other(box: str) -> str:
    return BOXES[1] if box == BOXES[0] else BOXES[0]


@dataclass
class DrbdView:
    role: str
    connection: str
    disks: str


def drbd(lab: Lab, box: str) -> dict[str, DrbdView]:
    script = "; ".join(f"echo {v} $(drbdadm role {ref}) $(drbdadm cstate {ref}) "
                       f"$(drbdadm dstate {ref})" for v, ref in VOLUME_REF.items())
    views = {}
    for line in (ask(lab, box, ["sh", "-c", script]) or "").splitlines():
        words = line.split()
        if len(words) == 4:
            views[words[0]] = DrbdView(words[1].split("/")[0], words[2], words[3])
    return views


def online(lab: Lab) -> set[str]:
    """The boxes both boxes see online (a partitioned pair has no agreement)."""
    views = [ask(lab, box, ["crm_mon", "-1", "--output-as=xml"]) for box in BOXES]
    seen = [set(re.findall(r'<node name="([^"]+)"[^>]* online="true"', v or ""))
            for v in views]
    return seen[0] & seen[1]


def unhealthy(lab: Lab) -> str:
    """What keeps the pair from healthy (both boxes online, every volume connected and
    UpToDate on both, one Primary each, every target running, automatic failback done);
    empty when nothing does."""
    up = online(lab)
    if up != set(BOXES):
        return f"online on both boxes' view: {sorted(up)}"
    views = [drbd(lab, box) for box in BOXES]
    for volume in VOLUME_MIB:
        pair = [v.get(volume) for v in views]
        if any(p is None or p.connection != "Connected" or p.disks != "UpToDate/UpToDate"
               for p in pair) or sorted(p.role for p in pair if p) != ["Primary", "Secondary"]:
            return f"{volume}: {dict(zip(BOXES, pair, strict=True))}"
    where = {t: target_on(lab, t) for t in TARGETS}
    for t, (_, node, failback) in TARGETS.items():
        if where[t] is None or (failback == "auto" and where[t] != node):
            return f"target {t} on {where[t]}"
    return ""


def healthy(lab: Lab) -> bool:
    return not unhealthy(lab)


def wait_healthy(lab: Lab, what: str, timeout: float = 300) -> None:
    """Wait for ``healthy``; on timeout say what was missing and how each box's cluster
    services stand, with their last log lines."""
    try:
        wait_for(what, lambda: healthy(lab), timeout=timeout)
    except AssertionError as exc:
        services = "sbd corosync corosync-qdevice pacemaker"
        boxes = "\n".join(f"--- {box}:\n" + (ask(lab, box, ["sh", "-c",
            f"systemctl is-active {services}; journalctl -q --no-pager -n 40 "
            + " ".join(f"-u {u}" for u in services.split())]) or "(no answer)")
            for box in BOXES)
        raise CheckFailed(f"{exc}; still missing: {unhealthy(lab)}\n{boxes}") from exc


def fence_constraints(lab: Lab, box: str) -> list[str]:
    """Constraints DRBD's fence-peer handler placed (and after-resync removes)."""
    out = ask(lab, box, ["cibadmin", "--query", "--scope", "constraints"]) or ""
    return re.findall(r'id="(drbd-fence-by-handler-[^"]+)"', out)


def fence_history(lab: Lab, node: str) -> str:
    """When Pacemaker last fenced ``node``, from the box that knows it."""
    return max((ask(lab, box, ["stonith_admin", "--last", node]) or "" for box in BOXES),
               key=len)


def fenced_after(lab: Lab, node: str, before: str) -> Callable[[], bool]:
    def check() -> bool:
        now = fence_history(lab, node)
        return now != before and "last fenced at" in now
    return check


def data_digests(lab: Lab, volume: str) -> set[str]:
    """sha256 of the replicated bytes on each box, read past any cache."""
    ref = VOLUME_REF[volume]
    sizes = [lab.exec(box, ["sh", "-c", f"drbdadm role {ref} | grep -q ^Primary && "
                                        f"blockdev --getsize64 $(drbdadm sh-dev {ref})"
                                        " || true"]).out.strip() for box in BOXES]
    (size,) = [s for s in sizes if s]
    return {lab.exec(box, ["sh", "-c", f"dd if=/dev/data/{volume} iflag=direct bs=1M "
                                       f"count={int(size)} iflag=count_bytes status=none "
                                       "| sha256sum"]).check().out.split()[0]
            for box in BOXES}


def clocks(lab: Lab) -> dict[str, int]:
    """Each box's own clock, in whole seconds since the epoch: where its log starts to count."""
    return {box: int(lab.exec(box, ["date", "+%s"]).check().out) for box in BOXES}


def split_brains(lab: Lab, since: dict[str, int]) -> list[str]:
    """Split brains the boxes' kernels logged from ``since`` on (see ``clocks``): an older
    one, such as the split-brain tests make on purpose, is not this fault's."""
    found = []
    for box in BOXES:
        out = kernel_log(lab, box, "split-brain", since=since[box])
        found += [f"{box}: {line}" for line in out.splitlines()]
    return found


def recovered(lab: Lab, since: dict[str, int], timeout: float = RECOVERY) -> None:
    """Healthy again, no split brain since ``since``, and the same bytes on both boxes."""
    wait_healthy(lab, "both boxes back, volumes UpToDate on both, every target running",
                 timeout=timeout)
    brains = split_brains(lab, since)
    if brains:
        raise CheckFailed(f"split brain: {brains}")
    for volume in VOLUME_MIB:
        if len(data_digests(lab, volume)) != 1:
            raise CheckFailed(f"{volume}: the two boxes hold different data")


def written_kib(lab: Lab, box: str) -> int:
    """KiB this box's DRBD devices wrote to their disks (the dw counter)."""
    out = lab.exec(box, ["cat", "/proc/drbd"]).check().out
    return sum(int(n) for n in re.findall(r"\bdw:(\d+)", out))


def resync_kib(lab: Lab, box: str) -> dict[str, int]:
    """KiB the resyncs from this box sent since it booted ("drbd RESOURCE/NUMBER ...:
    Began resync as SyncSource (will sync N KB"), by volume name (a reservations volume
    by its RESOURCE/NUMBER; "?" for a line naming none)."""
    names = {ref: volume for volume, ref in VOLUME_REF.items()}
    sent: dict[str, int] = {}
    for line in kernel_log(lab, box, "as SyncSource").splitlines():
        found = re.search(r"will sync (\d+) KB", line)
        if found:
            volume = re.search(r"\bdrbd ([^/\s]+/\d+) ", line)
            key = names.get(volume[1], volume[1]) if volume else "?"
            sent[key] = sent.get(key, 0) + int(found[1])
    return sent


def kernel_log(lab: Lab, box: str, text: str, since: int | None = None) -> str:
    """The lines of ``box``'s kernel log that hold ``text`` (any case), since it booted or,
    if later, since ``since`` on its clock. From the journal: the kernel's own 16 KiB
    buffer wraps within minutes of DRBD messages, and a soak then saw an old resync line
    leave as a new one came."""
    window = [] if since is None else [f"--since=@{since}"]
    return lab.exec(box, ["sh", "-c", 'p=$1; shift; journalctl -k -q --no-pager "$@" | '
                          'grep -i -F -e "$p" || true', "-", text, *window]).out


def login_all(initiator: Initiator) -> list[str]:
    """Every target through both its portals, under dm-multipath; the block verifier's
    devices (each target's LUN 0, its multipath map)."""
    initiator.multipath_on()
    devices = []
    for name, (portals, _, _) in TARGETS.items():
        paths = []
        for portal in portals:
            initiator.configure(iqn(name), portal)
            for key, value in INITIATOR_SETTINGS.items():
                initiator.run(*initiator.node(iqn(name), portal), "-o", "update", "-n", key,
                              "-v", value)
            paths.append(initiator.login(iqn(name), portal, 1 + len(_db_luns(name))))
        for lun in range(1 + len(_db_luns(name))):
            device = initiator.multipath_device([disks[lun] for disks in paths])
            if lun == 0:  # the block verifier's
                devices.append(device)
    return devices


def move(lab: Lab, target: str, node: str) -> None:
    _applied(iscsiha(lab, "target", "move", target, node))


def set_standby(lab: Lab, node: str, on: bool) -> None:
    """`iscsiha standby NODE` (or unstandby), asked on the other box."""
    _applied(iscsiha(lab, "standby" if on else "unstandby", node, box=other(node)))


def settle(lab: Lab, data: dict[str, Any]) -> None:
    """The pair converged on ``data`` (the failover targets), healthy, every target home."""
    converge(lab, data)
    wait_healthy(lab, "the pair healthy")
    for name, (_, preferred, _) in TARGETS.items():
        if target_on(lab, name) != preferred:
            move(lab, name, preferred)


def prepare(lab: Lab, initiator: Initiator, alerts_url: str | None = None) -> list[str]:
    """The pair converged on the failover state, healthy, every target home, the
    initiator logged in to all with a new filesystem mounted for the database workload;
    the block verifier's disks."""
    settle(lab, failover_desired(lab, initiator.iqn, alerts_url))
    disks = login_all(initiator)
    db_load.prepare(initiator)
    return disks


def logout_all(initiator: Initiator) -> None:
    db_load.release(initiator)
    initiator.multipath_off()
    initiator.try_run("sh", "-c", "iscsiadm -m node --logoutall=all; iscsiadm -m node -o delete")
