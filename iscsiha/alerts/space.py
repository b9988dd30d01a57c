"""`iscsiha-alert check-space`: the data volume groups' fill against the threshold,
told once when it crosses (vg-filling) and once when it is back under (vg-ok); the
same for the thin pools against each pool's own threshold (pool-filling, pool-ok).

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
POOL_STATE_PATH = "/var/lib/iscsiha/alert-pools.json"  # keyed VG/POOL
STATE_MODE = 0o644
STATE_MAX = 64 * 1024


@dataclass(frozen=True)
class Crossing:
    kind: str  # vg-filling or vg-ok; pool-filling or pool-ok
    key: str  # the volume group; a pool's VG/POOL
    percent: int


def percent_used(size: int, free: int) -> int:
    """Whole percent used, rounded down (an empty group of size 0 is 0 % used)."""
    return 0 if size <= 0 else (size - min(free, size)) * 100 // size


def crossings(was_over: Mapping[str, bool], used: Mapping[str, int],
              threshold: int | Mapping[str, int], kinds: tuple[str, str] = ("vg-filling", "vg-ok")
              ) -> tuple[list[Crossing], dict[str, bool]]:
    """The alerts to raise and the new state. A group (or pool: ``kinds`` and a
    threshold for each) seen for the first time is told only when it is already over."""
    filling, ok = kinds
    out = []
    state = {}
    for key, percent in sorted(used.items()):
        over = percent >= (threshold if isinstance(threshold, int) else threshold[key])
        state[key] = over
        if over and not was_over.get(key, False):
            out.append(Crossing(filling, key, percent))
        elif not over and was_over.get(key, False):
            out.append(Crossing(ok, key, percent))
    return out, state


def pool_key_ok(key: str) -> bool:
    """VG/POOL, as the pool state file keys its pools."""
    vg, slash, pool = key.partition("/")
    return bool(slash) and names.vg_name_problem(vg) is None \
        and names.object_name_problem(pool) is None


def pool_percent(data: float | None, metadata: float | None) -> int:
    """A pool's fill: the fuller of its data and metadata space, whole percent down."""
    return int(max(data or 0.0, metadata or 0.0))


def read_state(path: str, read_bytes: Callable[[str], bytes | None],
               key_ok: Callable[[str], bool] = lambda k: names.vg_name_problem(k) is None
               ) -> dict[str, bool]:
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
            if isinstance(k, str) and key_ok(k) and isinstance(v, bool)}


def state_text(state: Mapping[str, bool]) -> str:
    return json.dumps(dict(sorted(state.items()))) + "\n"
