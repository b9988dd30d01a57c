"""The shipped example plans to the reviewed golden files (UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from iscsiha.cli.main import main
from iscsiha.model.load import load_data, load_text
from iscsiha.plan.corosync import corosync_conf
from iscsiha.plan.plan import make_plan
from tests.conftest import EXAMPLE

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "two-node"


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text()
            for p in sorted(root.rglob("*")) if p.is_file()}


def matches_golden(got: dict[str, str], golden: Path) -> None:
    """``got`` (relative path -> text) is what ``golden`` holds; rewritten instead with
    UPDATE_GOLDEN=1."""
    if os.environ.get("UPDATE_GOLDEN"):
        for rel, text in got.items():
            (golden / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden / rel).write_text(text)
        pytest.skip("golden files rewritten; review the diff")
    assert sorted(got) == sorted(_files(golden))
    for rel, text in got.items():
        assert text == (golden / rel).read_text(), f"{rel} differs from its golden file"


def test_example_plans_to_the_golden_files(tmp_path: Path) -> None:
    assert main(["plan", str(EXAMPLE), "--output-dir", str(tmp_path)]) == 0
    matches_golden(_files(tmp_path), GOLDEN)


def test_both_nodes_get_identical_files(tmp_path: Path) -> None:
    main(["plan", str(EXAMPLE), "--output-dir", str(tmp_path)])
    a = _files(tmp_path / "san-a")
    assert a == _files(tmp_path / "san-b")
    assert sorted(a) == ["etc/corosync/corosync.conf", "etc/drbd.d/backup.res",
                         "etc/drbd.d/vm.res"]


def test_without_a_tiebreaker_corosync_uses_two_node_mode(example: dict[str, Any]) -> None:
    del example["cluster"]["tiebreaker"]
    text = corosync_conf(load_data(example))
    assert "two_node: 1" in text and "device {" not in text


def test_no_secret_reaches_the_plan_output(tmp_path: Path) -> None:
    main(["plan", str(EXAMPLE), "--output-dir", str(tmp_path)])
    everything = "".join(_files(tmp_path).values())
    for secret in ("bmc-a-secret", "disc0very-Secret", "hv-Secret-0001", "san-Secret-0001",
                   "backup-Secret-1"):
        assert secret not in everything
    # The CHAP secrets; the BMC passwords are no CIB parameter at all (iscsiha.fence_ipmitool).
    assert everything.count('value="lrm://"') == 4
    assert 'name="password"' not in everything


def test_discovery_auth_resource_only_when_asked_for(example: dict[str, Any]) -> None:
    example["discovery_auth"] = {"mode": "none"}
    cib = make_plan(load_data(example)).cib
    assert "lio-discovery" not in cib
    assert "lio-discovery-clone" in make_plan(load_text(EXAMPLE.read_text())).cib
