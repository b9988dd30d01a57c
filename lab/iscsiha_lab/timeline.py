"""A failover's timeline: what each box and the initiator logged, phase by phase, on one
clock, in seconds after the fault.

The boxes' and the initiator's journals are read with the product's patterns
(iscsiha.timeline); the verifier gives the last write before the pause and the first
after it. Every guest's clock is read against the host's (UML guests keep the host's
time, within the few milliseconds an exec takes); the measured offset is taken off each
line.
"""

from __future__ import annotations

import time
from typing import Any

from iscsiha.errors import IscsihaError

# The parsing is the product's (the appliance shows its own last failover with it); its
# names stay importable from here for the scenarios, the bench and the soak.
from iscsiha.timeline import (
    PATTERNS,
    Event,
    events_from_journal,
    first_of_each,
    phase_of,
    table,
)
from iscsiha_lab.lab import Lab

__all__ = ["INITIATOR", "PATTERNS", "Event", "clock_offset", "collect", "events_from_journal",
           "events_from_probe", "first_of_each", "phase_of", "rows", "table"]

INITIATOR = "initiator"  # the lab's initiator node, where the verifier runs


def events_from_probe(result: dict[str, Any], fault_at: float, offset: float) -> list[Event]:
    """The verifier's longest pause: its last write before and its first after
    (``offset``: the initiator's clock minus the host's)."""
    gap_from, gap_to = result.get("gap_from_wall"), result.get("gap_to_wall")
    if not isinstance(gap_from, int | float) or not isinstance(gap_to, int | float):
        return []
    return [Event(gap_from - offset - fault_at, INITIATOR, "I/O: last write before the pause",
                  ""),
            Event(gap_to - offset - fault_at, INITIATOR, "I/O: first write after the pause",
                  "")]


def clock_offset(lab: Lab, node: str) -> float:
    """The guest's clock minus the host's, from the fastest of three reads."""
    best: tuple[float, float] | None = None
    for _ in range(3):
        before = time.time()
        guest = float(lab.exec(node, ["date", "+%s.%N"], timeout=30).check().out)
        after = time.time()
        if best is None or after - before < best[1]:
            best = (guest - (before + after) / 2, after - before)
    assert best is not None
    return best[0]


def collect(lab: Lab, fault_at: float, probe: dict[str, Any] | None = None,
            before: float = 5.0) -> list[Event]:
    """Every phase the boxes and the initiator logged from ``before`` seconds ahead of the
    fault until now, sorted. A node that does not answer (off, frozen) adds nothing."""
    events = []
    since = int(fault_at - before)
    for node in (n.name for n in (*lab.topology.appliances, *lab.topology.initiators)):
        try:
            offset = clock_offset(lab, node)
            out = lab.exec(node, ["journalctl", "-o", "json", "--no-pager", f"--since=@{since}",
                                  "--output-fields=MESSAGE,SYSLOG_IDENTIFIER"],
                           timeout=120).check().out
        except (IscsihaError, ValueError):  # off, frozen, or no clock reading: skip it
            continue
        events += events_from_journal(node, out, fault_at, offset)
        if node == INITIATOR and probe:
            events += events_from_probe(probe, fault_at, offset)
    return sorted(events, key=lambda e: e.at)


def rows(lab: Lab, fault_at: float, probe: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The timeline of a fault at ``fault_at`` (host clock), as its JSON rows."""
    return first_of_each(collect(lab, fault_at, probe))
