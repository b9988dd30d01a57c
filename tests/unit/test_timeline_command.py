"""`status --timeline`'s gathering: this box's journal, the peer's events over the peer
channel (the journal-events step), checked on receipt; a silent peer is no error."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

import pytest

from iscsiha.cli import main as cli
from iscsiha.cli.main import _parser
from iscsiha.commands import node_steps
from iscsiha.commands import targets as targets_cmd
from iscsiha.commands import timeline as timeline_cmd
from iscsiha.commands.targets import ClusterStatus, TargetStatus
from iscsiha.commands.timeline import Source, TimelineReport, last_timeline
from iscsiha.errors import IscsihaError
from iscsiha.executors import journal, peers
from iscsiha.executors.runner import CommandResult, Runner
from iscsiha.protocol import codec
from iscsiha.protocol import messages as m
from iscsiha.protocol.version import CURRENT
from iscsiha.timeline import SOURCES
from tests.unit.env_fakes import fake_env
from tests.unit.peer_wire import hello_reply

T0 = 1_796_553_100.0
IQNS = {"alpha": "iqn.2026-11.com.example:alpha"}


def line(at: float, source: str, message: str) -> str:
    return json.dumps({"__REALTIME_TIMESTAMP": str(int((T0 + at) * 1e6)),
                       "SYSLOG_IDENTIFIER": source, "MESSAGE": message})


# san-b's journal after a planned move of alpha from san-a to san-b
HERE = "\n".join([
    line(1.5, "pacemaker-controld", "Requesting local execution of promote operation for "
                                    "drbd-alpha on san-b"),
    line(1.7, "pacemaker-controld", "Result of promote operation for drbd-alpha on san-b: OK"),
    line(2.4, "pacemaker-controld", "Result of start operation for target-alpha-lio on "
                                    "san-b: OK"),
])
PEER_EVENTS = {"events": [{"node": "san-a", "phase": "stop target-alpha-lio requested",
                           "at": T0}]}


@dataclass
class FakeRunner:
    """journalctl here, and the peer's reply to `iscsiha node journal-events` over SSH."""

    peer_out: str = json.dumps(PEER_EVENTS)
    peer_rc: int = 0
    peer_err: str = ""
    journal: str = HERE
    calls: list[list[str]] = field(default_factory=list)

    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0) -> CommandResult:
        self.calls.append(list(argv))
        if argv[0] == journal.JOURNALCTL:
            return CommandResult(tuple(argv), 0, self.journal, "", 0.1)
        assert argv[0] == peers.SSH
        if argv[-1] == "/usr/bin/iscsiha node hello":
            return CommandResult(tuple(argv), 0, hello_reply(), "", 0.1)
        assert argv[-1] == f"/usr/bin/iscsiha node journal-events --protocol {CURRENT}"
        return CommandResult(tuple(argv), self.peer_rc, self.peer_out, self.peer_err, 0.1)


def gather(runner: FakeRunner) -> TimelineReport:
    boxes = peers.Boxes(runner, {"san-a": ipaddress.ip_address("10.0.0.1"),  # type: ignore[arg-type]
                                 "san-b": ipaddress.ip_address("10.0.0.2")}, here="san-b")
    return last_timeline(fake_env(boxes=boxes, runner=runner), IQNS, lambda: T0 + 10)


def test_both_boxes_events_make_the_timeline_of_a_planned_move() -> None:
    report = gather(FakeRunner())
    assert report.failover is not None and report.failover.kind == "move"
    (alpha,) = report.failover.targets
    first = alpha.rows[0]
    assert (first.at, first.node, first.phase) == (
        0.0, "san-a", "stop target-alpha-lio requested")
    assert alpha.served_at == pytest.approx(T0 + 2.4)
    assert [(s.node, s.events, s.peer, s.problem) for s in report.sources] == [
        ("san-b", 3, False, None), ("san-a", 1, True, None)]


def test_a_peer_that_does_not_answer_is_left_out_not_an_error() -> None:
    runner = FakeRunner(peer_out="", peer_rc=255,
                        peer_err="ssh: connect to host 10.0.0.1 port 22: No route to host")
    report = gather(runner)
    assert report.failover is not None  # this box's own events still tell it
    assert report.failover.targets[0].rows[0].node == "san-b"
    problem = report.sources[1].problem
    assert problem is not None and problem.code == "step-failed"
    assert "No route to host" in problem.message


@pytest.mark.parametrize("event", [
    {"node": "san-a", "phase": "x" * 201, "at": T0},
    {"node": "san-a", "phase": "\x1b[2J promote drbd-alpha done", "at": T0},
    {"node": "san-a", "phase": "", "at": T0},
    {"node": "san-a", "phase": "promote drbd-alpha done", "at": -1.0},
    {"node": "san-a", "phase": "promote drbd-alpha done", "at": 1e300},
    {"node": "san-a", "phase": "promote drbd-alpha done", "at": "soon"},
    {"node": "SAN A", "phase": "promote drbd-alpha done", "at": T0},
    {"node": "san-a", "phase": "promote drbd-alpha done"},
    {"node": "san-a", "phase": "promote drbd-alpha done", "at": T0, "extra": 1},
])
def test_a_peer_reply_of_the_wrong_shape_is_refused_and_its_events_left_out(
        event: dict[str, object]) -> None:
    report = gather(FakeRunner(peer_out=json.dumps({"events": [event]})))
    problem = report.sources[1].problem
    assert problem is not None and problem.code == "peer-message-refused"
    assert report.sources[1].events == 0


@pytest.mark.parametrize("out", [
    '{"events": [{"node": "san-a", "phase": "p", "at": Infinity}]}',  # JSON that Python takes
    '{"events": ' + json.dumps([PEER_EVENTS["events"][0]] * 5000) + "}",  # too many
    "[]", "not json", "\xff\xfe",
])
def test_non_finite_times_oversized_and_garbled_replies_are_refused(out: str) -> None:
    problem = gather(FakeRunner(peer_out=out)).sources[1].problem
    assert problem is not None and problem.code.startswith("peer-message-")


def test_events_claiming_to_be_another_box_s_are_refused() -> None:
    forged = {"events": [{"node": "san-b", "phase": "promote drbd-alpha done", "at": T0}]}
    report = gather(FakeRunner(peer_out=json.dumps(forged)))
    problem = report.sources[1].problem
    assert problem is not None and problem.value == "san-b"
    assert report.failover is not None and report.failover.targets[0].promoted_on == "san-b"


def test_an_unreadable_journal_here_is_said_and_the_peer_s_events_still_count() -> None:
    class NoJournal(FakeRunner):
        def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
                timeout: float | None = 60.0) -> CommandResult:
            if argv[0] == journal.JOURNALCTL:
                raise IscsihaError.single("command-missing", "command", argv[0],
                                          "an installed program")
            return super().run(argv, input=input, check=check, timeout=timeout)

    report = gather(NoJournal())
    here = report.sources[0]
    assert here.problem is not None and here.problem.code == "command-missing"
    assert report.failover is None  # the peer's stop alone is no failover
    assert report.sources[1].events == 1


def test_journalctl_is_asked_for_json_of_the_patterns_sources_bounded() -> None:
    argv = journal.argv(T0)
    assert argv[:4] == [journal.JOURNALCTL, "-o", "json", "--no-pager"]
    assert "--boot" in argv and f"--lines={journal.LINES_MAX}" in argv
    assert f"--since=@{int(T0 - journal.SINCE_MAX)}" in argv
    assert "--output-fields=MESSAGE,SYSLOG_IDENTIFIER" in argv
    assert [a for a in argv if a.startswith("SYSLOG_IDENTIFIER=")] == [
        f"SYSLOG_IDENTIFIER={s}" for s in SOURCES]
    assert {"kernel", "corosync", "pacemaker-controld", "iscsiha-target"} <= set(SOURCES)


def test_the_journal_events_step_answers_with_this_box_s_checked_events() -> None:
    garbage = "\n".join([HERE, line(3.0, "kernel", "drbd \x07bell: role( Secondary -> "
                                                   "Primary )"), "{broken"])
    box = node_steps.Box(FakeRunner(journal=garbage), hostname=lambda: "san-b",  # type: ignore[arg-type]
                         wall_clock=lambda: T0)
    ok, out = node_steps.serve(box, "journal-events", "{}")
    assert ok
    reply = codec.decode(m.JournalEvents, json.loads(out), "reply")
    assert [(e.node, e.phase) for e in reply.events] == [
        ("san-b", "promote drbd-alpha requested"), ("san-b", "promote drbd-alpha done"),
        ("san-b", "start target-alpha-lio done")]
    ok, out = node_steps.serve(box, "journal-events", '{"unexpected": 1}')
    assert not ok and "peer-message-refused" in out


def test_the_journal_events_step_sends_at_most_the_newest_events() -> None:
    many = "\n".join(line(i / 100, "corosync", "A processor failed")
                     for i in range(m.JOURNAL_EVENTS_MAX + 50))
    box = node_steps.Box(FakeRunner(journal=many), hostname=lambda: "san-b",  # type: ignore[arg-type]
                         wall_clock=lambda: T0)
    ok, out = node_steps.serve(box, "journal-events", "{}")
    reply = codec.decode(m.JournalEvents, json.loads(out), "reply")
    assert ok and len(reply.events) == m.JOURNAL_EVENTS_MAX
    assert reply.events[-1].at == pytest.approx(T0 + (m.JOURNAL_EVENTS_MAX + 49) / 100)


def test_status_takes_timeline_as_a_flag_and_without_it_is_unchanged() -> None:
    assert _parser().parse_args(["status", "--timeline"]).timeline is True
    args = _parser().parse_args(["status"])
    assert args.timeline is False and args.sessions is False
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(["status", "--timeline=yes"])
    assert exc.value.code == 2


def test_the_peer_may_ask_for_journal_events() -> None:
    assert "journal-events" in node_steps.STEPS


def test_status_prints_the_timeline_after_the_status_only_when_asked(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    state = ClusterStatus((("san-a", True),), (TargetStatus(
        "alpha", IQNS["alpha"], ("san-a",), "san-a", "manual", True),), (), quorate=True)
    asked: list[dict[str, str]] = []
    monkeypatch.setattr(cli, "real_env", lambda: "env")
    monkeypatch.setattr(targets_cmd, "live_status", lambda env, sessions: state)

    def timeline(env: object, iqns: dict[str, str]) -> TimelineReport:
        asked.append(iqns)
        return TimelineReport(None, (Source("san-a", 0, False),))

    monkeypatch.setattr(timeline_cmd, "last_timeline", timeline)
    assert cli.main(["status"]) == 0
    plain = capsys.readouterr().out
    assert asked == [] and "timeline" not in plain
    assert cli.main(["status", "--timeline"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(plain) and asked == [IQNS]
    assert out[len(plain):].splitlines() == [
        "", "timeline: no failover or move in the journal since boot",
        "events  san-a: 0 from its journal"]


def test_output_that_is_not_text_is_a_report_not_a_traceback() -> None:
    with pytest.raises(IscsihaError) as exc:
        Runner().run(["/usr/bin/printf", "\\377\\376"])
    assert exc.value.reports[0].code == "command-output-not-text"
