"""Helpers for the storage-path lab tests: their desired state and what they read back.
The initiator side and `iscsiha` on a box are iscsiha_lab's (initiator, pair)."""

from __future__ import annotations

import copy
from typing import Any

from iscsiha_lab.desired import cluster_data
from iscsiha_lab.initiator import MUTUAL, iqn
from iscsiha_lab.lab import Lab


def desired(lab: Lab, initiator_iqn: str) -> dict[str, Any]:
    """Two targets, one per box: `one` (1 LUN, on san-a), `eight` (8 LUNs, on san-b)."""
    data = cluster_data(lab)
    data["volumes"] = [{"name": "solo", "size": "32M"}] + [
        {"name": f"disk{i}", "size": "32M"} for i in range(8)]
    common = {"failback": "manual", "initiators": [initiator_iqn], "auth": MUTUAL}
    data["targets"] = [
        {"name": "one", "iqn": iqn("one"), "portals": ["10.99.30.100"],
         "preferred_node": "san-a", "luns": [{"lun": 0, "volume": "solo"}], **common},
        {"name": "eight", "iqn": iqn("eight"), "portals": ["10.99.30.101"],
         "preferred_node": "san-b",
         "luns": [{"lun": i, "volume": f"disk{i}"} for i in range(8)], **common},
    ]
    return data


def cib_epoch(lab: Lab) -> str:
    """The CIB's admin_epoch and epoch: any configuration change bumps them."""
    head = lab.exec("san-a", ["sh", "-c", "cibadmin --query | head -1"]).check().out
    return " ".join(w for w in head.split() if w.startswith(("epoch=", "admin_epoch=")))


def lvs(lab: Lab, box: str) -> str:
    """The cluster's volumes (tagged), not the targets' reservations LVs."""
    return lab.exec(box, ["lvs", "--noheadings", "-o", "lv_name,lv_size", "@iscsiha"]
                    ).check().out


def with_volume_size(data: dict[str, Any], volume: str, size: str) -> dict[str, Any]:
    new = copy.deepcopy(data)
    for v in new["volumes"]:
        if v["name"] == volume:
            v["size"] = size
    return new
