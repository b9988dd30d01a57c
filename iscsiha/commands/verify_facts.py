"""DRBD online verify, the pure part: which resources a box verifies, whether a run is
due, and the record of the last run (what `iscsiha metrics` shows of it).

A box verifies the resources it is Primary for (the box serving a target), so each
volume is verified once, by one box, while both sides are connected and UpToDate.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from iscsiha.executors.drbd import ProcDevice
from iscsiha.model import names
from iscsiha.model.types import VerifySchedule

DAY = 24 * 3600.0
# The timer fires daily; a run is due when the last began this long ago. Half a day
# early, so a run that began later in the day last time is not pushed a day on.
INTERVALS = {VerifySchedule.WEEKLY: 7 * DAY - DAY / 2,
             VerifySchedule.MONTHLY: 30 * DAY - DAY / 2}
VERIFYING = frozenset({"VerifyS", "VerifyT"})
SHOW_BYTES_MAX = 16 * 1024 * 1024
Outcome = Literal["ok", "mismatch", "skipped", "timeout", "interrupted", "failed"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "mismatch", "skipped", "timeout", "interrupted", "failed")


def due(schedule: VerifySchedule, last_started: float | None, now: float) -> bool:
    """Whether the daily timer's run should verify now."""
    if schedule is VerifySchedule.OFF:
        return False
    if last_started is None or last_started > now + DAY:  # never, or the clock went back
        return True
    return now - last_started >= INTERVALS[schedule]


@dataclass(frozen=True)
class Shown:
    """A resource as the kernel runs it (`drbdsetup show`)."""

    minors: tuple[int, ...]
    verify_alg: str | None


_RESOURCE = re.compile(r"resource\s+(\S+)\s*\{", re.A)
_MINOR = re.compile(r"device\s+(?:\S+\s+)?minor\s+([0-9]{1,7})\s*;", re.A)
_ALG = re.compile(r'verify-alg\s+"?([A-Za-z0-9_-]{1,64})"?\s*;', re.A)


def parse_show(text: str) -> dict[str, Shown]:
    """Resource -> its minors and verify-alg, from `drbdsetup show` (8.4).

    What does not read as a resource of a name the model allows, with minors in
    DRBD's range, is left out: a box never verifies (or alerts about) a name it
    cannot vouch for.
    """
    found: dict[str, Shown] = {}
    if len(text) > SHOW_BYTES_MAX:
        return found
    starts = _top_level(text)
    for i, m in enumerate(starts):
        name = m.group(1)
        body = text[m.end():starts[i + 1].start() if i + 1 < len(starts) else len(text)]
        minors = tuple(int(n) for n in _MINOR.findall(body))
        alg = _ALG.search(body)
        if (names.object_name_problem(name) is not None or not minors or name in found
                or any(names.drbd_minor_problem(n) is not None for n in minors)
                or len(set(minors)) != len(minors)):
            continue
        found[name] = Shown(minors, alg.group(1) if alg else None)
    return found


def _top_level(text: str) -> list[re.Match[str]]:
    """The `resource NAME {` that open a top-level block (one pass over the braces)."""
    found, depth, at = [], 0, 0
    for m in _RESOURCE.finditer(text):
        depth += text.count("{", at, m.start()) - text.count("}", at, m.start())
        at = m.start()
        if depth == 0:
            found.append(m)
    return found


def verify_progress(proc_text: str) -> dict[int, float]:
    """Minor -> percent verified, for the minors verifying now (/proc/drbd, 8.4)."""
    out: dict[int, float] = {}
    blocks = re.split(r"(?m)^(?= *[0-9]+: cs:)", proc_text)
    for block in blocks:
        m = re.match(r" *([0-9]{1,7}): cs:(VerifyS|VerifyT)\b", block, re.A)
        p = re.search(r"verified: *([0-9]{1,3}(?:\.[0-9])?)%", block, re.A)
        if m and p and float(p.group(1)) <= 100:
            out[int(m.group(1))] = float(p.group(1))
    return out


@dataclass(frozen=True)
class Decision:
    resource: str
    minors: tuple[int, ...]
    verify: bool
    reason: str  # why not, or "" when it is verified


def decide(shown: dict[str, Shown], proc: dict[int, ProcDevice]) -> list[Decision]:
    """For each resource this box runs: verify it here, or why not."""
    out = []
    for name, res in sorted(shown.items()):
        devs = [proc.get(n) for n in res.minors]
        why = ""
        if any(d is None or d.role != "Primary" for d in devs):
            why = "not Primary here: the box serving it verifies it"
        elif any(d is not None and d.connection in VERIFYING for d in devs):
            why = "a verify already runs"
        elif any(d is not None and (d.connection != "Connected" or d.disk != "UpToDate"
                                    or d.peer_disk != "UpToDate") for d in devs):
            why = "not Connected and UpToDate on both sides: a verify needs both"
        elif res.verify_alg is None:
            why = "no verify-alg in its running configuration: run `iscsiha apply` again"
        out.append(Decision(name, res.minors, not why, why))
    return out


@dataclass(frozen=True)
class ResourceResult:
    outcome: Outcome
    out_of_sync_bytes: int
    started: float  # seconds since 1970
    seconds: float
    detail: str = ""


@dataclass(frozen=True)
class Record:
    """The last run on this box (/var/lib/iscsiha/verify.json)."""

    started: float
    resources: dict[str, ResourceResult]


def record_json(record: Record) -> str:
    return json.dumps(asdict(record), indent=2, sort_keys=True) + "\n"


def record_from_json(text: str) -> Record | None:
    """The record, or None when the file is not one (damaged, or edited by hand):
    the next run is then due, and the metrics show no last run."""
    try:
        data = json.loads(text)
        started = _number(data["started"])
        resources = {}
        for name, r in data["resources"].items():
            if names.object_name_problem(name) is not None or r["outcome"] not in OUTCOMES:
                return None
            resources[name] = ResourceResult(r["outcome"], int(_number(r["out_of_sync_bytes"])),
                                             _number(r["started"]), _number(r["seconds"]),
                                             str(r.get("detail", ""))[:500])
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None
    return Record(started, resources)


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(value)
    number = float(value)
    if not math.isfinite(number) or number < 0 or number > 1e12:
        raise ValueError(value)
    return number
