"""DRBD online verify: reading drbdsetup and /proc/drbd (hostile too), which resources
a box verifies, when a run is due, the run's outcome, alert and record."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

import pytest

from iscsiha.cli.main import main
from iscsiha.commands import verify as v
from iscsiha.commands.verify_facts import (
    DAY,
    Record,
    ResourceResult,
    Shown,
    decide,
    due,
    parse_show,
    record_from_json,
    record_json,
    verify_progress,
)
from iscsiha.errors import IscsihaError
from iscsiha.executors.drbd import parse_proc_drbd
from iscsiha.executors.runner import CommandResult
from iscsiha.metrics import verify_metrics
from iscsiha.model.fields import MAINTENANCE, MAINTENANCE_KEYS, VERIFY
from iscsiha.model.load import load_data
from iscsiha.model.types import VerifySchedule

SHOW = """resource vm {
    options {
    }
    net {
        cram-hmac-alg   \t"sha256";
        shared-secret   \t"x";
        verify-alg      \t"crc32c";
    }
    _remote_host {
        address\t\t\tipv4 10.99.20.2:7788;
    }
    _this_host {
        address\t\t\tipv4 10.99.20.1:7788;
        volume 0 {
            device\t\t\tminor 0;
            disk\t\t\t"/dev/data/vm0";
            meta-disk\t\t\tinternal;
        }
        volume 1 {
            device\t\t\tminor 1;
            disk\t\t\t"/dev/data/vm1";
            meta-disk\t\t\tinternal;
        }
    }
}

resource backup {
    net {
    }
    _this_host {
        volume 0 {
            device\t\t\tminor 2;
            disk\t\t\t"/dev/data/backup";
        }
    }
}
"""


def proc_line(minor: int, cs: str = "Connected", ro: str = "Primary/Secondary",
              ds: str = "UpToDate/UpToDate", oos: int = 0, extra: str = "") -> str:
    return (f"{minor:2d}: cs:{cs} ro:{ro} ds:{ds} C r-----\n"
            f"    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:{oos}\n{extra}")


HEADER = "version: 8.4.11 (api:1/proto:86-101)\nsrcversion: 0\n"


def test_drbdsetup_show_gives_each_resource_its_minors_and_verify_alg() -> None:
    assert parse_show(SHOW) == {"vm": Shown((0, 1), "crc32c"), "backup": Shown((2,), None)}


@pytest.mark.parametrize("text", [
    "",
    "garbage { } }}}} {{{",
    'resource --all {\n volume 0 { device minor 0; }\n}\n',  # option-like name
    'resource ../etc {\n volume 0 { device minor 0; }\n}\n',
    'resource vm {\n volume 0 { device minor 99999999; }\n}\n',  # out of DRBD's range
    'resource vm {\n volume 0 { device minor 3; }\n volume 1 { device minor 3; }\n}\n',
    'resource vm {\n}\n',  # no volume
    "resource vm {\n" + "volume 0 { device minor 1; }\n" * 10 + "x" * (17 * 1024 * 1024),
])
def test_drbdsetup_show_that_names_no_sound_resource_gives_nothing(text: str) -> None:
    assert parse_show(text) == {}


def test_a_resource_word_inside_a_block_is_not_a_resource() -> None:
    nested = SHOW.replace('disk\t\t\t"/dev/data/vm0";', 'disk "/dev/data/vm0";\n resource evil {')
    assert "evil" not in parse_show(nested)


def test_a_resource_twice_keeps_the_first() -> None:
    twice = SHOW + SHOW.replace("minor 0;", "minor 7;")
    assert parse_show(twice)["vm"] == Shown((0, 1), "crc32c")


def test_verify_progress_reads_verified_lines_only() -> None:
    text = (HEADER + proc_line(0, "VerifyS", extra="\t[=====>..............] verified: 31.4% "
                                                      "(700/1024)M\n\tfinish: 0:00:10 speed: 1\n")
            + proc_line(1, "SyncSource", extra="\t[>...] sync'ed: 10.0% (9/10)M\n")
            + proc_line(2, "VerifyT", extra="\tverified: 250.0% (1/1)M\n"))
    assert verify_progress(text) == {0: 31.4}


def test_only_primary_connected_uptodate_resources_with_an_alg_are_verified() -> None:
    shown = {"a": Shown((0,), "crc32c"), "b": Shown((1,), "crc32c"), "c": Shown((2,), "crc32c"),
             "d": Shown((3,), None), "e": Shown((4, 5), "crc32c"), "f": Shown((6,), "crc32c"),
             "g": Shown((7,), "crc32c")}
    proc = parse_proc_drbd(HEADER + proc_line(0) + proc_line(1, ro="Secondary/Primary")
                           + proc_line(2, "WFConnection", "Primary/Unknown", "UpToDate/DUnknown")
                           + proc_line(3) + proc_line(4) + proc_line(6, "VerifyS")
                           + proc_line(7, ds="UpToDate/Inconsistent"))
    got = {d.resource: (d.verify, d.reason.split(":")[0]) for d in decide(shown, proc)}
    assert got == {
        "a": (True, ""),
        "b": (False, "not Primary here"),
        "c": (False, "not Connected and UpToDate on both sides"),
        "d": (False, "no verify-alg in its running configuration"),
        "e": (False, "not Primary here"),  # minor 5 is not up here
        "f": (False, "a verify already runs"),
        "g": (False, "not Connected and UpToDate on both sides"),
    }


@pytest.mark.parametrize("schedule, last, now, expected", [
    (VerifySchedule.OFF, None, 100 * DAY, False),
    (VerifySchedule.WEEKLY, None, 100 * DAY, True),
    (VerifySchedule.WEEKLY, 100 * DAY, 106 * DAY, False),
    (VerifySchedule.WEEKLY, 100 * DAY, 106.6 * DAY, True),  # half a day early is fine
    (VerifySchedule.MONTHLY, 100 * DAY, 120 * DAY, False),
    (VerifySchedule.MONTHLY, 100 * DAY, 130 * DAY, True),
    (VerifySchedule.WEEKLY, 200 * DAY, 100 * DAY, True),  # the clock went back
])
def test_a_run_is_due_by_the_schedule(schedule: VerifySchedule, last: float | None,
                                      now: float, expected: bool) -> None:
    assert due(schedule, last, now) is expected


def test_the_record_reads_back() -> None:
    record = Record(1000.0, {"vm": ResourceResult("mismatch", 8192, 1001.0, 12.5),
                             "b": ResourceResult("skipped", 0, 1000.0, 0.0, "why")})
    assert record_from_json(record_json(record)) == record


@pytest.mark.parametrize("text", [
    "", "not json", "[]", '{"started": 1}', '{"started": -1, "resources": {}}',
    '{"started": true, "resources": {}}', '{"started": 1e400, "resources": {}}',
    '{"started": 1, "resources": {"--x": {"outcome": "ok", "out_of_sync_bytes": 0,'
    ' "started": 1, "seconds": 1}}}',
    '{"started": 1, "resources": {"vm": {"outcome": "fine", "out_of_sync_bytes": 0,'
    ' "started": 1, "seconds": 1}}}',
    '{"started": 1, "resources": {"vm": {"outcome": "ok", "out_of_sync_bytes": "9",'
    ' "started": 1, "seconds": 1}}}',
    "[" * 100_000,
])
def test_a_damaged_record_is_no_record(text: str) -> None:
    assert record_from_json(text) is None


# -- a run ---------------------------------------------------------------------------

class FakeDrbd:
    """drbdsetup show as SHOW; /proc/drbd going through ``states`` one read at a time."""

    def __init__(self, states: list[str], fail_start: bool = False) -> None:
        self.states, self.fail_start = states, fail_start
        self.started: list[str] = []

    def show(self) -> str:
        return SHOW

    def proc_text(self) -> str:
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def verify(self, res: str) -> None:
        if self.fail_start:
            raise IscsihaError.single("command-failed", "command", "drbdadm verify", "exit 0",
                                      "State change failed")
        self.started.append(res)


class FakeRunner:
    def __init__(self) -> None:
        self.ran: list[list[str]] = []

    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0) -> CommandResult:
        self.ran.append(argv)
        return CommandResult(tuple(argv), 0, "", "", 0.1)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return 1_765_000_000.0 + self.t

    def mono(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def make_env(tmp_path: Path, drbd: FakeDrbd, alert: bool = True) -> tuple[v.VerifyEnv,
                                                                          FakeRunner, Clock]:
    runner, clock = FakeRunner(), Clock()
    files: dict[str, bytes] = {}

    def write(path: str, data: bytes) -> None:
        files[path] = data
        (tmp_path / "record.json").write_bytes(data)

    env = v.VerifyEnv(drbd, runner, lambda p: files.get(p), write,
                      exists=lambda p: alert and p == v.ALERT, wall_clock=clock.now,
                      monotonic=clock.mono, sleep=clock.sleep)
    return env, runner, clock


BEFORE = HEADER + proc_line(0) + proc_line(1) + proc_line(2, ro="Secondary/Primary")
VERIFYING = (HEADER + proc_line(0, "VerifyS", extra="\tverified: 50.0% (1/2)M\n")
             + proc_line(1, "VerifyS", extra="\tverified: 10.0% (1/2)M\n")
             + proc_line(2, ro="Secondary/Primary"))


def test_a_mismatch_is_counted_alerted_recorded_and_fails_the_run(tmp_path: Path) -> None:
    after = (HEADER + proc_line(0, oos=8) + proc_line(1, oos=4)
             + proc_line(2, ro="Secondary/Primary"))
    drbd = FakeDrbd([BEFORE] + [VERIFYING] * 30 + [after])
    env, runner, _ = make_env(tmp_path, drbd)
    said: list[str] = []
    record = v.run(env, None, 3600, said.append)
    assert record is not None and drbd.started == ["vm"]
    assert record.resources["vm"].outcome == "mismatch"
    assert record.resources["vm"].out_of_sync_bytes == 12 * 1024
    assert record.resources["backup"].outcome == "skipped"
    assert runner.ran == [[v.ALERT, "event", "drbd-verify-mismatch", "resource=vm",
                           "bytes=12288"]]
    assert any("minor 0 50.0%, minor 1 10.0%" in s for s in said)  # progress shown
    assert v.failed(record) == ["vm"]
    assert v.last_record(env.read, env.record_path) == record


def test_identical_sides_pass_and_raise_no_alert(tmp_path: Path) -> None:
    env, runner, _ = make_env(tmp_path, FakeDrbd([BEFORE, VERIFYING, BEFORE]))
    record = v.run(env, None, 3600, lambda _: None)
    assert record is not None and record.resources["vm"].outcome == "ok"
    assert runner.ran == [] and v.failed(record) == []


def test_without_iscsiha_alert_the_journal_line_is_the_alert(tmp_path: Path) -> None:
    after = HEADER + proc_line(0, oos=4) + proc_line(1) + proc_line(2, ro="Secondary/Primary")
    env, runner, _ = make_env(tmp_path, FakeDrbd([BEFORE, after]), alert=False)
    said: list[str] = []
    v.run(env, None, 3600, said.append)
    assert runner.ran == []
    assert any("found 4096 bytes that differ" in s for s in said)


def test_a_verify_past_its_bound_is_left_running_and_not_counted(tmp_path: Path) -> None:
    env, _, clock = make_env(tmp_path, FakeDrbd([BEFORE, VERIFYING]))
    record = v.run(env, None, 60, lambda _: None)
    assert record is not None and record.resources["vm"].outcome == "timeout"
    assert 60 < clock.t <= 70


def test_a_connection_lost_mid_verify_is_interrupted_not_ok(tmp_path: Path) -> None:
    lost = (HEADER + proc_line(0, "WFConnection", "Primary/Unknown", "UpToDate/DUnknown")
            + proc_line(1, "WFConnection", "Primary/Unknown", "UpToDate/DUnknown"))
    env, runner, _ = make_env(tmp_path, FakeDrbd([BEFORE, VERIFYING, lost]))
    record = v.run(env, None, 3600, lambda _: None)
    assert record is not None and record.resources["vm"].outcome == "interrupted"
    assert runner.ran == []


def test_a_verify_drbd_refuses_is_failed(tmp_path: Path) -> None:
    env, _, _ = make_env(tmp_path, FakeDrbd([BEFORE], fail_start=True))
    record = v.run(env, None, 3600, lambda _: None)
    assert record is not None and record.resources["vm"].outcome == "failed"
    assert "State change failed" in record.resources["vm"].detail


def test_the_timer_s_run_verifies_only_when_due(tmp_path: Path) -> None:
    drbd = FakeDrbd([BEFORE, BEFORE])
    env, _, _ = make_env(tmp_path, drbd)
    assert v.run(env, VerifySchedule.OFF, 3600, lambda _: None) is None
    assert v.run(env, VerifySchedule.WEEKLY, 3600, lambda _: None) is not None
    assert drbd.started == ["vm"]
    assert v.run(env, VerifySchedule.WEEKLY, 3600, lambda _: None) is None  # just ran
    assert drbd.started == ["vm"]


def test_the_last_run_is_in_the_metrics() -> None:
    record = Record(1000.0, {"vm": ResourceResult("mismatch", 8192, 1001.0, 12.5),
                             "b": ResourceResult("timeout", 0, 1000.0, 60.0)})
    text = verify_metrics(record)
    assert "iscsiha_drbd_verify_last_run_timestamp_seconds 1000\n" in text
    assert 'iscsiha_drbd_verify_last_out_of_sync_bytes{resource="vm"} 8192\n' in text
    assert 'iscsiha_drbd_verify_last_completed{resource="b"} 0\n' in text
    assert 'iscsiha_drbd_verify_last_duration_seconds{resource="vm"} 12.5\n' in text
    assert verify_metrics(None) == ""


def test_cli_refuses_a_timeout_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--timeout", "0"]) == 2
    assert main(["verify", "--timeout", "nan"]) == 2
    assert "--timeout" in capsys.readouterr().err


def test_a_record_file_is_plain_json() -> None:
    assert json.loads(record_json(Record(1.0, {})))["resources"] == {}


# -- the schedule in the desired state ---------------------------------------------------

EXAMPLE = Path(__file__).parents[2] / "examples" / "two-node.toml"


def _with_maintenance(table: dict[str, object]) -> dict[str, object]:
    data = tomllib.loads(EXAMPLE.read_text())
    data[MAINTENANCE] = table
    return data


def test_the_schedule_is_weekly_unless_the_desired_state_says_otherwise() -> None:
    assert load_data(tomllib.loads(EXAMPLE.read_text())).maintenance.verify \
        is VerifySchedule.WEEKLY
    assert load_data(_with_maintenance({})).maintenance.verify is VerifySchedule.WEEKLY
    for word in ("weekly", "monthly", "off"):
        assert load_data(_with_maintenance({VERIFY: word})).maintenance.verify.value == word


@pytest.mark.parametrize("table, code, allowed", [
    ({VERIFY: "daily"}, "bad-choice", "weekly, monthly, off"),
    ({VERIFY: 7}, "wrong-type", None),
    ({VERIFY: "weekly", "not-a-key": 1}, "unknown-key", ", ".join(MAINTENANCE_KEYS)),
])
def test_a_bad_schedule_is_refused_naming_what_is_allowed(
        table: dict[str, object], code: str, allowed: str | None) -> None:
    with pytest.raises(IscsihaError) as caught:
        load_data(_with_maintenance(table))
    (report,) = caught.value.reports
    assert report.code == code and report.field.startswith("maintenance.")
    if allowed is not None:
        assert report.allowed == allowed


def test_many_resource_words_cost_time_in_proportion() -> None:
    start = time.monotonic()
    assert parse_show("resource a { " * 1_000_000) == {}
    assert time.monotonic() - start < 10
