"""The desired-state model: plain frozen data, built only from validated input."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from iscsiha.errors import Secret

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

ISCSI_PORT = 3260


class NetworkRole(Enum):
    CLUSTER = "cluster"  # a corosync knet link; at least two
    REPLICATION = "replication"  # DRBD traffic; exactly one
    STORAGE = "storage"  # where floating portals live; one or more (multipath)


class AuthMode(Enum):
    NONE = "none"
    CHAP = "chap"  # the initiator proves itself to the target
    MUTUAL_CHAP = "mutual-chap"  # ... and the target proves itself back


class Failback(Enum):
    AUTO = "auto"  # return to the preferred node when it is back
    MANUAL = "manual"  # stay where it is until the admin moves it


DEFAULT_MTU = 1500


@dataclass(frozen=True)
class Network:
    name: str
    role: NetworkRole
    subnet: IPNetwork
    # Storage networks: hosts that answer ping while a box's link works (a switch, a
    # router). A box that reaches none while its peer does hands its targets over.
    ping: tuple[IPAddress, ...] = ()
    # One value for both boxes: a path whose two ends differ drops large frames.
    mtu: int = DEFAULT_MTU


class BondMode(Enum):
    ACTIVE_BACKUP = "active-backup"  # one member carries traffic, any switch
    LACP = "802.3ad"  # all members, the switch ports in one LACP group


@dataclass(frozen=True)
class Bond:
    name: str
    members: tuple[str, ...]  # network interfaces (NICs) by kernel name
    mode: BondMode


@dataclass(frozen=True)
class Link:
    """Where a network meets this box: a NIC or a bond, tagged with a VLAN or not."""

    network: str
    device: str
    vlan: int | None = None

    @property
    def interface(self) -> str:
        """The kernel's name for it (a VLAN is DEVICE.ID, as `ip link` names them)."""
        return self.device if self.vlan is None else f"{self.device}.{self.vlan}"


@dataclass(frozen=True)
class Bmc:
    address: IPAddress
    user: str
    password: Secret
    cipher: int | None = None  # the IPMI cipher suite (ipmitool -C); None: ipmitool asks


@dataclass(frozen=True)
class Node:
    name: str
    addresses: tuple[tuple[str, IPAddress], ...]  # (network name, address), in network order
    bmc: Bmc
    # Empty: the box's links are not the desired state's to set (configured by hand, or
    # DHCP). Otherwise one per network, in network order.
    links: tuple[Link, ...] = ()
    bonds: tuple[Bond, ...] = ()

    def address_on(self, network: str) -> IPAddress:
        return dict(self.addresses)[network]


@dataclass(frozen=True)
class Credentials:
    user: str
    secret: Secret


@dataclass(frozen=True)
class Auth:
    mode: AuthMode
    initiator: Credentials | None = None  # what the initiator presents
    target: Credentials | None = None  # what the target presents back (mutual)


NO_AUTH = Auth(AuthMode.NONE)


@dataclass(frozen=True)
class Volume:
    name: str
    size: int  # bytes
    volume_group: str
    drbd_minor: int | None = None  # pinned by the admin; otherwise allocated
    pool: str | None = None  # a thin volume of this pool (in volume_group); None: thick

    @property
    def lv_path(self) -> str:
        return f"/dev/{self.volume_group}/{self.name}"


DEFAULT_POOL_FILL_PERCENT = 80


@dataclass(frozen=True)
class Pool:
    """An LVM thin pool, the same on both boxes; its thin volumes take space as written."""

    name: str
    volume_group: str
    size: int  # bytes of data space
    # Allow the thin volumes' sizes to add up to more than the pool: a guest that fills
    # its disk then finds the pool full (writes fail) before its disk is.
    overcommit: bool = False
    fill_alert_percent: int = DEFAULT_POOL_FILL_PERCENT


@dataclass(frozen=True)
class Portal:
    address: IPAddress
    port: int
    network: str  # the storage network the address lies in

    def __str__(self) -> str:
        return host_port(self.address, self.port)


def host_port(address: IPAddress, port: int) -> str:
    """ADDRESS:PORT, with IPv6 addresses in brackets."""
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"{host}:{port}"


@dataclass(frozen=True)
class Lun:
    number: int
    volume: str


@dataclass(frozen=True)
class Target:
    name: str
    iqn: str
    portals: tuple[Portal, ...]
    luns: tuple[Lun, ...]
    initiators: tuple[str, ...]
    allow_any_initiator: bool
    auth: Auth
    preferred_node: str
    failback: Failback
    drbd_port: int | None = None  # its DRBD resource's; pinned by the admin or allocated


@dataclass(frozen=True)
class Cluster:
    name: str
    nodes: tuple[Node, Node]
    networks: tuple[Network, ...]
    tiebreaker: str | None
    discovery_auth: Auth

    def networks_with(self, role: NetworkRole) -> tuple[Network, ...]:
        return tuple(n for n in self.networks if n.role is role)

    def network(self, name: str) -> Network:
        return next(n for n in self.networks if n.name == name)


class RecipientKind(Enum):
    EMAIL = "email"  # through an SMTP relay
    SNMP = "snmp"  # a v2c trap
    WEBHOOK = "webhook"  # an HTTP(S) POST of the event as JSON
    SYSLOG = "syslog"  # the local journal (always), and a remote syslog over UDP


@dataclass(frozen=True)
class HostPort:
    host: str  # an IP address or a DNS name
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Recipient:
    """Where alerts go; which fields are set depends on ``kind`` (iscsiha.model.alerts)."""

    name: str
    kind: RecipientKind
    server: HostPort | None = None  # email: the relay; snmp: the trap receiver; syslog: remote
    sender: str = ""  # email From
    to: tuple[str, ...] = ()  # email To
    user: str = ""  # email: SMTP login (with password)
    secret: Secret | None = None  # email password, SNMP community, webhook bearer token
    starttls: bool = True  # email
    url: str = ""  # webhook


DEFAULT_VG_FILL_PERCENT = 85


@dataclass(frozen=True)
class Alerts:
    recipients: tuple[Recipient, ...] = ()
    vg_fill_percent: int = DEFAULT_VG_FILL_PERCENT


NO_ALERTS = Alerts()


class VerifySchedule(Enum):
    """How often each box runs DRBD's online verify of the volumes it serves."""

    WEEKLY = "weekly"
    MONTHLY = "monthly"
    OFF = "off"


@dataclass(frozen=True)
class Maintenance:
    # Weekly by default: a disk that silently returns other data than was written is
    # found within a week, while the verify's read load (both disks, whole volumes)
    # stays a small share of a week's I/O.
    verify: VerifySchedule = VerifySchedule.WEEKLY


@dataclass(frozen=True)
class Config:
    cluster: Cluster
    volumes: tuple[Volume, ...]
    targets: tuple[Target, ...]
    alerts: Alerts = NO_ALERTS
    maintenance: Maintenance = Maintenance()
    pools: tuple[Pool, ...] = ()

    def volume(self, name: str) -> Volume:
        return next(v for v in self.volumes if v.name == name)

    def thin_volumes(self, pool: str) -> tuple[Volume, ...]:
        return tuple(v for v in self.volumes if v.pool == pool)
