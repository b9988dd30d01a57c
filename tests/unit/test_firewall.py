"""The packet filter from the desired state: golden files, and which packets each policy lets in.

The table tests run the rendered rules through tests/unit/nft_eval.py; the
`nft --check` test hands them to the real nft (and kernel) where nft is installed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from iscsiha.errors import IscsihaError
from iscsiha.model.load import load_data, load_text
from iscsiha.plan.firewall import base_ruleset, ruleset
from tests.conftest import EXAMPLE, skip_or_fail
from tests.unit.nft_eval import Packet, verdict

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "firewall"
CONFIG = load_text(EXAMPLE.read_text())
SAN_A = ruleset(CONFIG, "san-a")
SAN_B = ruleset(CONFIG, "san-b")
BASE = base_ruleset()


@pytest.mark.parametrize(("name", "text"), [("san-a.nft", SAN_A), ("san-b.nft", SAN_B),
                                            ("base.nft", BASE)])
def test_rulesets_match_their_golden_files(name: str, text: str) -> None:
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        (GOLDEN / name).write_text(text)
        pytest.skip("golden file rewritten; review the diff")
    assert text == (GOLDEN / name).read_text()


def test_the_file_replaces_the_whole_table_in_one_transaction() -> None:
    # create-if-missing, delete, define: nft -f applies the file as one transaction.
    head = [line for line in SAN_A.splitlines() if line and not line.startswith("#")][:3]
    assert head == ["table inet iscsiha", "delete table inet iscsiha", "table inet iscsiha {"]


STORAGE_HOST, ROUTED_INITIATOR, STRANGER = "10.30.0.50", "172.16.0.9", "10.10.0.99"
MGMT_HOST, MGMT_ADDR = "192.168.1.5", "192.168.1.10"  # an undeclared network

# (what, packet, san-a's verdict)
CASES: list[tuple[str, Packet, str]] = [
    ("initiator to a portal", Packet(STORAGE_HOST, "10.30.0.100", "tcp", 3260), "accept"),
    ("initiator to the box's storage address", Packet(STORAGE_HOST, "10.30.0.11", "tcp", 3260),
     "accept"),
    ("routed initiator to a portal", Packet(ROUTED_INITIATOR, "10.30.0.101", "tcp", 3260),
     "accept"),
    ("storage: ssh", Packet(STORAGE_HOST, "10.30.0.11", "tcp", 22), "drop"),
    ("storage: iperf3", Packet(STORAGE_HOST, "10.30.0.11", "tcp", 5201), "drop"),
    ("storage: corosync", Packet(STORAGE_HOST, "10.30.0.11", "udp", 5405), "drop"),
    ("storage: LLMNR", Packet(STORAGE_HOST, "10.30.0.11", "udp", 5355), "drop"),
    ("storage: DRBD", Packet(STORAGE_HOST, "10.30.0.11", "tcp", 7789), "drop"),
    ("storage: ping", Packet(STORAGE_HOST, "10.30.0.11", "icmp"), "accept"),
    ("storage host to a cluster address, ssh", Packet(STORAGE_HOST, "10.10.0.11", "tcp", 22),
     "drop"),
    ("storage host to a management address, ssh", Packet(STORAGE_HOST, MGMT_ADDR, "tcp", 22),
     "drop"),
    ("routed host to the storage address, ssh", Packet(ROUTED_INITIATOR, "10.30.0.11", "tcp", 22),
     "drop"),
    ("storage: an established ssh session", Packet(STORAGE_HOST, "10.30.0.11", "tcp", 22,
                                                   ct="established"), "accept"),
    ("peer, link0: knet", Packet("10.10.0.12", "10.10.0.11", "udp", 5405), "accept"),
    ("peer, link1: knet", Packet("10.11.0.12", "10.11.0.11", "udp", 5405), "accept"),
    ("peer, link0: ssh", Packet("10.10.0.12", "10.10.0.11", "tcp", 22), "accept"),
    ("peer, link1: ssh", Packet("10.11.0.12", "10.11.0.11", "tcp", 22), "accept"),
    ("peer, link0: join listener", Packet("10.10.0.12", "10.10.0.11", "tcp", 5407), "accept"),
    ("peer, link1: join listener", Packet("10.11.0.12", "10.11.0.11", "tcp", 5407), "drop"),
    ("peer, link0: iperf3", Packet("10.10.0.12", "10.10.0.11", "tcp", 5201), "drop"),
    ("peer, link0: DRBD", Packet("10.10.0.12", "10.10.0.11", "tcp", 7789), "drop"),
    ("stranger on link0: knet", Packet(STRANGER, "10.10.0.11", "udp", 5405), "drop"),
    ("stranger on link0: ssh", Packet(STRANGER, "10.10.0.11", "tcp", 22), "drop"),
    ("peer, repl: first DRBD port", Packet("10.20.0.12", "10.20.0.11", "tcp", 7789), "accept"),
    ("peer, repl: last DRBD port", Packet("10.20.0.12", "10.20.0.11", "tcp", 7999), "accept"),
    ("peer, repl: past the DRBD range", Packet("10.20.0.12", "10.20.0.11", "tcp", 8000), "drop"),
    ("peer, repl: ssh", Packet("10.20.0.12", "10.20.0.11", "tcp", 22), "drop"),
    ("peer, repl: iperf3", Packet("10.20.0.12", "10.20.0.11", "tcp", 5201), "drop"),
    ("stranger, repl: DRBD", Packet("10.20.0.99", "10.20.0.11", "tcp", 7789), "drop"),
    ("management: ssh", Packet(MGMT_HOST, MGMT_ADDR, "tcp", 22), "accept"),
    ("management: iperf3", Packet(MGMT_HOST, MGMT_ADDR, "tcp", 5201), "drop"),
    ("management: join listener", Packet(MGMT_HOST, MGMT_ADDR, "tcp", 5407), "drop"),
    ("management: iSCSI", Packet(MGMT_HOST, MGMT_ADDR, "tcp", 3260), "drop"),
    ("management: mDNS", Packet(MGMT_HOST, "224.0.0.251", "udp", 5353), "drop"),
    ("management: DHCP reply", Packet(MGMT_HOST, MGMT_ADDR, "udp", 68, sport=67), "accept"),
    ("management: ping", Packet(MGMT_HOST, MGMT_ADDR, "icmp"), "accept"),
    ("management, IPv6: ssh", Packet("fe80::5", "fe80::10", "tcp", 22), "accept"),
    ("management, IPv6: neighbour discovery", Packet("fe80::5", "ff02::1", "icmp"), "accept"),
    ("management: the tiebreaker's replies", Packet("10.0.0.5", MGMT_ADDR, "tcp", 40000,
                                                    sport=5403, ct="established"), "accept"),
    ("loopback: anything", Packet("127.0.0.1", "127.0.0.1", "tcp", 5201, iif="lo"), "accept"),
    ("an invalid packet", Packet(MGMT_HOST, MGMT_ADDR, "tcp", 22, ct="invalid"), "drop"),
]


@pytest.mark.parametrize(("what", "packet", "expected"), CASES, ids=[c[0] for c in CASES])
def test_san_a_lets_in_only_what_its_networks_need(what: str, packet: Packet,
                                                   expected: str) -> None:
    assert verdict(SAN_A, packet) == expected


def test_san_b_mirrors_san_a_but_has_no_join_listener() -> None:
    assert verdict(SAN_B, Packet("10.10.0.11", "10.10.0.12", "udp", 5405)) == "accept"
    assert verdict(SAN_B, Packet("10.20.0.11", "10.20.0.12", "tcp", 7790)) == "accept"
    assert verdict(SAN_B, Packet("10.10.0.12", "10.10.0.11", "udp", 5405)) == "drop"  # not its
    # The join listener runs on the first box only (bootstrap_steps.listen_address).
    assert verdict(SAN_B, Packet("10.10.0.11", "10.10.0.12", "tcp", 5407)) == "drop"


BASE_CASES = [
    (Packet("10.0.2.2", "10.0.2.15", "tcp", 22), "accept"),
    (Packet("10.0.2.2", "10.0.2.15", "tcp", 5407), "accept"),
    (Packet("10.0.2.2", "10.0.2.15", "icmp"), "accept"),
    (Packet("10.0.2.2", "10.0.2.15", "udp", 68, sport=67), "accept"),
    (Packet("10.0.2.2", "10.0.2.15", "tcp", 5201), "drop"),
    (Packet("10.0.2.2", "10.0.2.15", "tcp", 3260), "drop"),
    (Packet("10.0.2.2", "10.0.2.15", "udp", 5405), "drop"),
    (Packet("10.0.2.2", "10.0.2.15", "udp", 5355), "drop"),
]


@pytest.mark.parametrize(("packet", "expected"), BASE_CASES)
def test_the_base_policy_lets_in_only_ssh_join_icmp_and_dhcp(packet: Packet,
                                                            expected: str) -> None:
    assert verdict(BASE, packet) == expected


def test_a_pinned_drbd_port_outside_the_opened_range_is_refused_by_the_model(
        example: dict[str, Any]) -> None:
    # The policy opens DRBD's range only; the model must never let a port outside it by.
    example["targets"][0]["drbd_port"] = 9100
    with pytest.raises(IscsihaError) as exc:
        load_data(example)
    assert [(r.field, r.code) for r in exc.value.reports] == [
        ("targets[0].drbd_port", "out-of-range")]


def test_a_portal_on_another_port_is_opened_on_its_network(example: dict[str, Any]) -> None:
    example["targets"][1]["portals"] = ["10.30.0.101:3261"]
    text = ruleset(load_data(example), "san-a")
    assert verdict(text, Packet(STORAGE_HOST, "10.30.0.101", "tcp", 3261)) == "accept"
    assert verdict(text, Packet(MGMT_HOST, MGMT_ADDR, "tcp", 3261)) == "drop"


def test_ipv6_networks_get_ip6_rules(example: dict[str, Any]) -> None:
    example["networks"][3]["subnet"] = "fd00:30::/64"
    example["networks"][3]["ping"] = ["fd00:30::1"]
    for i, node in enumerate(example["nodes"]):
        node["addresses"]["storage"] = f"fd00:30::{11 + i}"
    example["targets"][0]["portals"] = ["[fd00:30::100]"]
    example["targets"][1]["portals"] = ["[fd00:30::101]:3260"]
    text = ruleset(load_data(example), "san-a")
    assert "ip6 daddr fd00:30::/64 jump net_storage" in text
    assert verdict(text, Packet("fd00:30::50", "fd00:30::100", "tcp", 3260)) == "accept"
    assert verdict(text, Packet("fd00:30::50", "fd00:30::11", "tcp", 22)) == "drop"


def test_a_box_the_desired_state_does_not_name_is_refused_by_name() -> None:
    with pytest.raises(IscsihaError) as err:
        ruleset(CONFIG, "iscsiha")
    (report,) = err.value.reports
    assert (report.code, report.value, report.allowed) == ("not-a-cluster-node", "iscsiha",
                                                           "san-a or san-b")


def test_a_network_name_that_is_not_plain_never_reaches_the_ruleset() -> None:
    # The model checks names too; this is the renderer's own guard, since a name
    # becomes nft syntax (a newline would end the rule).
    net = CONFIG.cluster.networks[0]
    hostile = dataclasses.replace(net, name="link0\n}\nchain x {")
    nodes = tuple(dataclasses.replace(n, addresses=tuple(
        (hostile.name if k == net.name else k, a) for k, a in n.addresses))
        for n in CONFIG.cluster.nodes)
    cluster = dataclasses.replace(CONFIG.cluster, networks=(hostile, *CONFIG.cluster.networks[1:]),
                                  nodes=nodes)  # type: ignore[arg-type]
    with pytest.raises(IscsihaError) as err:
        ruleset(dataclasses.replace(CONFIG, cluster=cluster), "san-a")
    assert err.value.reports[0].code == "bad-name"


def test_network_names_with_dashes_are_valid_chain_names(example: dict[str, Any]) -> None:
    example["networks"][0]["name"] = "link-0"
    for node in example["nodes"]:
        node["addresses"]["link-0"] = node["addresses"].pop("link0")
    text = ruleset(load_data(example), "san-a")
    assert "jump net_link-0" in text
    _nft_check(text, "link-dash")


@pytest.mark.parametrize("name", ["san-a", "san-b", "base"])
def test_nft_accepts_the_rulesets(name: str) -> None:
    _nft_check(BASE if name == "base" else ruleset(CONFIG, name), name)


def _nft_check(text: str, name: str) -> None:
    nft = shutil.which("nft") or ("/usr/sbin/nft" if Path("/usr/sbin/nft").exists() else None)
    if nft is None:
        skip_or_fail("nft is not installed (apt-get install nftables; tools/install-deps does)")
        return
    # --check: parsed and evaluated by the kernel in a transaction that is never committed.
    done = subprocess.run([nft, "--check", "-f", "-"], input=text, capture_output=True,
                          text=True, check=False)
    if done.returncode != 0 and "Operation not permitted" in done.stderr:
        skip_or_fail(f"nft --check needs CAP_NET_ADMIN: {done.stderr.strip()}")
    assert done.returncode == 0, f"{name}: {done.stderr}"
