"""What the lab is made of: nodes, networks and addresses. Pure data, no side effects.

The network names follow examples/multipath.toml (link0, link1, repl, storage, storage2) so
that a desired state written for the lab reads like one for real boxes; ``mgmt``
is the management network where the tiebreaker (corosync-qnetd) and the BMCs
live, as on real sites. Every address is inside 10.99.0.0/16 and exists only in
the lab's own network namespace.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address, IPv4Network

from iscsiha.errors import IscsihaError

# Linux refuses interface names longer than 15 bytes (IFNAMSIZ - 1).
IFNAME_MAX = 15


class NetworkRole(Enum):
    MANAGEMENT = "management"  # tiebreaker and BMCs
    CLUSTER = "cluster"  # one corosync knet link
    REPLICATION = "replication"  # DRBD
    STORAGE = "storage"  # iSCSI portals; the initiator lives here


class NodeRole(Enum):
    APPLIANCE = "appliance"
    INITIATOR = "initiator"


@dataclass(frozen=True)
class LabNetwork:
    name: str
    role: NetworkRole
    subnet: IPv4Network
    short: str  # for bridge and tap names, which must stay within IFNAMSIZ

    @property
    def bridge(self) -> str:
        return f"br-{self.short}"


@dataclass(frozen=True)
class LabNode:
    name: str
    role: NodeRole
    host_octet: int  # the last octet of its address on every network
    networks: tuple[str, ...]  # attached networks; the n-th is the guest's vec<n>
    memory_mib: int
    data_disk_mib: int  # 0: no data disk
    nodeid: int = 0  # corosync node id; appliances only
    bmc_octet: int = 0  # its BMC's address on mgmt; appliances only


@dataclass(frozen=True)
class Interface:
    """One guest interface: vec<n> in the guest, a tap on the network's bridge in the lab."""

    ifname: str
    network: LabNetwork
    address: IPv4Address
    tap: str

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.network.subnet.prefixlen}"


@dataclass(frozen=True)
class Topology:
    cluster_name: str
    networks: tuple[LabNetwork, ...]
    nodes: tuple[LabNode, ...]
    qnetd_octet: int  # the tiebreaker's address on mgmt (held by the lab namespace itself)
    bmc_user: str

    # Lookups by name: the CLI's bad-input errors come from here, so they name
    # the bad value and list what is allowed.
    def node(self, name: str) -> LabNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise IscsihaError.single(
            "unknown-node", "node", name, ", ".join(n.name for n in self.nodes),
            "is not a node of the lab",
        )

    def network(self, name: str) -> LabNetwork:
        for network in self.networks:
            if network.name == name:
                return network
        raise IscsihaError.single(
            "unknown-link", "link", name, ", ".join(n.name for n in self.networks),
            "is not a network of the lab",
        )

    def network_with(self, role: NetworkRole) -> tuple[LabNetwork, ...]:
        return tuple(n for n in self.networks if n.role is role)

    @property
    def appliances(self) -> tuple[LabNode, ...]:
        return tuple(n for n in self.nodes if n.role is NodeRole.APPLIANCE)

    @property
    def initiators(self) -> tuple[LabNode, ...]:
        return tuple(n for n in self.nodes if n.role is NodeRole.INITIATOR)

    @property
    def management(self) -> LabNetwork:
        return self.network_with(NetworkRole.MANAGEMENT)[0]

    def address(self, node: LabNode, network: str) -> IPv4Address:
        if network not in node.networks:
            raise IscsihaError.single(
                "not-attached", "link", network, ", ".join(node.networks),
                f"node {node.name} is not attached to it",
            )
        return self.network(network).subnet.network_address + node.host_octet

    def interfaces(self, node: LabNode) -> tuple[Interface, ...]:
        return tuple(
            Interface(
                ifname=f"vec{index}",
                network=self.network(name),
                address=self.address(node, name),
                tap=f"{node.name}-{self.network(name).short}",
            )
            for index, name in enumerate(node.networks)
        )

    def product_interfaces(self, node: LabNode) -> tuple[Interface, ...]:
        """The interfaces whose addresses the product sets (`iscsiha network`), not the
        lab: an appliance's cluster, replication and storage links."""
        if node.role is not NodeRole.APPLIANCE:
            return ()
        return tuple(i for i in self.interfaces(node)
                     if i.network.role is not NetworkRole.MANAGEMENT)

    def tap(self, node: LabNode, network: str) -> str:
        for interface in self.interfaces(node):
            if interface.network.name == network:
                return interface.tap
        raise IscsihaError.single(
            "not-attached", "link", network, ", ".join(node.networks),
            f"node {node.name} is not attached to it",
        )

    @property
    def qnetd_address(self) -> IPv4Address:
        return self.management.subnet.network_address + self.qnetd_octet

    def bmc_address(self, node: LabNode) -> IPv4Address:
        if node.role is not NodeRole.APPLIANCE:
            raise IscsihaError.single(
                "no-bmc", "node", node.name, ", ".join(n.name for n in self.appliances),
                "only appliance nodes have a BMC in the lab",
            )
        return self.management.subnet.network_address + node.bmc_octet

    def hosts_entries(self) -> tuple[tuple[str, IPv4Address], ...]:
        """/etc/hosts lines for every node: its name on the first cluster link (or storage)."""
        cluster = self.network_with(NetworkRole.CLUSTER)
        storage = self.network_with(NetworkRole.STORAGE)
        entries = []
        for node in self.nodes:
            preferred = [n.name for n in (*cluster, *storage) if n.name in node.networks]
            entries.append((node.name, self.address(node, preferred[0])))
        return tuple(entries)


def default_topology() -> Topology:
    """Two appliance nodes with every network of the model, and one initiator on both
    storage networks."""
    base = "10.99.{}.0/24"
    networks = (
        LabNetwork("mgmt", NetworkRole.MANAGEMENT, IPv4Network(base.format(0)), "mg"),
        LabNetwork("link0", NetworkRole.CLUSTER, IPv4Network(base.format(10)), "l0"),
        LabNetwork("link1", NetworkRole.CLUSTER, IPv4Network(base.format(11)), "l1"),
        LabNetwork("repl", NetworkRole.REPLICATION, IPv4Network(base.format(20)), "re"),
        LabNetwork("storage", NetworkRole.STORAGE, IPv4Network(base.format(30)), "st"),
        # The second path (dm-multipath): last, so the other links keep their vecN.
        LabNetwork("storage2", NetworkRole.STORAGE, IPv4Network(base.format(31)), "s2"),
    )
    appliance_networks = tuple(n.name for n in networks)
    nodes = (
        LabNode("san-a", NodeRole.APPLIANCE, 11, appliance_networks, 768, 2048,
                nodeid=1, bmc_octet=21),
        LabNode("san-b", NodeRole.APPLIANCE, 12, appliance_networks, 768, 2048,
                nodeid=2, bmc_octet=22),
        LabNode("initiator", NodeRole.INITIATOR, 31, ("storage", "storage2"), 512, 0),
    )
    return Topology(
        cluster_name="iscsiha-lab",
        networks=networks,
        nodes=nodes,
        qnetd_octet=5,
        bmc_user="fence",
    )
