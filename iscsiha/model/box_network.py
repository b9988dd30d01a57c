"""This box's own networks: what `iscsiha network` and the console's /box/networks edit.

A box needs its addresses before a cluster exists (`cluster init` checks it holds
them), so they live in a small file of the box, not in the desired state:

    [addresses]                     # network name -> this box's address/prefix
    link0 = "10.10.0.11/24"
    mgmt = "192.168.1.21/24"
    [links]                         # the same syntax as a node's links
    link0 = "eno1"
    mgmt = "eno0"
    [mtu]                           # optional, per network; default 1500
    [gateway]                       # optional: the default route, one per IP version
    mgmt = "192.168.1.1"
    [bonds]                         # optional, as a node's bonds
    dns = ["192.168.1.1"]           # optional, at most 3 (a top-level key)
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface, ip_interface
from typing import Any, TypeVar

from iscsiha.errors import IscsihaError
from iscsiha.model import names
from iscsiha.model.fields import ADDRESSES, BONDS, LINKS, MTU, Problems, Table
from iscsiha.model.links import read_links
from iscsiha.model.load import MTU_MAX, MTU_MIN
from iscsiha.model.toml_dump import dumps
from iscsiha.model.types import DEFAULT_MTU, Bond, IPAddress, Link

T = TypeVar("T")
PATH = "/etc/iscsiha/network.toml"
GATEWAY = "gateway"
DNS = "dns"
KEYS = (ADDRESSES, LINKS, MTU, GATEWAY, BONDS, DNS)
MAX_NETWORKS = 16
MAX_DNS = 3
IPInterface = IPv4Interface | IPv6Interface
INTERFACE_ALLOWED = ("this box's address with the subnet's prefix length, e.g. "
                     "10.10.0.11/24 (not the subnet's own or broadcast address)")
HEADER = ("# This box's own networks. Edit with `iscsiha network` or the console's\n"
          "# /box/networks, then apply; the files in /etc/systemd/network follow it.\n")


@dataclass(frozen=True)
class BoxNetworks:
    addresses: tuple[tuple[str, IPInterface], ...] = ()  # in the file's order
    links: tuple[Link, ...] = ()
    bonds: tuple[Bond, ...] = ()
    mtus: tuple[tuple[str, int], ...] = ()  # every network, defaults included
    gateways: tuple[tuple[str, IPAddress], ...] = ()
    dns: tuple[IPAddress, ...] = ()

    @property
    def interfaces(self) -> dict[str, IPInterface]:
        return dict(self.addresses)


def load_text(text: str, source: str = PATH) -> BoxNetworks:
    """Parse and check the file's text; every problem at once, naming its key."""
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError, ValueError) as exc:
        raise IscsihaError.single("config-syntax", source, str(exc)[:300],
                                  "valid TOML (https://toml.io)", "cannot be read") from exc
    return load_data(data)


def load_data(data: Mapping[str, Any]) -> BoxNetworks:
    problems = Problems()
    top = Table(data, "", problems)
    box = _read(top, problems)
    top.finish()
    if box is None or problems.has_errors:
        raise IscsihaError(problems.reports)
    return box


def to_text(data: Mapping[str, Any]) -> str:
    """The file for ``data`` (plain dicts, as edited); empty tables are left out."""
    return HEADER + dumps({k: data[k] for k in KEYS if data.get(k)})


def _read(top: Table, problems: Problems) -> BoxNetworks | None:
    before = len(problems.reports)
    addresses = _addresses(top.table(ADDRESSES, required=False), problems)
    names_ = [name for name, _ in addresses]
    mtus = _per_network(top.table(MTU, required=False), names_, problems,
                        lambda t, key: t.integer(key, MTU_MIN, MTU_MAX))
    gateways: list[tuple[str, IPAddress]] = _per_network(
        top.table(GATEWAY, required=False), names_, problems, Table.address)
    mtu_of = {name: dict(mtus).get(name, DEFAULT_MTU) for name in names_}
    found = read_links(top, mtu_of, problems)
    links, bonds = found if found is not None else ((), ())
    if found is not None and addresses:
        linked = {lk.network for lk in links}
        for name in names_:
            if name not in linked:
                problems.add("network-without-link", top.child(LINKS), name,
                             "a link (NIC, bond or NIC.VLAN) for every network with an address")
    interfaces = dict(addresses)
    versions: dict[int, str] = {}
    for name, gateway in gateways:
        interface = interfaces[name]
        where = f"{GATEWAY}.{name}"
        if gateway not in interface.network or gateway == interface.ip:
            problems.add("gateway-outside-subnet", where, str(gateway),
                         f"another host of {interface.network} (network '{name}')")
        elif gateway.version in versions:
            problems.add("two-default-routes", where, str(gateway),
                         f"one gateway per IP version (IPv{gateway.version})",
                         f"network '{versions[gateway.version]}' has one already")
        versions.setdefault(gateway.version, name)
    dns = []
    for path, text in top.strings(DNS, required=False)[: MAX_DNS + 1]:
        address = names.parse_ip(text)
        if address is None:
            problems.add("bad-address", path, text, names.ADDRESS_ALLOWED)
        else:
            dns.append(address)
    if len(top.data.get(DNS) or ()) > MAX_DNS:
        problems.add("too-many-dns-servers", DNS, len(top.data[DNS]), f"at most {MAX_DNS}")
    if len(problems.reports) > before:
        return None
    return BoxNetworks(tuple(addresses), tuple(links), tuple(bonds),
                       tuple(mtu_of.items()), tuple(gateways), tuple(dns))


def _addresses(t: Table | None, problems: Problems) -> list[tuple[str, IPInterface]]:
    if t is None:
        return []
    out: list[tuple[str, IPInterface]] = []
    for name in list(t.data)[: MAX_NETWORKS + 1]:
        if names.object_name_problem(name) is not None:
            t.seen.add(name)
            problems.add("bad-name", t.child(name), name, names.OBJECT_NAME_ALLOWED)
            continue
        text = t.typed(name, str)
        interface = None if text is None else parse_interface(text)
        if text is not None and interface is None:
            problems.add("bad-address", t.child(name), text, INTERFACE_ALLOWED)
        elif interface is not None:
            out.append((name, interface))
    if len(t.data) > MAX_NETWORKS:
        problems.add("too-many-networks", t.path, len(t.data), f"at most {MAX_NETWORKS}")
    for i, (name, a) in enumerate(out):
        for other, b in out[i + 1:]:
            if a.version == b.version and a.network.overlaps(b.network):
                problems.add("overlapping-subnets", t.child(other), str(b.network),
                             "networks that do not overlap",
                             f"overlaps {a.network} of network '{name}'")
    return out


def parse_interface(text: str) -> IPInterface | None:
    """``10.10.0.11/24``: a usable host address with its prefix, or None."""
    address, slash, prefix = text.partition("/")
    if not slash or not prefix.isdigit() or len(prefix) > 3 or names.parse_ip(address) is None:
        return None
    interface = ip_interface(f"{address}/{int(prefix)}") if int(prefix) <= 128 else None
    if interface is None or int(prefix) > interface.max_prefixlen:
        return None
    ip, net = interface.ip, interface.network
    if ip.is_loopback or ip.is_multicast or ip.is_unspecified or ip.is_link_local:
        return None
    if ip.version == 4 and net.prefixlen < 31 and ip in (net.network_address,
                                                        net.broadcast_address):
        return None
    return interface


def _per_network(t: Table | None, known: list[str], problems: Problems,
                 read: Callable[[Table, str], T | None]) -> list[tuple[str, T]]:
    if t is None:
        return []
    out = []
    for key in list(t.data):
        if key not in known:
            t.seen.add(key)
            problems.add("unknown-network", t.child(key), key,
                         ", ".join(known) or f"a network of [{ADDRESSES}]")
            continue
        value = read(t, key)
        if value is not None:
            out.append((key, value))
    return out
