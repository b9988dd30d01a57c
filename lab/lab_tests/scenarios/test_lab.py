"""The lab on real (UML) kernels: exec channel, cluster and quorum, fencing, networks, power.

All tests share one lab (see conftest.py). Tests that power-cycle or cut
something restore it before they end, so the order of the tests does not matter.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time

import pytest
from iscsiha_lab import cluster
from iscsiha_lab.initiator import wait_for
from iscsiha_lab.lab import Lab
from iscsiha_lab.pair import RECOVERY, fence_history, fenced_after
from iscsiha_lab.topology import NetworkRole

from iscsiha.errors import IscsihaError
from lab_tests.scenarios.conftest import PYTHONPATH, REPO

pytestmark = pytest.mark.lab


def cli(lab: Lab, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iscsiha_lab.cli", "--state-dir", str(lab.paths.root), *args],
        input=input, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": PYTHONPATH}, cwd=REPO)


def storage_address(lab: Lab, node: str) -> str:
    storage = lab.topology.network_with(NetworkRole.STORAGE)[0].name
    return str(lab.topology.address(lab.topology.node(node), storage))


def test_exec_runs_on_every_node_with_its_identity(lab: Lab) -> None:
    for node in lab.topology.nodes:
        result = lab.exec(node.name, ["hostname"])
        assert result.ok, result.err
        assert result.out.strip() == node.name


def test_exec_passes_exit_code_output_and_stdin_through_the_cli(lab: Lab) -> None:
    done = cli(lab, "exec", "san-a", "--", "sh", "-c", "cat; echo err >&2; exit 3", input="hi\n")
    assert done.returncode == 3
    assert done.stdout == "hi\n"
    assert done.stderr == "err\n"


def test_every_node_address_is_configured_with_offloads_off(lab: Lab) -> None:
    for node in lab.topology.nodes:
        setup = lab.channel(node.name).setup_report()
        assert setup is not None and setup["ok"], setup
        addresses = lab.exec(node.name, ["ip", "-br", "address"]).out
        for interface in lab.topology.interfaces(node):
            assert interface.cidr in addresses, f"{node.name}: {interface.cidr} missing"


def test_appliance_nodes_form_a_cluster_quorate_through_the_tiebreaker(lab: Lab) -> None:
    for node in lab.topology.appliances:
        quorum = lab.exec(node.name, ["corosync-quorumtool", "-s"])
        assert quorum.ok, quorum.out + quorum.err
        assert cluster.is_quorate_with_qdevice(quorum.out), quorum.out
        assert re.search(r"^Total votes:\s+3$", quorum.out, re.MULTILINE), quorum.out
        mon = lab.exec(node.name, ["crm_mon", "-1"])
        assert mon.returncode != 127, (
            f"{node.name} has no crm_mon: the image needs pacemaker-cli-utils")
        assert mon.ok, mon.err
        online = re.search(r"Online:\s*\[([^\]]*)\]", mon.out)
        assert online is not None, mon.out
        assert set(online.group(1).split()) == {n.name for n in lab.topology.appliances}


def test_initiator_reaches_both_storage_addresses(lab: Lab) -> None:
    initiator = lab.topology.initiators[0].name
    for node in lab.topology.appliances:
        ping = lab.exec(initiator, ["ping", "-c", "2", "-W", "2", storage_address(lab, node.name)])
        assert ping.ok, ping.out + ping.err


def test_cut_storage_of_one_node_then_heal(lab: Lab) -> None:
    initiator = lab.topology.initiators[0].name
    a, b = (storage_address(lab, n.name) for n in lab.topology.appliances)
    lab.links("cut", "storage", "san-a")
    try:
        assert lab.status()["nodes"]["san-a"]["links"]["storage"] == "cut"
        assert not lab.exec(initiator, ["ping", "-c", "2", "-W", "1", a]).ok
        assert lab.exec(initiator, ["ping", "-c", "2", "-W", "2", b]).ok
        # The exec channel does not use the guest network: still there.
        assert lab.exec("san-a", ["true"]).ok
    finally:
        lab.links("heal", "storage", "san-a")
    assert lab.exec(initiator, ["ping", "-c", "2", "-W", "2", a]).ok


def test_a_split_of_both_cluster_links_leaves_one_side_quorate_and_it_fences_the_other(
        lab: Lab) -> None:
    """Both boxes still reach the tiebreaker over mgmt: ffsplit gives quorum to one of
    them, whose Pacemaker fences the other through its BMC (off, until powered on)."""
    links = [n.name for n in lab.topology.network_with(NetworkRole.CLUSTER)]
    names = [n.name for n in lab.topology.appliances]
    shots = {name: fence_history(lab, name) for name in names}
    for link in links:
        lab.links("cut", link, None)
    try:
        wait_for("one box fenced", lambda: any(
            fenced_after(lab, name, shot)() for name, shot in shots.items()), timeout=RECOVERY)
    finally:
        for link in links:
            lab.links("heal", link, None)
    fenced = [name for name, shot in shots.items() if fenced_after(lab, name, shot)()]
    assert len(fenced) == 1, fenced
    (survivor,) = set(names) - set(fenced)
    assert lab.status()["nodes"][fenced[0]]["power"] == "off"
    quorum = lab.exec(survivor, ["corosync-quorumtool", "-s"]).out
    assert re.search(r"^Quorate:\s+Yes", quorum, re.MULTILINE), quorum
    lab.power("power-on", fenced[0])  # the admin brings the fenced box back
    lab.wait_booted(fenced, 300.0)
    cluster.wait_formed(lab, 180.0, lambda m: None)


def test_fence_ipmilan_powers_a_node_off_and_on_through_its_bmc(lab: Lab) -> None:
    """The stock fence agent in one appliance node against the other's simulated BMC.

    The password goes on stdin (fence agents read key=value options there), never argv.
    """
    fencer, victim = (n.name for n in lab.topology.appliances)

    def fence(action: str, expect: int = 0) -> str:
        result = lab.exec(fencer, ["fence_ipmilan"], input=lab.fence_options(victim, action),
                          timeout=120)
        assert result.returncode == expect, result.out + result.err
        return result.out

    assert "Status: ON" in fence("status")
    shot = fence_history(lab, victim)
    started = time.monotonic()
    try:
        fence("off")
        assert lab.node_process(victim) is None
        assert lab.status()["nodes"][victim]["power"] == "off"
        assert "Status: OFF" in fence("status", expect=2)  # fence agents: 2 means off
        # The survivor keeps quorum: its vote plus the tiebreaker's.
        quorum = lab.exec(fencer, ["corosync-quorumtool", "-s"]).out
        assert re.search(r"^Quorate:\s+Yes", quorum, re.MULTILINE), quorum
        # Pacemaker fences the box it lost too (off, already so): powered on before
        # that, the box would be switched off again.
        wait_for(f"{victim} fenced by Pacemaker", fenced_after(lab, victim, shot), timeout=300)
        fence("on")
        assert lab.node_process(victim) is not None
    finally:
        if lab.node_process(victim) is None:  # leave the lab whole for the other tests
            lab.power("power-on", victim)
        lab.wait_booted([victim], 300.0)
    cluster.wait_formed(lab, 180.0, lambda m: None)
    print(f"fence off/on cycle until the cluster was whole again: "
          f"{time.monotonic() - started:.1f} s")


def test_kill_then_power_on(lab: Lab) -> None:
    initiator = lab.topology.initiators[0].name
    assert cli(lab, "kill", initiator).returncode == 0
    assert lab.status()["nodes"][initiator]["power"] == "off"
    assert not lab.channel(initiator).ready()
    assert cli(lab, "power-on", initiator).returncode == 0
    lab.wait_booted([initiator], 300.0)
    assert lab.exec(initiator, ["true"]).ok


def boot_lines(lab: Lab, node: str) -> list[str]:
    """The boot loader stand-in's choices in the node's console log, oldest first."""
    text = lab.paths.console_log(node).read_text(errors="replace")
    return re.findall(r"^--- iscsiha-lab: (boot: slot .*) ---$", text, re.MULTILINE)


def test_an_appliance_boots_slot_a_of_its_boot_disk_through_the_stand_in(lab: Lab) -> None:
    """The boot disk as on a box (esp, root-a, root-b, found by name), booted as the
    stand-in for GRUB chose. Reboots the guest does itself go through it too:
    test_upgrade_pair reboots both boxes into their new roots and back."""
    node = lab.topology.appliances[-1].name
    disk = lab.exec(node, ["lsblk", "-rno", "NAME,PARTLABEL", "/dev/ubda"]).check().out.split()
    assert disk == ["ubda", "ubda1", "esp", "ubda2", "root-a", "ubda3", "root-b"], disk
    status = lab.exec(node, ["iscsiha", "upgrade", "status"]).check().out
    booted = re.search(r"^disk    ubda \(booted from slot ([ab])\)$", status, re.MULTILINE)
    assert booted is not None and "trial   none armed" in status, status
    slot = booted.group(1)
    assert boot_lines(lab, node)[-1].startswith(f"boot: slot {slot} (good, good {slot};")
    cmdline = lab.exec(node, ["cat", "/proc/cmdline"]).check().out.split()
    assert f"root=/dev/ubda{2 if slot == 'a' else 3}" in cmdline, cmdline
    assert f"iscsiha.slot={slot}" in cmdline, cmdline


def test_a_poweroff_in_the_guest_leaves_the_node_off(lab: Lab) -> None:
    initiator = lab.topology.initiators[0].name
    with contextlib.suppress(IscsihaError):
        lab.exec(initiator, ["systemctl", "poweroff"], timeout=30)
    wait_for(f"{initiator} to power off", lambda: lab.node_process(initiator) is None,
             timeout=120)
    time.sleep(3)  # a reboot would be booting by now
    assert lab.status()["nodes"][initiator]["power"] == "off"
    assert cli(lab, "power-on", initiator).returncode == 0
    lab.wait_booted([initiator], 300.0)


def test_trial_words_are_refused_for_an_initiator_and_for_the_stand_ins_own_words(
        lab: Lab) -> None:
    node = lab.topology.appliances[0].name
    assert cli(lab, "trial-words", lab.topology.initiators[0].name, "--", "x=1").returncode == 1
    refused = cli(lab, "trial-words", node, "--", "root=/dev/ubda3")
    assert refused.returncode == 1 and "root=" in refused.stderr, refused.stderr
    assert cli(lab, "trial-words", node, "--", "systemd.mask=x.service").returncode == 0
    assert cli(lab, "trial-words", node).returncode == 0  # forgotten again


def test_freeze_and_thaw(lab: Lab) -> None:
    initiator = lab.topology.initiators[0].name
    assert cli(lab, "freeze", initiator).returncode == 0
    try:
        assert lab.status()["nodes"][initiator]["power"] == "frozen"
    finally:
        assert cli(lab, "thaw", initiator).returncode == 0
    assert lab.status()["nodes"][initiator]["power"] == "on"
    assert lab.exec(initiator, ["true"], timeout=60).ok


@pytest.mark.parametrize(
    ("args", "bad", "allowed"),
    [
        (("exec", "nosuch", "--", "true"), "'nosuch'", "san-a, san-b, initiator"),
        (("kill", "san-c"), "'san-c'", "san-a, san-b, initiator"),
        (("cut", "link9"), "'link9'", "mgmt, link0, link1, repl, storage"),
        (("heal", "repl", "initiator"), "'repl'", "storage"),
    ],
)
def test_bad_input_names_the_value_and_what_is_allowed_and_leaves_the_lab_alone(
    lab: Lab, args: tuple[str, ...], bad: str, allowed: str
) -> None:
    before = lab.supervisor()
    power = {name: n["power"] for name, n in lab.status()["nodes"].items()}
    done = cli(lab, *args)
    assert done.returncode == 1, done.stderr
    assert bad in done.stderr and allowed in done.stderr, done.stderr
    assert lab.supervisor() == before
    assert {name: n["power"] for name, n in lab.status()["nodes"].items()} == power


def test_second_up_is_refused_and_the_running_lab_stays(lab: Lab) -> None:
    before = lab.supervisor()
    done = cli(lab, "up")
    assert done.returncode == 1
    assert "already running" in done.stderr, done.stderr
    assert lab.supervisor() == before
    assert lab.exec("san-a", ["true"]).ok
