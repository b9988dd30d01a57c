"""Merging a plan into a live CIB keeps what Pacemaker owns and replaces what we own."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from iscsiha.errors import IscsihaError
from iscsiha.executors.runner import Runner
from iscsiha.model.load import load_text
from iscsiha.plan.cib_merge import CIB_LAYOUT, CIB_LAYOUT_OPTION, merge
from iscsiha.plan.plan import make_plan
from tests.conftest import EXAMPLE, skip_or_fail

LIVE = """<cib validate-with="pacemaker-3.9" epoch="7" num_updates="3"
 admin_epoch="0" have-quorum="1" dc-uuid="1">
  <configuration>
    <crm_config>
      <cluster_property_set id="cib-bootstrap-options">
        <nvpair id="cib-bootstrap-options-cluster-name" name="cluster-name" value="san"/>
      </cluster_property_set>
    </crm_config>
    <nodes><node id="1" uname="san-a"/><node id="2" uname="san-b"/></nodes>
    <resources><primitive id="old-rsc" class="ocf" provider="heartbeat" type="Dummy"/></resources>
    <constraints/>
    <rsc_defaults/>
  </configuration>
  <status>
    <node_state id="1" uname="san-a" in_ccm="true" crmd="online" join="member"
     expected="member"/>
    <node_state id="2" uname="san-b" in_ccm="true" crmd="online" join="member"
     expected="member"/>
  </status>
</cib>"""

# What others place while the cluster runs (DRBD's fence-peer handler, crm_resource),
# and one constraint of ours the plan no longer makes. Names resources the live CIB
# does not hold, so only merge() reads it: cibadmin would refuse it.
LIVE_WITH_OTHERS = LIVE.replace("<constraints/>", """<constraints>
<rsc_location id="target-vm-prefers-san-z" rsc="target-vm" node="san-z" score="100"/>
<rsc_location id="cli-ban-old-rsc-on-san-a" rsc="old-rsc" node="san-a" score="-INFINITY"/>
<rsc_location id="cli-prefer-target-vm" rsc="target-vm" node="san-b" score="INFINITY"/>
<rsc_location rsc="drbd-vm-clone" id="drbd-fence-by-handler-vm-drbd-vm-clone">
  <rule role="Promoted" score="-INFINITY" id="drbd-fence-by-handler-vm-rule-drbd-vm-clone">
    <expression attribute="#uname" operation="ne" value="san-a"
     id="drbd-fence-by-handler-vm-expr-drbd-vm-clone"/>
  </rule>
</rsc_location>
<rsc_location rsc="drbd-gone-clone" id="drbd-fence-by-handler-gone-drbd-gone-clone">
  <rule role="Promoted" score="-INFINITY" id="drbd-fence-by-handler-gone-rule">
    <expression attribute="#uname" operation="ne" value="san-a"
     id="drbd-fence-by-handler-gone-expr"/>
  </rule>
</rsc_location>
    </constraints>""")


def _fragment() -> str:
    """The CIB fragment the plan of the example makes."""
    return make_plan(load_text(EXAMPLE.read_text())).cib


def _merged(live: str = LIVE) -> ET.Element:
    return ET.fromstring(merge(live, _fragment()))


def test_merge_replaces_our_sections_and_keeps_pacemakers() -> None:
    cib = _merged()
    ids = [el.get("id") for el in cib.iter("primitive")]
    assert "old-rsc" not in ids and "target-vm-lio" in ids
    assert cib.find(".//cluster_property_set[@id='cib-bootstrap-options']") is not None
    assert cib.find(".//cluster_property_set[@id='iscsiha-options']") is not None
    assert len(cib.findall("configuration/nodes/node")) == 2
    assert cib.find("configuration/rsc_defaults") is not None
    assert len(cib.findall("status/node_state")) == 2
    assert [el.tag for el in cib.find("configuration")] == [  # type: ignore[union-attr]
        "crm_config", "nodes", "resources", "constraints", "rsc_defaults", "fencing-topology",
        "alerts"]
    # No recipients in the example: no alert agent runs at every event of a failover.
    assert cib.findall("configuration/alerts/alert") == []
    levels = cib.findall("configuration/fencing-topology/fencing-level")
    # With a tiebreaker: IPMI first, then the watchdog for a box that died with its BMC.
    assert [(lv.get("target"), lv.get("index"), lv.get("devices")) for lv in levels] == [
        ("san-a", "1", "fence-san-a"), ("san-a", "2", "watchdog"),
        ("san-b", "1", "fence-san-b"), ("san-b", "2", "watchdog")]


def test_with_recipients_the_one_alert_agent_is_planned_without_recipients_or_secrets(
) -> None:
    config = load_text(EXAMPLE.read_text() + (EXAMPLE.parent / "alerts.toml").read_text())
    cib = ET.fromstring(merge(LIVE, make_plan(config).cib))
    alerts = cib.findall("configuration/alerts/alert")
    assert [(a.get("id"), a.get("path")) for a in alerts] == [
        ("iscsiha-alert", "/usr/bin/iscsiha-alert")]
    assert alerts[0].find("recipient") is None


def test_merge_keeps_the_fence_handlers_and_moves_constraints_on_resources_that_stay() -> None:
    constraints = _merged(LIVE_WITH_OTHERS).find("configuration/constraints")
    assert constraints is not None
    ids = {el.get("id") for el in constraints}
    # DRBD's fence-peer constraint forbids promoting the stale box: an apply during the
    # outage must not let a failover promote old data. An admin's move stays too.
    assert {"drbd-fence-by-handler-vm-drbd-vm-clone", "cli-prefer-target-vm"} <= ids
    # Ours are the plan's alone; others' naming a resource that is gone would not validate.
    assert not ids & {"target-vm-prefers-san-z", "cli-ban-old-rsc-on-san-a",
                      "drbd-fence-by-handler-gone-drbd-gone-clone"}
    assert "target-vm-prefers-san-a" in ids


def test_merge_bumps_the_epoch_and_is_stable_when_repeated() -> None:
    cib = _merged()
    assert (cib.get("epoch"), cib.get("num_updates")) == ("8", "0")
    fragment = _fragment()
    twice = ET.fromstring(merge(merge(LIVE, fragment), fragment))
    assert len(twice.findall(".//cluster_property_set[@id='iscsiha-options']")) == 1


def test_merging_a_plan_the_cib_already_holds_returns_it_as_it_is() -> None:
    fragment = _fragment()
    # Laid out anew, as Pacemaker hands it back: only the layout differs.
    live = ET.tostring(ET.fromstring(merge(LIVE_WITH_OTHERS, fragment)), encoding="unicode")
    live = live.replace("><", ">\n  <")
    assert merge(live, fragment) == live  # same epoch: crm_diff finds nothing to patch


def test_merging_into_something_that_is_not_a_cib_is_refused() -> None:
    with pytest.raises(IscsihaError):
        merge("<configuration/>", "<configuration/>")
    with pytest.raises(IscsihaError):
        merge("<cib", "<configuration/>")


def test_crm_verify_accepts_the_merged_cib_and_crm_diff_makes_a_patch(tmp_path: Path) -> None:
    crm_verify, crm_diff = shutil.which("crm_verify"), shutil.which("crm_diff")
    if crm_verify is None or crm_diff is None:
        skip_or_fail("needs crm_verify and crm_diff (pacemaker-cli-utils)")
        return
    (tmp_path / "old.xml").write_text(LIVE)
    # With others' constraints kept: they still validate.
    fragment = _fragment()
    (tmp_path / "new.xml").write_text(merge(LIVE_WITH_OTHERS, fragment))
    verify = Runner().run([crm_verify, "-x", str(tmp_path / "new.xml")], check=False)
    assert verify.returncode == 0, verify.stderr
    diff = Runner().run([crm_diff, "--original", str(tmp_path / "old.xml"),
                         "--new", str(tmp_path / "new.xml")], check=False)
    assert diff.returncode == 1, diff.stderr  # 1: the two differ, and here is the patch
    assert "target-vm-lio" in diff.stdout and "old-rsc" in diff.stdout
    # The same plan once more: no difference, so apply reports the CIB unchanged.
    (tmp_path / "again.xml").write_text(merge((tmp_path / "new.xml").read_text(), fragment))
    again = Runner().run([crm_diff, "--original", str(tmp_path / "new.xml"),
                          "--new", str(tmp_path / "again.xml")], check=False)
    assert again.returncode == 0, again.stdout + again.stderr


def _with_layout(value: str) -> str:
    return LIVE.replace("</crm_config>", f"""<cluster_property_set id="iscsiha-options">
  <nvpair id="iscsiha-options-{CIB_LAYOUT_OPTION}" name="{CIB_LAYOUT_OPTION}" value="{value}"/>
</cluster_property_set></crm_config>""")


def test_the_plan_says_its_layout_and_a_cib_of_the_same_or_an_older_one_is_merged() -> None:
    for live in (LIVE, _with_layout("0"), _with_layout(str(CIB_LAYOUT))):
        (value,) = [nv.get("value") for nv in _merged(live).iterfind(
            f".//cluster_property_set[@id='iscsiha-options']/nvpair[@name='{CIB_LAYOUT_OPTION}']")]
        assert value == str(CIB_LAYOUT)


def test_a_cib_a_newer_release_laid_out_is_not_overwritten() -> None:
    live = _with_layout(str(CIB_LAYOUT + 1))
    with pytest.raises(IscsihaError) as refused:
        merge(live, _fragment())
    (report,) = refused.value.reports
    assert (report.code, report.value) == ("cib-layout-newer", str(CIB_LAYOUT + 1))


@pytest.mark.parametrize("value", ["", "one", "-1", "1000", "1 ", "0x2"])
def test_a_garbled_layout_in_the_live_cib_is_refused_naming_it(value: str) -> None:
    with pytest.raises(IscsihaError) as refused:
        merge(_with_layout(value), _fragment())
    (report,) = refused.value.reports
    assert report.code == "bad-cib" and CIB_LAYOUT_OPTION in report.field
