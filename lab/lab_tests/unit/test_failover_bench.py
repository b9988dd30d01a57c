"""The failover benchmark's pure parts: the stock agents' CIB, the statistics, the parsers
of what the boxes say, the options; and the run loop with the lab steps scripted."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from iscsiha_lab import failover_bench as fb
from iscsiha_lab import stock_cib
from iscsiha_lab.desired import lab_data
from iscsiha_lab.initiator import HV_SECRET
from iscsiha_lab.pair import CheckFailed
from iscsiha_lab.topology import default_topology

from iscsiha.commands.config import plan
from iscsiha.errors import IscsihaError, Secret
from iscsiha.executors.runner import Runner
from iscsiha.model.load import load_data
from iscsiha.plan.cib import nvpairs, target_group_id
from lab_tests.conftest import skip_or_fail
from tests.unit.test_cib_pacemaker import whole_cib

INITIATOR = "iqn.1993-08.org.debian:01:lab-initiator"
TOPOLOGY = default_topology()
BMC = Secret("bmc-Secret-1")


def _stock(luns: int) -> stock_cib.StockTarget:
    return fb.stock_target(TOPOLOGY, INITIATOR, [f"/dev/drbd{i}" for i in range(luns)])


def _params(resources: ET.Element, rid: str) -> dict[str, str]:
    prim = next(p for p in resources.iter("primitive") if p.get("id") == rid)
    return nvpairs(prim.find("instance_attributes"))


# -- the stock group ------------------------------------------------------------------------


def test_stock_group_is_the_target_then_each_lun_in_order_then_ipaddr2() -> None:
    res = stock_cib.resources(_stock(3), started=True)
    (group,) = res.findall("group")
    members = [(p.get("id"), p.get("class"), p.get("provider"), p.get("type"))
               for p in group.findall("primitive")]
    assert members == [
        ("stock-bench-target", "ocf", "heartbeat", "iSCSITarget"),
        *((f"stock-bench-lun{i}", "ocf", "heartbeat", "iSCSILogicalUnit") for i in range(3)),
        ("stock-bench-ip", "ocf", "heartbeat", "IPaddr2")]
    # portblock would need iptables, which the lab kernel cannot run: it is left out, and
    # the address comes last instead, so no initiator reaches a target without its LUNs.
    assert not [p for p in group.iter("primitive") if p.get("type") == "portblock"]


def test_stock_parameters_are_the_ones_the_agents_read() -> None:
    res = stock_cib.resources(_stock(2), started=True)
    assert _params(res, "stock-bench-ip") == {
        "ip": "10.99.30.120", "cidr_netmask": "24", "nic": "vec4"}  # storage is the 5th link
    assert _params(res, "stock-bench-target") == {
        "implementation": "lio-t", "iqn": fb.IQN,
        "allowed_initiators": INITIATOR, "incoming_username": "hv",
        "incoming_password": HV_SECRET}
    assert _params(res, "stock-bench-lun1") == {
        "implementation": "lio-t", "target_iqn": fb.IQN, "lun": "1", "path": "/dev/drbd1",
        "liot_bstype": "block"}


def test_stock_group_waits_stopped_until_its_constraints_are_in() -> None:
    def meta(started: bool) -> dict[str, str]:
        group = stock_cib.resources(_stock(1), started=started).find("group")
        assert group is not None
        return nvpairs(group.find("meta_attributes"))

    assert meta(False)["target-role"] == "Stopped"
    assert "target-role" not in meta(True)
    # The same placement rules as our manual-failback targets.
    assert meta(True) == {"resource-stickiness": "100", "priority": "10"}


def test_stock_constraints_follow_the_promoted_drbd_resource_of_our_target() -> None:
    cons = stock_cib.constraints(_stock(2))
    colocations = [c.attrib for c in cons.iter("rsc_colocation")]
    orders = [c.attrib for c in cons.iter("rsc_order")]
    assert colocations == [
        {"id": "stock-bench-with-drbd", "rsc": "stock-bench", "with-rsc": "drbd-bench-clone",
         "with-rsc-role": "Promoted", "score": "INFINITY"}]
    assert orders == [
        {"id": "stock-bench-after-drbd", "first": "drbd-bench-clone",
         "first-action": "promote", "then": "stock-bench", "then-action": "start",
         "kind": "Mandatory"}]
    (location,) = cons.iter("rsc_location")
    assert location.attrib == {"id": "stock-bench-prefers-san-a", "rsc": "stock-bench",
                               "node": "san-a", "score": "100"}


def test_stock_luns_must_be_distinct() -> None:
    bad = stock_cib.StockTarget(**{**_stock(1).__dict__, "luns": (
        stock_cib.StockLun(0, "bench0", "/dev/drbd0"),
        stock_cib.StockLun(0, "bench1", "/dev/drbd1"))})
    with pytest.raises(IscsihaError) as exc:
        stock_cib.resources(bad, started=True)
    assert exc.value.reports[0].code == "bad-stock-luns"


def _cib_with_stock(luns: int) -> str:
    """The CIB apply writes for our target, plus the stock group on the same DRBD
    resource: a whole CIB of two online nodes with quorum, as crm_verify wants it."""
    config = load_data(fb.bench_desired(lab_data(TOPOLOGY, BMC), INITIATOR, luns))
    planned = plan(config)
    fragment = ET.fromstring(planned.cib)
    target = fb.stock_target(TOPOLOGY, INITIATOR,
                             [planned.slots[f"bench{i}"].device for i in range(luns)])
    for section, new in (("resources", stock_cib.resources(target, started=True)),
                         ("constraints", stock_cib.constraints(target))):
        found = fragment.find(section)
        assert found is not None
        found.extend(list(new))
    return whole_cib(ET.tostring(fragment, encoding="unicode"), ("san-a", "san-b"))


def test_crm_verify_accepts_the_stock_group_with_the_drbd_clones(tmp_path: Path) -> None:
    crm_verify = shutil.which("crm_verify")
    if crm_verify is None:
        skip_or_fail("crm_verify is not installed (apt-get install pacemaker-cli-utils)")
        return
    cib_file = tmp_path / "cib.xml"
    cib_file.write_text(_cib_with_stock(2))
    result = Runner().run([crm_verify, "-V", "-x", str(cib_file)], check=False)
    assert result.returncode == 0, result.stderr


def test_removal_names_every_constraint_on_the_group_and_the_group() -> None:
    cib = ET.fromstring(_cib_with_stock(2))
    constraints = cib.find("configuration/constraints")
    assert constraints is not None
    # A move that failed half-way leaves crm_resource's own constraint behind.
    ET.SubElement(constraints, "rsc_location", id="cli-prefer-stock-bench",
                  rsc="stock-bench", node="san-b", score="INFINITY")
    text = ET.tostring(cib, encoding="unicode")
    assert stock_cib.present(text, "stock-bench")
    refs, resources = stock_cib.removal(text, "stock-bench")
    assert sorted(c.get("id", "") for c in refs) == sorted([
        "stock-bench-prefers-san-a", "cli-prefer-stock-bench",
        "stock-bench-with-drbd", "stock-bench-after-drbd"])
    assert all(set(c.attrib) == {"id"} for c in refs)  # cibadmin matches on these only
    assert [(g.tag, g.attrib) for g in resources] == [("group", {"id": "stock-bench"})]
    # Our own plan's constraints (fencing, pings) are not touched.
    assert not any(c.get("id", "").startswith("fence-") for c in refs)


def test_removal_of_a_cib_without_the_group_deletes_no_constraint() -> None:
    config = load_data(fb.bench_desired(lab_data(TOPOLOGY, BMC), INITIATOR, 1))
    cib = f"<cib>{plan(config).cib}</cib>"
    assert not stock_cib.present(cib, "stock-bench")
    assert len(stock_cib.removal(cib, "stock-bench")[0]) == 0


# -- the desired states -----------------------------------------------------------------


@pytest.mark.parametrize("luns", [1, 8, 64])
def test_bench_desired_validates_and_our_group_has_the_id_the_bench_waits_for(
        luns: int) -> None:
    ours = load_data(fb.bench_desired(lab_data(TOPOLOGY, BMC), INITIATOR, luns))
    (target,) = ours.targets
    assert target_group_id(target.name) == fb.OURS_GROUP
    assert [(lun.number, lun.volume) for lun in target.luns] == [
        (i, f"bench{i}") for i in range(luns)]
    assert target.auth.mode.value == "chap" and target.initiators == (INITIATOR,)


# -- statistics -------------------------------------------------------------------------


def _run(gap: float, failure: str | None = None) -> dict[str, Any]:
    return {"max_gap_s": gap, "failure": failure}


def test_statistics_of_an_odd_count() -> None:
    figures = fb.summarize([_run(40.0), _run(30.5), _run(38.0)])
    assert figures == {"ok_runs": 3, "failed_runs": 0, "pauses_s": [40.0, 30.5, 38.0],
                       "median_s": 38.0, "min_s": 30.5, "max_s": 40.0, "spread_s": 9.5}


def test_statistics_of_an_even_count_take_the_middle_two() -> None:
    figures = fb.summarize([_run(10.0), _run(40.0), _run(20.0), _run(30.0)])
    assert figures["median_s"] == 25.0 and figures["spread_s"] == 30.0


def test_a_failed_run_is_counted_but_left_out_of_the_figures() -> None:
    figures = fb.summarize([_run(40.0), _run(2.0, "3 I/O errors"), _run(50.0)])
    assert figures["ok_runs"] == 2 and figures["failed_runs"] == 1
    assert figures["pauses_s"] == [40.0, 50.0] and figures["median_s"] == 45.0
    nothing = fb.summarize([_run(2.0, "timed out")])
    assert nothing["median_s"] is None and nothing["spread_s"] is None


def test_ratios_are_stock_over_ours_per_lun_count_and_fault() -> None:
    results = [
        {"agents": "ours", "luns": 1, "fault": "move", "median_s": 20.0},
        {"agents": "stock", "luns": 1, "fault": "move", "median_s": 30.0},
        {"agents": "ours", "luns": 8, "fault": "move", "median_s": 25.0},
        {"agents": "stock", "luns": 8, "fault": "move", "median_s": None},
        {"agents": "ours", "luns": 8, "fault": "power-cut", "median_s": 60.0},  # no stock
    ]
    out = fb.ratios(results)
    assert out[0] == {"luns": 1, "fault": "move", "ours_median_s": 20.0,
                      "stock_median_s": 30.0, "stock_over_ours": 1.5}
    assert out[1]["stock_over_ours"] is None and "stock" in out[1]["note"]
    assert len(out) == 2


@pytest.mark.parametrize(("result", "error", "expected"), [
    ({"writes": 5000, "errors": 0, "lost": 0, "unreadable": 0}, None, None),
    ({"writes": 5000, "errors": 2, "lost": 0, "unreadable": 0,
      "error_text": ["/dev/sdb@0: [Errno 5] Input/output error"]}, None, "2 I/O errors"),
    ({"writes": 5000, "errors": 0, "lost": 1, "unreadable": 0}, None, "1 acknowledged"),
    ({"writes": 5000, "errors": 0, "lost": 0, "unreadable": 3}, None, "3 unreadable"),
    ({"writes": 40, "errors": 0, "lost": 0, "unreadable": 0}, None, "only 40 writes"),
    ({}, None, "returned nothing"),
    ({"writes": 5000, "errors": 0, "lost": 0}, "CheckFailed: timed out", "timed out"),
])
def test_a_run_fails_on_errors_lost_or_unreadable_writes_or_an_unfinished_fault(
        result: dict[str, Any], error: str | None, expected: str | None) -> None:
    failure = fb.run_failure(result, error)
    assert failure is None if expected is None else expected in (failure or "")


# -- what the boxes say -----------------------------------------------------------------

PROC_DRBD_A = """version: 8.4.11 (api:1/proto:86-101)
srcversion: 0123456789ABCDEF

 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----
    ns:0 nr:0 dw:8192 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0
 1: cs:Connected ro:Secondary/Primary ds:UpToDate/UpToDate C r-----
    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0
 2: cs:Unconfigured
"""
PROC_DRBD_B = PROC_DRBD_A.replace("ro:Primary/Secondary", "ro:X").replace(
    "ro:Secondary/Primary", "ro:Primary/Secondary").replace("ro:X", "ro:Secondary/Primary")


def test_proc_drbd_is_read_per_minor_without_unconfigured_ones() -> None:
    view = fb.parse_proc_drbd(PROC_DRBD_A)
    assert view == {0: fb.DrbdMinor("Connected", "Primary", "UpToDate/UpToDate"),
                    1: fb.DrbdMinor("Connected", "Secondary", "UpToDate/UpToDate")}


def test_drbd_is_healthy_with_one_primary_each_and_both_up_to_date() -> None:
    views = {"san-a": fb.parse_proc_drbd(PROC_DRBD_A), "san-b": fb.parse_proc_drbd(PROC_DRBD_B)}
    assert fb.drbd_problems(views, 2) == []
    assert fb.drbd_problems(views, 3) == ["san-a: 2 DRBD devices, expected 3",
                                          "san-b: 2 DRBD devices, expected 3"]
    syncing = PROC_DRBD_B.replace("cs:Connected ro:Secondary/Primary ds:UpToDate/UpToDate",
                                  "cs:SyncTarget ro:Secondary/Primary ds:Inconsistent/UpToDate")
    assert fb.drbd_problems({**views, "san-b": fb.parse_proc_drbd(syncing)}, 2) == [
        "san-b: drbd0 SyncTarget Inconsistent/UpToDate"]
    both = fb.drbd_problems({"san-a": views["san-a"], "san-b": views["san-a"]}, 2)
    assert "drbd0: roles Primary, Primary" in both


CRM_MON = """<pacemaker-result api-version="2.38" request="crm_mon -1 --output-as=xml">
  <nodes>
    <node name="san-a" id="1" online="true" standby="false" type="member"/>
    <node name="san-b" id="2" online="{b_online}" standby="false" type="member"/>
  </nodes>
  <resources>
    <group id="stock-bench" number_resources="3" managed="true" disabled="false">
      <resource id="stock-bench-ip" resource_agent="ocf:heartbeat:IPaddr2" role="Started"
                active="true" failed="false" nodes_running_on="1">
        <node name="san-b" id="2" cached="true"/>
      </resource>
      <resource id="stock-bench-target" resource_agent="ocf:heartbeat:iSCSITarget"
                role="Started" active="true" failed="false" nodes_running_on="1">
        <node name="san-b" id="2" cached="true"/>
      </resource>
      <resource id="stock-bench-lun0" resource_agent="ocf:heartbeat:iSCSILogicalUnit"
                role="{lun_role}" active="{lun_active}" failed="false" nodes_running_on="1">
        {lun_node}
      </resource>
    </group>
    <resource id="target-bench-lio" resource_agent="ocf:iscsiha:target" role="Stopped"
              active="false" orphaned="true" failed="false" nodes_running_on="0"/>
  </resources>
</pacemaker-result>"""


def _mon(b_online: str = "true", lun_role: str = "Started", lun_active: str = "true",
         lun_node: str = '<node name="san-b" id="2" cached="true"/>') -> str:
    return CRM_MON.format(b_online=b_online, lun_role=lun_role, lun_active=lun_active,
                          lun_node=lun_node)


def test_a_group_runs_where_all_its_members_are_started() -> None:
    assert fb.group_where(_mon(), "stock-bench") == "san-b"
    assert fb.group_where(_mon(lun_role="Starting"), "stock-bench") is None
    assert fb.group_where(_mon(lun_node='<node name="san-a" id="1" cached="true"/>'),
                          "stock-bench") is None
    assert fb.group_where(_mon(), "target-bench") is None
    assert fb.group_where("not xml", "stock-bench") is None


def test_a_group_is_active_while_any_member_runs_orphans_included() -> None:
    assert fb.group_active(_mon(), "stock-bench")
    assert not fb.group_active(_mon(), "target-bench")  # its orphan has stopped
    assert fb.group_active(_mon().replace('active="false" orphaned', 'active="true" orphaned'),
                           "target-bench")
    assert not fb.group_active(_mon(), "stock")  # a prefix of an id is not the group


def test_online_nodes() -> None:
    assert fb.online_nodes(_mon()) == {"san-a", "san-b"}
    assert fb.online_nodes(_mon(b_online="false")) == {"san-a"}
    assert fb.online_nodes(None) == set()


# -- options ----------------------------------------------------------------------------


def test_options_are_parsed() -> None:
    assert fb.parse_options("1,8,64", 3, "move,power-cut", "ours,stock") == fb.BenchOptions(
        (1, 8, 64), 3, ("move", "power-cut"), ("ours", "stock"))
    assert fb.parse_options(" 8 ", 1, "power-cut", "stock").luns == (8,)


def test_every_bad_option_is_reported_at_once() -> None:
    with pytest.raises(IscsihaError) as exc:
        fb.parse_options("1,0,x,8,8,500", 0, "move,freeze", "ours,,theirs")
    found = {(r.code, r.field, r.value) for r in exc.value.reports}
    assert found == {
        ("bad-lun-count", "--luns", "0"), ("bad-lun-count", "--luns", "x"),
        ("bad-lun-count", "--luns", "500"), ("duplicate-list-entry", "--luns", "8"),
        ("bad-run-count", "--runs", 0), ("unknown-fault", "--faults", "freeze"),
        ("empty-list-entry", "--agents", "ours,,theirs"),
        ("unknown-agent", "--agents", "theirs")}
    assert all(r.allowed for r in exc.value.reports)


# -- the loop, with the lab steps scripted ------------------------------------------------


class _Scripted(fb._Bench):
    """Every lab step replaced: runs of stock with 8 LUNs fail, the second power cut of
    ours with 8 LUNs never recovers."""

    def __init__(self, options: fb.BenchOptions) -> None:
        super().__init__(None, options, lambda message: None)  # type: ignore[arg-type]
        self.steps: list[tuple[Any, ...]] = []

    def facts(self) -> dict[str, Any]:
        return {"kernel": "7.2.0"}

    def setup(self, agents: str, luns: int) -> None:
        self.initiator = object()  # type: ignore[assignment]
        self.steps.append(("setup", agents, luns))

    def remove_stock(self) -> None:
        self.steps.append(("remove-stock",))

    def cleanup(self) -> None:
        self.steps.append(("cleanup",))

    def one_run(self, agents: str, luns: int, fault: str, n: int) -> dict[str, Any]:
        if (agents, luns, fault, n) == ("ours", 8, "power-cut", 2):
            raise CheckFailed("timed out after 460 s waiting for the pair healthy")
        failure = "4 I/O errors" if (agents, luns) == ("stock", 8) else None
        return {"run": n, "max_gap_s": 10.0 * n + luns, "failure": failure}


def test_the_loop_reports_every_run_and_stops_at_a_pair_that_does_not_recover(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fb, "Initiator", lambda lab: object())
    monkeypatch.setattr(fb, "logout_all", lambda initiator: None)
    bench = _Scripted(fb.BenchOptions((1, 8), 2, ("move", "power-cut"), ("ours", "stock")))
    report = bench.run()
    assert "timed out" in report["aborted"]
    assert bench.steps == [("remove-stock",), ("setup", "ours", 1), ("setup", "stock", 1),
                           ("remove-stock",), ("setup", "ours", 8), ("cleanup",)]
    keys = [(r["agents"], r["luns"], r["fault"], r["ok_runs"]) for r in report["results"]]
    assert keys == [("ours", 1, "move", 2), ("ours", 1, "power-cut", 2),
                    ("stock", 1, "move", 2), ("stock", 1, "power-cut", 2),
                    ("ours", 8, "move", 2), ("ours", 8, "power-cut", 1)]
    assert report["results"][0]["median_s"] == 16.0  # runs of 11 and 21 s
    assert [r["stock_over_ours"] for r in report["ratios"]] == [1.0, 1.0]
    assert report["compared"]["portblock"].startswith("omitted: ")
