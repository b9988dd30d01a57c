"""`cluster init`'s parameters as the desired state's cluster sections, and the checks
that a box really is the one those sections describe.

The sections are validated by the model's own loader, so a wrong value gets the
same report as in a hand-written file; the report then names the parameter it
came from (``link0 (peer's address)``) rather than only the TOML path.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from iscsiha.errors import IscsihaError, Report, Secret
from iscsiha.model.fields import (
    ADDRESS,
    ADDRESSES,
    BMC,
    CIPHER,
    CLUSTER,
    MTU,
    NAME,
    NODES,
    PASSWORD,
    PING,
    ROLE,
    SUBNET,
    TIEBREAKER,
    USER,
)
from iscsiha.model.fields import NETWORKS as NETWORKS_KEY
from iscsiha.model.load import load_data
from iscsiha.model.names import parse_decimal
from iscsiha.model.types import DEFAULT_MTU, Config, IPAddress, NetworkRole, Node

_LINK, _STORAGE = NetworkRole.CLUSTER.value, NetworkRole.STORAGE.value
# The networks of a standard deployment, by the name each gets in the desired state.
NETWORKS = (("link0", _LINK), ("link1", _LINK), ("repl", NetworkRole.REPLICATION.value),
            ("storage", _STORAGE), ("storage2", _STORAGE))
REQUIRED_NETWORKS = ("link0", "link1", "repl", "storage")
NETWORK_ALLOWED = ("SUBNET,THIS_BOX,PEER: the network in CIDR form, then this box's "
                   "address and the peer's, e.g. 10.10.0.0/24,10.10.0.11,10.10.0.12")

HeldAddress = tuple[str, IPAddress, int]  # (interface, address, prefix length)
ParamName = Callable[[str], str]  # how an interface spells a parameter


@dataclass(frozen=True)
class InitRequest:
    name: str
    peer: str
    networks: Mapping[str, str]  # network name -> "SUBNET,THIS_BOX,PEER"
    bmc: str
    bmc_user: str
    bmc_password: Secret
    peer_bmc: str
    peer_bmc_user: str
    peer_bmc_password: Secret
    node: str | None = None  # default: this box's host name
    ping: tuple[str, ...] = ()
    tiebreaker: str | None = None
    bmc_cipher: str | None = None  # both BMCs' IPMI cipher suite; None: ipmitool asks


def console_name(param: str) -> str:
    return param


def cli_name(param: str) -> str:
    return "--" + param.replace("_", "-")


def desired_data(request: InitRequest, node: str,
                 param: ParamName = console_name) -> tuple[dict[str, Any], dict[str, str]]:
    """The sections, and for each TOML path the parameter its value came from."""
    problems = []
    specs: dict[str, list[str]] = {}
    known = [name for name, _ in NETWORKS]
    for name, text in request.networks.items():
        parts = [p.strip() for p in text.split(",")]
        if name not in known:
            problems.append(Report("unknown-network", param(name), name, ", ".join(known)))
        elif len(parts) != 3 or not all(parts):
            problems.append(Report("bad-network", param(name), text, NETWORK_ALLOWED,
                                   f"has {len(parts)} part{'s' if len(parts) != 1 else ''}"
                                   if len(parts) != 3 else "has an empty part"))
        else:
            specs[name] = parts
    for name in REQUIRED_NETWORKS:
        if name not in request.networks:
            problems.append(Report("missing", param(name), None, NETWORK_ALLOWED,
                                   "is required"))
    if problems:
        raise IscsihaError(problems)

    names: dict[str, str] = {f"{CLUSTER}.{NAME}": param("name"),
                             f"{CLUSTER}.{TIEBREAKER}": param("tiebreaker"),
                             f"{NODES}[0].{NAME}": param("node"),
                             f"{NODES}[1].{NAME}": param("peer")}
    networks: list[dict[str, Any]] = []
    for name, role in NETWORKS:
        if name in specs:
            names[f"{NETWORKS_KEY}[{len(networks)}].{SUBNET}"] = f"{param(name)} (subnet)"
            networks.append({NAME: name, ROLE: role, SUBNET: specs[name][0]})
    _place_ping(networks, request.ping, names, param)
    nodes = []
    for i, (who, bmc, user, password, which) in enumerate((
            (node, request.bmc, request.bmc_user, request.bmc_password, "this box's address"),
            (request.peer, request.peer_bmc, request.peer_bmc_user, request.peer_bmc_password,
             "peer's address"))):
        prefix = "" if i == 0 else "peer_"
        for net in networks:
            names[f"{NODES}[{i}].{ADDRESSES}.{net[NAME]}"] = f"{param(net[NAME])} ({which})"
        names.update({f"{NODES}[{i}].{BMC}.{ADDRESS}": param(f"{prefix}bmc"),
                      f"{NODES}[{i}].{BMC}.{USER}": param(f"{prefix}bmc_user"),
                      f"{NODES}[{i}].{BMC}.{PASSWORD}": param(f"{prefix}bmc_password"),
                      f"{NODES}[{i}].{BMC}.{CIPHER}": param("bmc_cipher")})
        bmc_table: dict[str, Any] = {ADDRESS: bmc, USER: user, PASSWORD: str(password)}
        if request.bmc_cipher is not None:
            # ASCII digits go in as a number, anything else as given: the loader names it.
            number = parse_decimal(request.bmc_cipher, -sys.maxsize, sys.maxsize)
            bmc_table[CIPHER] = request.bmc_cipher if number is None else number
        nodes.append({NAME: who,
                      ADDRESSES: {n[NAME]: specs[n[NAME]][1 + i] for n in networks},
                      BMC: bmc_table})
    cluster: dict[str, Any] = {NAME: request.name}
    if request.tiebreaker:
        cluster[TIEBREAKER] = request.tiebreaker
    return {CLUSTER: cluster, NETWORKS_KEY: networks, NODES: nodes}, names


def _place_ping(networks: list[dict[str, Any]], hosts: Iterable[str], names: dict[str, str],
                param: ParamName) -> None:
    """Each ping host goes to the storage network it lies in (else the first, whose
    check then reports it)."""
    storage = [(i, n) for i, n in enumerate(networks) if n[ROLE] == _STORAGE]
    for host in hosts:
        index, net = storage[0]
        for i, candidate in storage:
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(candidate[SUBNET]):
                    index, net = i, candidate
                    break
            except ValueError:
                continue
        names[f"{NETWORKS_KEY}[{index}].{PING}[{len(net.get(PING, []))}]"] = param("ping")
        net.setdefault(PING, []).append(host)


def load_sections(data: Mapping[str, Any], names: Mapping[str, str]) -> Config:
    """Validate the sections with the model's loader; reports name the parameters."""
    try:
        return load_data(data)
    except IscsihaError as exc:
        raise IscsihaError(_renamed(r, names) for r in exc.reports) from exc


def _renamed(report: Report, names: Mapping[str, str]) -> Report:
    if report.field not in names:
        return report
    return Report(report.code, names[report.field], report.value, report.allowed,
                  report.message, report.severity)


# -- is this box the one described? -----------------------------------------------------

def hostname_problem(hostname: str, node: Node, field: str, role: str) -> Report | None:
    if hostname == node.name:
        return None
    return Report("wrong-host-name", field, hostname, f"{node.name} ({role})",
                  f"this box is called {hostname}: Pacemaker knows a box by its host "
                  f"name, so set it to {node.name} first (or use the other box)")


def address_problems(config: Config, node: Node, held: Iterable[HeldAddress],
                     field: Callable[[str], str]) -> list[Report]:
    """One report for each network where this box lacks ``node``'s address."""
    held = list(held)
    others = {a: n.name for n in config.cluster.nodes if n is not node for _, a in n.addresses}
    problems = []
    for net in config.cluster.networks:
        want = node.address_on(net.name)
        exact = [(i, p) for i, a, p in held if a == want]
        if any(p == net.subnet.prefixlen for _, p in exact):
            continue
        allowed = f"{want}/{net.subnet.prefixlen} on an interface of this box ({net.name})"
        if exact:
            ifname, prefix = exact[0]
            problems.append(Report("address-prefix", field(net.name), f"{want}/{prefix}",
                                   allowed, f"is on {ifname} with prefix /{prefix}, but "
                                   f"network {net.name} is {net.subnet}"))
            continue
        near = [f"{a}/{p} on {i}" + (f" (the address given for {others[a]})"
                                     if a in others else "")
                for i, a, p in held if a.version == want.version and a in net.subnet]
        where = (f"in {net.subnet} it has {', '.join(near)}" if near
                 else f"it has no address in {net.subnet}")
        problems.append(Report("address-not-here", field(net.name), str(want), allowed,
                               f"no interface of this box holds it; {where}"))
    return problems


def with_link_mtus(data: dict[str, Any], names: dict[str, str], held: Iterable[HeldAddress],
                   mtu_of: Callable[[str], int | None], param: ParamName) -> None:
    """Each network's MTU in ``data``: that of the link holding this box's address there
    (when not the default), so `join` can hold the peer's links to the same."""
    where = {str(address): ifname for ifname, address, _ in held}
    for index, net in enumerate(data[NETWORKS_KEY]):
        ifname = where.get(str(data[NODES][0][ADDRESSES].get(net[NAME])))
        mtu = mtu_of(ifname) if ifname is not None else None
        if mtu is not None and mtu != DEFAULT_MTU:
            net[MTU] = mtu
            names[f"{NETWORKS_KEY}[{index}].{MTU}"] = f"{param(net[NAME])} (MTU of {ifname})"


def mtu_problems(config: Config, node: Node, held: Iterable[HeldAddress],
                 mtu_of: Callable[[str], int | None], first: str) -> list[Report]:
    """One report for each network whose link on this box has another MTU than the
    first box's."""
    where = {address: ifname for ifname, address, _ in held}
    problems = []
    for net in config.cluster.networks:
        ifname = where.get(node.address_on(net.name))
        mtu = mtu_of(ifname) if ifname is not None else None
        if mtu is not None and mtu != net.mtu:
            problems.append(Report(
                "mtu-mismatch", f"{node.name} {net.name}", mtu,
                f"{net.mtu}, the MTU of {net.name} on {first}: both ends of a path alike",
                f"{ifname} has MTU {mtu}: set the same on both boxes (`/box/networks add "
                f"... mtu=`) and on the switch ports between them"))
    return problems
