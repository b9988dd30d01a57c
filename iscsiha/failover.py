"""The last failover or planned move in both boxes' events (iscsiha.timeline), per target:
from its beginning to the target served and its first initiator back. Pure.

The anchor is the latest successful promote of a target's DRBD resource: every failover
and every move ends in one. Its beginning is looked for in a bounded window before it,
the target's start and first login in one after it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from iscsiha.timeline import Event

LOOK_BACK = 300.0  # a failover's beginning is at most this long before its promote
LOOK_AHEAD = 300.0  # and its target's start at most this long after
LOGIN_AHEAD = 130.0  # the login watcher's 120 s, and some slack for its start
TOGETHER = 60.0  # targets promoted within this of the latest moved together

_PROMOTED = re.compile(r"promote drbd-([a-z0-9-]+?)(?::\d+)? done")
_OPERATION = re.compile(r"(\w+) (\S+?)(?::\d+)? (requested|done|FAILED)")
_KERNEL_DRBD = re.compile(r"drbd ([^\s:/]+)(?:/\d+)?: .*")
# How a failover (not a move) begins: the peer is lost, or fenced.
_LOST = ("corosync: token lost", "corosync: peer left")
_JOINED = "corosync: peer joined"
_FENCE = ("fence requested", "fence confirmed")


@dataclass(frozen=True)
class Row:
    at: float  # seconds after the failover's first event
    node: str
    phase: str


@dataclass(frozen=True)
class TargetTimeline:
    target: str
    rows: tuple[Row, ...]
    promoted_on: str
    served_at: float | None  # wall time (that box's clock) of its target's start; None: not seen
    logged_in: bool  # an initiator's login was seen after the start


@dataclass(frozen=True)
class Failover:
    kind: Literal["failover", "move"]  # failover: the peer was lost; move: stopped on purpose
    began_at: float  # wall time of the first event
    targets: tuple[TargetTimeline, ...]


def promoted_target(phase: str) -> str | None:
    """The target whose DRBD resource a phase says was promoted, or None."""
    found = _PROMOTED.fullmatch(phase)
    return found.group(1) if found else None


def owns(target: str, resource: str) -> bool:
    """Whether a Pacemaker resource is one of the target's (iscsiha.plan.cib's ids)."""
    return resource == f"drbd-{target}" or re.fullmatch(
        rf"target-{re.escape(target)}-(?:lio|ip\d+)", resource) is not None


def last_failover(events: Iterable[Event], iqns: Mapping[str, str]) -> Failover | None:
    """The last failover or move in ``events`` (wall times), per target moved in it;
    ``iqns`` maps target names to IQNs (for their logins). None when no target was
    ever promoted in them."""
    ordered = sorted(events, key=lambda e: e.at)
    promotes = [(e, t) for e in ordered if (t := promoted_target(e.phase)) is not None]
    if not promotes:
        return None
    latest = promotes[-1][0].at
    anchors: dict[str, Event] = {}
    previous: dict[str, float] = {}  # each target's promote before its anchor
    for event, target in promotes:
        if target in anchors:
            previous[target] = anchors[target].at
        anchors[target] = event
    moved = {t: a for t, a in anchors.items() if a.at >= latest - TOGETHER}
    begins = {t: _beginning(ordered, t, a, previous.get(t)) for t, a in moved.items()}
    zero = min(begins.values())
    timelines = tuple(_timeline(ordered, t, moved[t], begins[t], zero, iqns.get(t))
                      for t in sorted(moved))
    lost = any(r.phase in _LOST or r.phase.startswith(_FENCE)
               for tl in timelines for r in tl.rows)
    return Failover("failover" if lost else "move", zero, timelines)


def _beginning(ordered: list[Event], target: str, anchor: Event, previous: float | None) -> float:
    """When the failover that ended in ``anchor`` began: its first peer lost, fence
    request, or stop or demote of the target's resources in the window before it; the
    window starts after the target's previous promote and after the peer last joined
    (a link flap that healed is not this failover's start)."""
    floor = anchor.at - LOOK_BACK
    if previous is not None:
        floor = max(floor, previous)
    joined = [e.at for e in ordered if e.phase == _JOINED and floor < e.at <= anchor.at]
    if joined:
        floor = max(joined)
    for event in ordered:
        if floor < event.at <= anchor.at and _begins(event.phase, target):
            return event.at
    return anchor.at


def _begins(phase: str, target: str) -> bool:
    if phase in _LOST or phase.startswith("fence requested"):
        return True
    found = _OPERATION.fullmatch(phase)
    return (found is not None and found.group(1) in ("stop", "demote")
            and found.group(3) == "requested" and owns(target, found.group(2)))


def _relevant(phase: str, target: str, iqn: str | None) -> bool:
    """A row of the target's timeline: the peer lost, fencing, its own resources'
    operations (not notifications), its DRBD's kernel lines, its first login."""
    if phase in _LOST or phase.startswith(_FENCE):
        return True
    found = _OPERATION.fullmatch(phase)
    if found is not None and found.group(1) != "notify" and owns(target, found.group(2)):
        return True
    kernel = _KERNEL_DRBD.fullmatch(phase)
    if kernel is not None and kernel.group(1) == target:
        return True
    return iqn is not None and phase == f"first initiator logged in ({iqn})"


def _timeline(ordered: list[Event], target: str, anchor: Event, begin: float, zero: float,
              iqn: str | None) -> TargetTimeline:
    served = next((e for e in ordered
                   if anchor.at <= e.at <= anchor.at + LOOK_AHEAD and e.node == anchor.node
                   and e.phase == f"start target-{target}-lio done"), None)
    login = None
    if served is not None and iqn is not None:
        login = next((e for e in ordered
                      if served.at <= e.at <= served.at + LOGIN_AHEAD and e.node == anchor.node
                      and e.phase == f"first initiator logged in ({iqn})"), None)
    end = (login or served or anchor).at
    rows: list[Row] = []
    seen: set[tuple[str, str]] = set()
    for event in ordered:
        if not begin <= event.at <= end or (event.node, event.phase) in seen:
            continue
        if _relevant(event.phase, target, iqn):
            seen.add((event.node, event.phase))
            rows.append(Row(event.at - zero, event.node, event.phase))
    return TargetTimeline(target, tuple(rows), anchor.node,
                          served.at if served else None, login is not None)
