"""The event record every recipient gets, and the catalogue of kinds.

    {"time": "2026-12-06T21:40:03.512345+00:00", "box": "san-a", "kind": "node-lost",
     "severity": "critical", "summary": "box san-b left the cluster", "details": {...}}

Details are short strings only: they come from Pacemaker's environment, DRBD's
handlers or a command line, and each is cleaned (``clean``) before it is kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from iscsiha.model import names


class Severity(Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Kind:
    severity: Severity
    summary: str  # str.format over the details (and "box")
    keys: tuple[str, ...] = ()  # details the summary needs: a CLI event must give them


KINDS: dict[str, Kind] = {
    "node-lost": Kind(Severity.CRITICAL, "box {node} left the cluster", ("node",)),
    "node-member": Kind(Severity.INFO, "box {node} joined the cluster", ("node",)),
    "quorum-lost": Kind(Severity.CRITICAL, "box {box} has no quorum: it stops its targets"),
    "fenced": Kind(Severity.CRITICAL, "box {node} was fenced ({action})", ("node", "action")),
    "fence-failed": Kind(Severity.CRITICAL, "fencing box {node} ({action}) failed",
                         ("node", "action")),
    "target-started": Kind(Severity.WARNING, "target {target} started on {box} "
                           "(a failover or a move)", ("target",)),
    "target-stopped": Kind(Severity.INFO, "target {target} stopped on {box}", ("target",)),
    "resource-failed": Kind(Severity.CRITICAL, "{resource} failed to {operation} on {box}",
                            ("resource", "operation")),
    "drbd-disconnected": Kind(Severity.CRITICAL, "replication of {resource} lost its peer: "
                              "{box} serves it alone (degraded)", ("resource",)),
    "drbd-split-brain": Kind(Severity.CRITICAL, "split brain on {resource}: both boxes wrote; "
                             "run `iscsiha split-brain`", ("resource",)),
    "drbd-resync-started": Kind(Severity.WARNING, "resync of {resource} to {box} started",
                                ("resource",)),
    "drbd-resync-finished": Kind(Severity.INFO, "resync of {resource} to {box} finished: "
                                 "replicated again", ("resource",)),
    "drbd-io-error": Kind(Severity.CRITICAL, "disk I/O error under {resource} on {box}: "
                          "DRBD detached the disk", ("resource",)),
    "drbd-verify-mismatch": Kind(Severity.WARNING, "online verify of {resource} found "
                                 "{bytes} bytes that differ", ("resource", "bytes")),
    "vg-filling": Kind(Severity.WARNING, "volume group {vg} on {box} is {percent}% full",
                       ("vg", "percent")),
    "vg-ok": Kind(Severity.INFO, "volume group {vg} on {box} is back under the threshold "
                  "({percent}% full)", ("vg", "percent")),
    # A thin pool's fill is the more used of its data and metadata space: either one
    # full makes every thin volume's new writes fail.
    "pool-filling": Kind(Severity.WARNING, "thin pool {pool} in {vg} on {box} is {percent}% "
                         "full", ("pool", "vg", "percent")),
    "pool-ok": Kind(Severity.INFO, "thin pool {pool} in {vg} on {box} is back under the "
                    "threshold ({percent}% full)", ("pool", "vg", "percent")),
}

DETAIL_KEYS_MAX = 16
DETAIL_MAX = 400  # characters of one detail value
_KEY = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")
KEY_ALLOWED = "a lowercase key: a letter, then letters, digits or '_', at most 32"


def clean(value: str, limit: int = DETAIL_MAX) -> str:
    """``value`` as printable ASCII on one line, at most ``limit`` characters: what an
    alert carries goes into mail headers, syslog lines and SNMP strings."""
    text = "".join(c if c.isascii() and c.isprintable() else "?" for c in value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def key_ok(key: str) -> bool:
    return _KEY.match(key) is not None


@dataclass(frozen=True)
class Event:
    time: str  # ISO 8601 with its offset
    box: str  # the node that reports it
    kind: str
    severity: Severity
    summary: str
    details: Mapping[str, str]

    def record(self) -> dict[str, object]:
        return {"time": self.time, "box": self.box, "kind": self.kind,
                "severity": self.severity.value, "summary": self.summary,
                "details": dict(self.details)}

    def to_json(self) -> str:
        return json.dumps(self.record(), sort_keys=True)


def make_event(kind: str, box: str, time: str, details: Mapping[str, str]) -> Event:
    """An event of a known ``kind``; the caller has checked ``details`` with
    ``detail_problem`` (a missing summary key is a bug, not input)."""
    spec = KINDS[kind]
    kept = {k: clean(v) for k, v in details.items()}
    summary = clean(spec.summary.format(box=box, **kept))
    return Event(time, box, kind, spec.severity, summary, kept)


def detail_problem(kind: str, details: Mapping[str, str]) -> str | None:
    """Why ``details`` cannot make an event of ``kind``, or None."""
    if kind not in KINDS:
        return f"unknown kind {clean(kind, 60)!r} (known: {', '.join(sorted(KINDS))})"
    if len(details) > DETAIL_KEYS_MAX:
        return f"{len(details)} details; at most {DETAIL_KEYS_MAX}"
    for key in details:
        if not key_ok(key):
            return f"detail key {clean(key, 40)!r} is not {KEY_ALLOWED}"
    missing = [k for k in KINDS[kind].keys if not details.get(k)]
    if missing:
        return f"{kind} needs {', '.join(f'{k}=...' for k in missing)}"
    return _value_problem(details)


def _value_problem(details: Mapping[str, str]) -> str | None:
    """The values that name things are checked as the model checks those names."""
    for key, check in (("resource", names.object_name_problem),
                       ("target", names.object_name_problem),
                       ("pool", names.object_name_problem),
                       ("node", names.node_name_problem),
                       ("vg", names.vg_name_problem)):
        if key in details and (problem := check(details[key])):
            return f"{key}={clean(details[key], 60)!r} {problem}"
    for key in ("bytes", "percent", "rc", "minor", "volume"):
        if key in details and names.parse_decimal(details[key], 0, 2**63) is None:
            return f"{key}={clean(details[key], 60)!r} is not a whole number"
    return None
