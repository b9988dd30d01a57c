"""Candidates for tab completion: names in the desired state, sizes, IQNs, free addresses."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from contextlib import suppress
from itertools import islice
from typing import Any

from iscsiha.console.edits import named, portal_key, tables
from iscsiha.console.state import State
from iscsiha.errors import IscsihaError
from iscsiha.model.fields import (
    ADDRESSES,
    INITIATORS,
    LUNS,
    NETWORKS,
    NODES,
    PORTALS,
    ROLE,
    SUBNET,
    TARGETS,
    VOLUME,
    VOLUMES,
)
from iscsiha.model.types import NetworkRole

SIZE_UNITS = ("M", "G", "T")
SIZE_EXAMPLES = ("100M", "1G", "10G", "100G", "1T")
ADDRESSES_SHOWN = 16
_HOSTS_LOOKED_AT = 4096  # a /16 storage network must not make TAB hang


def matching(candidates: Iterable[str], text: str) -> list[str]:
    """The candidates starting with ``text``; a lone one gets a space, as configshell does."""
    found = sorted({c for c in candidates if c.startswith(text)})
    if len(found) == 1 and not found[0].endswith("="):
        found[0] += " "
    return found


def sizes(text: str) -> list[str]:
    number = text.rstrip("KMGTPiB")
    if number and number.replace(".", "", 1).isdigit():
        return matching((number + unit for unit in SIZE_UNITS), text)
    return matching(SIZE_EXAMPLES, text)


def volume_names(state: State) -> list[str]:
    return named(state.data_or_empty(), VOLUMES)


def target_names(state: State) -> list[str]:
    return named(state.data_or_empty(), TARGETS)


def node_names(state: State) -> list[str]:
    return named(state.data_or_empty(), NODES)


def unexported_volumes(state: State) -> list[str]:
    data = state.data_or_empty()
    exported = {lun.get(VOLUME) for t in tables(data, TARGETS)
                for lun in t.get(LUNS) or [] if isinstance(lun, dict)}
    return [v for v in named(data, VOLUMES) if v not in exported]


def initiators(state: State) -> list[str]:
    """Initiators in any ACL, and those the cluster has seen."""
    found = {i for t in tables(state.data_or_empty(), TARGETS)
             for i in t.get(INITIATORS) or [] if isinstance(i, str)}
    with suppress(IscsihaError):  # completion must not fail because the cluster is down
        found.update(state.backend.seen_initiators())
    return sorted(found)


def storage_addresses(data: dict[str, Any], text: str) -> list[str]:
    """Free host addresses in the storage networks: no node's, no portal's."""
    used = {str(a) for n in tables(data, NODES)
            for a in (n.get(ADDRESSES) or {}).values()}
    used |= {portal_key(p).rsplit(":", 1)[0].strip("[]")
             for t in tables(data, TARGETS) for p in t.get(PORTALS) or []
             if isinstance(p, str)}
    found: list[str] = []
    for net in tables(data, NETWORKS):
        if net.get(ROLE) != NetworkRole.STORAGE.value:
            continue
        try:
            subnet = ipaddress.ip_network(str(net.get(SUBNET)), strict=True)
        except ValueError:
            continue
        hosts = (str(h) for h in islice(subnet.hosts(), _HOSTS_LOOKED_AT))
        free = (h for h in hosts if h not in used and h.startswith(text))
        found += islice(free, ADDRESSES_SHOWN)
    return matching(found, text)
