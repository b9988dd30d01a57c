"""The two-box safety settings the plan writes: fencing delays, DRBD fencing and peer
authentication, storage reachability."""

from __future__ import annotations

import tomllib
import xml.etree.ElementTree as ET
from typing import Any

from iscsiha.model.load import load_data
from iscsiha.plan.cib import nvpairs
from iscsiha.plan.drbd import UNKNOWN_SECRET, peer_secret
from iscsiha.plan.plan import make_plan
from tests.conftest import ROOT

KEY = b"k" * 128


def _devices(example: dict[str, Any]) -> dict[str, dict[str, str]]:
    root = ET.fromstring(make_plan(load_data(example)).cib)
    return {p.get("id", ""): nvpairs(p.find("instance_attributes"))
            for p in root.iter("primitive") if p.get("class") == "stonith"}


def test_with_a_tiebreaker_no_fencing_waits(example: dict[str, Any]) -> None:
    assert all("pcmk_delay_base" not in p for p in _devices(example).values())
    assert "priority-fencing-delay" not in make_plan(load_data(example)).cib


def test_a_fenced_box_stays_off(example: dict[str, Any]) -> None:
    root = ET.fromstring(make_plan(load_data(example)).cib)
    assert nvpairs(root.find("crm_config"))["stonith-action"] == "off"


def test_without_a_tiebreaker_the_first_box_wins_a_fence_race(example: dict[str, Any]) -> None:
    del example["cluster"]["tiebreaker"]
    devices = _devices(example)
    # The device that shoots san-a waits, so san-a shoots first.
    assert devices["fence-san-a"]["pcmk_delay_base"] == "5s"
    assert "pcmk_delay_base" not in devices["fence-san-b"]
    # The box serving targets wins over that: Pacemaker wants this at least twice the base.
    root = ET.fromstring(make_plan(load_data(example)).cib)
    assert nvpairs(root.find("crm_config"))["priority-fencing-delay"] == "10s"


def test_a_box_dead_with_its_bmc_is_fenced_by_its_watchdog_only_with_a_tiebreaker(
        example: dict[str, Any]) -> None:
    root = ET.fromstring(make_plan(load_data(example)).cib)
    assert nvpairs(root.find("crm_config"))["stonith-watchdog-timeout"] == "20s"
    assert _devices(example)["watchdog"] == {"pcmk_host_list": "san-a san-b"}
    levels = [(lv.get("target"), lv.get("index"), lv.get("devices"))
              for lv in root.iter("fencing-level")]
    assert ("san-b", "1", "fence-san-b") in levels and ("san-b", "2", "watchdog") in levels
    # In two_node mode both boxes keep quorum when they part, so sbd would reset neither:
    # counting a box off after a wait would let two write.
    # A BMC that does not answer is given up on quickly only when a level follows.
    assert _devices(example)["fence-san-b"]["pcmk_off_timeout"] == "15s"
    del example["cluster"]["tiebreaker"]
    root = ET.fromstring(make_plan(load_data(example)).cib)
    assert "pcmk_off_timeout" not in _devices(example)["fence-san-b"]
    assert "stonith-watchdog-timeout" not in nvpairs(root.find("crm_config"))
    assert "watchdog" not in _devices(example)
    assert not list(root.iter("fencing-level"))


def test_drbd_files_carry_the_peer_secret_fencing_and_handlers(example: dict[str, Any]) -> None:
    plan = make_plan(load_data(example), replication_key=KEY)
    res = {f.path: f for f in plan.node_files["san-a"] if f.path.endswith(".res")}
    vm = res["/etc/drbd.d/vm.res"]
    assert vm.mode == 0o600
    assert f'shared-secret "{peer_secret(KEY, "vm")}";' in vm.content
    assert "fencing resource-and-stonith;" in vm.content
    assert "crm-fence-peer.sh --role=Promoted" in vm.content
    assert "after-sb-2pri disconnect;" in vm.content
    assert plan.node_files["san-a"] == plan.node_files["san-b"]


def test_peer_secrets_differ_per_resource_and_key_and_fit_drbd() -> None:
    secrets = {peer_secret(KEY, "db"), peer_secret(KEY, "vmstore"), peer_secret(b"x", "db")}
    assert len(secrets) == 3
    assert all(len(s) <= 64 and s.isalnum() for s in secrets)


def test_without_the_key_the_secret_is_a_placeholder(example: dict[str, Any]) -> None:
    plan = make_plan(load_data(example))
    (res, *_) = [f for f in plan.node_files["san-a"] if f.path.endswith(".res")]
    assert f'shared-secret "{UNKNOWN_SECRET}";' in res.content


def test_targets_leave_a_box_that_cannot_reach_the_storage_ping_hosts(
        example: dict[str, Any]) -> None:
    root = ET.fromstring(make_plan(load_data(example)).cib)
    ping = root.find(".//clone[@id='ping-storage-clone']/primitive")
    assert ping is not None
    assert nvpairs(ping.find("instance_attributes"))["host_list"] == "10.30.0.1"
    rule = root.find(".//rsc_location[@id='target-vm-needs-storage']/rule")
    assert rule is not None and int(rule.get("score", "0")) < -1000
    assert {e.get("operation") for e in rule} == {"not_defined", "lt"}


def test_without_ping_hosts_there_is_no_reachability_rule(example: dict[str, Any]) -> None:
    del example["networks"][3]["ping"]
    cib = make_plan(load_data(example)).cib
    assert "ping-storage" not in cib and "needs-storage" not in cib


def _needs_storage_rule(cib: str, target: str) -> ET.Element:
    rule = ET.fromstring(cib).find(f".//rsc_location[@rsc='target-{target}']/rule")
    assert rule is not None
    return rule


def test_a_multipath_target_leaves_a_box_only_when_it_reaches_none_of_its_networks() -> None:
    data = tomllib.loads((ROOT / "examples" / "multipath.toml").read_text())
    cib = make_plan(load_data(data)).cib
    rule = _needs_storage_rule(cib, "vm")
    assert rule.get("boolean-op") == "and" and int(rule.get("score", "0")) < -1000
    per_network = {(sub.get("boolean-op"), *sorted({e.get("attribute") for e in sub}))
                   for sub in rule.findall("rule")}
    assert per_network == {("or", "ping-storage"), ("or", "ping-storage2")}
    assert "ping-storage2-clone" in cib


def test_a_target_with_one_portal_of_two_networks_needs_only_its_own() -> None:
    multipath = tomllib.loads((ROOT / "examples" / "multipath.toml").read_text())
    multipath["targets"][1]["portals"] = ["10.31.0.101"]
    rule = _needs_storage_rule(make_plan(load_data(multipath)).cib, "backup")
    assert rule.get("boolean-op") == "or"
    assert {e.get("attribute") for e in rule.iter("expression")} == {"ping-storage2"}
