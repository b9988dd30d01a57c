"""`iscsiha status` and the console's health: what the CIB, crm_mon and /proc/drbd say."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pytest

from iscsiha.commands.targets import TargetStatus, VolumeStatus, live_status, status
from iscsiha.errors import IscsihaError
from iscsiha.executors.drbd import ProcDevice, parse_proc_drbd
from iscsiha.status_report import Health, as_json, assess
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


# -- the verdict for monitoring and `status --json` -----------------------------------------

CONNECTED = parse_proc_drbd(
    "version: 8.4.11 (api:1/proto:86-101)\n"
    " 3: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----\n"
    "    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n")
PEER_GONE = parse_proc_drbd(
    "version: 8.4.11 (api:1/proto:86-101)\n"
    " 3: cs:WFConnection ro:Primary/Unknown ds:UpToDate/DUnknown C r-----\n"
    "    ns:0 nr:0 dw:4096 dr:0 al:1 bm:1 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:4096\n")


def test_a_healthy_pair_exits_0_with_no_reasons() -> None:
    state = status(FakePacemaker(mon()), CONNECTED)  # type: ignore[arg-type]
    assert assess(state) == (Health.HEALTHY, ())


def test_an_offline_box_after_a_failover_is_degraded_not_down() -> None:
    offline = mon().replace('<node name="san-b" online="true"/>',
                            '<node name="san-b" online="false"/>')
    state = status(FakePacemaker(offline), PEER_GONE)  # type: ignore[arg-type]
    health, reasons = assess(state)
    assert health is Health.DEGRADED and health.value == 1
    assert reasons == ("node san-b is offline",
                       "volume db is not replicated (WFConnection, UpToDate/DUnknown)")


def test_a_stopped_target_or_no_quorum_is_not_serving_and_lists_the_rest_too() -> None:
    stopped = mon('present="true" with_quorum="false"', fence_b="Stopped").replace(
        '<resource id="target-vm-lio" role="Started"><node name="san-a"/>\n  </resource>', "")
    state = status(FakePacemaker(stopped), parse_proc_drbd(RESYNC))  # type: ignore[arg-type]
    health, reasons = assess(state)
    assert health is Health.NOT_SERVING and health.value == 2
    assert reasons == ("this box's side has no quorum", "target vm is stopped",
                       "fencing is not ready (fence-san-b stopped)",
                       "volume db is resyncing (SyncSource, 25.0%)")


def test_the_json_says_what_the_text_says_with_its_schema() -> None:
    state = status(FakePacemaker(mon(fence_b_failure_ignored="true")),  # type: ignore[arg-type]
                   PEER_GONE)
    out = json.loads(json.dumps(as_json(state)))
    assert (out["schema"], out["health"], out["exit_code"]) == (1, "degraded", 1)
    assert out["reasons"] == ["fencing is not ready (fence-san-b failing its monitor)",
                              "volume db is not replicated (WFConnection, UpToDate/DUnknown)"]
    assert out["fencing"]["devices"][1] == {"name": "fence-san-b", "running_on": "san-a",
                                            "failing": True}
    assert out["targets"] == [{"name": "vm", "iqn": "iqn.2026-11.com.example:vm",
                               "running_on": ["san-a"], "preferred_node": None,
                               "failback": "manual", "healthy": True, "sessions": None}]
    (volume,) = out["volumes"]
    assert volume["roles"] == [{"node": "san-a", "role": "Promoted"},
                               {"node": "san-b", "role": "Unpromoted"}]
    assert volume["replication"]["out_of_sync_bytes"] == 4096 * 1024


def test_status_exits_with_the_verdict_and_3_when_the_cluster_cannot_be_asked(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from iscsiha.cli import main as cli
    from iscsiha.commands import targets as targets_cmd
    monkeypatch.setattr(cli, "real_env", lambda: "env")
    monkeypatch.setattr(targets_cmd, "live_status", lambda env, sessions: status(
        FakePacemaker(mon('present="true" with_quorum="false"'))))  # type: ignore[arg-type]
    assert cli.main(["status"]) == 2
    assert "health  NOT-SERVING\n  - this box's side has no quorum" in capsys.readouterr().out

    def unreachable(env: object, sessions: bool) -> None:
        raise IscsihaError.single("step-failed", "command", "crm_mon", "an answer",
                                  "could not connect")

    monkeypatch.setattr(targets_cmd, "live_status", unreachable)
    assert cli.main(["status", "--json"]) == 3
    out = json.loads(capsys.readouterr().out)
    assert out["health"] == "unknown" and "could not connect" in out["reasons"][0]


def test_a_target_split_over_both_boxes_is_not_serving() -> None:
    split = mon().replace('<resource id="target-vm-lio" role="Started"><node name="san-a"/>',
                          '<resource id="target-vm-lio" role="Started"><node name="san-a"/>'
                          '<node name="san-b"/>')
    health, reasons = assess(status(FakePacemaker(split), CONNECTED))  # type: ignore[arg-type]
    assert health is Health.NOT_SERVING
    assert reasons == ("target vm runs on san-a and san-b at once",)
