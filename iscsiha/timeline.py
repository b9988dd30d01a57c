"""A failover's phases from journal lines: which line marks which phase, and the first of
each. Pure (no I/O): the appliance reads its own journal with it (`status --timeline`,
iscsiha.failover finds the last failover in the events) and the lab reads every box's
and the initiator's journal with it after a fault (iscsiha_lab.timeline).

Each box's corosync, Pacemaker and kernel lines give the peer lost, the fencing, DRBD's
demote and promote and each agent's start and stop; the initiator's iscsid gives its
reconnects and its login; the target agent's login watcher
(iscsiha.executors.login_watch) gives LIO's side of the first login, which LIO itself
logs only at debug level.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# What the login watcher logs as, and its line (the pattern below reads it back).
LOGIN_IDENTIFIER = "iscsiha-target"
LOGIN_LINE = "target {iqn}: initiator {initiator} logged in"
LINE_MAX = 16 * 1024  # a longer journal line is no phase of ours: skipped unread
PHASE_MAX = 200  # a phase names a resource or a node: far shorter
WALL_MAX = 1e11  # seconds since 1970 (year 5138): a later timestamp is garbage

# (phase, source, pattern): a phase's name may use the pattern's groups. The first line
# matching a pattern names it; the table keeps each phase's first occurrence per box.
PATTERNS: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple(
    (phase, source, re.compile(pattern)) for phase, source, pattern in (
        ("corosync: token lost", "corosync", r"A processor failed|Token has not been received"),
        ("corosync: peer left", "corosync", r"new membership .* Members left"),
        ("corosync: peer joined", "corosync", r"new membership .* Members joined"),
        ("fence requested ({0})", "pacemaker-controld",
         r"Requesting fencing \((\w+)\) (?:of|targeting) node (\S+)"),
        ("fence by {2} failed", "pacemaker-fenced",
         r"Operation '(\w+)' \[\d+\] targeting (\S+) using (\S+) returned [1-9]"),
        # The watchdog level: the fencer waits for the box to have reset itself.
        ("fence: waiting for the watchdog", "pacemaker-fenced",
         r"Waiting \d+s for \S+ to self-fence"),
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
        ("first initiator logged in ({0})", LOGIN_IDENTIFIER,
         r"^target (\S+): initiator \S+ logged in$"),
        ("iscsi: connection error", "kernel",
         r"connection\d+:\d+: (?:detected conn error|ping timeout)"),
        ("iscsi: reconnect failed", "iscsid", r"connect to \S+ failed"),
        ("iscsi: logged back in", "iscsid", r"is operational after recovery"),
    ))
# The journal identifiers the patterns read: a reader may ask journalctl for these only.
SOURCES: tuple[str, ...] = tuple(sorted({source for _, source, _ in PATTERNS}))


@dataclass(frozen=True)
class Event:
    at: float  # on the caller's clock: wall time on the appliance, s after the fault in the lab
    node: str
    phase: str
    line: str

    def to_json(self) -> dict[str, Any]:
        return {"t": round(self.at, 3), "node": self.node, "phase": self.phase,
                "line": self.line[:200]}


def phase_of(source: str, message: str) -> str | None:
    """The phase a log line marks, or None; never one a terminal could be driven with
    (groups are copied from the line) or longer than PHASE_MAX."""
    for phase, wanted, pattern in PATTERNS:
        if source != wanted:
            continue
        found = pattern.search(message)
        if found is None:
            continue
        named = phase.format(*found.groups())
        return named if len(named) <= PHASE_MAX and named.isprintable() else None
    return None


def events_from_journal(node: str, text: str, fault_at: float = 0.0,
                        offset: float = 0.0) -> list[Event]:
    """``journalctl -o json`` lines of one box, as events; ``offset`` is the box's clock
    minus the reader's, ``fault_at`` the reader's zero (both 0: the box's wall time).

    A line that is not a journal entry with a time and a text message (cut, garbled,
    too long, a binary MESSAGE, which journalctl gives as a list of bytes) is skipped.
    """
    found = []
    for raw in text.splitlines():
        if len(raw) > LINE_MAX:
            continue
        try:
            entry = json.loads(raw)
            when = int(entry["__REALTIME_TIMESTAMP"]) / 1e6 - offset
            source = entry.get("SYSLOG_IDENTIFIER") or ""
            message = entry.get("MESSAGE")
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError,
                RecursionError):
            continue  # a line journalctl cut or an entry without text: not a phase
        if not isinstance(message, str) or not isinstance(source, str):
            continue
        if not (math.isfinite(when) and -WALL_MAX <= when <= WALL_MAX):
            continue
        phase = phase_of(source, message)
        if phase is not None:
            found.append(Event(when - fault_at, node, phase, message.strip()))
    return found


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
