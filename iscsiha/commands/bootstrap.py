"""Forming the cluster: `cluster init` on the first box, `cluster join TOKEN` on the second.

Each checks everything it can before it changes anything, makes its changes
through a Transaction, and undoes them all when a later step fails, so a refused
or failed bootstrap leaves the box as it was (docs/bootstrap.md). The outside
world comes in through ``HostEnv``; every file path is placed under its ``root``.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from iscsiha import __version__
from iscsiha.commands import bootstrap_steps as steps
from iscsiha.commands import join_exchange, join_token
from iscsiha.commands.apply import Changes
from iscsiha.commands.bootstrap_env import (
    AUTHKEY_BYTES,
    CONNECT_TIMEOUT,
    JOIN_STATE,
    JOIN_TTL,
    JOIN_UNIT,
    MEMBERS_TIMEOUT,
    HostEnv,
    InitResult,
    PendingJoin,
    Progress,
)
from iscsiha.commands.bootstrap_params import (
    HeldAddress,
    InitRequest,
    ParamName,
    address_problems,
    console_name,
    desired_data,
    hostname_problem,
    load_sections,
    mtu_problems,
    with_link_mtus,
)
from iscsiha.commands.cluster_env import real_env
from iscsiha.commands.join_token import JoinToken
from iscsiha.commands.node_steps import DESIRED_PATH
from iscsiha.commands.tiebreaker import (
    BUNDLE,
    CA_PATH,
    PEER_BUNDLE,
    Tiebreaker,
    enrol_first,
    enrol_peer,
)
from iscsiha.errors import PARTLY_APPLIED, IscsihaError, Report, Secret
from iscsiha.executors import files, join_channel
from iscsiha.executors.join_channel import Channel, HandshakeFailed
from iscsiha.executors.runner import Runner
from iscsiha.executors.transaction import Transaction
from iscsiha.model.load import load_text
from iscsiha.model.toml_dump import dumps
from iscsiha.model.types import Config
from iscsiha.plan import corosync, peer_ssh
from iscsiha.plan.drbd import AUTHKEY_PATH

# -- cluster init -------------------------------------------------------------------------

def link_mtu(env: HostEnv, ifname: str) -> int | None:
    """The kernel's MTU of a link; None when it cannot be read (no sysfs: tests)."""
    raw = files.read(env.path(f"/sys/class/net/{ifname}/mtu")) if "/" not in ifname else None
    text = raw.decode(errors="replace").strip() if raw else ""
    return int(text) if text.isdigit() and len(text) < 7 else None


def init(env: HostEnv, request: InitRequest, tiebreaker: Tiebreaker | None,
         progress: Progress, param: ParamName = console_name) -> InitResult:
    hostname = env.hostname()
    data, names = desired_data(request, request.node or hostname, param)
    held = env.addresses()
    with_link_mtus(data, names, held, lambda ifname: link_mtu(env, ifname), param)
    config = load_sections(data, names)
    first, peer = config.cluster.nodes
    problems = [p for p in [hostname_problem(hostname, first, param("node"), "this box")] if p]
    problems += address_problems(config, first, held,
                                 lambda net: f"{param(net)} (this box's address)")
    problems += steps.not_in_a_cluster(env)
    problems += steps.security_problems(env)
    if config.cluster.tiebreaker and tiebreaker is None:
        problems.append(Report("no-tiebreaker-signer", param("tiebreaker"),
                               config.cluster.tiebreaker, "a way to reach the qnetd host"))
    if problems:
        raise IscsihaError(problems)
    host_key = steps.own_host_key(env)
    ca = None
    if tiebreaker is not None and config.cluster.tiebreaker:
        progress(f"fetching the tiebreaker's CA certificate from {config.cluster.tiebreaker}")
        ca = tiebreaker.ca_certificate()
    private, public = steps.make_ssh_key(env)
    authkey = env.random(AUTHKEY_BYTES)
    text = dumps(data)
    pending = PendingJoin(env.random(join_token.SECRET_BYTES), steps.listen_address(config),
                          env.join_port, env.clock() + JOIN_TTL, peer.name)
    tx = Transaction(env.root)
    try:
        progress("writing corosync.conf, the authkey, the cluster SSH key and the "
                 f"desired state ({env.desired_path})")
        steps.write_cluster_files(tx, config, first, authkey, private, public,
                                  [(first, host_key)])
        tx.write(env.desired_path, text.encode(), 0o600)
        if ca is not None and tiebreaker is not None:
            progress("enrolling with the tiebreaker (qdevice certificate)")
            enrol_first(tx, env.runner, tiebreaker, ca, config.cluster.name)
        steps.start_services(env, tx, config, progress)
        progress("setting the cluster properties")
        steps.set_properties(env, config)
        progress(f"waiting for {peer.name} on {pending.address} port {pending.port}")
        open_join(env, tx, pending)
    except IscsihaError as exc:
        raise steps.undone(exc, tx, "this box") from exc
    tx.commit()
    return _result(config, pending)


def reissue(env: HostEnv, progress: Progress) -> InitResult:
    """A new token on a first box whose peer has not joined yet (the old one expired)."""
    config = steps.installed_config(env)
    first, peer = config.cluster.nodes
    if env.hostname() != first.name:
        raise IscsihaError.single("not-first-box", "hostname", env.hostname(), first.name,
                                  "a token is issued by the box `cluster init` ran on")
    if steps.peer_joined(env, peer):
        raise IscsihaError.single("already-joined", "node", peer.name,
                                  "a peer that has not joined yet",
                                  "has joined already: the cluster is complete")
    pending = PendingJoin(env.random(join_token.SECRET_BYTES), steps.listen_address(config),
                          env.join_port, env.clock() + JOIN_TTL, peer.name)
    if env.systemd.active_state(JOIN_UNIT) in ("active", "activating"):
        progress("stopping the listener of the previous token")
        env.systemd.stop(JOIN_UNIT)
    tx = Transaction(env.root)
    try:
        open_join(env, tx, pending)
    except IscsihaError as exc:
        raise steps.undone(exc, tx, "this box") from exc
    tx.commit()
    return _result(config, pending)


def _result(config: Config, pending: PendingJoin) -> InitResult:
    first, peer = config.cluster.nodes
    return InitResult(token_of(pending), config.cluster.name, first.name, peer.name,
                      pending.expires, config.cluster.tiebreaker)


def open_join(env: HostEnv, tx: Transaction, pending: PendingJoin) -> None:
    tx.write(JOIN_STATE, pending.dump(), 0o600)
    tx.on_undo(f"stop {JOIN_UNIT}", lambda: steps.stop_if_running(env, JOIN_UNIT))
    env.start_listener(env)


def token_of(pending: PendingJoin) -> str:
    return join_token.encode(JoinToken(pending.address, pending.port, pending.secret))


def start_join_unit(env: HostEnv) -> None:
    """The listener as a transient service, reachable before `cluster init` returns."""
    pending = steps.pending(env)
    env.systemd.start_transient(JOIN_UNIT, [peer_ssh.ISCSIHA, "cluster", "serve-join"],
                                "iscsiha: waiting for the second box to join",
                                JOIN_TTL + 60.0)
    deadline = time.monotonic() + 15.0
    # The service binds its socket shortly after it starts; a connection proves it
    # listens (it logs one connection without the key, this one).
    while True:
        try:
            join_channel.connect(pending.address, pending.port, 1.0).close()
            return
        except IscsihaError:
            if time.monotonic() > deadline:
                raise
            env.sleep(0.3)


# -- the first box, while the join waits ----------------------------------------------------

def serve_join(env: HostEnv, log: Callable[[str], None]) -> bool:
    """Run by the join unit: serve the offer until the peer joined or the token expired."""
    pending = steps.pending(env)
    config = steps.installed_config(env)
    offer = _offer(env, config, pending.replacing)
    deadline = time.monotonic() + max(0.0, pending.expires - env.clock())
    listener = join_channel.listen(pending.address, pending.port)
    try:
        log(f"waiting for {pending.peer} on {pending.address} port {pending.port}")
        return join_exchange.serve(listener, env.security, pending.secret, offer,
                                   lambda hello: _hello_problems(pending.peer, hello),
                                   lambda hello: _record_peer(env, config, hello), deadline,
                                   log)
    finally:
        listener.close()
        files.remove(env.path(JOIN_STATE))


def _offer(env: HostEnv, config: Config, replacing: bool) -> join_exchange.Offer:
    def need(path: str) -> bytes:
        data = files.read(env.path(path))
        if not data:
            raise IscsihaError.single("missing-file", "file", path,
                                      "written by `cluster init` on this box",
                                      "is missing or empty")
        return data

    tiebreaker = config.cluster.tiebreaker is not None
    return join_exchange.Offer(
        version=__version__, desired=need(env.desired_path).decode(),
        corosync_conf=need(corosync.PATH).decode(), authkey=need(AUTHKEY_PATH),
        ssh_key=need(peer_ssh.KEY), ssh_public=need(f"{peer_ssh.KEY}.pub").decode(),
        host_key=steps.own_host_key(env),
        qdevice_ca=need(CA_PATH) if tiebreaker else None,
        # The first box's bundle; the second box kept its copy (a box that stays after
        # `cluster replace` may be either).
        qdevice_p12=(files.read(env.path(BUNDLE)) or need(PEER_BUNDLE)) if tiebreaker else None,
        replacing=replacing)


def _hello_problems(peer: str, hello: join_exchange.Hello) -> list[Report]:
    """Whether the box saying hello is the peer this cluster waits for, with a usable
    host key: checked before the offer (the cluster's keys) is sent."""
    problems = []
    if hello.hostname != peer:
        problems.append(Report("wrong-host-name", "joining box", hello.hostname,
                               f"{peer} (the box the token was issued for)",
                               "is not the box this cluster waits for: nothing secret was "
                               "sent; set its host name or join from the right box"))
    key = peer_ssh.public_key_problem(hello.host_key)
    if key is not None:
        problems.append(Report("bad-host-key", f"{hello.hostname} SSH host key",
                               hello.host_key[:60], peer_ssh.KEY_ALLOWED, key))
    return problems


def _record_peer(env: HostEnv, config: Config, hello: join_exchange.Hello) -> None:
    """The joiner's SSH host key, so this box's apply may reach it."""
    here, peer = steps.this_and_other(config, env.hostname())
    steps.check_host_key(hello.host_key, peer.name)
    tx = Transaction(env.root)
    try:
        tx.write(peer_ssh.KNOWN_HOSTS, steps.known_hosts(
            config, [(here, steps.own_host_key(env)), (peer, hello.host_key)]), 0o644)
    except IscsihaError as exc:
        raise steps.undone(exc, tx, "the first box") from exc
    tx.commit()


# -- cluster join ---------------------------------------------------------------------------

def join(env: HostEnv, text: str, progress: Progress) -> Config:
    token = join_token.decode(text)
    problems = steps.not_in_a_cluster(env) + steps.security_problems(env)
    if problems:
        raise IscsihaError(problems)
    hostname = env.hostname()
    host_key = steps.own_host_key(env)
    progress(f"connecting to the first box at {token.where}")
    sock = join_channel.connect(token.address, token.port, CONNECT_TIMEOUT)
    sock.settimeout(join_exchange.HANDSHAKE_TIMEOUT)
    try:
        stream = env.security.client(sock, token.secret)
    except HandshakeFailed as exc:
        sock.close()
        raise IscsihaError.single(
            "token-refused", "token", Secret(text.strip()),
            f"the token printed by the `cluster init` waiting at {token.where}",
            f"the first box at {token.where} refused it (TLS: {exc}): it is from another or "
            "an earlier `cluster init`; nothing was changed on either box") from exc
    channel = Channel(stream, token.where)
    try:
        offer = join_exchange.request(channel, join_exchange.Hello(hostname, host_key,
                                                                   __version__))
        config = _joining(channel, env, offer, hostname)
        _set_up_joiner(env, channel, config, offer, host_key, progress)
    finally:
        channel.close()
    _finish(env, config, offer.desired, offer.replacing, progress)
    return config


def _joining(channel: Channel, env: HostEnv, offer: join_exchange.Offer,
             hostname: str) -> Config:
    """The offer's config, once this box is the peer it describes; else refuse."""
    try:
        config = load_text(offer.desired, "the first box's desired state")
    except IscsihaError as exc:
        join_exchange.refuse(channel, exc.reports)
        raise
    me, first = steps.this_and_other(config, hostname)
    problems = [p for p in [hostname_problem(hostname, me, "hostname",
                                             f"the box the token was issued for on "
                                             f"{first.name}")] if p]
    held = env.addresses()
    problems += address_problems(config, me, held, lambda net: f"{me.name} {net}")
    problems += mtu_problems(config, me, held, lambda ifname: link_mtu(env, ifname),
                             first.name)
    if corosync.corosync_conf(config) != offer.corosync_conf:
        problems.append(Report("different-release", "iscsiha", __version__,
                               f"the release on {first.name} ({offer.version})",
                               "makes a different corosync.conf from the same desired "
                               "state: update both boxes to the same release"))
    if problems:
        join_exchange.refuse(channel, problems)
        raise IscsihaError(problems)
    return config


def _set_up_joiner(env: HostEnv, channel: Channel, config: Config,
                   offer: join_exchange.Offer, host_key: str, progress: Progress) -> None:
    me, first = steps.this_and_other(config, env.hostname())
    steps.check_host_key(offer.host_key, first.name)
    peer_ssh.checked_key(offer.ssh_public, "the cluster SSH public key in the offer")
    tx = Transaction(env.root)
    try:
        progress("writing corosync.conf, the authkey, the cluster SSH key and the "
                 "desired state")
        steps.write_cluster_files(tx, config, me, offer.authkey, offer.ssh_key,
                                  offer.ssh_public, [(first, offer.host_key), (me, host_key)])
        tx.write(env.desired_path, offer.desired.encode(), 0o600)
        if offer.qdevice_ca is not None and offer.qdevice_p12 is not None:
            progress("importing the tiebreaker certificate")
            enrol_peer(tx, env.runner, offer.qdevice_ca, offer.qdevice_p12)
        steps.start_services(env, tx, config, progress)
        progress(f"confirming with {first.name}")
        join_exchange.finish(channel)
    except IscsihaError as exc:
        join_exchange.fail(channel, exc.reports)
        raise steps.undone(exc, tx, "this box") from exc
    tx.commit()


def _finish(env: HostEnv, config: Config, text: str, replacing: bool,
            progress: Progress) -> None:
    """Both boxes members, then the desired state applied (fencing and its secrets), or
    on a box that replaces a dead one, its volumes made anew."""
    names = {n.name for n in config.cluster.nodes}
    try:
        progress(f"waiting for Pacemaker to see {' and '.join(sorted(names))} online")
        steps.wait(env, MEMBERS_TIMEOUT, lambda: steps.all_online(env, names),
                   "cluster-not-formed", "nodes", sorted(names), "both online in Pacemaker")
        if replacing:
            env.rebuild(config, text, progress)
            return
        progress("applying the desired state (fencing devices, their secrets)")
        env.apply(config, text, progress)
    except IscsihaError as exc:
        finish = (f"`iscsiha cluster rebuild` on {env.hostname()}" if replacing
                  else f"`iscsiha apply {env.desired_path}` on either box")
        raise IscsihaError([*exc.reports, Report(
            PARTLY_APPLIED, "cluster join", config.cluster.name,
            "rebuild run again" if replacing else "apply run again",
            f"both boxes are set up and in the cluster; finish with {finish}")]) from exc


def host_env(runner: Runner | None = None, desired_path: str = DESIRED_PATH) -> HostEnv:
    """The box itself: its ClusterEnv (the CIB, apply's), D-Bus, netlink, TLS-PSK."""
    from iscsiha.commands import apply as apply_cmd
    from iscsiha.commands import replace
    from iscsiha.executors.addresses import Addresses
    from iscsiha.executors.join_channel import TlsPsk
    from iscsiha.executors.systemd import Systemd

    runner = runner or Runner()
    env = real_env(runner, desired_path=desired_path)

    def addresses() -> list[HeldAddress]:
        with Addresses() as found:
            return found.own()

    def apply(config: Config, text: str, progress: Progress) -> Changes:
        return apply_cmd.apply(real_env(runner, config), config, text, frozenset(), progress)

    def rebuild(config: Config, text: str, progress: Progress) -> None:
        cluster = real_env(runner, config)
        done = replace.rebuild(cluster, config, text, progress)
        replace.wait_resynced(cluster, done.minors, replace.RESYNC_WAIT, progress)

    return HostEnv(runner=env.runner, systemd=Systemd(), cib=env.pacemaker,
                   security=TlsPsk(), addresses=addresses, hostname=socket.gethostname,
                   apply=apply, rebuild=rebuild, start_listener=start_join_unit,
                   desired_path=desired_path)
