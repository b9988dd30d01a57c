"""The CIB parameters of our agents: what the plan writes is what the agents read."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from iscsiha.errors import IscsihaError
from iscsiha.model.load import load_text
from iscsiha.plan.agent_params import TargetParams, decode_luns, decode_portals
from iscsiha.plan.plan import make_plan
from tests.conftest import EXAMPLE


def _target_params(cib: str, rsc: str) -> dict[str, str]:
    prim = next(p for p in ET.fromstring(cib).iter("primitive") if p.get("id") == rsc)
    return {nv.get("name", ""): nv.get("value", "") for nv in prim.iter("nvpair")}


def test_the_target_agent_reads_back_what_the_plan_wrote() -> None:
    plan = make_plan(load_text(EXAMPLE.read_text()))
    params = _target_params(plan.cib, "target-vm-lio")
    # Pacemaker hands the agent the real secrets in place of lrm://.
    params.update({"chap_secret": "hv-Secret-0001", "mutual_secret": "san-Secret-0001"})
    target = TargetParams.from_params(params)
    assert target.iqn == "iqn.2026-11.com.example:san.vm"
    assert [str(p) for p in target.portals] == ["10.30.0.100:3260"]
    assert [(lun.number, lun.volume, lun.device) for lun in target.luns] == [
        (0, "vmstore", "/dev/drbd0"), (1, "db", "/dev/drbd1")]
    assert target.auth.chap_user == "hypervisors" and target.auth.mutual_user == "san"
    assert dict(target.to_params())["luns"] == params["luns"]


def test_unsubstituted_secret_is_refused() -> None:
    plan = make_plan(load_text(EXAMPLE.read_text()))
    params = _target_params(plan.cib, "target-vm-lio")
    with pytest.raises(IscsihaError) as info:
        TargetParams.from_params(params)
    assert info.value.reports[0].field == "chap_secret"


@pytest.mark.parametrize(("text", "ok"), [
    ("10.30.0.100:3260", True), ("[fd00::5]:3260 10.30.0.1:3261", True),
    ("10.30.0.100", False), ("host:3260", False), ("10.30.0.100:0", False), ("", False),
])
def test_portal_parameter_format(text: str, ok: bool) -> None:
    if ok:
        assert decode_portals(text)
    else:
        with pytest.raises(IscsihaError):
            decode_portals(text)


@pytest.mark.parametrize(("text", "ok"), [
    ("0:db:/dev/drbd1:abc", True), ("0:db:/dev/drbd1:abc 0:x:/dev/drbd2:d", False),
    ("256:db:/dev/drbd1:abc", False), ("0:db:drbd1:abc", False), ("0:db:/dev/drbd1", False),
])
def test_lun_parameter_format(text: str, ok: bool) -> None:
    if ok:
        assert decode_luns(text)[0].device == "/dev/drbd1"
    else:
        with pytest.raises(IscsihaError):
            decode_luns(text)
