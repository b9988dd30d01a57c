"""The whole plan: the CIB fragment, each node's files (corosync, DRBD), and the secrets
kept out of both."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from iscsiha.model.identity import DrbdSlot, allocate_drbd
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
    slots: Mapping[str, DrbdSlot]  # volume -> DRBD minor and port
    secrets: Mapping[tuple[str, str], str]  # (resource, parameter) -> value, never printed


def make_plan(config: Config, previous: Mapping[str, DrbdSlot] | None = None,
              replication_key: bytes | None = None) -> Plan:
    """Pure: the same config, previous slots and key always give the same plan.

    ``replication_key`` (the cluster's authkey) makes the DRBD peer secrets; DRBD
    files hold them, so they are written 0600.
    """
    slots = allocate_drbd(config.volumes, previous)
    files = (
        NodeFile(corosync.PATH, corosync.corosync_conf(config)),
        *(NodeFile(drbd.resource_path(v),
                   drbd.resource_file(config, v, slots[v.name], replication_key), 0o600)
          for v in config.volumes),
    )
    return Plan(
        cib=cib.to_text(cib.configuration(config, slots)),
        node_files={node.name: files for node in config.cluster.nodes},
        slots=slots,
        secrets=cib.secret_parameters(config),
    )
