"""A failover's timeline: what each box and the initiator logged, phase by phase, on one
clock, in seconds after the fault.

The boxes' journals give corosync losing the peer, Pacemaker's fencing, DRBD's demote
and promote, each agent's start and stop; the initiator's journal gives the iSCSI
connection failing, each reconnect attempt and the login after recovery; the verifier
gives the last write before the pause and the first after it. Every guest's clock is
read against the host's (UML guests keep the host's time, within the few milliseconds
an exec takes); the measured offset is taken off each line.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from iscsiha.errors import IscsihaError
from iscsiha_lab.lab import Lab

INITIATOR = "initiator"  # the lab's initiator node, where the verifier runs
# (phase, source, pattern): a phase's name may use the pattern's groups. The first line
# matching a pattern names it; the table keeps each phase's first occurrence per box.
PATTERNS: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (phase, source, re.compile(pattern)) for phase, source, pattern in (
        ("corosync: token lost", "corosync", r"A processor failed|Token has not been received"),
        ("corosync: peer left", "corosync", r"new membership .* Members left"),
        ("corosync: peer joined", "corosync", r"new membership .* Members joined"),
        ("fence requested ({0})", "pacemaker-controld",
         r"Requesting fencing \((\w+)\) (?:of|targeting) node (\S+)"),
        ("fence confirmed ({0})", "pacemaker-fenced",
         r"Operation '(\w+)' targeting (\S+) .*: OK"),
        # Monitors and probes fire all the time: not phases of a failover.
        ("{0} {1} requested", "pacemaker-controld",
         r"Requesting local execution of (?!monitor|probe)(\w+) operation for (\S+) on"),
        ("{0} {1} done", "pacemaker-controld",
         r"Result of (?!monitor|probe)(\w+) operation for (\S+) on \S+: OK"),
        ("{0} {1} FAILED", "pacemaker-controld",
         r"Result of (?!monitor|probe)(\w+) operation for (\S+) on \S+: (?!OK)"),
        ("drbd {0}: connection lost", "kernel",
         r"drbd ([^\s:]+).*(?:conn\( Connected -> \w+|PingAck did not arrive)"),
        ("drbd {0}: Primary", "kernel", r"drbd ([^\s:]+).*role\( Secondary -> Primary \)"),
        ("drbd {0}: Secondary", "kernel", r"drbd ([^\s:]+).*role\( Primary -> Secondary \)"),
        ("iscsi: connection error", "kernel",
         r"connection\d+:\d+: (?:detected conn error|ping timeout)"),
        ("iscsi: reconnect failed", "iscsid", r"connect to \S+ failed"),
        ("iscsi: logged back in", "iscsid", r"is operational after recovery"),
    ))


@dataclass(frozen=True)
class Event:
    at: float  # seconds after the fault, on the host's clock
    node: str
    phase: str
    line: str

    def to_json(self) -> dict[str, Any]:
        return {"t": round(self.at, 3), "node": self.node, "phase": self.phase,
                "line": self.line[:200]}


def phase_of(source: str, message: str) -> str | None:
    """The phase a log line marks, or None."""
    for phase, wanted, pattern in PATTERNS:
        if source != wanted:
            continue
        found = pattern.search(message)
        if found is None:
            continue
        return phase.format(*found.groups())
    return None


def events_from_journal(node: str, text: str, fault_at: float, offset: float) -> list[Event]:
    """``journalctl -o json`` lines of one guest, as events; ``offset`` is the guest's
    clock minus the host's."""
    found = []
    for raw in text.splitlines():
        try:
            entry = json.loads(raw)
            when = int(entry["__REALTIME_TIMESTAMP"]) / 1e6 - offset
            source = entry.get("SYSLOG_IDENTIFIER") or ""
            message = entry.get("MESSAGE")
        except (ValueError, KeyError, TypeError):
            continue  # a line journalctl cut or an entry without text: not a phase
        if not isinstance(message, str) or not isinstance(source, str):
            continue
        phase = phase_of(source, message)
        if phase is not None:
            found.append(Event(when - fault_at, node, phase, message.strip()))
    return found


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


def first_of_each(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Each phase's first occurrence on each node, as JSON: the timeline's rows."""
    seen: set[tuple[str, str]] = set()
    rows = []
    for event in events:
        if (event.node, event.phase) not in seen:
            seen.add((event.node, event.phase))
            rows.append(event.to_json())
    return rows


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The timeline's rows as text: seconds after the fault, node, phase."""
    width = max((len(str(r["node"])) for r in rows), default=4)
    return "\n".join(f"{r['t']:8.2f} s  {r['node']:<{width}}  {r['phase']}" for r in rows)
