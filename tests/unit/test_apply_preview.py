"""`iscsiha apply --dry-run`: every check of an apply, then what it would change in the
admin's terms; nothing on either box or in the CIB changes (fake boxes, apply_fakes)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from iscsiha.commands.apply import check
from iscsiha.commands.apply_preview import NO_CHANGE, preview
from iscsiha.errors import IscsihaError
from iscsiha.model.load import load_data
from iscsiha.model.toml_dump import dumps
from tests.unit.apply_fakes import World, desired
from tests.unit.test_apply_phases import VM, VM_DB, VM_SPARE, running


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def dry_run(world: World, text: str, deletes: frozenset[str] = frozenset()) -> list[str]:
    cib = world.pacemaker.cib
    lvs = [dict(node.lvs) for node in world.nodes]
    lines = preview(check(world.env, load_data(tomllib.loads(text)), deletes, lambda _: None))
    assert world.pacemaker.cib == cib and [node.lvs for node in world.nodes] == lvs
    return lines


def test_the_same_desired_state_changes_nothing(world: World) -> None:
    running(world, VM)
    assert dry_run(world, VM) == [NO_CHANGE]


def test_a_lun_added_and_a_volume_created_are_said_so(world: World) -> None:
    running(world, VM)
    assert dry_run(world, VM_DB) == ["volume db: create, 1G in data on both boxes",
                                     "target vm: LUN 1 (db) added"]


def test_what_initiators_would_lose_is_said_in_capitals(world: World) -> None:
    both = desired({"vmstore": "1G", "db": "1G", "backup": "1G"},
                   {"vm": ["vmstore", "db"], "backup": ["backup"]})
    running(world, both)
    text = desired({"vmstore": "1G", "db": "1G", "backup": "1G"}, {"vm": ["vmstore"]})
    assert dry_run(world, text) == [
        "target backup: REMOVE (iqn.2026-11.com.example:san.backup); its initiators lose "
        "LUNs 0 (backup)",
        "target vm: LUN 1 (db) REMOVED: its initiators lose it"]


def test_a_volume_to_delete_is_refused_unless_confirmed_as_apply_refuses_it(
        world: World) -> None:
    running(world, VM_SPARE)
    with pytest.raises(IscsihaError) as caught:
        dry_run(world, VM)
    assert "spare" in str(caught.value.reports[0].value)
    assert dry_run(world, VM, frozenset({"spare"})) == [
        "volume spare: DELETE with its data on both boxes"]


def test_growth_is_said_with_the_new_size(world: World) -> None:
    running(world, VM)
    assert dry_run(world, desired({"vmstore": "2G"}, {"vm": ["vmstore"]})) == [
        "volume vmstore: grow to 2G"]


def test_initiators_portals_auth_and_placement_changes_are_listed(world: World) -> None:
    running(world, VM)
    data = tomllib.loads(VM)
    target = data["targets"][0]
    was_initiators, was_portals = list(target["initiators"]), list(target["portals"])
    target["initiators"] = [*was_initiators[1:], "iqn.1998-01.com.vmware:esx9"]
    target["portals"] = [*was_portals, "10.30.0.199"]
    target["failback"] = "auto" if target.get("failback", "manual") == "manual" else "manual"
    lines = dry_run(world, dumps(data))
    assert "target vm: allowed initiator iqn.1998-01.com.vmware:esx9 added" in lines
    assert f"target vm: allowed initiator {was_initiators[0]} REMOVED" in lines
    assert "target vm: portal 10.30.0.199:3260 added" in lines
    assert any(line.startswith("target vm: failback ") for line in lines)
