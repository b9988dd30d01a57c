"""The whole plan: the CIB fragment, each node's files (corosync, DRBD), and the secrets
kept out of both."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from iscsiha.model.identity import DrbdResource, DrbdSlot, allocate_drbd, volume_slots
from iscsiha.model.types import Config
from iscsiha.plan import cib, corosync, drbd


@dataclass(frozen=True)
class NodeFile:
    path: str
    content: str
    mode: int = 0o644


@dataclass(frozen=True)
class Plan:
    cib: str  # the <configuration> fragment, XML text
    node_files: Mapping[str, tuple[NodeFile, ...]]  # node name -> files
    drbd: Mapping[str, DrbdResource]  # target -> its DRBD resource
    secrets: Mapping[tuple[str, str], str]  # (resource, parameter) -> value, never printed

    @property
    def slots(self) -> dict[str, DrbdSlot]:
        """Exported volume -> its DRBD volume number and minor."""
        return volume_slots(self.drbd)


def make_plan(config: Config, previous: Mapping[str, DrbdResource] | None = None,
              replication_key: bytes | None = None) -> Plan:
    """Pure: the same config, previous slots and key always give the same plan.

    ``replication_key`` (the cluster's authkey) makes the DRBD peer secrets; DRBD
    files hold them, so they are written 0600.
    """
    resources = allocate_drbd(config, previous)
    files = (
        NodeFile(corosync.PATH, corosync.corosync_conf(config)),
        *(NodeFile(drbd.resource_path(t.name),
                   drbd.resource_file(config, t, resources[t.name], replication_key), 0o600)
          for t in config.targets),
    )
    return Plan(
        cib=cib.to_text(cib.configuration(config, resources)),
        node_files={node.name: files for node in config.cluster.nodes},
        drbd=resources,
        secrets=cib.secret_parameters(config),
    )
