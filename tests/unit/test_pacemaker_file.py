"""The Pacemaker executor against a CIB file (CIB_file), with Pacemaker's real tools."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from iscsiha.errors import IscsihaError
from iscsiha.executors.pacemaker import Pacemaker
from iscsiha.executors.runner import Runner
from iscsiha.model.load import load_text
from iscsiha.plan.cib_merge import merge
from iscsiha.plan.plan import make_plan
from tests.conftest import EXAMPLE, skip_or_fail
from tests.unit.test_cib_merge import LIVE


@pytest.fixture
def pacemaker(tmp_path: Path) -> Pacemaker:
    if shutil.which("cibadmin") is None or shutil.which("crm_diff") is None:
        skip_or_fail("needs cibadmin and crm_diff (pacemaker-cli-utils)")
    cib = tmp_path / "cib.xml"
    cib.write_text(LIVE)
    return Pacemaker(Runner(), env={"CIB_file": str(cib)})


def test_a_plan_is_applied_as_a_patch_and_read_back(pacemaker: Pacemaker) -> None:
    old = pacemaker.query()
    fragment = make_plan(load_text(EXAMPLE.read_text())).cib
    assert pacemaker.patch(old, merge(old, fragment)) is True
    now = pacemaker.query()
    assert "target-vm-lio" in now and "old-rsc" not in now
    assert pacemaker.patch(now, now) is False  # nothing to change


def test_a_patch_made_from_a_stale_cib_is_refused_and_changes_nothing(
        pacemaker: Pacemaker) -> None:
    old = pacemaker.query()
    fragment = make_plan(load_text(EXAMPLE.read_text())).cib
    pacemaker.patch(old, merge(old, fragment))  # someone else changed the CIB meanwhile
    current = pacemaker.query()
    stale = merge(old, fragment.replace('value="100"', 'value="99"'))
    with pytest.raises(IscsihaError) as info:
        pacemaker.patch(old, stale)
    assert info.value.reports[0].code == "cib-patch-refused"
    assert pacemaker.query() == current
