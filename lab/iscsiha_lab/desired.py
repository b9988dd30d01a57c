"""The lab's cluster as the product's desired state: the document `cluster init` writes.

On a running lab it is read from the boxes (`cluster_data`), so every scenario starts
from what the product's bootstrap wrote. Without a lab (unit tests), `lab_data` makes
the same document with the product's own code from the same parameters.
"""

from __future__ import annotations

import tomllib
from typing import Any

from iscsiha.commands.bootstrap_params import InitRequest, desired_data
from iscsiha.commands.node_steps import DESIRED_PATH
from iscsiha.errors import IscsihaError, Secret
from iscsiha.model.load import load_data
from iscsiha.model.types import Config
from iscsiha_lab.cluster import init_params
from iscsiha_lab.lab import Lab
from iscsiha_lab.topology import Topology


def init_request(topology: Topology, bmc_password: Secret) -> InitRequest:
    """What `cluster init` is given in the lab, as the product's request."""
    params = dict(init_params(topology))
    text = {name: value for name, value in params.items() if isinstance(value, str)}
    networks = {n.name for n in topology.networks}
    return InitRequest(
        name=text["name"], peer=text["peer"],
        networks={name: value for name, value in text.items() if name in networks},
        bmc=text["bmc"], bmc_user=text["bmc_user"], bmc_password=bmc_password,
        peer_bmc=text["peer_bmc"], peer_bmc_user=text["bmc_user"],
        peer_bmc_password=bmc_password, ping=tuple(params["ping"]),
        tiebreaker=text["tiebreaker"], bmc_cipher=text["bmc_cipher"])


def lab_data(topology: Topology, bmc_password: Secret) -> dict[str, Any]:
    """The document `cluster init` writes for the lab (no volumes or targets)."""
    return desired_data(init_request(topology, bmc_password), topology.appliances[0].name)[0]


def lab_config(topology: Topology, bmc_password: Secret) -> Config:
    return load_data(lab_data(topology, bmc_password))


APPLIED_BY_TESTS = ("volumes", "targets", "pools", "alerts")


def cluster_data(lab: Lab) -> dict[str, Any]:
    """The cluster part of the desired state on the boxes (the first that answers): what
    `cluster init` wrote, without the volumes, thin pools, targets and alert recipients
    earlier tests applied."""
    problems = []
    for node in lab.topology.appliances:
        try:
            found = lab.exec(node.name, ["cat", DESIRED_PATH], timeout=60)
        except IscsihaError as exc:  # powered off or frozen by a scenario: ask the other
            problems.append(str(exc))
            continue
        if found.ok:
            data = tomllib.loads(found.out)
            return {k: v for k, v in data.items() if k not in APPLIED_BY_TESTS}
        problems.append(f"{node.name}: {found.err.strip()}")
    raise IscsihaError.single("no-desired-state", "file", DESIRED_PATH,
                              "the desired state `cluster init/join` wrote on a box",
                              "; ".join(problems))
