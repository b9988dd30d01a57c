"""`iscsiha status` and the console's health: what the CIB, crm_mon and /proc/drbd say."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from iscsiha.commands.targets import TargetStatus, VolumeStatus, live_status, status
from iscsiha.errors import IscsihaError
from iscsiha.executors.drbd import ProcDevice, parse_proc_drbd
from iscsiha.views import replicating, replication_text, sessions_text, status_lines
from tests.unit.env_fakes import fake_env

CIB = """<cib><configuration><crm_config><cluster_property_set id="o">
  <nvpair id="o-s" name="stonith-enabled" value="true"/></cluster_property_set></crm_config>
<resources>
  <primitive id="fence-san-a" class="stonith" type="fence_ipmilan"/>
  <primitive id="fence-san-b" class="stonith" type="fence_ipmilan"/>
  <clone id="drbd-vm-clone"><primitive id="drbd-vm" class="ocf" provider="linbit" type="drbd">
    <instance_attributes id="p"><nvpair id="p1" name="drbd_resource" value="vm"/>
    </instance_attributes><meta_attributes id="m">
    <nvpair id="m1" name="iscsiha-drbd-volumes" value="db:0:3"/>
    <nvpair id="m2" name="iscsiha-drbd-port" value="7792"/></meta_attributes></primitive></clone>
  <group id="target-vm"><primitive id="target-vm-lio" class="ocf" provider="iscsiha"
    type="target"><instance_attributes id="t"><nvpair id="t1" name="iqn"
    value="iqn.2026-11.com.example:vm"/></instance_attributes></primitive></group>
</resources><constraints/></configuration></cib>"""


def mon(quorum: str = 'present="true" with_quorum="true"', fence_b: str = "Started",
        fence_b_failure_ignored: str = "false") -> str:
    return f"""<pacemaker-result><summary><current_dc {quorum}/></summary><nodes>
  <node name="san-a" online="true"/><node name="san-b" online="true"/></nodes><resources>
  <resource id="fence-san-a" role="Started" failure_ignored="false"><node name="san-b"/>
  </resource>
  <resource id="fence-san-b" role="{fence_b}" failure_ignored="{fence_b_failure_ignored}">
  <node name="san-a"/></resource>
  <clone id="drbd-vm-clone">
    <resource id="drbd-vm" role="Promoted"><node name="san-a"/></resource>
    <resource id="drbd-vm" role="Unpromoted"><node name="san-b"/></resource></clone>
  <group id="target-vm"><resource id="target-vm-lio" role="Started"><node name="san-a"/>
  </resource></group></resources></pacemaker-result>"""


class FakePacemaker:
    def __init__(self, status_xml: str) -> None:
        self.status_xml = status_xml

    def query(self) -> str:
        return CIB

    def status(self) -> str:
        return self.status_xml


RESYNC = """version: 8.4.11 (api:1/proto:86-101)
 3: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----
    ns:1024 nr:0 dw:2048 dr:4096 al:1 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:34816
\t[====>...............] sync'ed: 25.0% (34816/46080)K
\tfinish: 0:01:23 speed: 2,048 (2,048) want: 4,096 K/sec
"""


def test_quorum_fencing_replication_and_sessions_are_read() -> None:
    asked: list[tuple[str, tuple[str, ...]]] = []

    def sessions(node: str, iqns: Sequence[str]) -> Mapping[str, Sequence[str]]:
        asked.append((node, tuple(iqns)))
        return {"iqn.2026-11.com.example:vm": ["iqn.1993-08.org.debian:01:hv1"]}

    state = status(FakePacemaker(mon()), parse_proc_drbd(RESYNC), sessions)  # type: ignore[arg-type]
    assert state.quorate is True
    assert state.fencing is not None and state.fencing.ready
    assert state.fencing.devices == (("fence-san-a", "san-b"), ("fence-san-b", "san-a"))
    (target,) = state.targets
    assert target.sessions == ("iqn.1993-08.org.debian:01:hv1",)
    assert asked == [("san-a", ("iqn.2026-11.com.example:vm",))]  # the box serving it
    (volume,) = state.volumes
    assert volume.drbd is not None and volume.drbd.connection == "SyncSource"
    assert replication_text(volume) == "SyncSource, UpToDate/Inconsistent, synced 25.0%, 1:23 left"
    assert replicating(volume) is False


def test_no_quorum_and_a_stopped_fence_device_are_not_healthy() -> None:
    state = status(FakePacemaker(mon('present="true" with_quorum="false"',  # type: ignore[arg-type]
                                     fence_b="Stopped")))
    assert state.quorate is False
    assert state.fencing is not None and not state.fencing.ready
    lines = status_lines(state)
    assert "cluster NO QUORUM" in lines
    assert "fencing NOT READY: fence-san-a on san-b, fence-san-b STOPPED" in lines


def test_a_fence_device_whose_monitor_failed_is_not_ready() -> None:
    # Its monitor runs with on-fail=ignore: crm_mon keeps it started, flagged.
    state = status(FakePacemaker(mon(fence_b_failure_ignored="true")))  # type: ignore[arg-type]
    assert state.fencing is not None and not state.fencing.ready
    assert ("fencing NOT READY: fence-san-a on san-b, fence-san-b on san-a FAILING "
            "(its monitor failed)") in status_lines(state)


def test_without_a_dc_quorum_is_unknown() -> None:
    state = status(FakePacemaker(mon('present="false"')))  # type: ignore[arg-type]
    assert state.quorate is None
    assert "cluster no DC elected yet" in status_lines(state)


def test_a_box_that_cannot_tell_its_sessions_leaves_them_unknown() -> None:
    def sessions(node: str, iqns: Sequence[str]) -> Mapping[str, Sequence[str]]:
        raise IscsihaError.single("step-failed", "node", node, "an answer", "ssh failed")

    state = status(FakePacemaker(mon()), None, sessions)  # type: ignore[arg-type]
    assert state.targets[0].sessions is None
    assert state.volumes[0].drbd is None


def test_status_lines_keep_the_target_words_scripts_read() -> None:
    state = status(FakePacemaker(mon()), parse_proc_drbd(RESYNC),  # type: ignore[arg-type]
                   lambda node, iqns: {iqns[0]: []})
    target_line = next(line for line in status_lines(state) if line.startswith("target"))
    assert target_line.split()[:4] == ["target", "vm", "on", "san-a"]
    assert target_line.endswith(", no sessions")


@pytest.mark.parametrize(("sessions", "shown"), [
    (None, ""), ((), "; no sessions"), (("a",), "; 1 session (a)"),
    (("a", "b"), "; 2 sessions (a, b)")])
def test_sessions_text(sessions: tuple[str, ...] | None, shown: str) -> None:
    target = TargetStatus("vm", "iqn", ("san-a",), "san-a", "manual", True, sessions)
    assert sessions_text(target, "; ") == shown


def test_a_connected_up_to_date_volume_replicates() -> None:
    dev = ProcDevice("Connected", "Primary", "Secondary", "UpToDate", "UpToDate", 0)
    volume = VolumeStatus("db", (), dev)
    assert replicating(volume) is True
    assert replication_text(volume) == "Connected, UpToDate/UpToDate"
    assert replicating(VolumeStatus("db", ())) is None


def test_live_status_without_drbd_loaded_still_reports() -> None:
    class NoDrbd:
        def proc(self) -> dict[int, ProcDevice]:
            raise IscsihaError.single("unreadable-file", "file", "/proc/drbd", "readable", "gone")

    state = live_status(fake_env(FakePacemaker(mon()), drbd=NoDrbd()))
    assert state.volumes[0].drbd is None and state.targets[0].sessions is None
