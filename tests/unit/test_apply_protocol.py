"""`iscsiha apply` end to end through the typed peer protocol: the real apply, codec and
node steps on two fake boxes whose lvm and drbdadm answer as the real ones do, and a
CIB held here. What each box ends up with, and what a failure on one box leaves."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from iscsiha.errors import IscsihaError
from iscsiha.model.identity import RESERVATIONS_SIZE
from tests.unit.apply_fakes import World, desired


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


DESIRED = desired({"vmstore": "1G"}, {"vm": ["vmstore"]})


def test_a_new_volume_and_target_reach_both_boxes_and_the_cib(world: World) -> None:
    changes = world.apply(DESIRED)
    assert [v.name for v in changes.create] == ["vmstore"] and changes.cib_changed
    for node in world.nodes:
        assert node.lvs == {"data/vmstore": 1 << 30, "data/vm.pr": RESERVATIONS_SIZE}
        # Left down for Pacemaker.
        assert node.metadata == {"vm/0", "vm/65534"} and node.kernel == {}
        res = node.root / "drbd.d/vm.res"
        assert os.stat(res).st_mode & 0o777 == 0o600
        assert re.search(r"device +/dev/drbd0 minor 0;", res.read_text())
        assert node.file("desired.toml") == DESIRED
        assert node.file("secrets/fence-san-a/password") == "bmc-a-secret"
    assert world.a.file("drbd.d/vm.res") == world.b.file("drbd.d/vm.res")
    ids = {el.get("id") for el in ET.fromstring(world.pacemaker.cib).iter("primitive")}
    assert {"drbd-vm", "target-vm-lio"} <= ids


def test_a_failure_on_one_box_removes_what_this_apply_made_on_both(world: World) -> None:
    world.b.fail = ("blkdiscard",)
    with pytest.raises(IscsihaError) as exc:
        world.apply(DESIRED)
    assert exc.value.reports[0].field == "command"
    assert "failed on san-b" in str(exc.value.reports[0].message)
    assert world.a.lvs == {} and world.b.lvs == {}  # both made, both removed again
    assert [c[0] for c in world.b.calls].count("/usr/sbin/lvremove") == 1
    assert world.a.file("desired.toml") is None
