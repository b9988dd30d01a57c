"""The desired state's keys, and reading one TOML table at a time: typed fields,
unknown keys, all problems kept.

The keys are spelled here only: the loader reads the document with them, and the
console and `cluster init` write, complete and list it with them, so none of them
can drift from what the loader accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_network
from typing import Any, TypeVar

from iscsiha.errors import Report, Secret, Severity, bounded, clip, withheld
from iscsiha.model import names
from iscsiha.model.types import IPAddress, IPNetwork

T = TypeVar("T")

# -- the document's keys --------------------------------------------------------------

# Top-level tables (and arrays of tables).
CLUSTER = "cluster"
NETWORKS = "networks"
NODES = "nodes"
VOLUMES = "volumes"
TARGETS = "targets"
DISCOVERY_AUTH = "discovery_auth"
ALERTS = "alerts"
POOLS = "pools"  # LVM thin pools

NAME = "name"  # of the cluster, a network, node, volume or target
VOLUME_GROUP = "volume_group"  # the cluster's default, or one volume's own
TIEBREAKER = "tiebreaker"
ROLE = "role"
SUBNET = "subnet"
PING = "ping"
ADDRESSES = "addresses"  # a node's: a table keyed by network name
BMC = "bmc"
ADDRESS = "address"
USER = "user"  # a BMC's, or the user a CHAP initiator presents
PASSWORD = "password"
CIPHER = "cipher"  # a BMC's IPMI cipher suite
MTU = "mtu"  # a network's
LINKS = "links"  # a node's: network name -> "NIC", "BOND" or either with ".VLAN"
BONDS = "bonds"  # a node's: bond name -> its table
MEMBERS = "members"  # a bond's NICs
SIZE = "size"
DRBD_MINOR = "drbd_minor"
IQN = "iqn"
PORTALS = "portals"
LUNS = "luns"
INITIATORS = "initiators"
ALLOW_ANY_INITIATOR = "allow_any_initiator"
AUTH = "auth"
PREFERRED_NODE = "preferred_node"
FAILBACK = "failback"
DRBD_PORT = "drbd_port"
LUN = "lun"
VOLUME = "volume"  # a LUN's: the volume it exports
MODE = "mode"
SECRET = "secret"
MUTUAL_USER = "mutual_user"
MUTUAL_SECRET = "mutual_secret"
RECIPIENTS = "recipients"  # [alerts]' array of tables
VG_FILL_PERCENT = "vg_fill_percent"
KIND = "kind"  # a recipient's
SERVER = "server"  # email relay, SNMP trap receiver, remote syslog: HOST[:PORT]
FROM = "from"
TO = "to"
STARTTLS = "starttls"
COMMUNITY = "community"
URL = "url"
TOKEN = "token"
MAINTENANCE = "maintenance"
VERIFY = "verify"  # maintenance's: how often DRBD online verify runs
POOL = "pool"  # a volume's: the thin pool it is a thin volume of
OVERCOMMIT = "overcommit"  # a pool's: its thin volumes may add up to more than it
FILL_ALERT_PERCENT = "fill_alert_percent"  # a pool's: data or metadata use that alerts

# Each table's keys: the whole schema. Tests hold the loader to exactly these.
TOP_KEYS = (CLUSTER, NETWORKS, NODES, VOLUMES, TARGETS, DISCOVERY_AUTH, ALERTS, MAINTENANCE,
            POOLS)
MAINTENANCE_KEYS = (VERIFY,)
CLUSTER_KEYS = (NAME, TIEBREAKER, VOLUME_GROUP)
NETWORK_KEYS = (NAME, ROLE, SUBNET, PING, MTU)
NODE_KEYS = (NAME, ADDRESSES, BMC, LINKS, BONDS)
BOND_KEYS = (MEMBERS, MODE)
BMC_KEYS = (ADDRESS, USER, PASSWORD, CIPHER)
VOLUME_KEYS = (NAME, SIZE, VOLUME_GROUP, DRBD_MINOR, POOL)
POOL_KEYS = (NAME, VOLUME_GROUP, SIZE, OVERCOMMIT, FILL_ALERT_PERCENT)
TARGET_KEYS = (NAME, IQN, PORTALS, LUNS, INITIATORS, ALLOW_ANY_INITIATOR, AUTH,
               PREFERRED_NODE, FAILBACK, DRBD_PORT)
LUN_KEYS = (LUN, VOLUME)
CHAP_KEYS = (USER, SECRET, MUTUAL_USER, MUTUAL_SECRET)  # chap reads two, mutual-chap all
AUTH_KEYS = (MODE, *CHAP_KEYS)  # a target's auth, and discovery_auth
ALERTS_KEYS = (RECIPIENTS, VG_FILL_PERCENT)
# A recipient's keys by kind (each reads NAME and KIND too).
RECIPIENT_KEYS = {
    "email": (SERVER, FROM, TO, USER, PASSWORD, STARTTLS),
    "snmp": (SERVER, COMMUNITY),
    "webhook": (URL, TOKEN),
    "syslog": (SERVER,),
}

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list",
               dict: "a table"}


@dataclass
class Problems:
    """Collects reports; nothing is raised until the whole config has been read."""

    reports: list[Report] = field(default_factory=list)

    def add(
        self, code: str, path: str, value: object, allowed: str, message: str = "",
        severity: Severity = Severity.ERROR,
    ) -> None:
        self.reports.append(Report(code, clip(path), bounded(value), clip(allowed, 1000),
                                   clip(message, 1000), severity))

    @property
    def has_errors(self) -> bool:
        return any(r.is_error for r in self.reports)


@dataclass
class Table:
    """One TOML table at ``path``; every read key is remembered to find unknown keys."""

    data: Mapping[str, Any]
    path: str
    problems: Problems
    seen: set[str] = field(default_factory=set)

    def child(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str) -> Any:
        self.seen.add(key)
        return self.data.get(key)

    def typed(self, key: str, kind: type[T], *, required: bool = True) -> T | None:
        value = self.raw(key)
        if value is None:
            if required:
                self.problems.add("missing", self.child(key), None, _TYPE_NAMES[kind],
                                  "is required")
            return None
        # bool is an int in Python; TOML keeps them apart and so do we.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.problems.add("wrong-type", self.child(key), _shown(key, value),
                              _TYPE_NAMES[kind], f"is {type(value).__name__}")
            return None
        return value

    def text(
        self, key: str, check: Callable[[str], bool] | None = None, allowed: str = "",
        *, required: bool = True, code: str = "bad-value",
    ) -> str | None:
        value = self.typed(key, str, required=required)
        if value is not None and check is not None and not check(value):
            self.problems.add(code, self.child(key), _shown(key, value), allowed)
            return None
        return value

    def integer(self, key: str, low: int, high: int, *, required: bool = True,
                code: str = "out-of-range") -> int | None:
        value = self.typed(key, int, required=required)
        if value is not None and not low <= value <= high:
            self.problems.add(code, self.child(key), value, f"{low} to {high}")
            return None
        return value

    def choice(self, key: str, choices: Mapping[str, T], default: T | None = None) -> T | None:
        value = self.typed(key, str, required=default is None)
        if value is None:
            return default if self.raw(key) is None else None
        if value not in choices:
            self.problems.add("bad-choice", self.child(key), value, ", ".join(choices))
            return None
        return choices[value]

    def address(self, key: str, *, required: bool = True) -> IPAddress | None:
        value = self.typed(key, str, required=required)
        return None if value is None else parse_address(value, self.child(key), self.problems)

    def network(self, key: str) -> IPNetwork | None:
        value = self.typed(key, str)
        if value is None:
            return None
        try:
            # ipaddress takes any text after an IPv6 zone's '%', newlines included.
            if "%" in value or not value.isascii() or len(value) > 50:
                raise ValueError(value)
            return ip_network(value, strict=True)
        except ValueError:
            self.problems.add("bad-subnet", self.child(key), value,
                              "a network in CIDR form with no host bits, e.g. 10.10.0.0/24")
            return None

    def secret(self, key: str, pattern_ok: Callable[[str], bool], allowed: str,
               *, required: bool = True) -> Secret | None:
        value = self.typed(key, str, required=required)
        if value is None:
            return None
        if not pattern_ok(value):
            self.problems.add("bad-secret", self.child(key), Secret(value), allowed)
            return None
        return Secret(value)

    def table(self, key: str, *, required: bool = True) -> Table | None:
        value = self.typed(key, dict, required=required)
        return None if value is None else Table(value, self.child(key), self.problems)

    def tables(self, key: str, *, required: bool = True) -> list[Table]:
        value = self.typed(key, list, required=required)
        if value is None:
            return []
        out = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                out.append(Table(item, f"{self.child(key)}[{i}]", self.problems))
            else:
                self.problems.add("wrong-type", f"{self.child(key)}[{i}]", item, "a table")
        return out

    def strings(self, key: str, *, required: bool = True) -> list[tuple[str, str]]:
        """(path, value) for each string in a list; non-strings are reported."""
        value = self.typed(key, list, required=required)
        out = []
        for i, item in enumerate(value or []):
            path = f"{self.child(key)}[{i}]"
            if isinstance(item, str):
                out.append((path, item))
            else:
                self.problems.add("wrong-type", path, item, "a string")
        return out

    def finish(self) -> None:
        """Report keys nobody asked for: in a hand-edited file they are typos."""
        for key in sorted(set(self.data) - self.seen):
            self.problems.add("unknown-key", self.child(key), key,
                              ", ".join(sorted(self.seen)), "is not a known setting here")


def parse_address(value: str, path: str, problems: Problems) -> IPAddress | None:
    address = names.parse_ip(value)
    if address is None:
        problems.add("bad-address", path, value, names.ADDRESS_ALLOWED)
    return address


def is_secret_key(key: str) -> bool:
    """A key whose value is a secret (CHAP secrets, BMC passwords, alert recipients'
    SNMP community and webhook token), in any table."""
    return "secret" in key or "password" in key or key in (COMMUNITY, TOKEN)


def _shown(key: str, value: object) -> object:
    """Values of secret-looking keys are never echoed back, whatever their type."""
    if is_secret_key(key):
        return withheld(value)
    return value
