"""The tiebreaker's signer: over SSH as corosync's quick start does, or a local program."""

from __future__ import annotations

import base64
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from iscsiha.commands.tiebreaker import CommandTiebreaker, SshTiebreaker
from iscsiha.errors import IscsihaError
from iscsiha.executors.runner import CommandResult, Runner


class StubRunner:
    def __init__(self, *results: tuple[int, str, str]) -> None:
        self.results = list(results)
        self.calls: list[tuple[list[str], str | None]] = []

    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0) -> CommandResult:
        self.calls.append((list(argv), input))
        code, out, err = self.results.pop(0) if self.results else (0, "", "")
        return CommandResult(tuple(argv), code, out, err, 0.0)


def test_ssh_fetches_the_ca_and_signs_over_one_connection() -> None:
    cert = b"\x30\x82signed"
    runner = StubRunner((0, "QNet CA\n-----BEGIN CERTIFICATE-----\n", ""),
                        (0, base64.b64encode(cert).decode() + "\n", ""))
    with SshTiebreaker(runner, "10.0.0.5", "root") as tiebreaker:
        assert tiebreaker.ca_certificate().startswith(b"QNet CA")
        assert tiebreaker.sign("san", b"\x30\x82request") == cert
    (fetch, _), (sign, request), (close, _) = runner.calls
    assert fetch[0] == "/usr/bin/ssh" and "root@10.0.0.5" in fetch
    assert fetch[-1] == "cat /etc/corosync/qnetd/nssdb/qnetd-cacert.crt"
    control = [a for a in fetch if a.startswith("ControlPath=")]
    assert control and control == [a for a in sign if a.startswith("ControlPath=")]
    assert "corosync-qnetd-certutil -s -c" in sign[-1] and "-n san" in sign[-1]
    assert request == base64.b64encode(b"\x30\x82request").decode()
    assert close[-3:] == ["-O", "exit", "root@10.0.0.5"]


def test_ssh_failure_names_the_host_and_the_reason() -> None:
    runner = StubRunner((255, "", "ssh: connect to host 10.0.0.5 port 22: No route to host\n"))
    with pytest.raises(IscsihaError) as caught, SshTiebreaker(runner, "10.0.0.5") as tiebreaker:
        tiebreaker.ca_certificate()
    (report,) = caught.value.reports
    assert (report.code, report.value) == ("tiebreaker-failed", "root@10.0.0.5")
    assert report.message == "ssh exited with 255: ssh: connect to host 10.0.0.5 port 22: " \
                             "No route to host"


def test_a_local_program_can_sign_instead(tmp_path: Path) -> None:
    program = tmp_path / "signer"
    program.write_text("#!/bin/sh\ncase \"$1\" in\n"
                       "  ca) printf 'LAB CA' | base64 ;;\n"
                       "  sign) base64 -d | sed \"s/^/SIGNED $2 /\" | base64 ;;\n"
                       "  *) exit 3 ;;\nesac\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    tiebreaker = CommandTiebreaker(Runner(), [str(program)])
    assert tiebreaker.ca_certificate() == b"LAB CA"
    assert tiebreaker.sign("san", b"request") == b"SIGNED san request"
    broken = CommandTiebreaker(Runner(), [str(program), "--nope"])
    with pytest.raises(IscsihaError) as caught:
        broken.sign("san", b"request")
    assert caught.value.reports[0].code == "tiebreaker-failed"
