"""`iscsiha apply` end to end through the typed peer protocol: the real apply, codec and
node steps on two fake boxes whose lvm and drbdadm answer as the real ones do, and a
CIB held here. What each box ends up with, and what a failure on one box leaves."""

from __future__ import annotations

import os
import re
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from iscsiha.commands import apply as apply_cmd
from iscsiha.errors import IscsihaError
from iscsiha.executors.pacemaker import Pacemaker
from iscsiha.executors.runner import CommandResult, command_failed
from iscsiha.model.load import load_data
from iscsiha.model.toml_dump import dumps
from iscsiha.plan.drbd import AUTHKEY_PATH
from tests.conftest import EXAMPLE
from tests.unit.peer_wire import fake_boxes

KEY = b"cluster authkey" * 8
EMPTY_CIB = ('<cib admin_epoch="0" epoch="1" num_updates="0"><configuration>'
             "<crm_config/><nodes/><resources/><constraints/></configuration>"
             "<status/></cib>")
VG_FREE, EXTENT = 1 << 40, 4 << 20


@dataclass
class Node:
    """One box's LVM and DRBD, as lvm(8) and drbdadm answer."""

    name: str
    lvs: dict[str, int] = field(default_factory=dict)  # "vg/name" -> size
    up: set[str] = field(default_factory=set)  # DRBD resources up
    metadata: set[str] = field(default_factory=set)  # RES/NUMBER with DRBD metadata
    fail: str | None = None  # a command (argv[0]'s name) that fails here
    calls: list[list[str]] = field(default_factory=list)

    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0, env: Any = None) -> CommandResult:
        argv = list(argv)
        self.calls.append(argv)
        out, code = self._answer(argv)
        result = CommandResult(tuple(argv), code, out, "" if code == 0 else out, 0.0)
        if check and code:
            raise command_failed(result)
        return result

    def _answer(self, argv: list[str]) -> tuple[str, int]:
        tool, name = os.path.basename(argv[0]), argv[-1]
        if tool == self.fail:
            return f"{tool}: failed on {self.name}", 5
        if tool in ("lvs", "vgs", "lvcreate", "lvremove", "blkdiscard", "drbdadm"):
            assert argv[-2] == "--" or name.startswith("@"), f"option-like name: {argv}"
        if tool == "vgs":
            return f"  {VG_FREE} {EXTENT}\n", 0
        if tool == "lvs" and name.startswith("@"):
            return "".join(f"  {lv.split('/')[1]} {lv.split('/')[0]}\n" for lv in self.lvs), 0
        if tool == "lvs":
            return (f"  {self.lvs[name]}\n", 0) if name in self.lvs else ("not found", 5)
        if tool == "lvcreate":
            size = int(argv[argv.index("-L") + 1].removesuffix("b"))
            self.lvs[f"{name}/{argv[argv.index('-n') + 1]}"] = size
            return "", 0
        if tool == "lvremove":
            del self.lvs[name]
            return "", 0
        if tool == "blkdiscard":
            return "", 0
        assert tool == "drbdadm", argv
        match argv[1:-2]:
            case ["get-gi"]:
                return ("0:0:0:0:1:1:0:0:0:0:0", 0) if name in self.metadata else ("", 1)
            case ["dump-md"]:
                return "No valid meta data found", 1
            case ["--force", "create-md"]:
                self.metadata.add(name)
            case ["up"]:
                self.up.add(name)
            case ["down"]:
                self.up.discard(name)
            case ["role"]:
                return ("Secondary/Secondary\n", 0) if name in self.up else ("", 10)
            case ["cstate"]:
                return "Connected\n", 0
            case ["dstate"]:
                return "Inconsistent/Inconsistent\n", 0
            case ["--clear-bitmap", "new-current-uuid"]:
                pass
            case _:
                raise AssertionError(f"unexpected {argv}")
        return "", 0

    def read(self, path: str) -> str:
        assert path == "/proc/drbd"
        return "version: 8.4.11 (api:1/proto:86-101)\n" + "".join(
            f"{minor:2d}: cs:Connected ro:Secondary/Secondary ds:Inconsistent/Inconsistent "
            "C r-----\n    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n"
            for minor in range(4))


class FakePacemaker(Pacemaker):
    def __init__(self) -> None:  # no runner: every call is answered here
        self.cib = EMPTY_CIB

    def query(self) -> str:
        return self.cib

    def patch(self, old: str, new: str) -> bool:
        self.cib = new
        return old != new

    def wait(self, timeout: float) -> None:
        pass


@pytest.fixture
def desired() -> str:
    data = tomllib.loads(EXAMPLE.read_text())
    data["volumes"] = [{"name": "vmstore", "size": "1G"}]
    data["targets"] = [{**data["targets"][0], "luns": [{"lun": 0, "volume": "vmstore"}]}]
    return dumps(data)


def run_apply(tmp_path: Path, text: str, a: Node, b: Node,
              monkeypatch: pytest.MonkeyPatch) -> tuple[FakePacemaker, Any]:
    monkeypatch.setattr(apply_cmd, "cluster_key", lambda: KEY)
    boxes = fake_boxes(a, b, box=lambda name: {
        "read_bytes": lambda path: KEY if path == AUTHKEY_PATH else None,
        "secrets_dir": str(tmp_path / name / "secrets"),
        "desired_path": str(tmp_path / name / "desired.toml"),
        "drbd_dir": str(tmp_path / name / "drbd.d")})
    pacemaker = FakePacemaker()
    changes = apply_cmd.apply(load_data(tomllib.loads(text)), text,
                              cast(Pacemaker, pacemaker), boxes, frozenset(), lambda m: None)
    return pacemaker, changes


def test_a_new_volume_and_target_reach_both_boxes_and_the_cib(
        tmp_path: Path, desired: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = Node("san-a"), Node("san-b")
    pacemaker, changes = run_apply(tmp_path, desired, a, b, monkeypatch)
    assert [v.name for v in changes.create] == ["vmstore"] and changes.cib_changed
    for node in (a, b):
        assert node.lvs == {"data/vmstore": 1 << 30}
        assert node.metadata == {"vm/0"} and node.up == set()  # left down for Pacemaker
        root = tmp_path / node.name
        res = root / "drbd.d/vm.res"
        assert os.stat(res).st_mode & 0o777 == 0o600
        assert re.search(r"device +/dev/drbd0 minor 0;", res.read_text())
        assert (root / "desired.toml").read_text() == desired
        assert (root / "secrets/fence-san-a/password").read_text() == "bmc-a-secret"
    assert (tmp_path / "san-a/drbd.d/vm.res").read_text() == (
        tmp_path / "san-b/drbd.d/vm.res").read_text()
    ids = {el.get("id") for el in ET.fromstring(pacemaker.cib).iter("primitive")}
    assert {"drbd-vm", "target-vm-lio"} <= ids


def test_a_failure_on_one_box_removes_what_this_apply_made_on_both(
        tmp_path: Path, desired: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = Node("san-a"), Node("san-b", fail="blkdiscard")
    with pytest.raises(IscsihaError) as exc:
        run_apply(tmp_path, desired, a, b, monkeypatch)
    assert exc.value.reports[0].field == "command"
    assert "failed on san-b" in str(exc.value.reports[0].message)
    assert a.lvs == {} and b.lvs == {}  # both made, both removed again
    assert [c[0] for c in b.calls].count("/usr/sbin/lvremove") == 1
    assert not (tmp_path / "san-a/desired.toml").exists()
