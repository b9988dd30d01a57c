"""The desired state's [[pools]]: LVM thin pools, and the checks between them and the
thin volumes that name them (``pool = "NAME"`` in a volume).

    [[pools]]
    name = "thin"
    volume_group = "data"        # the cluster's volume group when left out
    size = "100G"
    overcommit = false           # thin volumes may add up to more than the pool
    fill_alert_percent = 80      # data or metadata use that raises pool-filling

What can only be checked against the boxes (the volume group exists, a pool does not
shrink, a volume does not turn from thick to thin) is apply's (commands/apply_checks).
"""

from __future__ import annotations

from collections.abc import Callable

from iscsiha.model import names
from iscsiha.model.alerts import VG_FILL_MAX, VG_FILL_MIN
from iscsiha.model.fields import (
    FILL_ALERT_PERCENT,
    NAME,
    OVERCOMMIT,
    POOL,
    POOLS,
    SIZE,
    VOLUME_GROUP,
    VOLUMES,
    Problems,
    Table,
)
from iscsiha.model.types import DEFAULT_POOL_FILL_PERCENT, Pool, Volume

POOLS_MAX = 16
FILL_ALLOWED = f"{VG_FILL_MIN} to {VG_FILL_MAX}"


def read_pools(tables: list[Table], default_vg: str,
               size: Callable[[Table], int | None]) -> list[Pool]:
    """The pools that are valid on their own; each problem is reported to the tables'
    problems. ``size`` reads and range-checks a table's size as volumes' are read."""
    out = []
    for t in tables:
        name = t.text(NAME, lambda s: names.object_name_problem(s) is None,
                      names.OBJECT_NAME_ALLOWED, code="bad-name")
        pool_size = size(t)
        vg = t.text(VOLUME_GROUP, lambda s: names.vg_name_problem(s) is None,
                    names.VG_NAME_ALLOWED, required=False, code="bad-name")
        overcommit = t.typed(OVERCOMMIT, bool, required=False)
        fill = t.integer(FILL_ALERT_PERCENT, VG_FILL_MIN, VG_FILL_MAX, required=False)
        bad_optional = any(t.data.get(k) is not None and v is None for k, v in
                           ((VOLUME_GROUP, vg), (OVERCOMMIT, overcommit),
                            (FILL_ALERT_PERCENT, fill)))
        t.finish()
        if name is not None and pool_size is not None and not bad_optional:
            out.append(Pool(name, vg or default_vg, pool_size, bool(overcommit),
                            DEFAULT_POOL_FILL_PERCENT if fill is None else fill))
    if tables and len(tables) > POOLS_MAX:
        tables[0].problems.add("too-many-pools", POOLS, len(tables), f"at most {POOLS_MAX}")
    seen: dict[str, str] = {}
    for t in tables:
        value = t.data.get(NAME)
        if isinstance(value, str):
            if value in seen:
                t.problems.add("duplicate-pool-name", t.child(NAME), value,
                               "a pool name used once", f"is also used by {seen[value]}")
            else:
                seen[value] = t.child(NAME)
    return out


def volume_pool(t: Table, pool_names: set[str], pools: dict[str, Pool]
                ) -> tuple[bool, Pool | None]:
    """A volume table's ``pool``: (fine, the pool when valid). ``pool_names``: every
    pool table's name, so a volume naming a pool with its own problem is not also told
    the pool is unknown."""
    name = t.text(POOL, lambda s: s in pool_names,
                  ", ".join(sorted(pool_names)) or f"a pool defined under [[{POOLS}]]",
                  required=False, code="unknown-pool")
    if name is None:
        return t.data.get(POOL) is None, None
    pool = pools.get(name)
    vg = t.data.get(VOLUME_GROUP)
    if pool is not None and isinstance(vg, str) and vg != pool.volume_group:
        t.problems.add("pool-in-other-volume-group", t.child(VOLUME_GROUP), vg,
                       f"'{pool.volume_group}', pool {name}'s volume group, or no "
                       f"{VOLUME_GROUP}", "a thin volume lives in its pool's volume group")
        return False, None
    return pool is not None, pool


def check_pools(pools: list[Pool], volumes: list[Volume], problems: Problems) -> None:
    """Across pools and volumes: no pool named like a volume of its volume group (one
    LV namespace), and thin volumes that fit their pool unless it allows overcommit."""
    for i, pool in enumerate(pools):
        path = f"{POOLS}[{i}]"
        clash = next((v for v in volumes if v.name == pool.name
                      and v.volume_group == pool.volume_group), None)
        if clash is not None:
            problems.add("pool-name-taken", f"{path}.{NAME}", pool.name,
                         "a name no volume of its volume group has",
                         f"volume {clash.name} is an LV of the same name in "
                         f"{pool.volume_group}")
        thin = [v for v in volumes if v.pool == pool.name]
        total = sum(v.size for v in thin)
        if total > pool.size and not pool.overcommit:
            problems.add(
                "pool-overcommitted", f"{path}.{SIZE}", names.format_size(pool.size),
                f"at least {names.format_size(total)} ({total} bytes), or "
                f"{OVERCOMMIT} = true in the pool",
                f"pool {pool.name} is {pool.size} bytes but its thin volumes "
                f"({', '.join(v.name for v in thin)}) add up to {total} bytes; with "
                f"{OVERCOMMIT} = true a guest can fill the pool before its own disk "
                f"(see [[{VOLUMES}]] and docs/thin.md)")
