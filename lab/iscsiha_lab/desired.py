"""The lab's cluster written as the product's desired state, validated like any other.

So the lab runs what the product plans (corosync.conf now; volumes and targets
as they land) instead of a lab-only copy of it.
"""

from __future__ import annotations

from typing import Any

from iscsiha.errors import Secret
from iscsiha.model.load import load_data
from iscsiha.model.types import Config
from iscsiha_lab.topology import LabNetwork, NetworkRole, Topology


def lab_config(topology: Topology, bmc_password: Secret) -> Config:
    return load_data(lab_data(topology, bmc_password))


def lab_data(topology: Topology, bmc_password: Secret) -> dict[str, Any]:
    """The lab's cluster as a desired-state document (no volumes or targets yet)."""
    networks = [n for n in topology.networks if n.role is not NetworkRole.MANAGEMENT]
    data: dict[str, Any] = {
        "cluster": {"name": topology.cluster_name, "tiebreaker": str(topology.qnetd_address)},
        "networks": [{"name": n.name, "role": n.role.value, "subnet": str(n.subnet)}
                     | _ping(topology, n) for n in networks],
        "nodes": [{
            "name": node.name,
            "addresses": {n.name: str(topology.address(node, n.name)) for n in networks},
            "bmc": {"address": str(topology.bmc_address(node)), "user": topology.bmc_user,
                    "password": str(bmc_password)},
        } for node in topology.appliances],
    }
    return data


def _ping(topology: Topology, net: LabNetwork) -> dict[str, Any]:
    """The lab's storage network has no switch to ping; its initiators stand in."""
    if net.role is not NetworkRole.STORAGE:
        return {}
    return {"ping": [str(topology.address(n, net.name)) for n in topology.initiators]}
