"""The lab's console lines (iscsiha_lab.console_setup), run through the real console with
a fake backend: every secret travels on stdin, none in argv, and the console takes them."""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from iscsiha_lab import cluster, console_setup, signer
from iscsiha_lab.desired import init_request
from iscsiha_lab.guest import GuestResult
from iscsiha_lab.initiator import HV_SECRET, SAN_SECRET
from iscsiha_lab.topology import Topology, default_topology

from iscsiha.cli.main import _parser as cli_parser
from iscsiha.console.console import main
from iscsiha.errors import Secret
from tests.unit.console_fakes import TOKEN, Harness

BMC_PASSWORD = "lab-Bmc-Secret-1"
INITIATOR = "iqn.1993-08.org.debian:01:lab-initiator"


@dataclass
class FakeLab:
    """What console_setup uses of a Lab; `exec` runs the console in this process."""

    harness: Harness
    topology: Topology = field(default_factory=default_topology)
    calls: list[tuple[list[str], str | None]] = field(default_factory=list)

    def bmc_password(self) -> Secret:
        return Secret(BMC_PASSWORD)

    def require_running(self) -> None:
        pass

    def exec(self, name: str, argv: Sequence[str], input: bytes | str | None = None,
             timeout: float = 300.0) -> GuestResult:
        assert isinstance(input, str | None)
        self.calls.append((list(argv), input))
        out, err = io.StringIO(), io.StringIO()
        # The lab agent gives the command a pipe with ``input``, or /dev/null.
        saved = sys.stdin, sys.stdout, sys.stderr
        sys.stdin, sys.stdout, sys.stderr = io.StringIO(input or ""), out, err
        try:
            code = main(["--backups", str(self.harness.tmp / "backup"), *argv[1:]],
                        backend=self.harness.backend,
                        preferences_dir=str(self.harness.tmp / "prefs"))
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved
        return GuestResult(name, tuple(argv), code, out.getvalue().encode(),
                           err.getvalue().encode(), 0.0)


@pytest.fixture
def lab(tmp_path: Path) -> FakeLab:
    return FakeLab(Harness(tmp_path))


def test_init_and_join_feed_passwords_and_token_on_stdin(lab: FakeLab) -> None:
    said: list[str] = []
    _, token = console_setup.init(lab, said.append)  # type: ignore[arg-type]
    assert token == TOKEN
    (request, _), = lab.harness.backend.inits
    assert (request.bmc_password, request.peer_bmc_password) == (BMC_PASSWORD, BMC_PASSWORD)
    console_setup.join(lab, token, said.append)  # type: ignore[arg-type]
    assert lab.harness.backend.joins == [TOKEN]
    argvs = " ".join(" ".join(argv) for argv, _ in lab.calls)
    assert BMC_PASSWORD not in argvs and TOKEN not in argvs
    assert [stdin for _, stdin in lab.calls] == [f"{BMC_PASSWORD}\n" * 2, f"{TOKEN}\n"]
    assert not any(BMC_PASSWORD in line or TOKEN in line for line in said if "#" in line)


def test_export_volume_feeds_the_chap_secrets_in_the_help_s_order(
        lab: FakeLab, monkeypatch: pytest.MonkeyPatch) -> None:
    # The harness's desired state is the example's, whose storage network is 10.30.0.0/24.
    monkeypatch.setattr(console_setup, "PORTAL", "10.30.0.150")
    said: list[str] = []
    console_setup.export_volume(lab, INITIATOR, said.append)  # type: ignore[arg-type]
    auth = lab.harness.backend.applied[-1].config.targets[-1].auth
    assert auth.initiator is not None and auth.target is not None
    assert (auth.initiator.secret, auth.target.secret) == (HV_SECRET, SAN_SECRET)
    argv, stdin = lab.calls[-1]
    assert "secret=-" in argv and "mutual_secret=-" in argv
    assert stdin == f"{HV_SECRET}\n{SAN_SECRET}\n"
    assert HV_SECRET not in "\n".join(said) and SAN_SECRET not in "\n".join(said)


def test_the_console_line_and_the_cli_argv_ask_init_for_the_lab_s_request(lab: FakeLab) -> None:
    """The lab forms its pair with `iscsiha cluster init` (cluster.init_argv) and the demo
    with `/cluster init`: both must hand the product the same request."""
    console_setup.init(lab, lambda line: None)  # type: ignore[arg-type]
    (request, access), = lab.harness.backend.inits
    assert request == init_request(lab.topology, Secret(BMC_PASSWORD))
    assert access.signer == signer.PROGRAM
    args = cli_parser().parse_args(cluster.init_argv(lab.topology)[1:])
    assert (args.name, args.peer, args.ping, args.tiebreaker, args.tiebreaker_signer) == (
        request.name, request.peer, list(request.ping), request.tiebreaker, signer.PROGRAM)
    assert (args.bmc, args.bmc_user, args.peer_bmc, args.bmc_cipher) == (
        request.bmc, request.bmc_user, request.peer_bmc, request.bmc_cipher)
    assert request.bmc_cipher == cluster.BMC_CIPHER
    assert {name: getattr(args, name) for name in request.networks} == request.networks
