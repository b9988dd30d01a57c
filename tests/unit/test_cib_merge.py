"""Merging a plan into a live CIB keeps what Pacemaker owns and replaces what we own."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from iscsiha.errors import IscsihaError
from iscsiha.executors.runner import Runner
from iscsiha.model.load import load_text
from iscsiha.plan.cib_merge import merge
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


def _merged() -> ET.Element:
    return ET.fromstring(merge(LIVE, make_plan(load_text(EXAMPLE.read_text())).cib))


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
        "crm_config", "nodes", "resources", "constraints", "rsc_defaults"]


def test_merge_bumps_the_epoch_and_is_stable_when_repeated() -> None:
    cib = _merged()
    assert (cib.get("epoch"), cib.get("num_updates")) == ("8", "0")
    fragment = make_plan(load_text(EXAMPLE.read_text())).cib
    twice = ET.fromstring(merge(merge(LIVE, fragment), fragment))
    assert len(twice.findall(".//cluster_property_set[@id='iscsiha-options']")) == 1


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
    (tmp_path / "new.xml").write_text(merge(LIVE, make_plan(load_text(EXAMPLE.read_text())).cib))
    verify = Runner().run([crm_verify, "-x", str(tmp_path / "new.xml")], check=False)
    assert verify.returncode == 0, verify.stderr
    diff = Runner().run([crm_diff, "--original", str(tmp_path / "old.xml"),
                         "--new", str(tmp_path / "new.xml")], check=False)
    assert diff.returncode == 1, diff.stderr  # 1: the two differ, and here is the patch
    assert "target-vm-lio" in diff.stdout and "old-rsc" in diff.stdout
