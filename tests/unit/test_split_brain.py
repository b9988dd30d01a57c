"""`iscsiha split-brain`: finding a split brain in what DRBD 8.4 prints, the refusals, and
the recovery on both boxes, against fake boxes whose DRBD answers as the real one does.

The sample outputs are real: /proc/drbd as the 8.4 kernel's drbd_proc.c prints it
(captures from 8.4.0 and 8.4.11 boxes), get-gi as drbd-utils' dt_print_uuids prints it,
kernel lines as drbd_receiver.c and drbd_worker.c word them.
"""

from __future__ import annotations

import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from iscsiha import views
from iscsiha.cli import main as cli
from iscsiha.commands import split_brain as sb
from iscsiha.commands.cluster_env import ClusterEnv
from iscsiha.errors import IscsihaError
from iscsiha.executors.drbd import (
    DMESG,
    DRBDADM,
    Drbd,
    GenerationIds,
    kernel_lines,
    parse_gi,
    parse_proc_drbd,
)
from iscsiha.executors.pacemaker import Pacemaker
from iscsiha.executors.peers import Boxes
from iscsiha.executors.runner import CommandResult, command_failed
from iscsiha.model.load import load_data
from iscsiha.plan.plan import make_plan
from tests.conftest import EXAMPLE
from tests.unit.env_fakes import fake_env
from tests.unit.peer_wire import fake_boxes

# Two boxes of an 8.4.0 cluster after a split brain, each StandAlone with its own changes.
PROC_840_SECONDARY = """\
version: 8.4.0 (api:1/proto:86-100)
GIT-hash: 28753f559ab51b549d16bcf487fe625d5919c49c build by gardner@, 2011-12-12 23:52:00
 0: cs:StandAlone ro:Secondary/Unknown ds:UpToDate/DUnknown   r-----
    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:b oos:76
"""
PROC_840_PRIMARY = """\
version: 8.4.0 (api:1/proto:86-100)
GIT-hash: 28753f559ab51b549d16bcf487fe625d5919c49c build by gardner@, 2011-12-12 23:52:00
 0: cs:StandAlone ro:Primary/Unknown ds:UpToDate/DUnknown   r-----
    ns:0 nr:0 dw:144 dr:4205 al:5 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:b oos:100
"""
# Resyncs under way: over 4 GiB the kernel counts (left/total) in MiB, below in KiB.
PROC_8411_SYNC_TARGET = """\
version: 8.4.11 (api:1/proto:86-101)
srcversion: 3605238F092EFFCDC77483B
 0: cs:SyncTarget ro:Secondary/Primary ds:Inconsistent/UpToDate C r-----
    ns:0 nr:1003520 dw:1003520 dr:0 al:8 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:32549852
\t[>....................] sync'ed:  3.1% (31784/32764)M
\tfinish: 0:14:01 speed: 38,656 (38,596) want: 50,280 K/sec
"""
PROC_SYNC_SOURCE_AND_GAP = """\
version: 8.4.11 (api:1/proto:86-101)
srcversion: DA6B55A41DED5E58CDBAB30
 1: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----
    ns:16976 nr:0 dw:0 dr:17616 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:802224
\t[>....................] sync'ed:  3.0% (802224/819200)K
\tfinish: 0:04:39 speed: 2,828 (2,828) K/sec

 3: cs:Unconfigured
"""
KERNEL = """\
[ 4021.118312] drbd db/0 drbd1: Split-Brain detected but unresolved, dropping connection!
[ 4021.118330] drbd db/0 drbd1: helper command: /sbin/drbdadm split-brain minor-1
[ 4021.204113] drbd logs/0 drbd10: Began resync as SyncSource (will sync 512 KB [128 bits set]).
"""


def _gi(current: str, bitmap: str, h1: str = "0" * 16, h2: str = "0" * 16,
        flags: str = "1:1:0:0:0:0:0") -> str:
    """A get-gi line: "%016llX:%016llX:%016llX:%016llX:" then seven 0/1 flags."""
    return f"{current}:{bitmap}:{h1}:{h2}:{flags}\n"


PARTED = "5A5B1F2C3A4E6B78"  # the current identifier both sides had when they parted
A_NEW, B_NEW = "8D5B1F2C3A4E6B79", "C0FFEE00DEADBEE0"


def test_proc_drbd_after_a_split_brain_shows_each_side_s_changes() -> None:
    (secondary,) = parse_proc_drbd(PROC_840_SECONDARY).values()
    primary = parse_proc_drbd(PROC_840_PRIMARY)[0]
    assert (secondary.connection, secondary.role, secondary.disk, secondary.peer_disk) == (
        "StandAlone", "Secondary", "UpToDate", "DUnknown")
    assert (secondary.out_of_sync_kib, primary.out_of_sync_kib) == (76, 100)
    assert primary.role == "Primary" and primary.synced_percent is None


def test_proc_drbd_during_a_resync_gives_percent_and_size_in_kib() -> None:
    target = parse_proc_drbd(PROC_8411_SYNC_TARGET)[0]
    assert (target.connection, target.disk, target.synced_percent) == (
        "SyncTarget", "Inconsistent", 3.1)
    assert target.resync_total_kib == 32764 * 1024  # printed in MiB
    devices = parse_proc_drbd(PROC_SYNC_SOURCE_AND_GAP)
    assert devices[1].resync_total_kib == 819200 and devices[1].synced_percent == 3.0
    assert devices[3].role == "Unconfigured"
    assert 2 not in devices


def test_generation_ids_and_kernel_lines() -> None:
    gi = parse_gi(_gi(A_NEW, PARTED, flags="1:1:1:0:0:0:0"))
    assert gi == GenerationIds(A_NEW, PARTED, ("0" * 16, "0" * 16), "1:1:1:0:0:0:0")
    assert parse_gi("Device has no disk\n") is None
    assert kernel_lines(KERNEL, 1) == [
        "[ 4021.118312] drbd db/0 drbd1: Split-Brain detected but unresolved, dropping connection!"]
    assert kernel_lines(KERNEL, 10)[0].endswith("(will sync 512 KB [128 bits set]).")


def _ids(current: str, bitmap: str = "0" * 16, h1: str = "0" * 16) -> GenerationIds:
    gi = parse_gi(_gi(current, bitmap, h1))
    assert gi is not None
    return gi


@pytest.mark.parametrize("a, b, split", [
    # Both promoted alone after parting: each has a new current, both bitmaps the old one.
    (_ids(A_NEW, PARTED), _ids(B_NEW, PARTED), True),
    # Only one side wrote: the other is still at the parting point, merely behind.
    (_ids(A_NEW, PARTED), _ids(PARTED), False),
    # DRBD's "was Primary" bit in the current identifier does not count.
    (_ids("8D5B1F2C3A4E6B79", PARTED), _ids("5A5B1F2C3A4E6B79"), False),
    (_ids(A_NEW), _ids(A_NEW), False),  # in sync
    (_ids(A_NEW, "0" * 16, PARTED), _ids(B_NEW, "0" * 16, PARTED), True),  # shared history
    (_ids(A_NEW), _ids(B_NEW), False),  # unrelated data: no common ancestor
    (_ids("0000000000000004"), _ids(B_NEW), False),  # fresh metadata
])
def test_split_brain_is_both_sides_changed_since_a_common_point(
        a: GenerationIds, b: GenerationIds, split: bool) -> None:
    assert sb.diverged(a, b) is split
    assert sb.diverged(b, a) is split


# -- fake boxes --------------------------------------------------------------------------


@dataclass
class Res:
    """One resource on one fake box."""

    minor: int
    role: str = "Secondary"
    connection: str = "Connected"
    disk: str = "UpToDate"
    peer_disk: str = "UpToDate"
    oos: int = 0
    gi: str = _gi(A_NEW, "0" * 16)
    discard: bool = False
    percent: float | None = None


RESOURCES = {"vm": ["vmstore", "db"], "backup": ["backup"]}  # the example's targets
VOLUMES = {f"{t}/{n}": v for t, vs in RESOURCES.items() for n, v in enumerate(vs)}


@dataclass
class FakeBox:
    """A box's DRBD as drbdadm, /proc/drbd and dmesg show it; it records each command."""

    name: str
    res: dict[str, Res]  # volume -> its DRBD state
    kernel: list[str] = field(default_factory=list)
    calls: list[list[str]] = field(default_factory=list)
    on_read: Callable[[], None] = lambda: None

    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0, env: Any = None) -> CommandResult:
        self.calls.append(list(argv))
        out, code = self._answer(argv)
        result = CommandResult(tuple(argv), code, out if code == 0 else "",
                               "" if code == 0 else out, 0.0)
        if check and code:
            raise command_failed(result)
        return result

    def _answer(self, argv: list[str]) -> tuple[str, int]:
        if argv == [DMESG]:
            return "".join(line + "\n" for line in self.kernel), 0
        assert argv[0] == DRBDADM, argv
        assert argv[-2] == "--", f"a name that could read as an option: {argv}"
        # RES/NUMBER names one volume, RES all of a target's volumes.
        volumes = [VOLUMES[argv[-1]]] if "/" in argv[-1] else RESOURCES[argv[-1]]
        rs = [self.res[v] for v in volumes]
        match argv[1:-2]:
            case ["get-gi"]:
                (r,) = rs
                return r.gi, 0
            case ["disconnect"]:
                if all(r.connection == "StandAlone" for r in rs):  # 8.4: no connection left
                    return ("r: Failure: (162) Invalid configuration request\n"
                            "additional info from kernel:\nunknown connection"), 10
                for r in rs:
                    r.connection = "StandAlone"
            case ["secondary"]:
                for r in rs:
                    r.role = "Secondary"
            case ["connect", *flags]:
                for r in rs:
                    r.connection, r.discard = "WFConnection", flags == ["--discard-my-data"]
            case _:
                raise AssertionError(f"unexpected {argv}")
        return "", 0

    def read(self, path: str) -> str:
        assert path == "/proc/drbd"
        self.on_read()
        text = "version: 8.4.11 (api:1/proto:86-101)\nsrcversion: DA6B55A41DED5E58CDBAB30\n"
        for r in sorted(self.res.values(), key=lambda r: r.minor):
            wire = "C" if r.connection not in ("StandAlone", "WFConnection") else " "
            peer = "Unknown" if wire == " " else ("Secondary" if r.role == "Primary"
                                                   else "Primary")
            text += (f"{r.minor:2d}: cs:{r.connection} ro:{r.role}/{peer} "
                     f"ds:{r.disk}/{r.peer_disk} {wire} r-----\n"
                     f"    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f "
                     f"oos:{r.oos}\n")
            if r.percent is not None:
                text += (f"\t[=========>..........] sync'ed: {r.percent:4.1f}% (2048/4096)K\n"
                         "\tfinish: 0:00:01 speed: 2,048 (2,048) want: 4,096 K/sec\n")
        return text

    def drbd_changes(self) -> list[list[str]]:
        """The commands that change DRBD (not the reads)."""
        return [[a for a in c[1:] if a != "--"] for c in self.calls
                if c[0] == DRBDADM and c[1] != "get-gi"]


class Pair:
    """DRBD's handshake between the two fake boxes: once both wait for each other, one
    side asking to discard its data resyncs from the other (one read mid-way); with no
    such side DRBD finds the split brain again and both drop the connection."""

    def __init__(self, a: FakeBox, b: FakeBox, volume: str, link_up: bool = True) -> None:
        self.a, self.b, self.volume, self.link_up = a, b, volume, link_up
        a.on_read = b.on_read = self.step

    def step(self) -> None:
        for volume in RESOURCES["vm"]:
            x, y = self.a.res[volume], self.b.res[volume]
            if x.connection == y.connection == "WFConnection" and self.link_up and x.gi == y.gi:
                # Never apart: connects whatever a side was told to discard.
                for r in (x, y):
                    r.connection, r.discard = "Connected", False
                    r.peer_disk = "UpToDate"
        x, y = self.a.res[self.volume], self.b.res[self.volume]
        if x.connection == y.connection == "WFConnection" and self.link_up:
            if x.discard == y.discard:
                x.connection = y.connection = "StandAlone"
                for box in (self.a, self.b):
                    box.kernel.append(f"[ 5000.000001] drbd {self.volume}/0 drbd{x.minor}: "
                                      "Split-Brain detected but unresolved, dropping "
                                      "connection!")
                return
            source, target, target_box = (y, x, self.a) if x.discard else (x, y, self.b)
            source.connection, target.connection = "SyncSource", "SyncTarget"
            target.disk = source.peer_disk = "Inconsistent"
            source.percent = target.percent = 50.0
            target_box.kernel.append(f"[ 5000.100000] drbd {self.volume}/0 drbd{x.minor}: "
                                     "Began resync as SyncTarget (will sync 4096 KB "
                                     "[1024 bits set]).")
        elif {x.connection, y.connection} == {"SyncSource", "SyncTarget"}:
            source, target = (x, y) if x.connection == "SyncSource" else (y, x)
            target.gi = source.gi  # the target takes on the source's history
            for r in (x, y):
                r.connection, r.disk, r.peer_disk, r.oos, r.percent = (
                    "Connected", "UpToDate", "UpToDate", 0, None)
                r.discard = False


CRM_MON = """<pacemaker-result api-version="2.30" request="crm_mon --one-shot --output-as=xml">
  <nodes>
    <node name="san-a" id="1" online="true" standby="false" type="member"/>
    <node name="san-b" id="2" online="true" standby="false" type="member"/>
  </nodes>
  <resources>
    {clones}
    <group id="target-vm" number_resources="2" maintenance="false" managed="true">
      <resource id="target-vm-ip0" resource_agent="ocf:iscsiha:address" role="Started">
        <node name="san-a" id="1" cached="true"/></resource>
      <resource id="target-vm-lio" resource_agent="ocf:iscsiha:target" role="Started">
        <node name="san-a" id="1" cached="true"/></resource>
    </group>
  </resources>
</pacemaker-result>"""
CLONE = """<clone id="drbd-{v}-clone" multi_state="true" unique="false" managed="true">
      <resource id="drbd-{v}" resource_agent="ocf:linbit:drbd" role="Promoted" active="true">
        <node name="san-a" id="1" cached="true"/></resource>
      <resource id="drbd-{v}" resource_agent="ocf:linbit:drbd" role="Unpromoted" active="true">
        <node name="san-b" id="2" cached="true"/></resource>
    </clone>"""


class FakePacemaker(Pacemaker):
    """Pacemaker's own update() over a CIB held here."""

    def __init__(self, cib: str) -> None:  # no runner: every call is answered here
        self.cib = cib
        self.patches: list[str] = []

    def query(self) -> str:
        return self.cib

    def status(self) -> str:
        return CRM_MON.format(clones="".join(CLONE.format(v=t) for t in RESOURCES))

    def patch(self, old: str, new: str) -> bool:
        assert old == self.cib
        self.patches.append(new)
        self.cib = new
        return True


@dataclass
class Cluster:
    pacemaker: FakePacemaker
    boxes: Boxes
    a: FakeBox
    b: FakeBox
    pair: Pair
    progress: list[str] = field(default_factory=list)

    @property
    def env(self) -> ClusterEnv:
        return fake_env(self.pacemaker, self.boxes)


def _cluster(db_b: Res | None = None, maintenance: bool = False) -> Cluster:
    """The example's cluster; db in split brain: san-a Primary and serving target vm,
    san-b Secondary; both StandAlone, each with its own changes."""
    cib = make_plan(load_data(tomllib.loads(EXAMPLE.read_text()))).cib
    if maintenance:
        cib = cib.replace('<clone id="drbd-vm-clone">', '<clone id="drbd-vm-clone">'
                          '<meta_attributes id="m"><nvpair id="m-m" name="maintenance" '
                          'value="true"/></meta_attributes>')
        assert 'name="maintenance"' in cib
    # vmstore shares target vm's DRBD resource, so its connection too; it was not
    # written while apart.
    a = FakeBox("san-a", {"backup": Res(2), "vmstore": Res(
        0, "Primary", "StandAlone", "UpToDate", "DUnknown"), "db": Res(
        1, "Primary", "StandAlone", "UpToDate", "DUnknown", oos=1024,
        gi=_gi(A_NEW, PARTED, flags="1:1:1:0:0:0:0"))},
        kernel=["[ 4021.118312] drbd db/0 drbd1: Split-Brain detected but unresolved, "
                "dropping connection!"])
    b = FakeBox("san-b", {
        "backup": Res(2), "vmstore": Res(0, "Secondary", "StandAlone", "UpToDate", "DUnknown"),
        "db": db_b or Res(1, "Secondary", "StandAlone", "UpToDate", "DUnknown", oos=3072,
                          gi=_gi(B_NEW, PARTED))},
                kernel=["[ 4021.120001] drbd db/0 drbd1: Split-Brain detected but unresolved, "
                        "dropping connection!"])
    pacemaker = FakePacemaker(f'<cib admin_epoch="0" epoch="7" num_updates="12">{cib}</cib>')
    return Cluster(pacemaker, fake_boxes(a, b), a, b, Pair(a, b, "db"))


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    yield _cluster()


def _codes(exc: pytest.ExceptionInfo[IscsihaError]) -> list[str]:
    return [r.code for r in exc.value.reports]


# -- finding ------------------------------------------------------------------------------


def test_the_survey_finds_the_volume_in_split_brain_and_shows_both_sides(
        cluster: Cluster) -> None:
    states = sb.survey(cluster.env)
    assert [s.name for s in states if s.split_brain] == ["db"]
    db = next(s for s in states if s.name == "db")
    a, b = db.sides
    assert (a.node, a.drbd.role, a.cluster_role, a.serves, a.drbd.out_of_sync_kib) == (
        "san-a", "Primary", "Promoted", ("vm",), 1024)
    assert (b.node, b.drbd.role, b.cluster_role, b.serves, b.drbd.out_of_sync_kib) == (
        "san-b", "Secondary", "Unpromoted", (), 3072)
    text = views.split_brain_text(db)
    assert "SPLIT BRAIN" in text and "3.0 MiB" in text and f"{B_NEW}:{PARTED}" in text
    assert "kernel on san-b: [ 4021.120001] drbd db/0 drbd1: Split-Brain detected" in text
    assert "to keep san-a's data: `iscsiha split-brain db --discard san-b`" in text
    # Keeping san-b's data needs the target there first.
    assert "first move the target to san-b (`iscsiha target move vm san-b`" in text
    # Nothing was changed by looking.
    assert cluster.a.drbd_changes() == cluster.b.drbd_changes() == []
    assert cluster.pacemaker.patches == []


def test_listing_says_so_when_no_volume_is_in_split_brain(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calm = _cluster(db_b=Res(1))
    calm.a.res["db"] = Res(1, "Primary")
    calm.a.res["vmstore"], calm.b.res["vmstore"] = Res(0, "Primary"), Res(0)
    monkeypatch.setattr(cli, "_split_brain_env", lambda: calm.env)
    assert cli.main(["split-brain"]) == 0
    assert capsys.readouterr().out == "no volume is in split brain (3 checked on san-a and san-b)\n"


# -- refusals -----------------------------------------------------------------------------


def test_a_volume_not_in_split_brain_is_refused_naming_its_state(cluster: Cluster) -> None:
    with pytest.raises(IscsihaError) as exc:
        sb.resolve(cluster.env, "backup", "san-b", cluster.progress.append)
    (report,) = exc.value.reports
    assert (report.code, report.value) == ("not-in-split-brain", "backup")
    assert "san-b: Secondary, Connected, UpToDate" in report.message
    assert cluster.b.drbd_changes() == [] and cluster.pacemaker.patches == []


def test_an_unknown_node_or_volume_is_refused(cluster: Cluster) -> None:
    with pytest.raises(IscsihaError) as exc:
        sb.resolve(cluster.env, "db", "san-z", cluster.progress.append)
    (report,) = exc.value.reports
    assert (report.code, report.value, report.allowed) == ("unknown-node", "san-z",
                                                            "san-a or san-b")
    with pytest.raises(IscsihaError) as exc:
        sb.resolve(cluster.env, "nosuch", "san-b", cluster.progress.append)
    assert _codes(exc) == ["unknown-volume"]
    assert exc.value.reports[0].allowed == "backup, db, vmstore"


def test_discarding_the_primary_serving_a_target_is_refused_with_the_way_out(
        cluster: Cluster) -> None:
    with pytest.raises(IscsihaError) as exc:
        sb.resolve(cluster.env, "db", "san-a", cluster.progress.append)
    (report,) = exc.value.reports
    assert (report.code, report.value) == ("discard-side-active", "san-a")
    assert "Primary, promoted by the cluster, serving target vm on san-a" in report.message
    assert "`iscsiha target move vm san-b`" in report.message
    assert report.allowed.startswith("--discard san-b")
    assert cluster.a.drbd_changes() == [] and cluster.pacemaker.patches == []


# -- the procedure ------------------------------------------------------------------------


def test_discarding_runs_drbd_s_recovery_on_each_side_and_waits_for_the_resync(
        cluster: Cluster) -> None:
    result = sb.resolve(cluster.env, "db", "san-b", cluster.progress.append)
    # The discarded side was already StandAlone: 8.4 has no connection to drop there.
    assert cluster.b.drbd_changes() == [["secondary", "vm"],
                                        ["connect", "--discard-my-data", "vm"]]
    assert cluster.a.drbd_changes() == [["connect", "vm"]]
    assert result.commands == {"san-b": ["drbdadm secondary vm",
                                         "drbdadm connect --discard-my-data vm"],
                               "san-a": ["drbdadm connect vm"]}
    for box in (cluster.a, cluster.b):
        db = box.res["db"]
        assert (db.connection, db.disk, db.peer_disk) == ("Connected", "UpToDate", "UpToDate")
    assert cluster.a.res["db"].role == "Primary"
    # DRBD recovers the target's resource as a whole: its other volume connects too.
    assert cluster.b.res["vmstore"].connection == "Connected"
    assert (result.kept, result.discarded, result.resynced_kib) == ("san-a", "san-b", 4096)
    assert "resyncing db from san-a to san-b: 50.0%" in cluster.progress
    assert "resynced 4096 KiB (4.0 MiB) in " in views.resolution_text(result)


def test_pacemaker_leaves_the_clone_alone_during_the_procedure_and_gets_it_back(
        cluster: Cluster) -> None:
    sb.resolve(cluster.env, "db", "san-b", cluster.progress.append)
    held, released = (ET.fromstring(p) for p in cluster.pacemaker.patches)
    assert _meta(held, "drbd-vm-clone")["maintenance"] == "true"
    assert "maintenance" not in _meta(released, "drbd-vm-clone")
    assert [c.get("epoch") for c in (held, released)] == ["8", "9"]  # each a config change
    # Only that clone: every other resource stays in Pacemaker's hands.
    assert [c.get("id") for c in held.iter("clone") if "maintenance" in _meta(held, c.get(
        "id", ""))] == ["drbd-vm-clone"]


def _meta(cib: ET.Element, clone: str) -> dict[str, str]:
    el = cib.find(f".//clone[@id='{clone}']")
    assert el is not None
    return {nv.get("name", ""): nv.get("value", "")
            for meta in el.findall("meta_attributes") for nv in meta}


def test_a_clone_already_in_maintenance_is_left_as_it_is() -> None:
    cluster = _cluster(maintenance=True)
    result = sb.resolve(cluster.env, "db", "san-b", cluster.progress.append)
    assert cluster.pacemaker.patches == []
    assert result.held_by == "drbd-vm-clone was already left alone by Pacemaker"


def test_a_discarded_side_still_waiting_for_its_peer_is_disconnected_first() -> None:
    cluster = _cluster(db_b=Res(1, "Secondary", "WFConnection", "UpToDate", "DUnknown",
                                oos=3072, gi=_gi(B_NEW, PARTED)))
    sb.resolve(cluster.env, "db", "san-b", cluster.progress.append)
    assert cluster.b.drbd_changes() == [["disconnect", "vm"], ["secondary", "vm"],
                                        ["connect", "--discard-my-data", "vm"]]


def test_the_discard_step_checks_again_when_it_runs(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    # san-b got promoted between the checks and the step: it refuses, nothing changes.
    patch = cluster.pacemaker.patch

    def promoted_meanwhile(old: str, new: str) -> bool:
        cluster.b.res["db"].role = "Primary"
        return patch(old, new)

    monkeypatch.setattr(cluster.pacemaker, "patch", promoted_meanwhile)
    with pytest.raises(IscsihaError) as exc:
        sb.resolve(cluster.env, "db", "san-b", cluster.progress.append)
    assert _codes(exc) == ["discard-side-not-secondary"]
    assert cluster.b.drbd_changes() == cluster.a.drbd_changes() == []
    assert 'name="maintenance"' not in cluster.pacemaker.cib


def test_when_drbd_drops_the_connection_again_it_says_so_and_releases_the_clone(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    # The discard flag never reaches DRBD: the handshake finds the split brain again.
    monkeypatch.setattr(Drbd, "connect",
                        lambda self, res, discard_my_data=False: self._runner.run(
                            [DRBDADM, "connect", "--", res]))
    with pytest.raises(IscsihaError) as exc:
        sb.resolve(cluster.env, "db", "san-b", cluster.progress.append)
    assert _codes(exc) == ["split-brain-not-resolved", "partly-applied"]
    assert "Split-Brain detected but unresolved" in exc.value.reports[0].message
    assert "ran on san-b: drbdadm secondary vm" in exc.value.reports[1].message
    assert len(cluster.pacemaker.patches) == 2  # held, then handed back anyway
    assert 'name="maintenance"' not in cluster.pacemaker.cib


def test_the_wait_is_bounded(cluster: Cluster) -> None:
    cluster.pair.link_up = False  # the replication link is down: never connects
    with pytest.raises(IscsihaError) as exc:
        sb.resolve(cluster.env, "db", "san-b", cluster.progress.append, timeout=0)
    assert _codes(exc) == ["resync-not-finished", "partly-applied"]
    assert "still WFConnection, UpToDate on san-b" in exc.value.reports[0].message
    assert 'name="maintenance"' not in cluster.pacemaker.cib


# -- the command line ---------------------------------------------------------------------


def _cli(cluster: Cluster, monkeypatch: pytest.MonkeyPatch, answer: str | None) -> None:
    monkeypatch.setattr(cli, "_split_brain_env", lambda: cluster.env)

    def typed(prompt: str) -> str:
        assert answer is not None, "asked although --yes was given"
        if answer == "EOF":
            raise EOFError
        return answer

    monkeypatch.setattr("builtins.input", typed)


@pytest.mark.parametrize("answer", ["backup", "", "EOF"])
def test_without_the_typed_volume_name_nothing_changes(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], answer: str) -> None:
    _cli(cluster, monkeypatch, answer)
    assert cli.main(["split-brain", "db", "--discard", "san-b"]) == 1
    out, err = capsys.readouterr()
    assert "SPLIT BRAIN" in out and "throws away every change san-b made to db" in out
    assert "not-confirmed" in err and "nothing was applied" in err
    assert cluster.b.drbd_changes() == [] and cluster.pacemaker.patches == []


def test_typing_the_volume_name_goes_on_and_reports_the_resync(
        cluster: Cluster, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _cli(cluster, monkeypatch, "db")
    assert cli.main(["split-brain", "db", "--discard", "san-b", "--timeout", "5"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith(
        "split brain on db resolved: kept san-a's data, discarded san-b's changes; "
        "resynced 4096 KiB (4.0 MiB) in ")


def test_yes_skips_the_question(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    _cli(cluster, monkeypatch, None)
    assert cli.main(["split-brain", "db", "--discard", "san-b", "--yes"]) == 0
    assert cluster.b.res["db"].connection == "Connected"


@pytest.mark.parametrize("argv", [["split-brain", "--discard", "san-b"],
                                  ["split-brain", "db", "--yes"]])
def test_discard_needs_a_volume_and_yes_needs_discard(argv: list[str]) -> None:
    assert cli.main(argv) == 2
