"""A node's links (NICs, bonds, VLANs) and network MTUs: what the loader accepts and
refuses, and the systemd-networkd files the plan makes of them (golden files;
UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from iscsiha.errors import IscsihaError
from iscsiha.model.load import load_data
from iscsiha.model.types import BondMode, Link
from iscsiha.plan import networkd

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "networkd"

# Two cluster links on their own NICs, replication untagged on an LACP bond that also
# carries storage as VLAN 30 at jumbo size: the storage MTU must not exceed the
# replication network's, which is the bond's untagged one, so both are 9000.
LINKS_A = {"link0": "eno1", "link1": "eno2", "repl": "bond0", "storage": "bond0.30"}
BONDS = {"bond0": {"members": ["ens1f0", "ens1f1"], "mode": "802.3ad"}}


def with_links(example: dict[str, Any]) -> dict[str, Any]:
    for net in example["networks"]:
        if net["name"] in ("repl", "storage"):
            net["mtu"] = 9000
    for node in example["nodes"]:
        node["links"] = dict(LINKS_A)
        node["bonds"] = {"bond0": dict(BONDS["bond0"])}
    # san-b: the cluster links on a VLAN-only NIC, storage in active-backup.
    example["nodes"][1]["links"] = {"link0": "eno1.10", "link1": "eno1.11", "repl": "bond0",
                                    "storage": "bond1"}
    example["nodes"][1]["bonds"]["bond1"] = {"members": ["ens2f0", "ens2f1"]}
    return example


def problems(data: dict[str, Any]) -> list[tuple[str, str, object]]:
    with pytest.raises(IscsihaError) as caught:
        load_data(data)
    return [(r.code, r.field, r.value) for r in caught.value.reports]


def test_links_bonds_and_vlans_are_read(example: dict[str, Any]) -> None:
    config = load_data(with_links(example))
    a, b = config.cluster.nodes
    assert a.links == (Link("link0", "eno1"), Link("link1", "eno2"), Link("repl", "bond0"),
                       Link("storage", "bond0", 30))
    assert [(x.name, x.members, x.mode) for x in b.bonds] == [
        ("bond0", ("ens1f0", "ens1f1"), BondMode.LACP),
        ("bond1", ("ens2f0", "ens2f1"), BondMode.ACTIVE_BACKUP)]  # the default mode
    assert b.links[0].interface == "eno1.10"
    assert {n.name: n.mtu for n in config.cluster.networks} == {
        "link0": 1500, "link1": 1500, "repl": 9000, "storage": 9000}


def test_without_links_nothing_changes(example: dict[str, Any]) -> None:
    config = load_data(example)
    assert all(n.links == () and n.bonds == () for n in config.cluster.nodes)
    assert all(networkd.node_files(config.cluster, n) == () for n in config.cluster.nodes)


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d["nodes"][0]["links"].pop("storage"),
     ("missing", "nodes[0].links.storage", None)),
    (lambda d: d["nodes"][0]["links"].update(mgmt="eno3"),
     ("unknown-network", "nodes[0].links.mgmt", "mgmt")),
    (lambda d: d["nodes"][0]["links"].update(link0="eno 1"),
     ("bad-link", "nodes[0].links.link0", "eno 1")),
    (lambda d: d["nodes"][0]["links"].update(link0="eno1.4095"),
     ("bad-link", "nodes[0].links.link0", "eno1.4095")),
    (lambda d: d["nodes"][0]["links"].update(link0="eno1.030"),
     ("bad-link", "nodes[0].links.link0", "eno1.030")),
    (lambda d: d["nodes"][0]["links"].update(link0="averyveryverylong.30"),
     ("bad-link", "nodes[0].links.link0", "averyveryverylong.30")),
    (lambda d: d["nodes"][0]["bonds"]["bond0"].update(members=[]),
     ("bond-without-members", "nodes[0].bonds.bond0.members", [])),
    (lambda d: d["nodes"][0]["bonds"]["bond0"].update(mode="round-robin"),
     ("bad-choice", "nodes[0].bonds.bond0.mode", "round-robin")),
    (lambda d: d["nodes"][0]["links"].update(link0="ens1f0"),
     ("link-on-bond-member", "nodes[0].links.link0", "ens1f0")),
    (lambda d: d["nodes"][0]["links"].update(link1="eno1"),
     ("two-untagged-networks", "nodes[0].links.link1", "eno1")),
    (lambda d: d["nodes"][0]["links"].update(link1="bond0.30"),
     ("duplicate-vlan", "nodes[0].links.storage", "bond0.30")),
    (lambda d: d["nodes"][0]["bonds"].update(bond9={"members": ["ens9"]}),
     ("unused-bond", "nodes[0].bonds.bond9", "bond9")),
    (lambda d: d["nodes"][0]["bonds"].update(bond9={"members": ["ens1f1"]}),
     ("nic-in-two-bonds", "nodes[0].bonds.bond9", "ens1f1")),
    (lambda d: d["nodes"][0].pop("links"),
     ("bonds-without-links", "nodes[0].bonds", ["bond0"])),
    (lambda d: d["networks"][2].update(mtu=1500),  # repl, the bond's untagged network
     ("mtu-above-parent", "nodes[0].links.storage", 9000)),
    (lambda d: d["networks"][3].update(mtu=9217),
     ("out-of-range", "networks[3].mtu", 9217)),
])
def test_what_cannot_work_is_refused_naming_the_place(
        example: dict[str, Any], change: Any, expected: tuple[str, str, object]) -> None:
    data = with_links(example)
    change(data)
    assert expected in problems(data)


def test_links_on_one_node_only_are_refused(example: dict[str, Any]) -> None:
    data = with_links(example)
    del data["nodes"][1]["links"], data["nodes"][1]["bonds"]
    assert ("links-on-one-node", "nodes[0].links", "links") in problems(data)


def _files(example: dict[str, Any]) -> dict[str, str]:
    config = load_data(with_links(example))
    return {f"{node.name}/{Path(f.path).name}": f.content
            for node in config.cluster.nodes for f in networkd.node_files(config.cluster, node)}


def test_links_plan_to_the_golden_networkd_files(example: dict[str, Any]) -> None:
    got = _files(example)
    if os.environ.get("UPDATE_GOLDEN"):
        for rel, text in got.items():
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_text(text)
        pytest.skip("golden files rewritten; review the diff")
    want = {str(p.relative_to(GOLDEN)): p.read_text()
            for p in sorted(GOLDEN.rglob("*")) if p.is_file()}
    assert sorted(got) == sorted(want)
    for rel, text in got.items():
        assert text == want[rel], f"{rel} differs from its golden file"


def test_the_files_sort_before_the_image_s_dhcp_catch_all(example: dict[str, Any]) -> None:
    config = load_data(with_links(example))
    for node in config.cluster.nodes:
        for f in networkd.node_files(config.cluster, node):
            assert f.path.startswith("/etc/systemd/network/10-iscsiha-")
            assert Path(f.path).name < "99-iscsiha-default-dhcp.network"


def test_an_ipv6_network_keeps_its_link_local_address(example: dict[str, Any]) -> None:
    data = with_links(example)
    data["networks"][2]["subnet"] = "fd00:20::/64"  # repl, untagged on bond0
    for i, node in enumerate(data["nodes"]):
        node["addresses"]["repl"] = f"fd00:20::{11 + i}"
    config = load_data(data)
    files = {Path(f.path).name: f.content
             for f in networkd.node_files(config.cluster, config.cluster.nodes[0])}
    assert "Address=fd00:20::11/64\nLinkLocalAddressing=ipv6\n" in files[
        "10-iscsiha-bond0.network"]
    assert "LinkLocalAddressing=no\n" in files["10-iscsiha-bond0.30.network"]  # IPv4
