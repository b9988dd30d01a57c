"""Two boxes as flashed become a cluster, export a LUN and move it, through one-shot
console commands only (`iscsiha-console LINE`, iscsiha_lab.console_setup); the
initiator writes and reads through it.

Runs first, on the boxes as the session booted them (no cluster), and leaves the
cluster it formed to every later test, without the demo target. A lab that has a
cluster already (ISCSIHA_LAB_REUSE=1 on a lab from `iscsiha-lab up`) is booted again
without one first.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import pytest
from iscsiha_lab import console_setup
from iscsiha_lab.cluster import is_quorate_with_qdevice
from iscsiha_lab.desired import cluster_data
from iscsiha_lab.initiator import Initiator, wait_for
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import converge, online, target_on

from iscsiha.commands import join_token
from iscsiha.errors import IscsihaError
from lab_tests.scenarios.conftest import has_cluster, lab_images
from lab_tests.scenarios.conftest import say as conftest_say

FIRST, PEER = "san-a", "san-b"
LOG: list[str] = []  # what the console printed, for a failure's report


def say(line: str) -> None:
    LOG.append(line)
    print(line, flush=True)


def active(lab: Lab, box: str, unit: str) -> str:
    return lab.exec(box, ["systemctl", "is-active", unit]).out.strip()


@pytest.fixture(scope="module")
def fresh(booted: Lab) -> Iterator[Lab]:
    """The lab's boxes as flashed (booted again if they have a cluster); after the
    module, the cluster they formed without the demo target."""
    if has_cluster(booted):
        booted.down(conftest_say)
        booted.up(lab_images(), conftest_say, form_cluster=False)
    yield booted
    if has_cluster(booted):
        try:
            converge(booted, dict(cluster_data(booted), volumes=[], targets=[]))
        except IscsihaError as exc:  # the next test's lab fixture boots a broken one away
            say(f"the demo target could not be removed: {exc}")


@pytest.fixture(scope="module")
def networked(fresh: Lab) -> Lab:
    """Both boxes' cluster, replication and storage addresses, set in their consoles."""
    console_setup.networks(fresh, say)
    return fresh


@pytest.fixture(scope="module")
def token(networked: Lab) -> str:
    return console_setup.init(networked, say)[1]


def addresses_on(lab: Lab, box: str, ifname: str) -> set[str]:
    out = lab.exec(box, ["ip", "-o", "-4", "address", "show", "dev", ifname]).out
    return set(re.findall(r"inet (\S+)", out))


def test_an_unconfirmed_network_change_is_put_back_on_its_own(networked: Lab) -> None:
    node = networked.topology.node(PEER)
    storage = next(i for i in networked.topology.product_interfaces(node)
                   if i.network.name == "storage")
    wrong = f"{storage.address + 100}/{storage.network.subnet.prefixlen}"
    assert addresses_on(networked, PEER, storage.ifname) == {storage.cidr}
    add = f"/box/networks add name=storage link={storage.ifname} address="
    console_setup.console(networked, PEER, add + wrong, say)
    console_setup.console(networked, PEER, "/box/networks apply within=10", say)
    assert addresses_on(networked, PEER, storage.ifname) == {wrong}
    wait_for("the storage address put back",
             lambda: addresses_on(networked, PEER, storage.ifname) == {storage.cidr},
             timeout=60)
    shown = console_setup.console(networked, PEER, "/box/networks show", say).out
    assert "CHANGED, not applied" in shown  # the file keeps the unconfirmed change
    console_setup.console(networked, PEER, add + storage.cidr, say)
    shown = console_setup.console(networked, PEER, "/box/networks show", say).out
    assert shown.rstrip().endswith("applied")


def test_a_box_rebooted_inside_the_window_comes_back_with_the_networks_from_before(
        networked: Lab) -> None:
    node = networked.topology.node(PEER)
    storage = next(i for i in networked.topology.product_interfaces(node)
                   if i.network.name == "storage")
    wrong = f"{storage.address + 100}/{storage.network.subnet.prefixlen}"
    add = f"/box/networks add name=storage link={storage.ifname} address="
    console_setup.console(networked, PEER, add + wrong, say)
    console_setup.console(networked, PEER, "/box/networks apply within=600", say)
    assert addresses_on(networked, PEER, storage.ifname) == {wrong}
    networked.power("power-off", PEER)  # the cord pulled: nothing runs at shutdown
    networked.power("power-on", PEER)
    networked.wait_booted([PEER], 300)
    assert addresses_on(networked, PEER, storage.ifname) == {storage.cidr}
    assert not networked.exec(PEER, ["test", "-e", "/var/lib/iscsiha/network/trial.json"]).ok
    console_setup.console(networked, PEER, add + storage.cidr, say)
    shown = console_setup.console(networked, PEER, "/box/networks show", say).out
    assert shown.rstrip().endswith("applied")


def test_init_starts_the_first_box_and_waits_for_its_peer(fresh: Lab, token: str) -> None:
    assert token.startswith("ISJ1-")
    assert active(fresh, FIRST, "corosync") == "active"
    assert active(fresh, FIRST, "pacemaker") == "active"
    assert active(fresh, FIRST, "iscsiha-join.service") == "active"
    assert active(fresh, PEER, "corosync") == "inactive"


def test_a_wrong_token_is_refused_and_changes_nothing_on_either_box(fresh: Lab,
                                                                     token: str) -> None:
    right = join_token.decode(token)
    wrong = join_token.encode(replace(right, secret=bytes(len(right.secret))))
    result = fresh.exec(PEER, [console_setup.CONSOLE, "/cluster", "join", "token=-"],
                        input=f"{wrong}\n", timeout=300)
    assert result.returncode == 1, result.out + result.err
    assert "token-refused" in result.out + result.err
    assert wrong not in result.out + result.err  # a token is a secret, never shown
    assert active(fresh, PEER, "corosync") == "inactive"
    assert not fresh.exec(PEER, ["test", "-e", "/etc/iscsiha/desired.toml"]).ok
    # The first box still waits, and the right token still works (next test).
    assert active(fresh, FIRST, "iscsiha-join.service") == "active"


def test_join_forms_the_pair_with_quorum_through_the_tiebreaker_and_fencing(
        fresh: Lab, token: str) -> None:
    console_setup.join(fresh, token, say)
    assert online(fresh) == {FIRST, PEER}
    for box in (FIRST, PEER):
        quorum = fresh.exec(box, ["corosync-quorumtool", "-s"]).out
        assert is_quorate_with_qdevice(quorum), quorum
    assert active(fresh, FIRST, "iscsiha-join.service") == "inactive"  # token used up

    def fencing_started() -> bool:
        mon = fresh.exec(FIRST, ["crm_mon", "-1"]).out
        return all(re.search(rf"fence-{box}\s.*Started", mon) for box in (FIRST, PEER))

    wait_for("both fence devices started", fencing_started, timeout=300)


def test_a_lun_made_in_the_console_is_written_and_read_across_a_console_move(
        fresh: Lab) -> None:
    initiator = Initiator(fresh)
    console_setup.export_volume(fresh, initiator.iqn, say)
    wait_for("target demo on san-a",
             lambda: target_on(fresh, console_setup.TARGET) == FIRST, timeout=300)
    iqn, portal = console_setup.TARGET_IQN, console_setup.PORTAL
    initiator.configure(iqn, portal)
    (disk,) = initiator.login(iqn, portal, luns=1)
    try:
        initiator.run("sh", "-c", f"dd if=/dev/urandom of=/tmp/kept bs=1M count=8 status=none"
                                  f" && dd if=/tmp/kept of={disk} bs=1M oflag=direct,sync "
                                  "status=none")
        console_setup.console(fresh, PEER, f"/targets/{console_setup.TARGET} move node={PEER}",
                              say)
        assert target_on(fresh, console_setup.TARGET) == PEER
        # The same session, now served by the other box: the data written before the
        # move reads back, and new writes work.
        initiator.run("sh", "-c", f"dd if={disk} of=/tmp/back bs=1M count=8 iflag=direct "
                                  "status=none && cmp /tmp/kept /tmp/back", timeout=300)
        initiator.write_and_read_back(disk)
        # Health at a glance, asked on the box that does not serve the target: its
        # sessions come from the peer.
        listing = console_setup.console(fresh, FIRST, "ls", say).out
    finally:
        initiator.logout(iqn, portal)
    assert "2/2 nodes online, quorate, fencing ready" in listing
    assert re.search(rf"demo \.+ \[1 LUN, preferred {FIRST}, on {PEER}, "
                     rf"1 session \({re.escape(initiator.iqn)}\)\]", listing), listing
    assert re.search(rf"Promoted on {PEER}; Connected, UpToDate/UpToDate", listing), listing


def test_the_admin_user_logs_in_to_the_console(fresh: Lab) -> None:
    # What sshd runs for `ssh admin@san-a ls /cluster`: the login shell with -c.
    result = fresh.exec(FIRST, ["su", "-", "admin", "-c", "ls /cluster"], timeout=120)
    assert result.ok, result.out + result.err
    assert "2/2 nodes online" in result.out
    shell = fresh.exec(FIRST, ["getent", "passwd", "admin"]).out.strip().split(":")[-1]
    assert shell == "/usr/lib/iscsiha/admin-shell"


def test_an_initiator_refused_for_want_of_an_acl_is_offered_for_one(fresh: Lab) -> None:
    """What TAB offers after `/targets/demo/acls create wwn=`: the new initiator that
    just tried to log in (refused on san-b, asked from san-a), next to the allowed one."""
    initiator = Initiator(fresh)
    stranger, iface = "iqn.2026-11.org.example.lab:stranger", ["-I", "stranger"]
    iqn, portal = console_setup.TARGET_IQN, console_setup.PORTAL
    initiator.run("iscsiadm", "-m", "iface", *iface, "-o", "new")
    try:
        initiator.run("iscsiadm", "-m", "iface", *iface, "-o", "update",
                      "-n", "iface.initiatorname", "-v", stranger)
        initiator.run("iscsiadm", "-m", "discovery", "-t", "st", "-p", portal, *iface)
        login = initiator.try_run(*initiator.node(iqn, portal), *iface, "--login")
        assert not login.ok, "an initiator outside the ACL logged in"
    finally:
        initiator.try_run(*initiator.node(iqn, portal), *iface, "-o", "delete")
        initiator.try_run("iscsiadm", "-m", "iface", *iface, "-o", "delete")
    seen = fresh.exec(FIRST, ["python3", "-c",
                              "from iscsiha.console.backend import ClusterBackend; "
                              "print(*ClusterBackend().seen_initiators())"])
    assert stranger in seen.check().out.split() and initiator.iqn in seen.out.split()
