"""The alert settings on each box: /etc/iscsiha/alerts.json, written by `iscsiha apply`.

Pacemaker runs alert agents as hacluster, which cannot read the desired state (root's,
0600, it holds every CHAP secret) nor Pacemaker's lrm:// store (root's). So apply
writes only the [alerts] table and the two node names here, 0640 root:haclient:
the recipients' secrets are readable by root and the cluster's own group, never by
other local users, and never part of the CIB (which `cibadmin -Q` shows any haclient
member, and crm_report copies into bundles).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iscsiha.errors import IscsihaError
from iscsiha.model import names
from iscsiha.model.alerts import VG_FILL_MAX, VG_FILL_MIN, alerts_data, load_alerts_data
from iscsiha.model.load import DEFAULT_VOLUME_GROUP
from iscsiha.model.types import NO_ALERTS, Alerts, Config

PATH = "/etc/iscsiha/alerts.json"
MODE = 0o640
GROUP = "haclient"  # Pacemaker's group; hacluster, which runs alert agents, is in it
SIZE_MAX = 256 * 1024
NODES = "nodes"
ALERTS = "alerts"
VOLUME_GROUPS = "volume_groups"
VOLUME_GROUPS_MAX = 64
POOLS = "pools"  # [[VG, POOL, fill alert percent], ...]; absent in files of before pools


@dataclass(frozen=True)
class AlertSettings:
    nodes: tuple[str, ...]  # the pair, in the desired state's order; () before a cluster
    alerts: Alerts
    volume_groups: tuple[str, ...] = (DEFAULT_VOLUME_GROUP,)  # what check-space watches
    pools: tuple[tuple[str, str, int], ...] = ()  # (VG, pool, fill alert percent), too


NONE = AlertSettings((), NO_ALERTS)


def file_text(config: Config) -> str:
    groups = sorted({v.volume_group for v in config.volumes} or {DEFAULT_VOLUME_GROUP})
    pools = [[p.volume_group, p.name, p.fill_alert_percent] for p in config.pools]
    return json.dumps({NODES: [n.name for n in config.cluster.nodes],
                       ALERTS: alerts_data(config.alerts), VOLUME_GROUPS: groups,
                       POOLS: pools}, indent=2, sort_keys=True) + "\n"


def read(path: str, read_bytes: Callable[[str], bytes | None]) -> AlertSettings:
    """The settings in ``path``; NONE when there is no file yet (a box before apply:
    events then reach the journal only). IscsihaError when it is not what apply writes."""
    raw = read_bytes(path)
    if raw is None:
        return NONE
    if len(raw) > SIZE_MAX:
        raise IscsihaError.single("bad-alerts-file", path, f"{len(raw)} bytes",
                                  f"at most {SIZE_MAX} bytes, as `iscsiha apply` writes it")
    try:
        data: Any = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise IscsihaError.single("bad-alerts-file", path, str(exc)[:200],
                                  "JSON as `iscsiha apply` writes it") from None
    if not isinstance(data, dict) or set(data) - {POOLS} != {NODES, ALERTS, VOLUME_GROUPS} \
            or not isinstance(data[ALERTS], dict):
        raise IscsihaError.single("bad-alerts-file", path, sorted(data)[:8]
                                  if isinstance(data, dict) else type(data).__name__,
                                  f"an object with '{NODES}', '{ALERTS}', '{VOLUME_GROUPS}'")
    nodes = data[NODES]
    if not isinstance(nodes, list) or len(nodes) != 2 or any(
            names.node_name_problem(n) is not None for n in nodes):
        raise IscsihaError.single("bad-alerts-file", f"{path}: {NODES}", str(nodes)[:200],
                                  "the two node names")
    groups = data[VOLUME_GROUPS]
    if not isinstance(groups, list) or not 1 <= len(groups) <= VOLUME_GROUPS_MAX or any(
            names.vg_name_problem(g) is not None for g in groups):
        raise IscsihaError.single("bad-alerts-file", f"{path}: {VOLUME_GROUPS}",
                                  str(groups)[:200], f"1 to {VOLUME_GROUPS_MAX} "
                                  f"volume group names ({names.VG_NAME_ALLOWED})")
    return AlertSettings(tuple(nodes), load_alerts_data(data[ALERTS], f"{path}: {ALERTS}"),
                         tuple(groups), _pools(data.get(POOLS, []), path))


def _pools(pools: Any, path: str) -> tuple[tuple[str, str, int], ...]:
    def ok(p: Any) -> bool:
        return (isinstance(p, list) and len(p) == 3 and names.vg_name_problem(p[0]) is None
                and names.object_name_problem(p[1]) is None and type(p[2]) is int
                and VG_FILL_MIN <= p[2] <= VG_FILL_MAX)

    if not isinstance(pools, list) or len(pools) > VOLUME_GROUPS_MAX \
            or not all(ok(p) for p in pools):
        raise IscsihaError.single("bad-alerts-file", f"{path}: {POOLS}", str(pools)[:200],
                                  f"at most {VOLUME_GROUPS_MAX} [VOLUME_GROUP, POOL, PERCENT] "
                                  f"with PERCENT {VG_FILL_MIN} to {VG_FILL_MAX}")
    return tuple((vg, pool, percent) for vg, pool, percent in pools)
