"""What a person reads: problem reports, the cluster's status, a split brain and the
join token, worded once for the CLI, the console and the lab.

Only wording lives here; the commands gather the state it words.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from iscsiha.commands.bootstrap_env import JOIN_TTL, InitResult
from iscsiha.commands.targets import ClusterStatus, Fencing, TargetStatus, VolumeStatus
from iscsiha.commands.timeline import Source, TimelineReport
from iscsiha.errors import PARTLY_APPLIED, Report, Secret
from iscsiha.failover import LOGIN_AHEAD, LOOK_AHEAD, TargetTimeline
from iscsiha.model.names import format_size
from iscsiha.plan.cib import drbd_clone_id
from iscsiha.protocol.codec import shown

if TYPE_CHECKING:
    # Only for annotations: split_brain words its refusals with this module.
    from iscsiha.commands.split_brain import Resolution, Side, VolumeState

# -- problem reports ----------------------------------------------------------------------

_MESSAGES = {
    "missing": "is required",
    "wrong-type": "has the wrong type",
    "unknown-key": "is not a known setting here",
}


def format_report(report: Report) -> str:
    value = report.value.redacted() if isinstance(report.value, Secret) else repr(report.value)
    message = report.message or _MESSAGES.get(report.code, "is not allowed")
    head = f"{report.severity.value}: {report.field}"
    if report.value is not None:
        head += f" = {value}"
    return f"{head}: {message} [{report.code}]\n    allowed: {report.allowed}"


def format_reports(reports: Iterable[Report]) -> str:
    reports = list(reports)
    errors = sum(r.is_error for r in reports)
    lines = [format_report(r) for r in reports]
    if errors:
        partly = any(r.code == PARTLY_APPLIED for r in reports)
        lines.append(f"{errors} problem{'s' if errors != 1 else ''} found; "
                     + ("the change is partly applied." if partly else "nothing was applied."))
    return "\n".join(lines)


# -- cluster status -----------------------------------------------------------------------

def status_lines(state: ClusterStatus) -> list[str]:
    """What `iscsiha status` and the console's `status` print."""
    lines = [f"node    {name:<24} {'online' if online else 'OFFLINE'}"
             + (", in standby" if name in state.standby else "")
             for name, online in state.nodes]
    quorum = {True: "quorate", False: "NO QUORUM", None: "no DC elected yet"}[state.quorate]
    lines.append(f"cluster {quorum}")
    if state.fencing is not None:
        lines.append(f"fencing {fencing_text(state.fencing)}")
    for t in state.targets:
        where = ", ".join(t.running_on) or "stopped"
        health = "" if t.healthy else "  (not fully started)"
        lines.append(f"target  {t.name:<24} on {where:<10} preferred {t.preferred}, "
                     f"failback {t.failback}  {t.iqn}{health}{sessions_text(t, ', ')}")
    for v in state.volumes:
        roles = ", ".join(f"{role} on {node}" for node, role in v.roles) or "stopped"
        lines.append(f"volume  {v.name:<24} {roles}{replication_text(v, ', ')}")
    for p in state.pools:
        lines.append(f"pool    {p.name:<24} on {p.node:<10} {p.volume_group}, "
                     f"{format_size(p.size)}: data {_percent(p.data_percent)}, "
                     f"metadata {_percent(p.metadata_percent)}")
    return lines


def _percent(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}%"


def fencing_text(fencing: Fencing) -> str:
    if not fencing.enabled:
        return "DISABLED (stonith-enabled=false)"
    if not fencing.devices:
        return "NOT READY: no fence device configured"
    shown = ", ".join((f"{d} on {on}" + (" FAILING (its monitor failed)"
                                         if d in fencing.failing else ""))
                      if on else f"{d} STOPPED" for d, on in fencing.devices)
    return f"{'ready' if fencing.ready else 'NOT READY'}: {shown}"


def sessions_text(target: TargetStatus, lead: str = "") -> str:
    if target.sessions is None:
        return ""
    if not target.sessions:
        return f"{lead}no sessions"
    count = len(target.sessions)
    return f"{lead}{count} session{'s' if count > 1 else ''} ({', '.join(target.sessions)})"


def replication_text(volume: VolumeStatus, lead: str = "") -> str:
    """This box's DRBD view: connection, disks, and a resync's progress and time left."""
    dev = volume.drbd
    if dev is None:
        return ""
    text = f"{lead}{dev.connection}, {dev.disk}/{dev.peer_disk}"
    if dev.synced_percent is not None:
        text += f", synced {dev.synced_percent:.1f}%"
        if dev.finish_seconds is not None:
            minutes, seconds = divmod(dev.finish_seconds, 60)
            text += f", {minutes}:{seconds:02d} left"
    return text


def replicating(volume: VolumeStatus) -> bool | None:
    """Connected with both disks up to date; None when this box cannot tell."""
    dev = volume.drbd
    if dev is None:
        return None
    return dev.connection == "Connected" and dev.disk == dev.peer_disk == "UpToDate"


# -- the last failover's timeline ---------------------------------------------------------

NO_FAILOVER = "no failover or move in the journal since boot"
_KINDS = {"failover": "last failover (a box was lost)",
          "move": "last move (stopped on one box, started on the other)"}


def timeline_lines(report: TimelineReport) -> list[str]:
    """What `iscsiha status --timeline` and the console's `status timeline=yes` add."""
    failover = report.failover
    if failover is None:
        lines = [f"timeline: {NO_FAILOVER}"]
    else:
        lines = [f"timeline: {_KINDS[failover.kind]}, began {wall_text(failover.began_at)}; "
                 "seconds after its first event, each box's own clock (NTP keeps them close)"]
        for target in failover.targets:
            lines.append(f"target  {target.target}: {served_text(target)}")
            width = max((len(r.node) for r in target.rows), default=4)
            lines += [f"  {r.at:8.2f} s  {r.node:<{width}}  {r.phase}" for r in target.rows]
    lines += [f"events  {source_text(s)}" for s in report.sources]
    return lines


def served_text(target: TargetTimeline) -> str:
    """Where and from when the target served again, and whether an initiator came back."""
    if target.served_at is None:
        return (f"promoted on {target.promoted_on}; its target's start is not in the journal "
                f"(within {LOOK_AHEAD:.0f} s)")
    text = f"served on {target.promoted_on} from {wall_text(target.served_at)}"
    if not target.logged_in:
        text += f"; no initiator login recorded within {LOGIN_AHEAD:.0f} s"
    return text


def wall_text(at: float) -> str:
    """A wall time as this box's local time, to the millisecond."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) + f".{int(at % 1 * 1000):03d}"


def source_text(source: Source) -> str:
    """Whose journal the timeline read, and why a box's events are missing."""
    problem = source.problem
    if problem is None:
        return f"{source.node}: {source.events} from its journal"
    if problem.code == "peer-message-refused":
        return (f"{source.node}: its reply was refused ({problem.field} = "
                f"{shown(problem.value)}; allowed: {problem.allowed}): its events are left out")
    if source.peer and problem.code in ("step-failed", "command-timeout"):
        return (f"{source.node}: did not answer, its events are left out (normal when it is "
                f"off): {shown(problem.message or problem.code)}")
    return (f"{source.node}: journal not read ({problem.code}: "
            f"{shown(problem.message or problem.value)}): its events are left out")


# -- split brain --------------------------------------------------------------------------

def split_brain_text(state: VolumeState) -> str:
    """The state of a volume on both boxes, for an admin choosing the side to discard."""
    lines = [f"volume {state.name} (drbd{state.minor}, target {state.resource}): " + (
        "SPLIT BRAIN: both boxes changed it while apart, and DRBD keeps them apart "
        "until one box's changes are discarded" if state.split_brain
        else "not in split brain")]
    lines.append(f"  {'box':<10} {'DRBD':<10} {'disk':<13} {'connection':<13} {'cluster':<11} "
                 f"{'serves':<18} {'changed apart':>14}  generation (current:bitmap)")
    for s in state.sides:
        d = s.drbd
        serves = ", ".join(f"target {t}" for t in s.serves) or "-"
        generation = f"{d.gi.current}:{d.gi.bitmap}" if d.gi else "-"
        lines.append(f"  {s.node:<10} {d.role:<10} {d.disk:<13} {d.connection:<13} "
                     f"{s.cluster_role:<11} {serves:<18} {_kib(d.out_of_sync_kib):>14}  "
                     f"{generation}")
    for s in state.sides:
        seen = [line for line in s.drbd.kernel if "Split-Brain" in line]
        if seen:
            lines.append(f"  kernel on {s.node}: {seen[-1]}")
    if not state.split_brain:
        return "\n".join(lines)
    lines += ["  changed apart: DRBD's out-of-sync count on that box (its bitmap of 4 KiB blocks):",
              "  what it wrote since the boxes lost each other. Discarding a box's changes",
              "  copies every block either box changed from the kept box to it, for every",
              f"  volume of target {state.resource} (DRBD recovers a resource as a whole)."]
    for s in state.sides:
        lines.append(f"  to keep {s.node}'s data: {how_to_keep(state, s.node)}")
    return "\n".join(lines)


def resolution_text(result: Resolution) -> str:
    """One line on what resolving a split brain did."""
    kib = result.resynced_kib
    copied = (f"resynced {kib} KiB ({_kib(kib)})" if kib is not None
              else "resync size not in the kernel log")
    return (f"split brain on {result.volume} resolved: kept {result.kept}'s data, discarded "
            f"{result.discarded}'s changes; {copied} in {result.seconds:.1f} s; "
            "Connected, UpToDate on both boxes")


def activity_text(side: Side) -> str:
    """Why a box's half of a volume is the one in use."""
    what = [side.drbd.role if side.drbd.role == "Primary" else "",
            "promoted by the cluster" if side.cluster_role == "Promoted" else "",
            f"serving target {', '.join(side.serves)}" if side.serves else ""]
    return ", ".join(w for w in what if w)


def how_to_keep(state: VolumeState, node: str) -> str:
    """What makes ``node``'s data the one kept: discard the other box, once it is not in use."""
    other = state.other(node).node
    resolve = f"`iscsiha split-brain {state.name} --discard {other}`"
    if not state.other(node).active:
        return resolve
    clone = drbd_clone_id(state.resource)
    if state.targets:
        moves = ", ".join(f"`iscsiha target move {t} {node}`" for t in state.targets)
        first = f"first move the target to {node} ({moves}; initiators then see its data)"
    else:
        first = (f"first promote it on {node} (`crm_resource --move --promoted --resource "
                 f"{clone} --node {node}`, then `crm_resource --clear --resource {clone}`)")
    return f"{first}, then {resolve}"


def _kib(kib: int) -> str:
    if kib >= 1024 * 1024:
        return f"{kib / 1024 / 1024:.1f} GiB"
    return f"{kib / 1024:.1f} MiB" if kib >= 1024 else f"{kib} KiB"


# -- forming the cluster ------------------------------------------------------------------

def replace_lines(result: InitResult) -> list[str]:
    """What `cluster replace` tells the admin: the token for the new box."""
    until = time.strftime("%H:%M", time.localtime(result.expires))
    return [
        f"cluster {result.cluster}: {result.peer} is in standby; {result.node} waits for the "
        f"box that replaces it until {until}.",
        "The join token (it works once; keep it to yourself: it lets a box join this "
        "cluster):",
        f"    {result.token}",
        f"On the new box, as flashed, named {result.peer} and with its addresses, run "
        "`iscsiha cluster join` and give the token: it makes every volume anew and DRBD "
        f"copies them in full from {result.node}.",
    ]


def init_lines(result: InitResult) -> list[str]:
    """What `cluster init` (and the console's) tells the admin: where to take the token."""
    until = time.strftime("%H:%M", time.localtime(result.expires))
    minutes = round(JOIN_TTL / 60)
    tiebreaker = (f"quorum through the tiebreaker {result.tiebreaker}" if result.tiebreaker
                  else "no tiebreaker (two-node quorum; fencing decides)")
    return [
        f"cluster {result.cluster}: {result.node} is set up ({tiebreaker}) and waits for "
        f"{result.peer} until {until} ({minutes} minutes).",
        "The join token (it works once; keep it to yourself: it lets a box join this "
        "cluster):",
        f"    {result.token}",
        f"On {result.peer}, run `iscsiha cluster join` or, in its console, `/cluster join`, "
        "and give the token when asked (a script gives it on stdin: "
        "`/cluster join token=-`).",
    ]
