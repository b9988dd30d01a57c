"""`iscsiha status --timeline`: the last failover or move, from both boxes' journals.

This box's journal is read here; the peer's phases come over the peer channel (the
journal-events node step), checked on receipt. A peer that does not answer (off after
a power cut, the usual case after a box died) leaves its events out and is said so.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from iscsiha.commands.cluster_env import ClusterEnv
from iscsiha.errors import IscsihaError, Report
from iscsiha.executors import journal
from iscsiha.failover import Failover, last_failover
from iscsiha.protocol import messages as m
from iscsiha.timeline import Event

PEER_TIMEOUT = 30.0  # SSH gives up connecting after 10 s; the peer's journalctl after 20 s


@dataclass(frozen=True)
class Source:
    """Whose events the timeline holds: a box's, or why it has none."""

    node: str
    events: int
    peer: bool  # asked over the peer channel (not this box)
    problem: Report | None = None  # None: it answered


@dataclass(frozen=True)
class TimelineReport:
    failover: Failover | None
    sources: tuple[Source, ...]


def last_timeline(env: ClusterEnv, iqns: Mapping[str, str],
                  wall_clock: Callable[[], float] = time.time) -> TimelineReport:
    """The last failover or move in this box's journal and, when it answers, the peer's;
    ``iqns``: target name -> IQN, for the first login."""
    boxes = env.boxes
    here = boxes.here if boxes is not None else socket.gethostname()
    events: list[Event] = []
    sources = []
    try:
        mine = journal.events(env.runner, here, wall_clock())
        events += mine
        sources.append(Source(here, len(mine), False))
    except IscsihaError as exc:
        sources.append(Source(here, 0, False, exc.reports[0]))
    for peer in boxes.names if boxes is not None else []:
        if peer == here or boxes is None:
            continue
        try:
            theirs = peer_events(boxes.call(peer, m.JOURNAL_EVENTS, m.Nothing(),
                                            timeout=PEER_TIMEOUT), peer)
        except IscsihaError as exc:  # off, unreachable, or a reply we refused
            sources.append(Source(peer, 0, True, exc.reports[0]))
            continue
        events += theirs
        sources.append(Source(peer, len(theirs), True))
    return TimelineReport(last_failover(events, iqns), tuple(sources))


def peer_events(reply: m.JournalEvents, peer: str) -> list[Event]:
    """The peer's events (already decoded and checked field by field), refused as a
    whole if any claims to be another box's."""
    other = next((e.node for e in reply.events if e.node != peer), None)
    if other is not None:
        raise IscsihaError.single("peer-message-refused", f"{peer} journal-events reply",
                                  other, f"events of {peer} only",
                                  "names another box: refused")
    return [Event(e.at, e.node, e.phase, "") for e in reply.events]
