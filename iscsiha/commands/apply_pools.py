"""What an apply does to thin pools, worked out from both boxes' facts before anything
changes (pure): pools to create or grow, the volume group space they take, and what
cannot be done (a pool shrinking, a volume turning thick or thin, thin volumes beyond
their pool)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from iscsiha.errors import IscsihaError, Report
from iscsiha.model.fields import OVERCOMMIT
from iscsiha.model.types import Config, Pool, Volume
from iscsiha.protocol.messages import Facts

MIB = 1024**2
# lvcreate sizes a pool's metadata at about 64 bytes per 64 KiB chunk and, by default,
# no more than 128 MiB (it takes larger chunks instead), and keeps a spare copy of the
# same size for repair: a pool needs up to twice this beyond its data.
METADATA_MIN, METADATA_MAX = 2 * MIB, 128 * MIB


@dataclass(frozen=True)
class PoolChanges:
    create: tuple[Pool, ...] = ()  # missing on at least one box
    grow: tuple[Pool, ...] = ()  # smaller than desired on at least one box
    # node -> volume group -> bytes the pools created or grown take from it
    need: Mapping[str, Mapping[str, int]] = field(default_factory=dict)


NO_POOL_CHANGES = PoolChanges()


def pool_overhead(size: int) -> int:
    """Bytes a new pool of ``size`` takes from its volume group beyond ``size``."""
    return 2 * min(METADATA_MAX, max(METADATA_MIN, size // 1024))


def check_pools(config: Config, create: tuple[Volume, ...],
                facts: Mapping[str, Facts]) -> PoolChanges:
    """``create``: the volumes this apply makes. Raises IscsihaError with every problem."""
    reports: list[Report] = []
    creating: dict[str, Pool] = {}
    growing: dict[str, Pool] = {}
    need: dict[str, dict[str, int]] = {}
    for node, f in facts.items():
        have = {p.name: p for p in f.pools}
        thin = dict(f.thin)
        for pool in config.pools:
            extent = f.vgs[pool.volume_group][1]
            size = -(-pool.size // extent) * extent  # LVM rounds up to whole extents
            now = have.get(pool.name)
            if now is None:
                if f.lvs.get(pool.name) is not None:
                    reports.append(Report(
                        "pool-exists", "pool", pool.name, "a name no LV on either box has",
                        f"{node} already has /dev/{pool.volume_group}/{pool.name} outside "
                        "the cluster"))
                    continue
                creating[pool.name] = pool
                _add(need, node, pool.volume_group, size + pool_overhead(size))
            elif now.volume_group != pool.volume_group:
                reports.append(Report(
                    "pool-changes-volume-group", "pool", pool.name,
                    f"volume group {now.volume_group}, where it is",
                    f"is in {now.volume_group} on {node}: a pool cannot move; make a new one"))
            elif now.size > size:
                reports.append(Report(
                    "pool-shrink", "size", f"{pool.name}: {pool.size}",
                    f"at least the current {now.size} bytes",
                    f"pool {pool.name} on {node} holds {now.size} bytes; thin pools cannot "
                    "shrink"))
            elif now.size < size:
                growing[pool.name] = pool
                _add(need, node, pool.volume_group, size - now.size)
        for v in config.volumes:
            if v in create or f.lvs.get(v.name) is None or v.name not in f.tagged:
                continue  # a new volume, or one that is missing (check_facts says so)
            was = thin.get(v.name)
            if was != v.pool:
                reports.append(_provisioning_change(v, was, node))
        reports += _thin_space(config, f, node)
    if reports:
        raise IscsihaError(reports)
    return PoolChanges(tuple(creating[n] for n in sorted(creating)),
                       tuple(growing[n] for n in sorted(growing)), need)


def _provisioning_change(v: Volume, was: str | None, node: str) -> Report:
    now = f"thin in pool {v.pool}" if v.pool else "thick"
    before = f"thin in pool {was}" if was else "thick"
    return Report("volume-changes-provisioning", "volume", v.name, f"{before}, as it is",
                  f"is {before} on {node} and would become {now}: its data would have to "
                  "move to another LV; make a new volume and copy the data instead")


def _thin_space(config: Config, f: Facts, node: str) -> list[Report]:
    """A pool without overcommit holds its thin volumes whole, as LVM rounds them."""
    reports = []
    for pool in config.pools:
        if pool.overcommit:
            continue
        extent = f.vgs[pool.volume_group][1]
        thin = config.thin_volumes(pool.name)
        total = sum(-(-v.size // extent) * extent for v in thin)
        size = -(-pool.size // extent) * extent
        if total > size:
            reports.append(Report(
                "pool-no-space", "pool", f"{node}:{pool.name}",
                f"thin volumes of at most {size} bytes in all, or {OVERCOMMIT} = true",
                f"its thin volumes ({', '.join(v.name for v in thin)}) take {total} bytes "
                "in whole extents"))
    return reports


def _add(need: dict[str, dict[str, int]], node: str, vg: str, size: int) -> None:
    need.setdefault(node, {})
    need[node][vg] = need[node].get(vg, 0) + size
