"""Turn a config (TOML text or parsed tables) into a validated Config, or every problem."""

from __future__ import annotations

import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from iscsiha.errors import IscsihaError
from iscsiha.model import names
from iscsiha.model.alerts import read_alerts
from iscsiha.model.fields import (
    ADDRESS,
    ADDRESSES,
    ALERTS,
    ALLOW_ANY_INITIATOR,
    AUTH,
    BMC,
    CHAP_KEYS,
    CIPHER,
    CLUSTER,
    DISCOVERY_AUTH,
    DRBD_MINOR,
    DRBD_PORT,
    FAILBACK,
    INITIATORS,
    IQN,
    LINKS,
    LUN,
    LUNS,
    MAINTENANCE,
    MODE,
    MTU,
    MUTUAL_SECRET,
    MUTUAL_USER,
    NAME,
    NETWORKS,
    NODES,
    PASSWORD,
    PING,
    POOLS,
    PORTALS,
    PREFERRED_NODE,
    ROLE,
    SECRET,
    SIZE,
    SUBNET,
    TARGETS,
    TIEBREAKER,
    USER,
    VERIFY,
    VOLUME,
    VOLUME_GROUP,
    VOLUMES,
    Problems,
    Table,
    parse_address,
)
from iscsiha.model.identity import DRBD_MINOR_MAX, DRBD_PORT_FIRST, DRBD_PORT_LAST
from iscsiha.model.links import read_links
from iscsiha.model.pools import check_pools, read_pools, volume_pool
from iscsiha.model.types import (
    DEFAULT_MTU,
    ISCSI_PORT,
    NO_ALERTS,
    NO_AUTH,
    Auth,
    AuthMode,
    Bmc,
    Cluster,
    Config,
    Credentials,
    Failback,
    IPAddress,
    IPNetwork,
    Lun,
    Maintenance,
    Network,
    NetworkRole,
    Node,
    Pool,
    Portal,
    Target,
    VerifySchedule,
    Volume,
)

DEFAULT_VOLUME_GROUP = "data"
VOLUME_SIZE_MIN = 16 * 1024**2  # room for DRBD's internal metadata and a filesystem
VOLUME_SIZE_MAX = 1024**5  # DRBD 8.4's largest device: 1 PiB
LUN_MAX = names.LUN_MAX
MTU_MIN, MTU_MAX = 1280, 9216

_ROLES = {r.value: r for r in NetworkRole}
_AUTH_MODES = {m.value: m for m in AuthMode}
_FAILBACK = {f.value: f for f in Failback}
_VERIFY = {v.value: v for v in VerifySchedule}


def load_text(text: str, source: str = "config") -> Config:
    """Parse and validate TOML text; raise IscsihaError with every problem found."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax(source, str(exc)) from exc
    except RecursionError as exc:  # tomllib recurses once per nested array or table
        raise _syntax(source, "nests arrays or tables too deeply") from exc
    except ValueError as exc:  # an integer beyond Python's 4300-digit conversion limit
        raise _syntax(source, f"holds a number too long to read ({exc})") from exc
    return load_data(data)


def _syntax(source: str, why: str) -> IscsihaError:
    return IscsihaError.single("config-syntax", source, why, "valid TOML (https://toml.io)",
                               "cannot be read as TOML")


def load_data(data: Mapping[str, Any]) -> Config:
    problems = Problems()
    config = _Reader(problems).config(Table(data, "", problems))
    if config is None or problems.has_errors:
        raise IscsihaError(problems.reports)
    return config


class _Reader:
    """Reads the tables in order; each part reports its own problems and the
    cross-checks only look at the parts that were valid, so one mistake is
    reported once rather than echoed by everything that refers to it."""

    def __init__(self, problems: Problems) -> None:
        self.p = problems

    def config(self, top: Table) -> Config | None:
        cluster_t = top.table(CLUSTER)
        networks = self.networks(top.tables(NETWORKS))
        node_tables = top.tables(NODES)
        nodes = self.nodes(node_tables, networks)
        cluster = None
        if cluster_t is not None:
            cluster = self.cluster(cluster_t, networks, nodes, len(node_tables), top)
        default_vg = DEFAULT_VOLUME_GROUP
        if cluster_t is not None:
            default_vg = cluster_t.text(
                VOLUME_GROUP, lambda s: _vg_ok(s), names.VG_NAME_ALLOWED, required=False
            ) or DEFAULT_VOLUME_GROUP
            cluster_t.finish()
        pool_tables = top.tables(POOLS, required=False)
        pools = read_pools(pool_tables, default_vg, self.size)
        pool_names = {n for t in pool_tables if isinstance(n := t.data.get(NAME), str)}
        volume_tables = top.tables(VOLUMES, required=False)
        volumes = self.volumes(volume_tables, default_vg, pool_names,
                               {p.name: p for p in pools})
        check_pools(pools, volumes, self.p)
        volume_names = {n for t in volume_tables if isinstance(n := t.data.get(NAME), str)}
        node_names = {n for t in node_tables if isinstance(n := t.data.get(NAME), str)}
        targets = self.targets(top.tables(TARGETS, required=False), networks, nodes,
                               volume_names, node_names)
        alerts_t = top.table(ALERTS, required=False)
        alerts = read_alerts(alerts_t) if alerts_t is not None else NO_ALERTS
        maintenance = self.maintenance(top.table(MAINTENANCE, required=False))
        top.finish()
        if cluster is None or len(volumes) != len(volume_tables) or None in targets \
                or alerts is None or len(pools) != len(pool_tables):
            return None
        return Config(cluster, tuple(volumes), tuple(t for t in targets if t is not None),
                      alerts, maintenance, tuple(pools))

    def maintenance(self, t: Table | None) -> Maintenance:
        if t is None:
            return Maintenance()
        verify = t.choice(VERIFY, _VERIFY, Maintenance().verify)
        t.finish()
        return Maintenance(verify or Maintenance().verify)

    # -- cluster and networks ----------------------------------------------------------

    def networks(self, tables: list[Table]) -> list[Network]:
        out = []
        for t in tables:
            name = t.text(NAME, _object_name_ok, names.OBJECT_NAME_ALLOWED, code="bad-name")
            role = t.choice(ROLE, _ROLES)
            subnet = t.network(SUBNET)
            ping = self.ping_hosts(t, role, subnet)
            # IPv6's minimum to the largest jumbo frame switches commonly carry.
            mtu = t.integer(MTU, MTU_MIN, MTU_MAX, required=False)
            t.finish()
            if name is not None and role is not None and subnet is not None \
                    and (mtu is not None or t.data.get(MTU) is None):
                out.append(Network(name, role, subnet, ping, mtu or DEFAULT_MTU))
        self._unique(((t.child(NAME), t.data.get(NAME)) for t in tables), "network name")
        subnets = [(f"{NETWORKS}[{i}].{SUBNET}", n.subnet) for i, n in enumerate(out)]
        for i, (path_a, a) in enumerate(subnets):
            for _path_b, b in subnets[i + 1:]:
                if a.version == b.version and a.overlaps(b):
                    self.p.add("overlapping-subnets", path_a, str(a),
                               "networks that do not overlap", f"overlaps {b}")
        if len(out) == len(tables):
            counts = Counter(n.role for n in out)
            for role, low, high in ((NetworkRole.CLUSTER, 2, 8),
                                    (NetworkRole.REPLICATION, 1, 1),
                                    (NetworkRole.STORAGE, 1, 4)):
                if not low <= counts[role] <= high:
                    want = str(low) if low == high else f"{low} to {high}"
                    self.p.add("network-count", NETWORKS, counts[role],
                               f"{want} networks with role '{role.value}'",
                               f"has {counts[role]} with role '{role.value}'")
        return out

    def ping_hosts(self, t: Table, role: NetworkRole | None,
                   subnet: IPNetwork | None) -> tuple[IPAddress, ...]:
        """Checked only in the network itself, so a reply proves this link works."""
        hosts = t.strings(PING, required=False)
        if hosts and role is not NetworkRole.STORAGE:
            self.p.add("ping-not-storage", t.child(PING), [h for _, h in hosts],
                       "ping hosts only on a network with role 'storage'")
            return ()
        if len(hosts) > 4:
            self.p.add("too-many-ping-hosts", t.child(PING), len(hosts), "at most 4 hosts")
        self._unique(hosts, "ping host")
        out = []
        for path, value in hosts:
            addr = parse_address(value, path, self.p)
            if addr is not None and subnet is not None and addr not in subnet:
                self.p.add("ping-outside-subnet", path, value, f"an address in {subnet}")
            elif addr is not None:
                out.append(addr)
        return tuple(out)

    def cluster(self, t: Table, networks: list[Network], nodes: list[Node], node_count: int,
                top: Table) -> Cluster | None:
        name = t.text(NAME, _object_name_ok, names.OBJECT_NAME_ALLOWED, code="bad-name")
        tiebreaker = t.text(TIEBREAKER, _host_ok, names.HOST_NAME_ALLOWED, required=False)
        if node_count != 2:
            self.p.add("node-count", NODES, node_count, "exactly 2 nodes",
                       f"has {node_count}")
        discovery = top.table(DISCOVERY_AUTH, required=False)
        discovery_auth = self.auth(discovery, DISCOVERY_AUTH) if discovery else NO_AUTH
        if tiebreaker is not None:
            self._not_a_node_address(t.child(TIEBREAKER), tiebreaker, nodes)
        if name is None or len(nodes) != 2 or discovery_auth is None:
            return None
        return Cluster(name, (nodes[0], nodes[1]), tuple(networks), tiebreaker, discovery_auth)

    def nodes(self, tables: list[Table], networks: list[Network]) -> list[Node]:
        out = []
        for t in tables:
            name = t.text(NAME, lambda s: names.node_name_problem(s) is None,
                          names.NODE_NAME_ALLOWED, code="bad-name")
            addresses = self.node_addresses(t, networks)
            bmc = self.bmc(t.table(BMC))
            links = read_links(t, {n.name: n.mtu for n in networks}, self.p)
            t.finish()
            if name is not None and addresses is not None and bmc is not None \
                    and links is not None:
                out.append(Node(name, addresses, bmc, *links))
        self._unique(((t.child(NAME), t.data.get(NAME)) for t in tables), "node name")
        with_links = [t.child(LINKS) for t in tables if t.data.get(LINKS) is not None]
        if with_links and len(with_links) != len(tables):
            self.p.add("links-on-one-node", with_links[0], "links",
                       "links on every node or on none",
                       "the other node's links would stay as they are")
        everything = [(f"{NODES}[{i}].{ADDRESSES}.{net}", str(addr))
                      for i, n in enumerate(out) for net, addr in n.addresses]
        everything += [(f"{NODES}[{i}].{BMC}.{ADDRESS}", str(n.bmc.address))
                       for i, n in enumerate(out)]
        self._unique(everything, "address")
        return out

    def node_addresses(self, node: Table,
                       networks: list[Network]) -> tuple[tuple[str, IPAddress], ...] | None:
        t = node.table(ADDRESSES)
        if t is None:
            return None
        out = []
        for net in networks:
            addr = t.address(net.name)
            if addr is None:
                continue
            if addr not in net.subnet or addr in (net.subnet.network_address,
                                                 net.subnet.broadcast_address):
                self.p.add("address-outside-subnet", t.child(net.name), str(addr),
                           f"a host address in {net.subnet} (network '{net.name}')")
                continue
            out.append((net.name, addr))
        known = {n.name for n in networks}
        for key in sorted(set(t.data) - known):
            t.seen.add(key)
            self.p.add("unknown-network", t.child(key), key,
                       ", ".join(sorted(known)) or f"a network defined under [[{NETWORKS}]]")
        return tuple(out) if len(out) == len(networks) else None

    def bmc(self, t: Table | None) -> Bmc | None:
        if t is None:
            return None
        address = t.address(ADDRESS)
        user = t.text(USER, lambda s: names.chap_user_problem(s) is None,
                      names.CHAP_USER_ALLOWED)
        password = t.secret(PASSWORD, lambda s: names.bmc_password_problem(s) is None,
                            names.BMC_PASSWORD_ALLOWED)
        cipher = t.integer(CIPHER, 0, names.IPMI_CIPHER_MAX, required=False)
        t.finish()
        if address is None or user is None or password is None:
            return None
        return Bmc(address, user, password, cipher)

    # -- volumes ----------------------------------------------------------------------

    def volumes(self, tables: list[Table], default_vg: str, pool_names: set[str],
                pools: dict[str, Pool]) -> list[Volume]:
        out = []
        for t in tables:
            name = t.text(NAME, _object_name_ok, names.OBJECT_NAME_ALLOWED, code="bad-name")
            size = self.size(t)
            vg = t.text(VOLUME_GROUP, _vg_ok, names.VG_NAME_ALLOWED, required=False,
                        code="bad-name")
            minor = t.integer(DRBD_MINOR, 0, DRBD_MINOR_MAX, required=False)
            pool_ok, pool = volume_pool(t, pool_names, pools)
            bad_optional = not pool_ok or any(
                t.data.get(k) is not None and v is None for k, v in
                ((VOLUME_GROUP, vg), (DRBD_MINOR, minor)))
            t.finish()
            if name is not None and size is not None and not bad_optional:
                group = pool.volume_group if pool is not None else vg or default_vg
                out.append(Volume(name, size, group, minor,
                                  pool.name if pool is not None else None))
        self._unique(((t.child(NAME), t.data.get(NAME)) for t in tables), "volume name")
        self._unique(((t.child(DRBD_MINOR), t.data.get(DRBD_MINOR)) for t in tables),
                     "DRBD minor")
        return out

    def size(self, t: Table) -> int | None:
        text = t.typed(SIZE, str)
        if text is None:
            return None
        size = names.parse_size(text)
        if size is None:
            self.p.add("bad-size", t.child(SIZE), text, names.SIZE_ALLOWED)
        elif not VOLUME_SIZE_MIN <= size <= VOLUME_SIZE_MAX:
            self.p.add("size-out-of-range", t.child(SIZE), text,
                       f"{names.format_size(VOLUME_SIZE_MIN)} to "
                       f"{names.format_size(VOLUME_SIZE_MAX)}")
            size = None
        return size

    # -- targets ----------------------------------------------------------------------

    def targets(self, tables: list[Table], networks: list[Network], nodes: list[Node],
                volume_names: set[str], node_names: set[str]) -> list[Target | None]:
        out = [self.target(t, networks, nodes, volume_names, node_names) for t in tables]
        self._unique(((t.child(NAME), t.data.get(NAME)) for t in tables), "target name")
        self._unique(((t.child(IQN), t.data.get(IQN)) for t in tables), "target IQN")
        self._unique([(f"{t.child(LUNS)}[{i}].{VOLUME}", lun.get(VOLUME))
                      for t in tables for i, lun in enumerate(_list(t.data.get(LUNS)))
                      if isinstance(lun, dict)], "exported volume",
                     "a volume exported by one LUN of one target (DRBD is Primary on one box)")
        self._unique([(f"{tables[i].child(PORTALS)}", str(p.address))
                      for i, tgt in enumerate(out) if tgt for p in tgt.portals],
                     "floating portal address")
        self._unique(((t.child(DRBD_PORT), t.data.get(DRBD_PORT)) for t in tables),
                     "DRBD port")
        return out

    def target(self, t: Table, networks: list[Network], nodes: list[Node],
               volume_names: set[str], node_names: set[str]) -> Target | None:
        name = t.text(NAME, _object_name_ok, names.OBJECT_NAME_ALLOWED, code="bad-name")
        iqn = t.text(IQN, lambda s: names.iscsi_name_problem(s) is None,
                     names.ISCSI_NAME_ALLOWED, code="bad-iscsi-name")
        portals = self.portals(t, networks, nodes)
        luns = self.luns(t, volume_names)
        initiators = []
        # Read once: each read reports a wrong type again.
        entries = t.strings(INITIATORS, required=False)
        raw_initiators = t.data.get(INITIATORS)
        for path, value in entries:
            problem = names.iscsi_name_problem(value)
            if problem:
                self.p.add("bad-iscsi-name", path, value, names.ISCSI_NAME_ALLOWED, problem)
            else:
                initiators.append(value)
        self._unique(entries, "initiator name")
        allow_any = t.typed(ALLOW_ANY_INITIATOR, bool, required=False) or False
        if not allow_any and not t.data.get(INITIATORS):
            self.p.add("no-initiators", t.child(INITIATORS), [],
                       f"one or more initiator names, or {ALLOW_ANY_INITIATOR} = true",
                       "no initiator may log in (access is denied by default)")
        auth_t = t.table(AUTH, required=False)
        auth = self.auth(auth_t, t.child(AUTH)) if auth_t else NO_AUTH
        preferred = t.text(PREFERRED_NODE, lambda s: s in node_names,
                           ", ".join(sorted(node_names)), code="unknown-node")
        failback = t.choice(FAILBACK, _FAILBACK, Failback.MANUAL)
        port = t.integer(DRBD_PORT, DRBD_PORT_FIRST, DRBD_PORT_LAST, required=False)
        t.finish()
        if (name is None or iqn is None or portals is None or luns is None or auth is None
                or preferred is None or failback is None
                or (port is None and t.data.get(DRBD_PORT) is not None)
                or not (raw_initiators is None or (isinstance(raw_initiators, list)
                                                   and len(initiators) == len(raw_initiators)))):
            return None
        return Target(name, iqn, portals, luns, tuple(initiators), allow_any, auth, preferred,
                      failback, port)

    def portals(self, t: Table, networks: list[Network],
                nodes: list[Node]) -> tuple[Portal, ...] | None:
        entries = t.strings(PORTALS)
        if not entries and t.data.get(PORTALS) == []:
            self.p.add("no-portals", t.child(PORTALS), [], "one or more floating addresses")
        storage = [n for n in networks if n.role is NetworkRole.STORAGE]
        out = []
        for path, text in entries:
            split = names.split_host_port(text, ISCSI_PORT)
            if split is None:
                self.p.add("bad-portal", path, text,
                           f"ADDRESS or ADDRESS:PORT, [IPv6]:PORT, port {names.TCP_PORT_ALLOWED}")
                continue
            host, port = split
            addr = parse_address(host, path, self.p)
            if addr is None:
                continue
            net = next((n for n in storage if addr in n.subnet), None)
            if net is None or addr in (net.subnet.network_address, net.subnet.broadcast_address):
                self.p.add("portal-outside-storage", path, text,
                           "a host address in a storage network: "
                           + (", ".join(f"{n.name} {n.subnet}" for n in storage) or "none"))
                continue
            if any(dict(n.addresses).get(net.name) == addr for n in nodes):
                self.p.add("portal-is-node-address", path, text,
                           "a floating address that no node has as its own")
                continue
            out.append(Portal(addr, port, net.name))
        self._unique([(path, text) for path, text in entries], "portal")
        return tuple(out) if out and len(out) == len(entries) else None

    def luns(self, t: Table, volume_names: set[str]) -> tuple[Lun, ...] | None:
        tables = t.tables(LUNS)
        if not tables and t.data.get(LUNS) == []:
            self.p.add("no-luns", t.child(LUNS), [], "one or more LUNs")
        out = []
        for lt in tables:
            number = lt.integer(LUN, 0, LUN_MAX)
            volume = lt.text(VOLUME, lambda s: s in volume_names,
                             ", ".join(sorted(volume_names)) or f"a volume under [[{VOLUMES}]]",
                             code="unknown-volume")
            lt.finish()
            if number is not None and volume is not None:
                out.append(Lun(number, volume))
        self._unique(((lt.child(LUN), lt.data.get(LUN)) for lt in tables), "LUN number")
        return tuple(out) if out and len(out) == len(tables) else None

    def auth(self, t: Table, path: str) -> Auth | None:
        mode = t.choice(MODE, _AUTH_MODES)
        initiator = target = None
        if mode in (AuthMode.CHAP, AuthMode.MUTUAL_CHAP):
            initiator = self.credentials(t, USER, SECRET)
        if mode is AuthMode.MUTUAL_CHAP:
            target = self.credentials(t, MUTUAL_USER, MUTUAL_SECRET)
            if initiator and target and initiator.secret == target.secret:
                self.p.add("same-chap-secrets", t.child(MUTUAL_SECRET), target.secret,
                           f"a secret different from '{SECRET}' (RFC 3720 8.2.1)")
                return None
        for key in CHAP_KEYS:
            if key not in t.seen and key in t.data:
                t.seen.add(key)
                self.p.add("unused-setting", t.child(key), key,
                           f"not set for mode '{mode.value if mode else '?'}'",
                           "has no effect in this mode")
        t.finish()
        if mode is None or (mode is not AuthMode.NONE and initiator is None) or (
                mode is AuthMode.MUTUAL_CHAP and target is None):
            return None
        return Auth(mode, initiator, target)

    def credentials(self, t: Table, user_key: str, secret_key: str) -> Credentials | None:
        user = t.text(user_key, lambda s: names.chap_user_problem(s) is None,
                      names.CHAP_USER_ALLOWED)
        secret = t.secret(secret_key, lambda s: names.chap_secret_problem(s) is None,
                          names.CHAP_SECRET_ALLOWED)
        return Credentials(user, secret) if user is not None and secret is not None else None

    # -- helpers ----------------------------------------------------------------------

    def _unique(self, entries: Iterable[tuple[str, object]], what: str,
                allowed: str = "") -> None:
        seen: dict[object, str] = {}
        for path, value in entries:
            if value is None or isinstance(value, (dict, list)):
                continue
            if value in seen:
                self.p.add(f"duplicate-{what.replace(' ', '-').lower()}", path, value,
                           allowed or f"a {what} used once", f"is also used by {seen[value]}")
            else:
                seen[value] = path

    def _not_a_node_address(self, path: str, host: str, nodes: list[Node]) -> None:
        for node in nodes:
            if host in {str(a) for _, a in node.addresses}:
                self.p.add("tiebreaker-is-node", path, host,
                           "a third machine, not one of the two nodes",
                           f"is an address of {node.name}")


def _object_name_ok(s: str) -> bool:
    return names.object_name_problem(s) is None


def _vg_ok(s: str) -> bool:
    return names.vg_name_problem(s) is None


def _host_ok(s: str) -> bool:
    return names.host_name_problem(s) is None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []
