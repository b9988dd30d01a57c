"""The login watcher: LIO's sessions read from configfs, one journal line per initiator's
first login, bounded in time, and never a failed start."""

from __future__ import annotations

import io
from pathlib import Path

from iscsiha.errors import IscsihaError
from iscsiha.executors import login_watch
from iscsiha.timeline import events_from_journal

IQN = "iqn.2026-11.com.example:san.vm"
HV1 = "iqn.1993-08.org.debian:01:hv1"
HV2 = "iqn.1993-08.org.debian:01:hv2"
LOGGED_IN = "InitiatorName: x\nSession State: TARG_SESS_STATE_LOGGED_IN\n"


def fabric(tmp_path: Path, acls: dict[str, str], dynamic: str = "") -> Path:
    tpg = tmp_path / IQN / "tpgt_1"
    (tpg / "acls").mkdir(parents=True)
    (tpg / "dynamic_sessions").write_text(dynamic)
    for name, info in acls.items():
        (tpg / "acls" / name).mkdir()
        (tpg / "acls" / name / "info").write_text(info)
    return tmp_path


def test_sessions_are_logged_in_acls_and_dynamic_ones_with_iscsi_names(tmp_path: Path) -> None:
    root = fabric(tmp_path, {HV1: LOGGED_IN,
                             HV2: f"No active iSCSI Session for Initiator Endpoint: {HV2}"},
                  dynamic="iqn.1993-08.org.debian:01:dyn\nnot-a-name\n\x1b[2J\n")
    assert login_watch.sessions(IQN, str(root)) == {HV1, "iqn.1993-08.org.debian:01:dyn"}
    assert login_watch.sessions("iqn.2026-11.com.example:gone", str(root)) is None


def test_each_initiator_is_logged_once_and_the_watch_ends_on_its_own() -> None:
    now = [0.0]
    polls = iter([set(), {HV1}, {HV1}, {HV1, HV2}])
    logged: list[str] = []
    seen = login_watch.watch(IQN, logged.append, lambda: next(polls, {HV1, HV2}),
                             clock=lambda: now[0],
                             sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert seen == [HV1, HV2]
    assert logged == [f"target {IQN}: initiator {HV1} logged in",
                      f"target {IQN}: initiator {HV2} logged in"]
    assert login_watch.WATCH_MAX <= now[0] < login_watch.WATCH_MAX + 2 * login_watch.POLL
    # Each line reads back as the target's first login.
    journal = "\n".join('{"__REALTIME_TIMESTAMP": "1796553100000000", "SYSLOG_IDENTIFIER": '
                        f'"iscsiha-target", "MESSAGE": "{text}"}}' for text in logged)
    assert {e.phase for e in events_from_journal("san-a", journal)} == {
        f"first initiator logged in ({IQN})"}


def test_the_watch_ends_when_the_target_is_stopped() -> None:
    polls = iter([{HV1}, None])
    slept: list[float] = []
    login_watch.watch(IQN, lambda line: None, lambda: next(polls), sleep=slept.append)
    assert slept == [login_watch.POLL]


class Spawns:
    def __init__(self, error: Exception | None = None) -> None:
        self.argv: list[list[str]] = []
        self.error = error

    def spawn(self, argv: list[str]) -> None:
        self.argv.append(argv)
        if self.error is not None:
            raise self.error


def test_start_spawns_one_detached_watcher_for_a_target_in_configfs(tmp_path: Path) -> None:
    root = fabric(tmp_path, {})
    runner = Spawns()
    assert login_watch.watch_logins(IQN, runner, str(root))  # type: ignore[arg-type]
    (argv,) = runner.argv
    assert argv[1:] == ["-m", "iscsiha.executors.login_watch", IQN]
    # No target in configfs (LIO not here, or a test's fake LIO): nothing spawned.
    assert not login_watch.watch_logins("iqn.2026-11.com.example:other", runner, str(root))  # type: ignore[arg-type]
    assert len(runner.argv) == 1


def test_a_watcher_that_cannot_start_is_a_stderr_line_not_a_failed_start(
        tmp_path: Path) -> None:
    root = fabric(tmp_path, {})
    err = io.StringIO()
    for error in (OSError("fork failed"), IscsihaError.single(
            "command-not-absolute", "command", "", "an absolute path")):
        assert not login_watch.watch_logins(IQN, Spawns(error), str(root), err)  # type: ignore[arg-type]
    assert err.getvalue().count(f"iscsiha target {IQN}: login watcher not started") == 2


def test_the_watcher_refuses_an_argument_that_is_no_target_name() -> None:
    assert login_watch.main(["--help"]) == 2
    assert login_watch.main([]) == 2
    assert login_watch.main([IQN, "extra"]) == 2
