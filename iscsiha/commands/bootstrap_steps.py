"""The steps `cluster init` and `cluster join` share: checks, files, services, waits.

Every change goes through a Transaction, so the caller can undo it all.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable

from iscsiha.commands.bootstrap_env import (
    CIB_TIMEOUT,
    HOST_KEY,
    JOIN_STATE,
    SERVICE_STATE,
    SSH_KEYGEN,
    HostEnv,
    PendingJoin,
    Progress,
)
from iscsiha.errors import PARTLY_APPLIED, IscsihaError, Report
from iscsiha.executors import files
from iscsiha.executors.transaction import Transaction
from iscsiha.model.load import load_text
from iscsiha.model.types import Config, IPAddress, NetworkRole, Node
from iscsiha.plan import cib, corosync, peer_ssh
from iscsiha.plan.cib_merge import merge
from iscsiha.plan.drbd import AUTHKEY_PATH


def not_in_a_cluster(env: HostEnv) -> list[Report]:
    """Bootstrap starts only from a box that is in no cluster and waits for no join."""
    problems = []
    for path, what in ((env.desired_path, "a desired state"),
                       (JOIN_STATE, "a join waiting for its peer")):
        if os.path.exists(env.path(path)):
            problems.append(Report("already-in-a-cluster", "file", path,
                                   "a box that is in no cluster yet",
                                   f"this box already has {what}: see `iscsiha status`"))
    conf = files.read(env.path(corosync.PATH)) or b""
    if conf.startswith(corosync.HEADER.encode()):
        problems.append(Report("already-in-a-cluster", "file", corosync.PATH,
                               "a box that is in no cluster yet",
                               "was written by iscsiha: this box is in a cluster"))
    for unit in ("corosync.service", "pacemaker.service"):
        state = env.systemd.active_state(unit)
        if state not in ("inactive", "failed"):
            problems.append(Report("service-running", "unit", unit, "inactive",
                                   f"is {state}: this box runs a cluster already "
                                   "(stop it first if it is a leftover)"))
    return problems


def security_problems(env: HostEnv) -> list[Report]:
    reason = env.security.unavailable()
    return [] if reason is None else [Report(
        "tls-psk-unavailable", "python", reason, "Python 3.13 or later (the appliance's)",
        "the join connection needs TLS 1.3 with a pre-shared key")]


def own_host_key(env: HostEnv) -> str:
    key = (files.read(env.path(HOST_KEY)) or b"").decode(errors="replace").strip()
    if not key:
        raise IscsihaError.single("missing-host-key", "file", HOST_KEY,
                                  "this box's SSH host key (made at first boot)",
                                  "is missing or empty")
    return key


def check_host_key(key: str, node: str) -> None:
    problem = peer_ssh.public_key_problem(key)
    if problem is not None:
        raise IscsihaError.single("bad-host-key", f"{node} SSH host key", key[:60],
                                  peer_ssh.KEY_ALLOWED, problem)


def make_ssh_key(env: HostEnv) -> tuple[bytes, str]:
    """A fresh ed25519 key, made aside and written later with the other files."""
    with tempfile.TemporaryDirectory(prefix="iscsiha-key-") as tmp:
        path = os.path.join(tmp, "id_ed25519")
        env.runner.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "iscsiha-cluster",
                        "-f", path], timeout=60.0)
        private = files.read(path)
        public = files.read(f"{path}.pub")
    if not private or not public:
        raise IscsihaError.single("ssh-keygen-failed", "command", SSH_KEYGEN,
                                  "a key pair written", "wrote no key")
    return private, public.decode()


def cluster_addresses(config: Config, node: Node) -> list[IPAddress]:
    return [node.address_on(n.name) for n in config.cluster.networks_with(NetworkRole.CLUSTER)]


def known_hosts(config: Config, keys: list[tuple[Node, str]]) -> bytes:
    return peer_ssh.known_hosts((cluster_addresses(config, node), key)
                                for node, key in keys).encode()


def write_cluster_files(tx: Transaction, config: Config, me: Node, authkey: bytes,
                        private: bytes, public: str, host_keys: list[tuple[Node, str]]) -> None:
    """corosync's files, and the SSH trust: the cluster key, accepted from the other box."""
    other = next(n for n in config.cluster.nodes if n is not me)
    tx.write(AUTHKEY_PATH, authkey, 0o400)
    tx.write(corosync.PATH, corosync.corosync_conf(config).encode(), 0o644)
    tx.makedirs(peer_ssh.SSH_DIR, 0o700)
    tx.write(peer_ssh.KEY, private, 0o600)
    tx.write(f"{peer_ssh.KEY}.pub", public.encode(), 0o644)
    tx.write(peer_ssh.KNOWN_HOSTS, known_hosts(config, host_keys), 0o644)
    tx.write(peer_ssh.AUTHORIZED_KEYS, peer_ssh.authorized_keys(
        public, cluster_addresses(config, other)).encode(), 0o600)


def units(config: Config) -> list[str]:
    """In start order; the qdevice only with a tiebreaker."""
    names = ["corosync", "corosync-qdevice", "pacemaker"]
    if config.cluster.tiebreaker is None:
        names.remove("corosync-qdevice")
    return [f"{n}.service" for n in names]


def start_services(env: HostEnv, tx: Transaction, config: Config,
                   progress: Progress) -> None:
    """Enable and start the cluster's services in order, through systemd's D-Bus API."""
    todo = units(config)
    progress(f"starting {', '.join(u.removesuffix('.service') for u in todo)}")
    for folder in SERVICE_STATE:
        tx.new_files_in(folder)
    disabled = [u for u in todo if env.systemd.unit_file_state(u) != "enabled"]
    if disabled:
        tx.on_undo(f"disable {', '.join(disabled)}", lambda: env.systemd.disable(*disabled))
        env.systemd.enable(*disabled)
    for unit in todo:
        # Registered before the start, so a unit that fails half-way is stopped too.
        tx.on_undo(f"stop {unit}", functools.partial(stop_if_running, env, unit))
        env.systemd.start(unit)


def stop_if_running(env: HostEnv, unit: str) -> None:
    if env.systemd.active_state(unit) not in ("inactive", "failed"):
        env.systemd.stop(unit)


def properties_fragment(config: Config) -> str:
    """The plan's cluster properties alone: fencing devices come with the second box,
    since Pacemaker would fence a configured node it has never seen."""
    root = cib.configuration(config, {})
    for section in ("resources", "constraints"):
        element = root.find(section)
        assert element is not None
        for child in list(element):
            element.remove(child)
    return cib.to_text(root)


def set_properties(env: HostEnv, config: Config) -> None:
    """The plan's cluster properties, once Pacemaker answers (through apply's merge).

    A Pacemaker that just started bumps the CIB's version itself (electing a DC,
    recording its own properties) between our read and our patch, so the patch goes
    through ``update``, which reads again when it is refused as older.
    """

    def read() -> bool:
        try:
            env.cib.query()
        except IscsihaError:
            return False
        return True

    wait(env, CIB_TIMEOUT, read, "cib-not-ready", "pacemaker", "cibadmin --query",
         "answering once Pacemaker has started")
    fragment = properties_fragment(config)
    env.cib.update(lambda live: merge(live, fragment))


def online(status_xml: str) -> set[str]:
    try:
        root = ET.fromstring(status_xml)
    except ET.ParseError:
        return set()
    return {n.get("name", "") for n in root.iter("node") if n.get("online") == "true"}


def all_online(env: HostEnv, names: set[str]) -> bool:
    """Whether Pacemaker has all of ``names`` online; not yet while crm_mon cannot
    connect (Pacemaker just started: exit 102 in the lab)."""
    try:
        return names <= online(env.cib.status())
    except IscsihaError:
        return False


def wait(env: HostEnv, timeout: float, done: Callable[[], bool], code: str, field: str,
         value: object, allowed: str) -> None:
    """Until ``done()``; past ``timeout`` seconds, a report built from the rest."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise IscsihaError.single(code, field, value, f"{allowed} within {timeout:.0f} s",
                                      "did not happen in time")
        env.sleep(1.0)


def listen_address(config: Config, node: str | None = None) -> IPAddress:
    """Where a join waits: ``node``'s (default the first box's) first cluster link."""
    link = config.cluster.networks_with(NetworkRole.CLUSTER)[0]
    box = next((n for n in config.cluster.nodes if n.name == node), config.cluster.nodes[0])
    return box.address_on(link.name)


def this_and_other(config: Config, name: str) -> tuple[Node, Node]:
    """The box named ``name`` and the other one (the second box when neither is)."""
    first, second = config.cluster.nodes
    return (first, second) if name == first.name else (second, first)


def pending(env: HostEnv) -> PendingJoin:
    data = files.read(env.path(JOIN_STATE))
    if data is None:
        raise IscsihaError.single("no-join-waiting", "file", JOIN_STATE,
                                  "written by `cluster init` or `cluster token`",
                                  "is missing: no join is waiting on this box")
    try:
        return PendingJoin.load(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise IscsihaError.single("bad-join-state", "file", JOIN_STATE,
                                  "written by `cluster init`", f"cannot be read: {exc}") from exc


def installed_config(env: HostEnv) -> Config:
    return load_text(files.read_text(env.path(env.desired_path)), env.desired_path)


def peer_joined(env: HostEnv, peer: Node) -> bool:
    """Whether this box knows the peer's host key, which only a completed join writes."""
    text = (files.read(env.path(peer_ssh.KNOWN_HOSTS)) or b"").decode(errors="replace")
    return any(str(a) in line.split()[0].split(",") for line in text.splitlines() if line
               for _, a in peer.addresses)


def undone(exc: IscsihaError, tx: Transaction, where: str) -> IscsihaError:
    """The failure, after undoing every change; what could not be undone is said."""
    left = tx.undo()
    if not left:
        return exc
    return IscsihaError([*exc.reports, *left, Report(
        PARTLY_APPLIED, where, len(left), "every change undone",
        "some changes could not be undone (listed above); remove them by hand")])
