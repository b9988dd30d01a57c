"""A box's links as systemd-networkd files, from its node's links and bonds.

The files go to /etc/systemd/network/ with names below the image's catch-all DHCP file
(99-iscsiha-default-dhcp.network), so they take over exactly the NICs they name; NICs
the desired state does not name keep DHCP. Pure: the same node gives the same files.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Interface, IPv6Interface, ip_interface

from iscsiha.model.box_network import BoxNetworks
from iscsiha.model.types import Bond, BondMode, Cluster, Link, Node
from iscsiha.plan.plan import NodeFile

DIRECTORY = "/etc/systemd/network"
PREFIX = "10-iscsiha-"
HEADER = "# Written by iscsiha from the desired state; edit that, not this file.\n"
BOX_HEADER = ("# Written by iscsiha from this box's /etc/iscsiha/network.toml (`iscsiha "
              "network`,\n# the console's /box/networks); edit that, not this file.\n")


def node_files(cluster: Cluster, node: Node) -> tuple[NodeFile, ...]:
    """Every .netdev and .network file of ``node``; none when it has no links."""
    if not node.links:
        return ()
    prefix = {n.name: n.subnet.prefixlen for n in cluster.networks}
    interfaces = {net: ip_interface(f"{addr}/{prefix[net]}") for net, addr in node.addresses}
    return link_files({n.name: n.mtu for n in cluster.networks}, interfaces, node.links,
                      node.bonds)


def box_files(box: BoxNetworks) -> tuple[NodeFile, ...]:
    """The files of this box's own networks (iscsiha.model.box_network)."""
    extra: dict[str, dict[str, object]] = {net: {"Gateway": str(gw)}
                                            for net, gw in box.gateways}
    if box.dns and box.addresses:
        # The resolvers go where the default route goes, else on the first network.
        first = box.gateways[0][0] if box.gateways else box.addresses[0][0]
        extra.setdefault(first, {})["DNS"] = [str(d) for d in box.dns]
    return link_files(dict(box.mtus), box.interfaces, box.links, box.bonds, extra, BOX_HEADER)


def link_files(mtu: Mapping[str, int], interfaces: Mapping[str, IPv4Interface | IPv6Interface],
               links: Sequence[Link], bonds: Sequence[Bond],
               extra: Mapping[str, Mapping[str, object]] | None = None,
               header: str = HEADER) -> tuple[NodeFile, ...]:
    """The files for ``links`` (network -> device), each network's address/prefix in
    ``interfaces``; ``extra``: more [Network] settings per network (a gateway)."""
    extra = extra or {}
    by_device: dict[str, list[Link]] = defaultdict(list)
    for link in links:
        by_device[link.device].append(link)
    # A device's MTU is the largest it carries; a VLAN's own is its network's.
    device_mtu = {d: max(mtu[lk.network] for lk in carried) for d, carried in by_device.items()}
    files = []
    for bond in bonds:
        files.append(_file(f"{bond.name}.netdev", _bond_netdev(bond, device_mtu[bond.name]),
                           header))
        for member in bond.members:
            files.append(_file(f"{member}.network", _section("Match", Name=member)
                               + _section("Link", MTUBytes=device_mtu[bond.name])
                               + _section("Network", Bond=bond.name), header))
    for device, carried in sorted(by_device.items()):
        untagged = next((lk for lk in carried if lk.vlan is None), None)
        tagged = sorted((lk for lk in carried if lk.vlan is not None), key=lambda lk: lk.vlan or 0)
        network: dict[str, object] = {"VLAN": [lk.interface for lk in tagged]}
        if untagged is not None:
            network["Address"] = str(interfaces[untagged.network])
            network.update(extra.get(untagged.network, {}))
        network["LinkLocalAddressing"] = _link_local(
            interfaces[untagged.network].version if untagged is not None else None)
        files.append(_file(f"{device}.network",
                           _section("Match", Name=device)
                           + _section("Link", MTUBytes=device_mtu[device],
                                      RequiredForOnline="no" if untagged is None else None)
                           + _section("Network", **network, **_STATIC), header))
        for link in tagged:
            files.append(_file(f"{link.interface}.netdev",
                               _section("NetDev", Name=link.interface, Kind="vlan",
                                        MTUBytes=mtu[link.network])
                               + _section("VLAN", Id=link.vlan), header))
            files.append(_file(f"{link.interface}.network",
                               _section("Match", Name=link.interface)
                               + _section("Link", MTUBytes=mtu[link.network])
                               + _section("Network", Address=str(interfaces[link.network]),
                                          **extra.get(link.network, {}),
                                          LinkLocalAddressing=_link_local(
                                              interfaces[link.network].version),
                                          **_STATIC), header))
    return tuple(sorted(files, key=lambda f: f.path))


# A cluster, replication or storage address is static and alone on its link: no DHCP,
# no router advertisements; kept while the carrier is down, so corosync and DRBD stay
# bound to it.
_STATIC: dict[str, object] = {"DHCP": "no", "IPv6AcceptRA": "no",
                              "ConfigureWithoutCarrier": "yes"}


def _link_local(version: int | None) -> str:
    """IPv6 neighbour discovery wants a link-local address; IPv4 needs none."""
    return "ipv6" if version == 6 else "no"


def _bond_netdev(bond: Bond, mtu: int) -> str:
    options: dict[str, object] = {"Mode": bond.mode.value, "MIIMonitorSec": "100ms"}
    if bond.mode is BondMode.LACP:
        # Fast LACPDUs notice a dead member in 3 s instead of 90 s; layer3+4 spreads
        # several initiators' connections over the members.
        options.update(LACPTransmitRate="fast", TransmitHashPolicy="layer3+4")
    return _section("NetDev", Name=bond.name, Kind="bond", MTUBytes=mtu) \
        + _section("Bond", **options)


def _file(name: str, body: str, header: str) -> NodeFile:
    return NodeFile(f"{DIRECTORY}/{PREFIX}{name}", header + body.rstrip("\n") + "\n")


def _section(name: str, **settings: object) -> str:
    """An INI section; None is left out, a list repeats its key (VLAN= once per VLAN)."""
    lines = [f"[{name}]"]
    for key, value in settings.items():
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                lines.append(f"{key}={item}")
    return "\n".join(lines) + "\n\n"
