"""iscsiha-alert: Pacemaker's environment checked, events classified, each reported by
one box, formatted per recipient kind, sent in parallel within a deadline."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from iscsiha.alerts import agent, pacemaker, send, space
from iscsiha.alerts import config as alert_settings
from iscsiha.alerts.events import KINDS, Event, make_event
from iscsiha.alerts.run import World
from iscsiha.errors import Secret
from iscsiha.executors.runner import CommandResult, Runner
from iscsiha.model.load import load_text
from iscsiha.model.types import HostPort, Recipient, RecipientKind
from iscsiha.plan.cib import ALERT_TIMESTAMP_FORMAT
from tests.conftest import EXAMPLE

ALERTS_EXAMPLE = EXAMPLE.parent / "alerts.toml"


def env(**values: str) -> dict[str, str]:
    return {f"CRM_alert_{k}": v for k, v in values.items()}


NODE_LOST = env(kind="node", node="san-b", desc="lost", nodeid="2",
                timestamp="2026-12-06T21:40:03.512345+0000", recipient="")
# What Pacemaker 3 sends (seen in the lab): the action only in the description.
FENCED = env(kind="fencing", node="san-b", task="st_notify_fence", rc="0",
             desc="Operation off of san-b by san-a for pacemaker-controld.981@san-a: OK",
             timestamp="2026-12-06T21:40:09.000001+0000")


def resource(rsc: str, task: str, rc: str = "0", target_rc: str = "0", status: str = "0",
             interval: str = "0") -> dict[str, str]:
    return env(kind="resource", node="san-a", rsc=rsc, task=task, rc=rc, target_rc=target_rc,
               status=status, interval=interval, desc="ok",
               timestamp="2026-12-06T21:40:12.000000+0000")


def box(name: str, dc: bool = True, quorate: bool | None = True) -> pacemaker.Box:
    return pacemaker.Box(name, lambda: dc, lambda: quorate)


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


# -- the environment ---------------------------------------------------------------------

def test_the_plans_timestamp_format_is_the_one_the_agent_reads() -> None:
    assert ALERT_TIMESTAMP_FORMAT.replace("%06N", "%f") == pacemaker.TIMESTAMP_FORMAT
    alert = pacemaker.parse_env(NODE_LOST)
    assert alert.timestamp == "2026-12-06T21:40:03.512345+00:00"


@pytest.mark.parametrize(("change", "named"), [
    ({"kind": "nodes"}, "CRM_alert_kind"),
    ({"kind": ""}, "CRM_alert_kind"),
    ({"node": "san-b\nrm -rf /"}, "CRM_alert_node"),
    ({"node": "x" * 5000}, "CRM_alert_node"),
    ({"kind": "fencing", "task": "off;reboot", "rc": "0"}, "CRM_alert_task"),
    ({"kind": "fencing", "task": "off", "rc": "zero"}, "CRM_alert_rc"),
    ({"kind": "fencing", "task": "off", "rc": "99999999999999999999"}, "CRM_alert_rc"),
    ({"kind": "resource", "task": "start", "rc": "0", "rsc": "../../etc",
      "interval": "0", "target_rc": "0", "status": "0"}, "CRM_alert_rsc"),
    ({"kind": "resource", "task": "start", "rc": "0", "rsc": "target-vm-lio",
      "interval": "-5", "target_rc": "0", "status": "0"}, "CRM_alert_interval"),
])
def test_a_hostile_or_broken_variable_is_refused_naming_it(change: dict[str, str],
                                                           named: str) -> None:
    with pytest.raises(pacemaker.AlertInputError, match=named):
        pacemaker.parse_env({**NODE_LOST, **env(**change)})


def test_a_timestamp_in_another_format_falls_back_to_the_agents_clock() -> None:
    alert = pacemaker.parse_env({**NODE_LOST, **env(timestamp="21:40:03; DROP TABLE")})
    assert alert.timestamp is None
    (event,) = pacemaker.events_for(alert, box("san-a"))
    assert event.time.startswith(time.strftime("%Y-"))


def test_a_description_with_control_characters_is_kept_on_one_printable_line() -> None:
    alert = pacemaker.parse_env({**FENCED, **env(desc="OK\r\nSubject: spoofed\x00")})
    (event,) = pacemaker.events_for(alert, box("san-a"))
    assert event.details["description"] == "OK??Subject: spoofed?"


# -- which box reports which event (each once) ----------------------------------------------

def test_a_lost_box_is_reported_by_the_survivor_only() -> None:
    alert = pacemaker.parse_env(NODE_LOST)
    assert kinds(pacemaker.events_for(alert, box("san-a"))) == ["node-lost"]
    assert pacemaker.events_for(alert, box("san-b")) == []
    assert pacemaker.may_report(alert, "san-a") and not pacemaker.may_report(alert, "san-b")


def test_a_survivor_without_quorum_reports_that_too() -> None:
    alert = pacemaker.parse_env(NODE_LOST)
    (event,) = pacemaker.quorum_events(alert, box("san-a", quorate=False))
    assert (event.kind, event.details) == ("quorum-lost", {"after": "box san-b was lost"})
    # Unknown (no DC yet at the deadline) is not reported as lost; a quorate side is fine.
    assert pacemaker.quorum_events(alert, box("san-a", quorate=None)) == []
    assert pacemaker.quorum_events(alert, box("san-a", quorate=True)) == []
    joined = pacemaker.parse_env({**NODE_LOST, **env(desc="member")})
    assert pacemaker.quorum_events(joined, box("san-a", quorate=False)) == []


def test_a_joining_box_is_reported_by_the_dc_only() -> None:
    joined = pacemaker.parse_env({**NODE_LOST, **env(desc="member")})
    assert kinds(pacemaker.events_for(joined, box("san-a", dc=True))) == ["node-member"]
    # The joining box sees the DC "join" too, and itself: no news from it.
    assert pacemaker.events_for(joined, box("san-c", dc=False)) == []
    assert pacemaker.events_for(joined, box("san-b", dc=True)) == []


def test_fencing_is_reported_by_the_box_that_is_not_the_target() -> None:
    alert = pacemaker.parse_env(FENCED)
    (event,) = pacemaker.events_for(alert, box("san-a"))
    assert (event.kind, event.severity.value, event.summary) == (
        "fenced", "critical", "box san-b was fenced (off)")
    assert pacemaker.events_for(alert, box("san-b")) == []
    failed = pacemaker.parse_env({**FENCED, **env(rc="-62")})
    assert kinds(pacemaker.events_for(failed, box("san-a"))) == ["fence-failed"]


@pytest.mark.parametrize(("alert", "expected"), [
    (resource("target-vm-lio", "start"), ["target-started"]),
    (resource("target-vm-lio", "stop"), ["target-stopped"]),
    (resource("target-vm-lio", "start", rc="1"), ["resource-failed"]),
    (resource("drbd-vm:1", "promote", status="2"), ["resource-failed"]),  # timed out
    (resource("target-vm-lio", "monitor", rc="7", interval="10000"), ["resource-failed"]),
    (resource("target-vm-lio", "monitor", rc="7", target_rc="7"), []),  # a probe, as expected
    (resource("drbd-vm:0", "promote"), []),  # the target's start tells the move
    # A recurring monitor cancelled (demote, stop, move: every failover) or still running.
    (resource("drbd-vm:0", "monitor", status="1", interval="31000"), []),
    (resource("target-vm-lio", "start", status="-1"), []),
    (resource("target-vm-ip0", "start"), []),
    (resource("fence-san-b", "start"), []),
])
def test_resource_results_become_failures_and_target_moves(alert: dict[str, str],
                                                           expected: list[str]) -> None:
    parsed = pacemaker.parse_env(alert)
    got = pacemaker.events_for(parsed, box("san-a"))
    assert kinds(got) == expected
    # The cheap first test lets through exactly what may be reported.
    assert pacemaker.may_report(parsed, "san-a") == bool(expected)
    if expected == ["target-started"]:
        assert got[0].details["target"] == "vm"
        assert got[0].summary == "target vm started on san-a (a failover or a move)"


# -- the whole agent, both boxes given the same event -------------------------------------

class Fakes:
    """Both boxes' worlds: what each journaled and what each recipient got."""

    def __init__(self, tmp_path: Path, settings: str) -> None:
        self.path = tmp_path / "alerts.json"
        self.path.write_text(settings)
        self.journaled: list[tuple[str, str]] = []
        self.sent: list[tuple[str, str, str]] = []

    def world(self, name: str) -> World:
        def record(event: Event, r: Recipient, timeout: float) -> None:
            self.sent.append((name, r.name, event.kind))

        return World(NoCommands(), hostname=lambda: name,
                           settings_path=str(self.path),
                           space_state_path=str(self.path.parent / f"space-{name}.json"),
                           read_bytes=lambda p: Path(p).read_bytes() if Path(p).exists()
                           else None,
                           journal=lambda e: self.journaled.append((name, e.kind)),
                           senders=dict.fromkeys(RecipientKind, record), quorum_wait_s=0)


class NoCommands(Runner):
    """crm_mon says san-a is the DC with quorum; vgs says data is 90 % full."""

    vg_free = "100"
    quorum = "true"

    def run(self, argv: Any, **kwargs: Any) -> CommandResult:
        if argv[0].endswith("crm_mon"):
            out = ('<crm_mon><summary><current_dc present="true" name="san-a" '
                   f'with_quorum="{self.quorum}"/></summary></crm_mon>')
        elif argv[0].endswith("vgs"):
            out = f"  1000 {self.vg_free}\n"
        else:
            raise AssertionError(argv)
        return CommandResult(tuple(argv), 0, out, "", 0.0)


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    config = load_text(EXAMPLE.read_text() + "\n" + ALERTS_EXAMPLE.read_text())
    return Fakes(tmp_path, alert_settings.file_text(config))


@pytest.mark.parametrize("alert", [NODE_LOST, FENCED, {**NODE_LOST, **env(desc="member")}])
def test_an_event_both_boxes_see_reaches_each_recipient_once(fakes: Fakes,
                                                             alert: dict[str, str]) -> None:
    for name in ("san-a", "san-b"):
        assert agent.main([], alert, fakes.world(name)) == 0
    assert len(fakes.journaled) == 1
    assert sorted(r for _, r, _ in fakes.sent) == ["chatops", "loghost", "nms", "ops-mail"]


def test_a_box_whose_side_lost_quorum_tells_it_after_the_lost_box(fakes: Fakes) -> None:
    world = fakes.world("san-a")
    assert isinstance(world.runner, NoCommands)
    world.runner.quorum = "false"
    assert agent.main([], NODE_LOST, world) == 0
    assert fakes.journaled == [("san-a", "node-lost"), ("san-a", "quorum-lost")]


def test_bad_input_ends_in_a_message_and_status_1_never_a_traceback(
        fakes: Fakes, capsys: pytest.CaptureFixture[str]) -> None:
    assert agent.main([], {**NODE_LOST, **env(node="a b")}, fakes.world("san-a")) == 1
    assert "CRM_alert_node" in capsys.readouterr().err
    assert fakes.sent == []


def test_a_damaged_settings_file_still_journals_the_event(
        fakes: Fakes, capsys: pytest.CaptureFixture[str]) -> None:
    fakes.path.write_text('{"nodes": ["san-a"], "alerts": 1, "volume_groups": []}')
    assert agent.main([], NODE_LOST, fakes.world("san-a")) == 1
    assert fakes.journaled == [("san-a", "node-lost")] and fakes.sent == []
    assert "alerts.json" in capsys.readouterr().err


def test_without_settings_events_reach_the_journal_only(fakes: Fakes) -> None:
    fakes.path.unlink()
    assert agent.main([], NODE_LOST, fakes.world("san-a")) == 0
    assert fakes.journaled == [("san-a", "node-lost")] and fakes.sent == []


# -- events from the command line -----------------------------------------------------------

def test_the_verify_timers_contract_is_an_event(fakes: Fakes) -> None:
    argv = ["event", "drbd-verify-mismatch", "resource=vm", "bytes=4096"]
    assert agent.main(argv, {}, fakes.world("san-b")) == 0
    assert ("san-b", "chatops", "drbd-verify-mismatch") in fakes.sent


@pytest.mark.parametrize("argv", [
    ["event", "drbd-verify-mismatch", "resource=vm"],  # bytes missing
    ["event", "drbd-verify-mismatch", "resource=vm", "bytes=lots"],
    ["event", "drbd-verify-mismatch", "resource=-rf", "bytes=1"],
    ["event", "drbd-split-brain", "resource=vm", "resource=db"],
    ["event", "drbd-split-brain", "resource"],
    ["event", "no-such-kind"],
    ["event", "drbd-split-brain", "resource=vm", "Bad-Key=1"],
    ["bogus"],
])
def test_a_bad_command_line_is_refused_with_status_2(fakes: Fakes, argv: list[str],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert agent.main(argv, {}, fakes.world("san-a")) == 2
    assert capsys.readouterr().err and fakes.sent == []


def test_a_split_brain_both_boxes_detect_is_reported_by_the_first_node(fakes: Fakes) -> None:
    for name in ("san-a", "san-b"):
        assert agent.main(["event", "drbd-split-brain", "resource=vm"], {},
                          fakes.world(name)) == 0
    assert fakes.journaled == [("san-a", "drbd-split-brain")]


def test_every_kind_with_its_keys_makes_a_summary() -> None:
    for kind, spec in KINDS.items():
        details = dict.fromkeys(spec.keys, "1")
        event = make_event(kind, "san-a", "t", details)
        assert "{" not in event.summary and event.summary


# -- the volume group fill ------------------------------------------------------------------

def test_filling_is_told_once_when_crossing_and_ok_once_when_back(fakes: Fakes) -> None:
    world = fakes.world("san-a")
    runner = world.runner
    assert isinstance(runner, NoCommands)
    for _ in range(2):
        assert agent.main(["check-space"], {}, world) == 0
    runner.vg_free = "500"
    for _ in range(2):
        assert agent.main(["check-space"], {}, world) == 0
    assert fakes.journaled == [("san-a", "vg-filling"), ("san-a", "vg-ok")]


def test_crossings_start_from_what_was_over() -> None:
    assert space.percent_used(1000, 100) == 90
    found, state = space.crossings({}, {"data": 80}, 85)
    assert found == [] and state == {"data": False}
    found, _ = space.crossings({"data": True}, {"data": 85}, 85)
    assert found == []
    assert space.read_state("x", lambda p: b'{"data": true, "../x": true, "b": 1}') == {
        "data": True}
    assert space.read_state("x", lambda p: b"[not json") == {}


# -- formats ----------------------------------------------------------------------------

EVENT = make_event("node-lost", "san-a", "2026-12-06T21:40:03.512345+00:00",
                   {"node": "san-b"})
MAIL = Recipient("m", RecipientKind.EMAIL, HostPort("127.0.0.1", 25), "san@example.com",
                 ("ops@example.com", "oncall@example.com"))


def test_the_webhook_gets_the_record_as_json() -> None:
    assert json.loads(send.webhook_body(EVENT)) == {
        "time": "2026-12-06T21:40:03.512345+00:00", "box": "san-a", "kind": "node-lost",
        "severity": "critical", "summary": "box san-b left the cluster",
        "details": {"node": "san-b"}}


def test_the_mail_names_severity_and_summary_and_carries_the_record() -> None:
    msg = send.email_message(EVENT, MAIL)
    assert msg["Subject"] == "[iscsiha critical] box san-b left the cluster"
    assert msg["To"] == "ops@example.com, oncall@example.com"
    assert EVENT.to_json() in msg.get_content()


def test_the_trap_has_one_string_per_field_under_our_oid() -> None:
    binds = send.snmp_varbinds(EVENT)
    assert binds[:3] == [f"{send.TRAP_BASE}.1.1", "s", EVENT.time]
    assert binds[12:15] == [f"{send.TRAP_BASE}.1.5", "s", "box san-b left the cluster"]
    assert json.loads(binds[17]) == {"node": "san-b"}


def test_snmp_keeps_the_community_off_the_command_line() -> None:
    seen: dict[str, Any] = {}

    class Capture(Runner):
        def run(self, argv: Any, **kwargs: Any) -> CommandResult:
            conf = Path(kwargs["env"]["SNMPCONFPATH"]) / "snmp.conf"
            seen.update(argv=list(argv), conf=conf.read_text(),
                        mode=conf.stat().st_mode & 0o777)
            return CommandResult(tuple(argv), 0, "", "", 0.0)

    r = Recipient("n", RecipientKind.SNMP, HostPort("192.0.2.5", 162),
                  secret=Secret("c0mmunity"))
    send.send_snmp(EVENT, r, 5.0, Capture())
    assert "c0mmunity" not in " ".join(seen["argv"])
    assert "defCommunity c0mmunity" in seen["conf"] and seen["mode"] == 0o600
    assert seen["argv"][:8] == [send.SNMPTRAP, "-v", "2c", "-t", "5", "-r", "0",
                                "udp:192.0.2.5:162"]


def test_the_syslog_line_is_rfc5424_with_the_events_severity() -> None:
    line = send.syslog_line(EVENT, "san-a").decode()
    assert line.startswith("<26>1 2026-12-06T21:40:03.512345+00:00 san-a iscsiha-alert - "
                           "node-lost - {")  # daemon (3) * 8 + crit (2)


# -- sending --------------------------------------------------------------------------------

def test_one_failing_or_hanging_recipient_does_not_stop_the_others() -> None:
    done = threading.Event()

    def fails(e: Event, r: Recipient, t: float) -> None:
        raise send.SendError("relay said no")

    def hangs(e: Event, r: Recipient, t: float) -> None:
        done.wait(5)

    def works(e: Event, r: Recipient, t: float) -> None:
        pass

    recipients = [Recipient("a", RecipientKind.EMAIL), Recipient("b", RecipientKind.SNMP),
                  Recipient("c", RecipientKind.WEBHOOK)]
    by_kind: Mapping[RecipientKind, send.Sender] = {
        RecipientKind.EMAIL: fails, RecipientKind.SNMP: hangs, RecipientKind.WEBHOOK: works}
    start = time.monotonic()
    out = send.send_all(EVENT, recipients, dict(by_kind), deadline_s=0.5)
    done.set()
    assert time.monotonic() - start < 2
    assert [(o.recipient, o.error) for o in out] == [
        ("a", "relay said no"), ("b", "no answer within 0.5 s"), ("c", None)]
