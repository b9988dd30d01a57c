"""`iscsiha-alert check-space`: the data volume groups' fill against the threshold,
told once when it crosses (vg-filling) and once when it is back under (vg-ok).

Whether each group was over is kept in /var/lib/iscsiha so a timer run every few
minutes does not repeat the alert; each box watches its own groups (each has its own
disks), so the box in the event says whose.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from iscsiha.model import names

STATE_PATH = "/var/lib/iscsiha/alert-space.json"
STATE_MODE = 0o644
STATE_MAX = 64 * 1024


@dataclass(frozen=True)
class Crossing:
    kind: str  # vg-filling or vg-ok
    vg: str
    percent: int


def percent_used(size: int, free: int) -> int:
    """Whole percent used, rounded down (an empty group of size 0 is 0 % used)."""
    return 0 if size <= 0 else (size - min(free, size)) * 100 // size


def crossings(was_over: Mapping[str, bool], used: Mapping[str, int],
              threshold: int) -> tuple[list[Crossing], dict[str, bool]]:
    """The alerts to raise and the new state. A group seen for the first time is
    told only when it is already over."""
    out = []
    state = {}
    for vg, percent in sorted(used.items()):
        over = percent >= threshold
        state[vg] = over
        if over and not was_over.get(vg, False):
            out.append(Crossing("vg-filling", vg, percent))
        elif not over and was_over.get(vg, False):
            out.append(Crossing("vg-ok", vg, percent))
    return out, state


def read_state(path: str, read_bytes: Callable[[str], bytes | None]) -> dict[str, bool]:
    """The last run's state; a missing or damaged file counts as "nothing was over"
    (at worst an alert is repeated once, never lost)."""
    raw = read_bytes(path)
    if raw is None or len(raw) > STATE_MAX:
        return {}
    try:
        data = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items()
            if isinstance(k, str) and names.vg_name_problem(k) is None and isinstance(v, bool)}


def state_text(state: Mapping[str, bool]) -> str:
    return json.dumps(dict(sorted(state.items()))) + "\n"
