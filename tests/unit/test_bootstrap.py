"""`cluster init` and `cluster join`: the files, the services, the exchange over loopback
sockets, and that every refusal or failure leaves both boxes as they were."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from iscsiha.commands import bootstrap, bootstrap_env, join_token
from iscsiha.commands.bootstrap_params import cli_name
from iscsiha.commands.join_token import JoinToken
from iscsiha.commands.node_steps import DESIRED_PATH
from iscsiha.commands.tiebreaker import BUNDLE, CA_PATH, CERTUTIL, PEER_BUNDLE
from iscsiha.errors import PARTLY_APPLIED, IscsihaError, Secret
from iscsiha.executors.join_channel import TlsPsk
from iscsiha.model.load import load_text
from iscsiha.plan import corosync, peer_ssh
from iscsiha.plan.drbd import AUTHKEY_PATH
from iscsiha.views import format_reports
from tests.unit import ssh_keys
from tests.unit.bootstrap_fakes import (
    Box,
    FakeTiebreaker,
    Server,
    free_port,
    held,
    request,
)

UNITS = ["corosync.service", "corosync-qdevice.service", "pacemaker.service"]


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def a(tmp_path: Path, port: int) -> Box:
    return Box(tmp_path / "a", "san-a", 1, port)


@pytest.fixture
def b(tmp_path: Path, port: int) -> Box:
    return Box(tmp_path / "b", "san-b", 2, port)


def init(box: Box, signer: FakeTiebreaker | None = None, **changes: object) -> str:
    result = bootstrap.init(box.env, request(**changes), signer or FakeTiebreaker(),
                            box.progress.append)
    return result.token


def refused(call: Callable[..., object], *args: object, **kwargs: object) -> IscsihaError:
    with pytest.raises(IscsihaError) as caught:
        call(*args, **kwargs)
    return caught.value


def codes(error: IscsihaError) -> list[tuple[str, str]]:
    return [(r.code, r.field) for r in error.reports]


# -- cluster init ---------------------------------------------------------------------------

def test_init_writes_the_cluster_files(a: Box, port: int) -> None:
    token = join_token.decode(init(a))
    assert (str(token.address), token.port, len(token.secret)) == ("127.0.0.11", port, 16)
    config = load_text(a.file(DESIRED_PATH).decode())
    assert [n.name for n in config.cluster.nodes] == ["san-a", "san-b"]
    assert config.volumes == () and config.cluster.tiebreaker == "10.0.0.5"
    assert a.file(corosync.PATH).decode() == corosync.corosync_conf(config)
    assert len(a.file(AUTHKEY_PATH)) == bootstrap_env.AUTHKEY_BYTES
    modes = {path: a.mode(path) for path in (
        AUTHKEY_PATH, corosync.PATH, DESIRED_PATH, peer_ssh.KEY,
        peer_ssh.AUTHORIZED_KEYS, peer_ssh.KNOWN_HOSTS, bootstrap_env.JOIN_STATE, peer_ssh.SSH_DIR)}
    assert modes == {AUTHKEY_PATH: 0o400, corosync.PATH: 0o644, DESIRED_PATH: 0o600,
                     peer_ssh.KEY: 0o600, peer_ssh.AUTHORIZED_KEYS: 0o600,
                     peer_ssh.KNOWN_HOSTS: 0o644, bootstrap_env.JOIN_STATE: 0o600,
                     peer_ssh.SSH_DIR: 0o700}
    # The cluster key is accepted only from the peer's cluster addresses, only for steps.
    assert a.file(peer_ssh.AUTHORIZED_KEYS).decode() == (
        'restrict,from="127.0.0.12,10.11.0.12",command="/usr/bin/iscsiha node from-peer" '
        f"{ssh_keys.CLUSTER}\n")
    assert a.file(peer_ssh.KNOWN_HOSTS).decode() == (
        f"127.0.0.11,10.11.0.11 {ssh_keys.HOST['san-a']}\n")
    pending = bootstrap_env.PendingJoin.load(a.file(bootstrap_env.JOIN_STATE))
    assert (pending.secret, pending.peer) == (token.secret, "san-b")
    assert a.listener == ["started"]


def test_init_starts_the_services_in_order_and_sets_only_the_properties(a: Box) -> None:
    init(a)
    assert a.systemd.calls == [("enable", *UNITS), *(("start", u) for u in UNITS)]
    (_old, new), = a.cib.patches
    assert 'id="iscsiha-options"' in new and 'name="stonith-enabled" value="true"' in new
    # No fencing device before the peer joined: Pacemaker would fence a node it never saw.
    assert "fence_ipmilan" not in new and "<primitive" not in new


def test_init_waits_for_pacemaker_to_answer(a: Box) -> None:
    a.cib.not_ready = 3
    init(a)
    assert len(a.cib.patches) == 1


def test_init_patches_again_when_pacemaker_moved_the_cib_after_the_read(a: Box) -> None:
    # Seen in CI: a Pacemaker that just started records its own properties between
    # our read and our patch, and the patch is refused as older.
    a.cib.moves_after_read = 2
    init(a)
    (_old, new), = a.cib.patches
    assert 'name="stonith-enabled" value="true"' in new


def test_init_enrols_with_the_tiebreaker(a: Box) -> None:
    tiebreaker = FakeTiebreaker()
    init(a, tiebreaker)
    assert a.file(CA_PATH) == b"QNET CA CERTIFICATE\n"
    assert tiebreaker.signed == [("san", b"REQUEST san")]
    certutil = [call[1] for call in a.runner.calls if call[0] == CERTUTIL]
    assert certutil == ["-i", "-r", "-M"]
    assert a.file(BUNDLE) == b"BUNDLE SIGNED REQUEST san"


def test_init_without_a_tiebreaker_runs_no_qdevice(a: Box) -> None:
    tiebreaker = FakeTiebreaker()
    init(a, tiebreaker, tiebreaker=None)
    assert "two_node: 1" in a.file(corosync.PATH).decode()
    assert ("start", "corosync-qdevice.service") not in a.systemd.calls
    assert tiebreaker.signed == [] and not any(c[0] == CERTUTIL for c in a.runner.calls)


def test_init_reports_bad_parameters_as_the_model_does_naming_the_parameter(a: Box) -> None:
    before = a.snapshot()
    networks = {**request().networks, "link1": "10.11.0.0/24,10.11.0.11,10.12.0.12"}
    error = refused(init, a, None, networks=networks,
                    peer_bmc_password=Secret("x" * 21), name="San")
    assert codes(error) == [("address-outside-subnet", "link1 (peer's address)"),
                            ("bad-secret", "peer_bmc_password"), ("bad-name", "name")]
    assert "a host address in 10.11.0.0/24 (network 'link1')" in format_reports(error.reports)
    assert "x" * 21 not in format_reports(error.reports)
    assert a.snapshot() == before and a.systemd.calls == []


def test_init_refuses_a_malformed_or_missing_network(a: Box) -> None:
    networks = dict(request().networks)
    networks["repl"] = "10.20.0.0/24,10.20.0.11"
    del networks["storage"]
    error = refused(bootstrap.init, a.env, request(networks=networks), None, a.progress.append,
                    cli_name)
    assert codes(error) == [("bad-network", "--repl"), ("missing", "--storage")]
    assert "has 2 parts" in error.reports[0].message


def test_init_checks_this_box_s_addresses_and_name(a: Box) -> None:
    before = a.snapshot()
    a.held = [h for h in held(1) if str(h[1]) != "10.20.0.11"]  # repl cable not set up
    a.held = [(i, addr, 16 if str(addr) == "10.11.0.11" else p) for i, addr, p in a.held]
    a.name = "iscsiha"  # the image's default host name
    error = refused(init, a, node="san-a")
    assert codes(error) == [("wrong-host-name", "node"),
                            ("address-prefix", "link1 (this box's address)"),
                            ("address-not-here", "repl (this box's address)")]
    assert error.reports[1].message == ("is on eth1 with prefix /16, but network link1 is "
                                        "10.11.0.0/24")
    assert error.reports[2].message == ("no interface of this box holds it; it has no address "
                                        "in 10.20.0.0/24")
    assert a.snapshot() == before and a.systemd.calls == []


def test_init_names_a_swapped_address_as_the_peer_s(a: Box) -> None:
    a.held = held(2)
    a.name = "san-a"
    error = refused(init, a)
    assert "10.11.0.12/24 on eth1 (the address given for san-b)" in error.reports[1].message


def test_init_refuses_a_box_already_in_a_cluster(a: Box) -> None:
    init(a)
    before = a.snapshot()
    error = refused(init, a)
    assert {code for code, _ in codes(error)} == {"already-in-a-cluster", "service-running"}
    assert a.snapshot() == before


def test_an_unreachable_tiebreaker_changes_nothing(a: Box) -> None:
    before = a.snapshot()
    tiebreaker = FakeTiebreaker(error=IscsihaError.single(
        "tiebreaker-failed", "tiebreaker", "root@10.0.0.5", "a corosync-qnetd host",
        "ssh exited with 255: Connection refused"))
    error = refused(init, a, tiebreaker)
    assert codes(error) == [("tiebreaker-failed", "tiebreaker")]
    assert a.snapshot() == before and a.systemd.calls == []


def test_a_failed_start_undoes_everything(a: Box) -> None:
    before = a.snapshot()
    a.systemd.fail_start = {"pacemaker.service"}
    error = refused(init, a)
    assert codes(error) == [("unit-state", "unit")]
    # Debian's corosync.conf is back, the state the services wrote is gone.
    assert a.snapshot() == before
    assert a.systemd.calls == [("enable", *UNITS), *(("start", u) for u in UNITS),
                               ("stop", "corosync-qdevice.service"),
                               ("stop", "corosync.service"), ("disable", *UNITS)]
    assert a.systemd.active == set() and a.systemd.enabled == set()


def test_a_new_token_replaces_the_old_one(a: Box) -> None:
    old = join_token.decode(init(a))
    a.systemd.active.add(bootstrap_env.JOIN_UNIT)
    new = join_token.decode(bootstrap.reissue(a.env, a.progress.append).token)
    assert new.secret != old.secret
    assert bootstrap_env.PendingJoin.load(a.file(bootstrap_env.JOIN_STATE)).secret == new.secret
    assert ("stop", bootstrap_env.JOIN_UNIT) in a.systemd.calls


# -- cluster join ---------------------------------------------------------------------------

def test_join_completes_the_pair(a: Box, b: Box) -> None:
    token = init(a)
    b.cib.online = {"san-a", "san-b"}
    with Server(a) as server:
        config = bootstrap.join(b.env, token, b.progress.append)
    assert server.wait() is True
    assert config.cluster.name == "san"
    for path in (AUTHKEY_PATH, corosync.PATH, DESIRED_PATH, peer_ssh.KEY,
                 f"{peer_ssh.KEY}.pub", CA_PATH):
        assert b.file(path) == a.file(path), path
        assert b.mode(path) == a.mode(path), path
    both = (f"127.0.0.11,10.11.0.11 {ssh_keys.HOST['san-a']}\n"
            f"127.0.0.12,10.11.0.12 {ssh_keys.HOST['san-b']}\n").encode()
    assert b.file(peer_ssh.KNOWN_HOSTS) == both and a.file(peer_ssh.KNOWN_HOSTS) == both
    assert b'from="127.0.0.11,10.11.0.11"' in b.file(peer_ssh.AUTHORIZED_KEYS)
    assert b.file(PEER_BUNDLE) == a.file(BUNDLE)
    assert [c[1] for c in b.runner.calls if c[0] == CERTUTIL] == ["-i", "-m"]
    assert b.systemd.calls == [("enable", *UNITS), *(("start", u) for u in UNITS)]
    assert [c.cluster.name for c in b.applied] == ["san"]
    # The token is used up: the listener ended and left nothing behind.
    assert not (a.root / bootstrap_env.JOIN_STATE.lstrip("/")).exists()
    assert any("san-b joined" in line for line in server.log)


def test_join_waits_while_crm_mon_cannot_connect_yet(a: Box, b: Box) -> None:
    token = init(a)
    b.cib.online = {"san-a", "san-b"}
    b.cib.status_not_ready = 3  # Pacemaker just started: crm_mon exits 102 a few times
    with Server(a) as server:
        config = bootstrap.join(b.env, token, b.progress.append)
    assert server.wait() is True
    assert [c.cluster.name for c in b.applied] == [config.cluster.name]
    assert b.cib.status_not_ready == 0


def test_a_wrong_token_is_refused_and_the_right_one_still_works(a: Box, b: Box) -> None:
    token = join_token.decode(init(a))
    wrong = join_token.encode(JoinToken(token.address, token.port, bytes(16)))
    b.cib.online = {"san-a", "san-b"}
    with Server(a) as server:
        a_before, b_before = a.snapshot(), b.snapshot()
        error = refused(bootstrap.join, b.env, wrong, b.progress.append)
        assert codes(error) == [("token-refused", "token")]
        assert "nothing was changed on either box" in error.reports[0].message
        assert a.snapshot() == a_before and b.snapshot() == b_before
        bootstrap.join(b.env, join_token.encode(token), b.progress.append)
    assert server.wait() is True
    assert any("without this token" in line for line in server.log)


def test_an_unreachable_first_box_is_named(b: Box, port: int) -> None:
    before = b.snapshot()
    token = join_token.encode(JoinToken(held(1)[1][1], port, bytes(16)))
    error = refused(bootstrap.join, b.env, token, b.progress.append)
    assert codes(error) == [("peer-unreachable", "first box")]
    assert error.reports[0].value == f"127.0.0.11:{port}"
    assert "Connection refused" in error.reports[0].message
    assert b.snapshot() == before


def test_mismatched_networks_are_each_listed_and_change_nothing(a: Box, b: Box) -> None:
    token = init(a)
    b.held = [h for h in held(2) if str(h[1]) not in ("10.11.0.12", "10.30.0.12")]
    b.held.append(("eth3", held(2)[-1][1] + 1, 24))  # storage got .13 by DHCP
    b.cib.online = {"san-a", "san-b"}
    with Server(a) as server:
        a_before, b_before = a.snapshot(), b.snapshot()
        error = refused(bootstrap.join, b.env, token, b.progress.append)
        assert a.snapshot() == a_before and b.snapshot() == b_before
        assert b.systemd.calls == [] and b.runner.calls == []
        b.held = held(2)  # cabled right, the same token works
        bootstrap.join(b.env, token, b.progress.append)
    assert server.wait() is True
    assert codes(error) == [("address-not-here", "san-b link1"),
                            ("address-not-here", "san-b storage")]
    assert error.reports[1].message == ("no interface of this box holds it; in 10.30.0.0/24 "
                                        "it has 10.30.0.13/24 on eth3")
    assert any("did not join (refused)" in line and "stays valid" in line
               for line in server.log)


def test_the_wrong_box_cannot_join(a: Box, b: Box) -> None:
    token = init(a)
    b.name = "san-c"
    with Server(a, ttl=2.0) as server:
        error = refused(bootstrap.join, b.env, token, b.progress.append)
    assert server.wait() is False
    # The first box refuses it from its hello, before the offer with the cluster's keys.
    assert codes(error) == [("wrong-host-name", "joining box")]
    assert error.reports[0].allowed == "san-b (the box the token was issued for)"
    assert any("refused before anything secret was sent" in line for line in server.log)
    assert not (b.root / AUTHKEY_PATH.lstrip("/")).exists()


def test_a_failure_while_joining_undoes_both_sides(a: Box, b: Box) -> None:
    token = init(a)
    b.systemd.fail_start = {"pacemaker.service"}
    with Server(a) as server:
        a_before, b_before = a.snapshot(), b.snapshot()
        error = refused(bootstrap.join, b.env, token, b.progress.append)
        assert codes(error) == [("unit-state", "unit")]
        assert b.snapshot() == b_before and b.systemd.active == set()
        assert a.snapshot() == a_before  # its token is still there for the next try
        b.systemd.fail_start = set()
        b.cib.online = {"san-a", "san-b"}
        bootstrap.join(b.env, token, b.progress.append)
    assert server.wait() is True
    assert any("did not join (failed)" in line for line in server.log)


def test_a_failed_apply_after_joining_says_what_is_left(a: Box, b: Box) -> None:
    token = init(a)
    b.cib.online = {"san-a", "san-b"}
    b.apply_error = IscsihaError.single("cib-patch-refused", "CIB", 1, "a CIB unchanged")
    with Server(a) as server:
        error = refused(bootstrap.join, b.env, token, b.progress.append)
    assert server.wait() is True
    assert codes(error)[-1] == (PARTLY_APPLIED, "cluster join")
    assert "iscsiha apply /etc/iscsiha/desired.toml" in error.reports[-1].message
    assert b.file(corosync.PATH) == a.file(corosync.PATH)  # joined all the same


def test_a_box_in_a_cluster_does_not_join_another(a: Box, b: Box) -> None:
    token = init(a)
    (b.root / "etc/iscsiha").mkdir(parents=True)
    (b.root / "etc/iscsiha/desired.toml").write_text("[cluster]\n")
    error = refused(bootstrap.join, b.env, token, b.progress.append)
    assert codes(error) == [("already-in-a-cluster", "file")]


def test_the_listener_gives_up_when_the_token_expires(a: Box) -> None:
    init(a)
    with Server(a, ttl=0.5) as server:
        pass
    assert server.wait() is False
    assert server.log[-1] == "the join token expired unused"
    assert not (a.root / bootstrap_env.JOIN_STATE.lstrip("/")).exists()


def test_the_desired_state_holds_only_the_cluster_sections(a: Box) -> None:
    init(a)
    data = tomllib.loads(a.file(DESIRED_PATH).decode())
    assert sorted(data) == ["cluster", "networks", "nodes"]
    assert data["networks"][3] == {"name": "storage", "role": "storage",
                                   "subnet": "10.30.0.0/24", "ping": ["10.30.0.1"]}


@pytest.mark.skipif(TlsPsk().unavailable() is not None, reason=str(TlsPsk().unavailable()))
def test_the_pair_joins_over_real_tls_psk(a: Box, b: Box) -> None:
    a.env.security = b.env.security = TlsPsk()
    token = join_token.decode(init(a))
    b.cib.online = {"san-a", "san-b"}
    with Server(a) as server:
        wrong = join_token.encode(JoinToken(token.address, token.port, bytes(16)))
        assert codes(refused(bootstrap.join, b.env, wrong, b.progress.append)) == [
            ("token-refused", "token")]
        bootstrap.join(b.env, join_token.encode(token), b.progress.append)
    assert server.wait() is True
    assert b.file(AUTHKEY_PATH) == a.file(AUTHKEY_PATH)


def test_when_the_first_box_cannot_record_the_join_both_sides_undo(a: Box, b: Box) -> None:
    token = init(a)
    known = a.root / peer_ssh.KNOWN_HOSTS.lstrip("/")
    known.unlink()
    known.mkdir()  # where the first box would write the joiner's host key
    with Server(a, ttl=2.0) as server:
        a_before, b_before = a.snapshot(), b.snapshot()
        error = refused(bootstrap.join, b.env, token, b.progress.append)
        assert b.snapshot() == b_before and b.systemd.active == set()
        assert a.snapshot() == a_before
    assert server.wait() is False  # the token stayed valid until it expired
    assert codes(error) == [("write-failed", "path")]
    assert error.reports[0].value == peer_ssh.KNOWN_HOSTS
    assert any(f"recording {b.name} failed" in line for line in server.log)


def set_mtu(box: Box, ifname: str, mtu: int) -> None:
    path = box.root / "sys/class/net" / ifname / "mtu"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{mtu}\n")


def test_the_first_box_s_link_mtu_goes_into_the_desired_state_and_the_peer_must_match(
        a: Box, b: Box) -> None:
    set_mtu(a, "eth2", 9000)  # repl, jumbo frames on san-a
    token = init(a)
    desired = load_text(a.file(DESIRED_PATH).decode())
    assert {n.name: n.mtu for n in desired.cluster.networks}["repl"] == 9000
    set_mtu(b, "eth2", 1500)
    b.cib.online = {"san-a", "san-b"}
    with Server(a) as server:
        b_before = b.snapshot()
        error = refused(bootstrap.join, b.env, token, b.progress.append)
        assert b.snapshot() == b_before
        assert codes(error) == [("mtu-mismatch", "san-b repl")]
        assert "eth2 has MTU 1500" in error.reports[0].message
        set_mtu(b, "eth2", 9000)
        bootstrap.join(b.env, token, b.progress.append)
    assert server.wait() is True
