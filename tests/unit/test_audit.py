"""The audit log: records without secrets, bounded and one a line whatever they hold,
rotation, concurrent writers, the peer's copy, and the CLI and console recording."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iscsiha import audit
from iscsiha.cli.main import main
from iscsiha.commands import audit as audit_cmd
from iscsiha.commands.cluster_env import Boxes
from iscsiha.errors import IscsihaError
from iscsiha.executors.audit_log import AuditLog
from iscsiha.model.toml_dump import dumps
from iscsiha.protocol.messages import Step
from tests.conftest import EXAMPLE, ROOT
from tests.unit.apply_fakes import Node
from tests.unit.console_fakes import Harness
from tests.unit.peer_wire import fake_boxes

OLD_CHAP, NEW_CHAP = "hv-Secret-0001", "Brand-New-Sec1"
BMC_PASSWORDS = [n["bmc"]["password"] for n in tomllib.loads(EXAMPLE.read_text())["nodes"]]


def desired_with(secret: str) -> str:
    data = tomllib.loads(EXAMPLE.read_text())
    data["targets"][0]["auth"]["secret"] = secret
    return dumps(data)


def started(argv: list[str], before: str | None = None,
            secrets: tuple[str, ...] = ()) -> audit_cmd.Started:
    return audit_cmd.begin("cli", argv, before, secrets,
                           env={"SUDO_USER": "admin", "SSH_CONNECTION": "192.0.2.9 5 192.0.2.1 22"})


def written(log: AuditLog) -> list[dict[str, Any]]:
    raw = b"".join(log.lines())
    return [json.loads(line) for line in raw.splitlines()]


def test_a_chap_secret_on_the_command_line_or_changed_in_the_toml_is_never_logged(
        tmp_path: Path) -> None:
    log = AuditLog(str(tmp_path / "log"))
    before, after = desired_with(OLD_CHAP), desired_with(NEW_CHAP)
    argv = ["iscsiha-console", "/targets/vm/auth", "set", "auth", f"secret={NEW_CHAP}",
            "--bmc-password", "Bmc-Typed-Pass", f"mutual_secret={OLD_CHAP}", NEW_CHAP]
    rec = audit_cmd.finish(started(argv, before), "refused", f"refused: {NEW_CHAP}", after,
                           log, None, box="san-a")
    raw = (tmp_path / "log" / "audit.jsonl").read_bytes()
    for secret in (OLD_CHAP, NEW_CHAP, "Bmc-Typed-Pass", *BMC_PASSWORDS):
        assert secret.encode() not in raw
    assert audit.SECRET_CHANGED in rec.diff  # the change is said, not the value
    assert rec.user == "admin" and rec.source == "192.0.2.9"
    assert "--bmc-password '<secret>'" in rec.command


def test_a_secret_given_as_an_argument_is_hidden_wherever_it_sits(tmp_path: Path) -> None:
    token = "ISJ1-BIFAAC-YVD5ZI-DYZHLS"
    rec = audit_cmd.finish(started(["iscsiha", "cluster", "join", token], secrets=(token,)),
                           "refused", "no", None, AuditLog(str(tmp_path)), None, box="san-b")
    assert token not in rec.command and "<secret>" in rec.command


def test_an_unchanged_desired_state_has_no_diff_and_a_changed_one_a_unified_diff() -> None:
    text = EXAMPLE.read_text()
    assert audit.desired_diff(text, text) == ""
    diff = audit.desired_diff(text, text.replace('size = "100G"', 'size = "200G"', 1))
    assert diff.startswith("--- desired.toml (before)")
    assert '+size = "200G"' in diff and '-size = "100G"' in diff


def test_the_log_rotates_by_size_and_keeps_only_the_last_files(tmp_path: Path) -> None:
    log = AuditLog(str(tmp_path), max_bytes=1000, keep=3)
    for n in range(200):
        log.append(f'{{"n": {n}, "pad": "{"x" * 80}"}}\n'.encode())
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("audit"))
    assert names == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.3"]
    assert all(p.stat().st_size <= 1000 for p in tmp_path.glob("audit.jsonl*"))
    numbers = [r["n"] for r in written(log)]
    assert numbers == sorted(numbers) and numbers[-1] == 199 and numbers[0] > 0
    assert (tmp_path / "audit.jsonl").stat().st_mode & 0o777 == 0o600
    assert tmp_path.stat().st_mode & 0o777 == 0o700


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from iscsiha.executors.audit_log import AuditLog
    log = AuditLog(sys.argv[2], max_bytes=int(sys.argv[5]))
    for n in range(int(sys.argv[4])):
        log.append(('{"w": "%s", "n": %d, "pad": "%s"}\\n' % (sys.argv[3], n, "y" * 300)).encode())
""")


@pytest.mark.parametrize("max_bytes", [1 << 30, 40_000])
def test_two_processes_appending_at_once_never_tear_or_lose_a_line(
        tmp_path: Path, max_bytes: int) -> None:
    count = 300
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(ROOT), str(tmp_path), w,
                               str(count), str(max_bytes)]) for w in ("a", "b")]
    for p in procs:
        assert p.wait(timeout=60) == 0
    records = written(AuditLog(str(tmp_path), max_bytes=max_bytes))  # json.loads: none torn
    for w in ("a", "b"):
        ns = [r["n"] for r in records if r["w"] == w]
        if max_bytes > 1 << 20:
            assert ns == list(range(count))  # every line, in each writer's order
        else:  # rotation drops the oldest files only: what is left is each one's tail
            assert ns == list(range(count - len(ns), count))


def test_hostile_values_stay_on_one_bounded_valid_line(tmp_path: Path) -> None:
    log = AuditLog(str(tmp_path))
    bad = "evil\nforged {\"result\": \"ok\"}\r\x1b[31m" + "\udcff\udcfe" + "z" * 100_000
    audit_cmd.finish(started(["iscsiha", "target", "move", bad]), "failed", bad, None, log,
                     None, box="san-a\nb")
    raw = (tmp_path / "audit.jsonl").read_bytes()
    assert raw.count(b"\n") == 1 and raw.isascii()
    rec = audit.parse(raw)
    assert rec is not None
    assert len(rec.command) <= audit.COMMAND_MAX and len(rec.message) <= audit.MESSAGE_MAX
    assert "\x1b" not in rec.command and "\ufffd" in rec.command
    assert rec.box == "san-a\\x0ab"
    assert audit.shown(rec).splitlines()[0].endswith("-> failed")


class DownPeer:
    here, names = "san-a", ["san-a", "san-b"]

    def call(self, node: str, step: Step[Any, Any], request: Any,
             timeout: float = 300.0) -> Any:
        raise IscsihaError.single("step-failed", "node", node, "answers",
                                  "ssh: connect to host san-b port 22: No route to host")


def test_a_peer_that_is_down_gets_no_copy_and_the_record_says_so(tmp_path: Path) -> None:
    log = AuditLog(str(tmp_path))
    rec = audit_cmd.finish(started(["iscsiha", "standby", "san-b"]), "ok", "", None, log,
                           DownPeer(), box="san-a")  # type: ignore[arg-type]
    assert rec.peer.startswith("NO COPY on san-b")
    assert written(log)[0]["peer"] == rec.peer


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Boxes, Path]]:
    a, b = Node("san-a", tmp_path / "san-a"), Node("san-b", tmp_path / "san-b")
    yield fake_boxes(a, b, box=lambda name: {"audit_dir": str(tmp_path / name / "audit")}), \
        tmp_path


def test_the_peer_keeps_a_checked_copy_marked_as_such(pair: tuple[Boxes, Path]) -> None:
    boxes, root = pair
    log = AuditLog(str(root / "san-a" / "audit"))
    before, after = desired_with(OLD_CHAP), desired_with(NEW_CHAP)
    rec = audit_cmd.finish(started(["iscsiha", "apply", "x.toml"], before), "ok", "", after,
                           log, boxes, box="san-a")
    assert rec.peer == "copy on san-b"
    copy = written(AuditLog(str(root / "san-b" / "audit")))
    assert len(copy) == 1 and copy[0]["copy_from"] == "san-a"
    assert copy[0]["diff"] == rec.diff and copy[0]["command"] == rec.command
    assert NEW_CHAP.encode() not in (root / "san-b" / "audit" / "audit.jsonl").read_bytes()


def test_the_cli_records_a_refused_join_without_its_token(audit_here: Path) -> None:
    token = "ISJ1-BIFAAC-YVD5ZI-DYZHLS-QVSLAW-JWX6RN-C35W6N-327X7M"
    assert main(["cluster", "join", token]) == 1
    records = written(AuditLog(str(audit_here)))
    assert [r["result"] for r in records] == ["refused"]
    assert token not in json.dumps(records)
    assert "secret-on-command-line" in records[0]["message"]


def test_read_only_commands_are_not_recorded(audit_here: Path, tmp_path: Path) -> None:
    copy = tmp_path / "c.toml"
    copy.write_text(EXAMPLE.read_text())
    copy.chmod(0o600)
    assert main(["validate", str(copy)]) == 0
    assert not (audit_here / "audit.jsonl").exists()


def test_iscsiha_audit_shows_records_since_a_time_as_text_or_json(
        audit_here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = AuditLog(str(audit_here))
    for clock in (1_800_000_000.0, 1_900_000_000.0):
        rec = audit.record(clock=clock, box="san-a", person=audit.Who("admin", None),
                           via="cli", argv=["iscsiha", "standby", "san-b"], result="ok",
                           message="", before=None, after=None)
        log.append(audit.line(rec))
    log.append(b"not json\n")
    assert main(["audit", "--since", "2030-01-01", "--json"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(x)["time"] for x in out.splitlines()] == ["2030-03-17T17:46:40+00:00"]
    assert "1 line(s)" in err
    assert main(["audit"]) == 0
    assert "admin cli: iscsiha standby san-b -> ok" in capsys.readouterr().out
    assert main(["audit", "--since", "yesterday"]) == 1


def test_the_console_records_a_change_with_its_diff_and_never_a_secret(
        tmp_path: Path) -> None:
    h = Harness(tmp_path)
    log = AuditLog(str(tmp_path / "console-audit"))
    h.shell.recorder = audit_cmd.Recorder("console", log, h.backend.load_desired,
                                          lambda: None, lambda _m: None)
    h.secrets = [NEW_CHAP]
    assert h.run("/targets/vm/auth set auth secret=-") == 0
    assert h.run("ls /targets") == 0
    assert h.run(f"/targets/vm/auth set auth secret={NEW_CHAP}") == 1  # refused
    records = written(log)
    assert [(r["via"], r["result"]) for r in records] == [("console", "ok"),
                                                          ("console", "refused")]
    assert audit.SECRET_CHANGED in records[0]["diff"]
    assert records[1]["command"].endswith(audit.SECRET_SHOWN) or "withheld" in \
        records[1]["command"]
    raw = (tmp_path / "console-audit" / "audit.jsonl").read_bytes()
    assert NEW_CHAP.encode() not in raw and OLD_CHAP.encode() not in raw


def test_the_console_audit_verb_shows_records_since_a_time(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    for clock in (1_800_000_000.0, 1_900_000_000.0):
        h.backend.audit_records.append(audit.record(
            clock=clock, box="san-b", person=audit.Who("admin", "192.0.2.7"), via="console",
            argv=["/nodes/san-a", "standby"], result="ok", message="", before=None,
            after=None))
    h.backend.audit_records.append(None)
    assert h.run("audit since=2030-01-01") == 0
    out = h.out.getvalue()
    assert "2030-03-17T17:46:40+00:00 san-b admin from 192.0.2.7 console" in out
    assert "2027-" not in out and "1 line(s)" in out
    assert h.run("audit since=soon") == 1 and "bad-time" in h.err.getvalue()
