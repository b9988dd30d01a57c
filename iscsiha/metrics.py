"""The cluster's state as Prometheus metrics, in the text format that
prometheus-node-exporter's textfile collector reads (`iscsiha metrics --textfile`).

The same facts as `iscsiha status --json` (status_report), as numbers a monitor can
graph and alert on. Names start with iscsiha_; docs/status.md lists them.
"""

from __future__ import annotations

from collections.abc import Iterable

from iscsiha.commands.targets import ClusterStatus
from iscsiha.commands.verify_facts import Record
from iscsiha.status_report import assess

Sample = tuple[dict[str, str], float]


def render(state: ClusterStatus | None) -> str:
    """The metrics; with no state (the cluster could not be asked) only iscsiha_up 0."""
    out: list[str] = []
    metric(out, "up", "1 when the cluster could be asked, 0 when not (nothing else then)",
           [({}, 0 if state is None else 1)])
    if state is None:
        return "".join(out)
    health, _ = assess(state)
    metric(out, "health", "as `iscsiha status` exits: 0 healthy, 1 degraded, 2 not serving",
           [({}, health.value)])
    metric(out, "quorate", "1 when this box's side of the cluster has quorum",
           [({}, 1 if state.quorate else 0)])
    metric(out, "node_online", "1 when the node is an online cluster member",
           [({"node": n}, 1 if online else 0) for n, online in state.nodes])
    metric(out, "node_standby", "1 when the node is in standby (serves nothing)",
           [({"node": n}, 1 if n in state.standby else 0) for n, _ in state.nodes])
    if state.fencing is not None:
        fencing = state.fencing
        metric(out, "fencing_ready", "1 when every fence device runs and passes its monitor",
               [({}, 1 if fencing.ready else 0)])
        metric(out, "fence_device_running", "1 when the fence device runs (on node)",
               [({"device": d, "node": on or ""}, 1 if on else 0) for d, on in fencing.devices])
        metric(out, "fence_device_failing", "1 when the fence device's last monitor failed",
               [({"device": d}, 1 if d in fencing.failing else 0) for d, _ in fencing.devices])
    metric(out, "target_running", "1 on the node that serves the target",
           [({"target": t.name, "node": n}, 1) for t in state.targets for n in t.running_on])
    metric(out, "target_healthy", "1 when every part of the target runs, on one node",
           [({"target": t.name}, 1 if t.healthy and len(t.running_on) == 1 else 0)
            for t in state.targets])
    metric(out, "target_sessions", "initiators logged in to the target (with --sessions)",
           [({"target": t.name}, len(t.sessions)) for t in state.targets
            if t.sessions is not None])
    metric(out, "volume_primary", "1 on the node where the volume is Primary",
           [({"volume": v.name, "node": n}, 1) for v in state.volumes
            for n, role in v.roles if role in ("Promoted", "Master")])
    local = [(v.name, v.drbd) for v in state.volumes if v.drbd is not None]
    metric(out, "volume_connected", "1 when this box's DRBD is connected to the peer's",
           [({"volume": n}, 1 if d.connection == "Connected" else 0) for n, d in local])
    metric(out, "volume_up_to_date", "1 when the disk on that side is UpToDate",
           [({"volume": n, "side": side}, 1 if disk == "UpToDate" else 0)
            for n, d in local for side, disk in (("local", d.disk), ("peer", d.peer_disk))])
    metric(out, "volume_out_of_sync_bytes", "data the peer has yet to receive",
           [({"volume": n}, d.out_of_sync_kib * 1024) for n, d in local])
    metric(out, "volume_resync_ratio", "a running resync's progress, 0 to 1",
           [({"volume": n}, d.synced_percent / 100) for n, d in local
            if d.synced_percent is not None])
    pools = [({"pool": p.name, "volume_group": p.volume_group, "node": p.node}, p)
             for p in state.pools]
    metric(out, "pool_size_bytes", "a thin pool's data space on the node",
           [(labels, p.size) for labels, p in pools])
    metric(out, "pool_data_percent", "how much of a thin pool's data space is used, 0 to 100",
           [(labels, p.data_percent) for labels, p in pools if p.data_percent is not None])
    metric(out, "pool_metadata_percent", "how much of a thin pool's metadata space is used",
           [(labels, p.metadata_percent) for labels, p in pools
            if p.metadata_percent is not None])
    return "".join(out)


def verify_metrics(record: Record | None) -> str:
    """This box's last DRBD online verify (`iscsiha verify`), per resource; nothing
    before the first run."""
    out: list[str] = []
    if record is None:
        return ""
    metric(out, "drbd_verify_last_run_timestamp_seconds",
           "when this box's last verify run began (seconds since 1970)", [({}, record.started)])
    runs = sorted(record.resources.items())
    metric(out, "drbd_verify_last_timestamp_seconds",
           "when the resource's last verify here began", [({"resource": n}, r.started)
                                                          for n, r in runs])
    metric(out, "drbd_verify_last_completed",
           "1 when the resource's last verify here ran to its end (then the bytes count)",
           [({"resource": n}, 1 if r.outcome in ("ok", "mismatch") else 0) for n, r in runs])
    metric(out, "drbd_verify_last_out_of_sync_bytes",
           "data the last verify found different between the boxes (0: identical)",
           [({"resource": n}, r.out_of_sync_bytes) for n, r in runs])
    metric(out, "drbd_verify_last_duration_seconds", "how long the last verify took",
           [({"resource": n}, r.seconds) for n, r in runs])
    return "".join(out)


def metric(out: list[str], name: str, help_text: str, samples: Iterable[Sample]) -> None:
    full = f"iscsiha_{name}"
    out.append(f"# HELP {full} {help_text}\n# TYPE {full} gauge\n")
    for labels, value in samples:
        shown = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        number = str(int(value)) if float(value).is_integer() else repr(float(value))
        out.append(f"{full}{{{shown}}} {number}\n" if shown else f"{full} {number}\n")


def _escape(value: str) -> str:
    """Label values as the text format quotes them."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
