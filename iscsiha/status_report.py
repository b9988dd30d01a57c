"""The cluster's health for machines: a verdict with its reasons, the exit code a
monitoring system reads (as Nagios plugins do), and `iscsiha status --json`.

The JSON's layout is versioned (SCHEMA); docs/status.md describes it. A field is only
ever added within a version; renaming or removing one makes a new version.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from iscsiha.commands.targets import ClusterStatus, Fencing, VolumeStatus
from iscsiha.executors.drbd import ProcDevice
from iscsiha.views import replicating

SCHEMA = 1


class Health(Enum):
    """Worst first; the value is the exit code."""

    NOT_SERVING = 2  # a target is not served, or this box's side cannot serve
    DEGRADED = 1  # everything is served, but one more fault would cost service or data
    HEALTHY = 0
    UNKNOWN = 3  # the cluster could not be asked (Nagios' UNKNOWN)

    @property
    def word(self) -> str:
        return self.name.lower().replace("_", "-")


def assess(state: ClusterStatus) -> tuple[Health, tuple[str, ...]]:
    """The verdict and every reason for it, most serious first."""
    down: list[str] = []
    if state.quorate is not True:
        down.append("this box's side has no quorum" if state.quorate is False
                    else "no cluster controller elected yet")
    for t in state.targets:
        if not t.running_on:
            down.append(f"target {t.name} is stopped")
        elif len(t.running_on) > 1:  # parts of it on each box: no box serves all of it
            down.append(f"target {t.name} runs on {' and '.join(t.running_on)} at once")
        elif not t.healthy:
            down.append(f"target {t.name} is not fully started on {', '.join(t.running_on)}")
    weak = [f"node {name} is offline" for name, online in state.nodes if not online]
    weak += [f"node {name} is in standby" for name, online in state.nodes
             if online and name in state.standby]
    if state.fencing is not None and not state.fencing.ready:
        weak.append(f"fencing is not ready ({_fencing_problem(state.fencing)})")
    for v in state.volumes:
        problem = _replication_problem(v)
        if problem:
            weak.append(f"volume {v.name} {problem}")
    if down:
        return Health.NOT_SERVING, tuple(down + weak)
    if weak:
        return Health.DEGRADED, tuple(weak)
    return Health.HEALTHY, ()


def _fencing_problem(fencing: Fencing) -> str:
    if not fencing.enabled:
        return "stonith-enabled is false"
    if not fencing.devices:
        return "no fence device"
    parts = [f"{d} stopped" for d, on in fencing.devices if not on]
    parts += [f"{d} failing its monitor" for d in sorted(fencing.failing)]
    return ", ".join(parts)


def _replication_problem(volume: VolumeStatus) -> str | None:
    dev = volume.drbd
    if dev is None or replicating(volume):
        return None  # healthy, or this box has no DRBD view (the roles tell where it runs)
    if dev.synced_percent is not None:
        return f"is resyncing ({dev.connection}, {dev.synced_percent:.1f}%)"
    return f"is not replicated ({dev.connection}, {dev.disk}/{dev.peer_disk})"


def as_json(state: ClusterStatus) -> dict[str, Any]:
    health, reasons = assess(state)
    fencing = state.fencing
    return {
        "schema": SCHEMA,
        "health": health.word,
        "exit_code": health.value,
        "reasons": list(reasons),
        "quorate": state.quorate,
        "nodes": [{"name": name, "online": online, "standby": name in state.standby}
                  for name, online in state.nodes],
        "fencing": None if fencing is None else {
            "enabled": fencing.enabled,
            "ready": fencing.ready,
            "devices": [{"name": d, "running_on": on, "failing": d in fencing.failing}
                        for d, on in fencing.devices],
        },
        "targets": [{
            "name": t.name, "iqn": t.iqn, "running_on": list(t.running_on),
            "preferred_node": t.preferred, "failback": t.failback, "healthy": t.healthy,
            "sessions": None if t.sessions is None else list(t.sessions),
        } for t in state.targets],
        "volumes": [{
            "name": v.name,
            "roles": [{"node": node, "role": role} for node, role in v.roles],
            "replication": None if v.drbd is None else _drbd(v.drbd),
        } for v in state.volumes],
        "pools": [{
            "name": p.name, "volume_group": p.volume_group, "node": p.node,
            "size_bytes": p.size, "data_percent": p.data_percent,
            "metadata_percent": p.metadata_percent,
        } for p in state.pools],
    }


def _drbd(dev: ProcDevice) -> dict[str, Any]:
    return {
        "connection": dev.connection, "role": dev.role, "peer_role": dev.peer_role,
        "disk": dev.disk, "peer_disk": dev.peer_disk,
        "out_of_sync_bytes": dev.out_of_sync_kib * 1024,
        "resync_percent": dev.synced_percent, "resync_seconds_left": dev.finish_seconds,
    }
