"""The world the real apply runs in, in memory: two boxes whose lvm and drbdadm answer
as the real ones do, reached through the real peer protocol (peer_wire), their files
in a temporary folder, and a CIB held here."""

from __future__ import annotations

import json
import os
import re
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iscsiha.commands import apply as apply_cmd
from iscsiha.commands.apply import Changes
from iscsiha.executors.pacemaker import Pacemaker
from iscsiha.executors.runner import CommandResult, command_failed
from iscsiha.model.load import load_data
from iscsiha.model.toml_dump import dumps
from iscsiha.plan.drbd import AUTHKEY_PATH
from tests.conftest import EXAMPLE
from tests.unit.env_fakes import fake_env
from tests.unit.peer_wire import fake_boxes

KEY = b"cluster authkey" * 8
EMPTY_CIB = ('<cib admin_epoch="0" epoch="1" num_updates="0"><configuration>'
             "<crm_config/><nodes/><resources/><constraints/></configuration>"
             "<status/></cib>")
VG_FREE, EXTENT = 1 << 40, 4 << 20
_VOLUME = re.compile(r"volume (\d+) \{\s*device +/dev/drbd\d+ minor (\d+);")


def desired(volumes: Mapping[str, str], luns: Mapping[str, Sequence[str]]) -> str:
    """The example's cluster with ``volumes`` (name -> size) and the example's targets
    named in ``luns`` (target -> its volumes, LUN 0 upwards)."""
    data = tomllib.loads(EXAMPLE.read_text())
    data["volumes"] = [{"name": name, "size": size} for name, size in volumes.items()]
    targets = {t["name"]: t for t in data["targets"]}
    data["targets"] = [{**targets[t], "luns": [{"lun": n, "volume": v}
                                               for n, v in enumerate(vs)]}
                       for t, vs in luns.items()]
    return dumps(data)


class KeyFiles:
    """A box's files as commands read them: the cluster key, nothing else."""

    @staticmethod
    def read(path: str, /) -> bytes | None:
        return KEY if path == AUTHKEY_PATH else None


@dataclass
class Node:
    """One box's LVM and DRBD, as lvm(8) and drbdadm answer; its files under ``root``."""

    name: str
    root: Path
    lvs: dict[str, int] = field(default_factory=dict)  # "vg/name" -> size
    tags: dict[str, str] = field(default_factory=dict)  # "vg/name" -> its tag, if not iscsiha
    pools: set[str] = field(default_factory=set)  # "vg/name" of LVs in lvs that are pools
    thin: dict[str, str] = field(default_factory=dict)  # "vg/name" -> its pool
    metadata: set[str] = field(default_factory=set)  # RES/NUMBER with DRBD metadata
    # Resources up -> their volumes (number -> minor), as the file said at up or adjust.
    kernel: dict[str, dict[int, int]] = field(default_factory=dict)
    in_sync: set[int] = field(default_factory=set)  # minors UpToDate on both sides
    roles: dict[str, str] = field(default_factory=dict)  # RES/NUMBER -> role set alone
    resized: set[str] = field(default_factory=set)  # RES/NUMBER that took a grown disk
    fail: tuple[str, ...] = ()  # a command (its tool's name, first arguments) failing here
    calls: list[list[str]] = field(default_factory=list)

    def box(self) -> dict[str, Any]:
        """Its node_steps.Box fields: its files under its root."""
        return {"read_bytes": KeyFiles.read, "secrets_dir": str(self.root / "secrets"),
                "desired_path": str(self.root / "desired.toml"),
                "drbd_dir": str(self.root / "drbd.d"), "alerts_group": None}

    def file(self, path: str) -> str | None:
        """A file under its root (drbd.d/vm.res, desired.toml); None when absent."""
        full = self.root / path
        return full.read_text() if full.exists() else None

    def volumes_in_file(self, res: str) -> dict[int, int]:
        return {int(n): int(minor) for n, minor in _VOLUME.findall(self.file(
            f"drbd.d/{res}.res") or "")}

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
        if self.fail and [tool, *argv[1:]][:len(self.fail)] == list(self.fail):
            return f"{tool}: failed on {self.name}", 5
        if tool in ("lvs", "vgs", "lvcreate", "lvextend", "lvremove", "blkdiscard", "drbdadm"):
            assert argv[-2] == "--" or name.startswith("@"), f"option-like name: {argv}"
        if tool == "vgs":
            return f"  {VG_FREE} {EXTENT}\n", 0
        if tool == "lvs" and name.startswith("@"):
            return self._report(name[1:]), 0
        if tool == "lvs":
            return (f"  {self.lvs[name]}\n", 0) if name in self.lvs else ("not found", 5)
        if tool == "lvcreate":
            size_flag = "-V" if "-V" in argv else "-L"
            lv = f"{name}/{argv[argv.index('-n') + 1]}"
            self.lvs[lv] = int(argv[argv.index(size_flag) + 1].removesuffix("b"))
            if "thin-pool" in argv:
                self.pools.add(lv)
            if "--thinpool" in argv:
                self.thin[lv] = argv[argv.index("--thinpool") + 1]
            self.tags[lv] = argv[argv.index("--addtag") + 1]
            return "", 0
        if tool == "lvextend":
            self.lvs[name] = int(argv[argv.index("-L") + 1].removesuffix("b"))
            return "", 0
        if tool == "lvremove":
            del self.lvs[name]
            self.tags.pop(name, None)
            self.thin.pop(name, None)
            return "", 0
        if tool == "blkdiscard":
            return "", 0
        assert tool == "drbdadm", argv
        return self._drbdadm(argv[1:-2], name)

    def _report(self, tag: str) -> str:
        """lvs --reportformat json of the LVs tagged ``tag``; pools 12.5% full."""
        rows = []
        for lv, size in self.lvs.items():
            if self.tags.get(lv, "iscsiha") != tag:
                continue
            vg, name = lv.split("/")
            pool = lv in self.pools
            rows.append({"lv_name": name, "vg_name": vg, "lv_size": str(size),
                         "segtype": "thin-pool" if pool else "thin" if lv in self.thin
                         else "linear", "pool_lv": self.thin.get(lv, ""),
                         "data_percent": "12.50" if pool else "",
                         "metadata_percent": "3.00" if pool else ""})
        return json.dumps({"report": [{"lv": rows}]})

    def _drbdadm(self, command: list[str], name: str) -> tuple[str, int]:
        res, _, number = name.partition("/")
        match command:
            case ["get-gi"]:
                return ("0:0:0:0:1:1:0:0:0:0:0", 0) if name in self.metadata else ("", 1)
            case ["dump-md"]:
                return "No valid meta data found", 1
            case ["--force", "create-md"]:
                self.metadata.add(name)
            case ["up"] | ["adjust"]:
                self.kernel[name] = self.volumes_in_file(name)
            case ["-d", "adjust"]:
                pass  # nothing left to drop
            case ["down"]:
                self.kernel.pop(name, None)
            case ["role"]:
                return ("Secondary/Secondary\n", 0) if name in self.kernel else ("", 10)
            case ["cstate"]:
                return "Connected\n", 0
            case ["dstate"]:
                return "Inconsistent/Inconsistent\n", 0
            case ["--clear-bitmap", "new-current-uuid"]:
                self.in_sync.add(self.kernel[res][int(number)])
            case ["primary"]:
                self.roles[name] = "Primary"
            case ["secondary"]:
                self.roles[name] = "Secondary"
            case ["resize"]:
                self.resized.add(name)
            case _:
                raise AssertionError(f"unexpected drbdadm {command} {name}")
        return "", 0

    def read(self, path: str) -> str:
        assert path == "/proc/drbd"
        disks = {True: "UpToDate/UpToDate", False: "Inconsistent/Inconsistent"}
        return "version: 8.4.11 (api:1/proto:86-101)\n" + "".join(
            f"{minor:2d}: cs:Connected ro:Secondary/Secondary ds:{disks[minor in self.in_sync]} "
            "C r-----\n    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n"
            for volumes in self.kernel.values() for minor in sorted(volumes.values()))


class FakePacemaker(Pacemaker):
    """The CIB held here, with Pacemaker's own update(); every DRBD clone Promoted on san-a."""

    def __init__(self) -> None:  # no runner: every call is answered here
        self.cib = EMPTY_CIB
        self.history: list[str] = []  # each CIB a patch made, in order

    def query(self) -> str:
        return self.cib

    def patch(self, old: str, new: str) -> bool:
        if old == new:
            return False
        self.cib = new
        self.history.append(new)
        return True

    def status(self) -> str:
        clones = "".join(
            f'<clone id="{c.get("id")}"><resource id="x" role="Promoted"><node name="san-a"/>'
            '</resource><resource id="x" role="Unpromoted"><node name="san-b"/></resource>'
            "</clone>" for c in ET.fromstring(self.cib).iter("clone"))
        return f"<pacemaker-result><resources>{clones}</resources></pacemaker-result>"

    def wait(self, timeout: float) -> None:
        pass


class World:
    """Two fake boxes (san-a is here) and the CIB, as the real apply reaches them."""

    def __init__(self, root: Path) -> None:
        self.a, self.b = Node("san-a", root / "san-a"), Node("san-b", root / "san-b")
        nodes = {n.name: n for n in (self.a, self.b)}
        self.pacemaker = FakePacemaker()
        self.env = fake_env(self.pacemaker,
                            fake_boxes(self.a, self.b, box=lambda name: nodes[name].box()),
                            files=KeyFiles())

    @property
    def nodes(self) -> tuple[Node, Node]:
        return self.a, self.b

    def apply(self, text: str, deletes: Iterable[str] = ()) -> Changes:
        return apply_cmd.apply(self.env, load_data(tomllib.loads(text)), text,
                               frozenset(deletes), lambda _message: None)

    def start(self, *targets: str) -> None:
        """What Pacemaker does with new targets' DRBD resources: up on both boxes,
        connected, in sync (the initial sync was skipped)."""
        for node in self.nodes:
            for target in targets:
                node.kernel[target] = node.volumes_in_file(target)
                node.in_sync |= set(node.kernel[target].values())
