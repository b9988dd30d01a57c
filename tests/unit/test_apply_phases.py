"""Each phase of `iscsiha apply` on a running cluster (commands/apply.py), through the real
peer protocol on fake boxes (apply_fakes): what both boxes and the CIB end up holding,
and what a failure before or after the CIB patch leaves."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from iscsiha.errors import PARTLY_APPLIED, IscsihaError
from iscsiha.model.identity import RESERVATIONS_SIZE as PR
from iscsiha.plan.agent_params import decode_luns
from iscsiha.plan.cib import nvpairs
from tests.unit.apply_fakes import World, desired

GIB = 1 << 30
VM = desired({"vmstore": "1G"}, {"vm": ["vmstore"]})
VM_DB = desired({"vmstore": "1G", "db": "1G"}, {"vm": ["vmstore", "db"]})
VM_SPARE = desired({"vmstore": "1G", "spare": "1G"}, {"vm": ["vmstore"]})


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def running(world: World, text: str) -> None:
    """The cluster after applying ``text`` and Pacemaker starting its targets."""
    world.apply(text)
    world.start(*(el.get("id", "")[len("target-"):]
                  for el in ET.fromstring(world.pacemaker.cib).iter("group")))


def exported(cib: str, target: str) -> list[str]:
    """The volumes ``target`` exports in a CIB, by LUN."""
    lio = ET.fromstring(cib).find(f".//primitive[@id='target-{target}-lio']")
    assert lio is not None, f"target {target} is not in the CIB"
    return [lun.volume for lun in decode_luns(nvpairs(lio.find("instance_attributes"))["luns"])]


def clone_meta(cib: str, target: str) -> dict[str, str] | None:
    """The meta attributes of ``target``'s DRBD clone; None when it is not in the CIB."""
    clone = ET.fromstring(cib).find(f".//clone[@id='drbd-{target}-clone']")
    if clone is None:
        return None
    return {nv.get("name", ""): nv.get("value", "")
            for meta in clone.findall("meta_attributes") for nv in meta}


def disks(res_file: str | None) -> list[str]:
    """The LVs a DRBD resource file holds, in order."""
    return re.findall(r"^ +disk +(/dev/\S+);$", res_file or "", re.M)


def test_a_new_volume_no_target_exports_is_an_lv_on_both_boxes_and_nothing_else(
        world: World) -> None:
    running(world, VM)
    cib, vm_file = world.pacemaker.cib, world.a.file("drbd.d/vm.res")
    changes = world.apply(VM_SPARE)
    assert [v.name for v in changes.create] == ["spare"] and not changes.cib_changed
    for node in world.nodes:
        assert node.lvs == {"data/vmstore": GIB, "data/spare": GIB, "data/vm.pr": PR}
        assert node.file("drbd.d/vm.res") == vm_file
        assert node.metadata == {"vm/0", "vm/65534"}
        assert node.file("desired.toml") == VM_SPARE
    assert world.pacemaker.cib == cib


def test_a_new_target_is_prepared_on_both_boxes_left_down_and_added_to_the_cib(
        world: World) -> None:
    running(world, VM)
    vm_file = world.a.file("drbd.d/vm.res")
    text = desired({"vmstore": "1G", "backup": "2G"},
                   {"vm": ["vmstore"], "backup": ["backup"]})
    changes = world.apply(text)
    assert [v.name for v in changes.create] == ["backup"] and changes.cib_changed
    for node in world.nodes:
        # Each target's reservations LV, made with its resource file.
        assert node.lvs == {"data/vmstore": GIB, "data/backup": 2 * GIB, "data/vm.pr": PR,
                            "data/backup.pr": PR}
        assert node.metadata == {"vm/0", "vm/65534", "backup/0", "backup/65534"}
        assert disks(node.file("drbd.d/backup.res")) == ["/dev/data/backup",
                                                         "/dev/data/backup.pr"]
        assert node.file("drbd.d/vm.res") == vm_file  # the running target is left alone
        assert set(node.kernel) == {"vm"}  # backup is Pacemaker's to start
    # backup's volumes (minors after vm's two) declared in sync: no initial full sync.
    assert {2, 3} <= world.a.in_sync
    assert exported(world.pacemaker.cib, "backup") == ["backup"]
    assert exported(world.pacemaker.cib, "vm") == ["vmstore"]


def test_a_lun_joining_a_running_target_joins_its_drbd_resource_under_maintenance(
        world: World) -> None:
    running(world, VM)
    changes = world.apply(VM_DB)
    assert [v.name for v in changes.create] == ["db"]
    for node in world.nodes:
        assert node.lvs == {"data/vmstore": GIB, "data/db": GIB, "data/vm.pr": PR}
        assert node.metadata == {"vm/0", "vm/1", "vm/65534"}
        # The running resource took the volume.
        assert node.kernel["vm"] == {0: 0, 65534: 1, 1: 2}
        assert node.file("desired.toml") == VM_DB
    # Promoted alone where the target runs, the other volume's role left to Pacemaker.
    assert world.a.roles == {"vm/1": "Primary"} and world.b.roles == {}
    assert 2 in world.a.in_sync
    assert exported(world.pacemaker.cib, "vm") == ["vmstore", "db"]
    # Pacemaker was kept off the clone while its resource changed, and has it back.
    metas = [clone_meta(cib, "vm") or {} for cib in world.pacemaker.history]
    assert any(meta.get("maintenance") == "true" for meta in metas)
    assert "maintenance" not in metas[-1]


def test_a_lun_that_fails_to_join_leaves_the_clone_to_pacemaker_and_says_to_apply_again(
        world: World) -> None:
    running(world, VM)
    world.b.fail = ("drbdadm", "adjust")
    with pytest.raises(IscsihaError) as exc:
        world.apply(VM_DB)
    codes = [r.code for r in exc.value.reports]
    assert codes[0] == "command-failed" and codes[-1] == PARTLY_APPLIED
    assert "maintenance" not in (clone_meta(world.pacemaker.cib, "vm") or {})
    assert exported(world.pacemaker.cib, "vm") == ["vmstore"]


def test_a_lun_leaving_a_running_target_is_demoted_and_dropped_from_its_resource(
        world: World) -> None:
    running(world, VM_DB)
    text = desired({"vmstore": "1G", "db": "1G"}, {"vm": ["vmstore"]})
    changes = world.apply(text)
    assert changes.delete == () and changes.cib_changed
    for node in world.nodes:
        assert node.kernel["vm"] == {0: 0, 65534: 2}
        assert disks(node.file("drbd.d/vm.res")) == ["/dev/data/vmstore", "/dev/data/vm.pr"]
        # The volume stays.
        assert node.lvs == {"data/vmstore": GIB, "data/db": GIB, "data/vm.pr": PR}
    assert world.a.roles == {"vm/1": "Secondary"} and world.b.roles == {}
    assert exported(world.pacemaker.cib, "vm") == ["vmstore"]
    assert "maintenance" not in (clone_meta(world.pacemaker.cib, "vm") or {})


def test_deleting_a_volume_removes_its_lv_on_both_boxes(world: World) -> None:
    running(world, VM_SPARE)
    changes = world.apply(VM, deletes=["spare"])
    assert changes.delete == ("spare",)
    for node in world.nodes:
        assert node.lvs == {"data/vmstore": GIB, "data/vm.pr": PR}
        assert node.file("desired.toml") == VM


def test_deleting_a_target_stops_it_then_drops_it_from_the_cib_and_both_boxes(
        world: World) -> None:
    both = desired({"vmstore": "1G", "backup": "1G"}, {"vm": ["vmstore"], "backup": ["backup"]})
    running(world, both)
    text = desired({"vmstore": "1G", "backup": "1G"}, {"vm": ["vmstore"]})
    changes = world.apply(text)
    assert changes.cib_changed and changes.delete == ()
    # First told to stop (its LUNs before DRBD under them), then dropped.
    stopped, dropped = world.pacemaker.history[-2:]
    assert (clone_meta(stopped, "backup") or {}).get("target-role") == "Stopped"
    assert clone_meta(dropped, "backup") is None
    assert "target-backup" not in dropped
    for node in world.nodes:
        assert set(node.kernel) == {"vm"}
        assert node.file("drbd.d/backup.res") is None
        # Its volume stays; its reservations LV goes with its resource.
        assert node.lvs == {"data/vmstore": GIB, "data/backup": GIB, "data/vm.pr": PR}


def test_growing_a_volume_grows_both_lvs_and_drbd_once(world: World) -> None:
    running(world, VM)
    cib = world.pacemaker.cib
    changes = world.apply(desired({"vmstore": "2G"}, {"vm": ["vmstore"]}))
    assert [(v.name, v.size) for v in changes.grow] == [("vmstore", 2 * GIB)]
    for node in world.nodes:
        assert node.lvs == {"data/vmstore": 2 * GIB, "data/vm.pr": PR}
    # DRBD grows from one box; the peer follows over the connection.
    assert world.a.resized == {"vm/0"} and world.b.resized == set()
    assert world.pacemaker.cib == cib


def test_a_failure_before_the_cib_patch_removes_the_new_volumes_and_resources_only(
        world: World) -> None:
    running(world, VM)
    cib = world.pacemaker.cib
    world.b.fail = ("drbdadm", "up")
    text = desired({"vmstore": "1G", "backup": "1G"}, {"vm": ["vmstore"], "backup": ["backup"]})
    with pytest.raises(IscsihaError) as exc:
        world.apply(text)
    (report,) = exc.value.reports
    assert report.code == "command-failed" and "failed on san-b" in str(report.message)
    assert world.pacemaker.cib == cib
    for node in world.nodes:
        assert node.lvs == {"data/vmstore": GIB, "data/vm.pr": PR}  # backup.pr undone too
        assert node.file("drbd.d/backup.res") is None and set(node.kernel) == {"vm"}
        assert node.file("desired.toml") == VM


def test_a_failure_after_the_cib_patch_undoes_nothing_and_says_to_apply_again(
        world: World) -> None:
    running(world, VM_SPARE)
    world.b.fail = ("lvremove",)
    text = desired({"vmstore": "1G", "backup": "1G"}, {"vm": ["vmstore"], "backup": ["backup"]})
    with pytest.raises(IscsihaError) as exc:
        world.apply(text, deletes=["spare"])
    failed, partly = exc.value.reports
    assert failed.code == "command-failed" and "failed on san-b" in str(failed.message)
    assert (partly.code, partly.allowed) == (PARTLY_APPLIED, "apply run again to finish")
    # The new target stays where the patch put it, on both boxes and in the CIB.
    assert clone_meta(world.pacemaker.cib, "backup") is not None
    for node in world.nodes:
        assert node.lvs.get("data/backup") == GIB
        assert node.file("drbd.d/backup.res") is not None
        assert node.file("desired.toml") == VM_SPARE  # kept as it was: apply again
    assert "data/spare" not in world.a.lvs and "data/spare" in world.b.lvs
