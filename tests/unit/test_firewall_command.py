"""`iscsiha-firewall`: which policy it loads, and what it does when nft or the kernel say no."""

from __future__ import annotations

from pathlib import Path

import pytest

from iscsiha.commands import firewall as cmd
from iscsiha.errors import IscsihaError
from iscsiha.executors.runner import CommandResult
from iscsiha.plan.firewall import base_ruleset
from tests.conftest import EXAMPLE

NO_NFTABLES = "Error: Could not process rule: Operation not supported"


class FakeNft:
    """Records what nft was asked to load; fails loads, or everything, on request."""

    def __init__(self, fail_load: str = "", kernel_ok: bool = True) -> None:
        self.fail_load, self.kernel_ok = fail_load, kernel_ok
        self.loaded: list[str] = []

    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0) -> CommandResult:
        assert argv[:2] == [cmd.NFT, "-f"]
        if argv[2] == "-":  # the probe: a table and nothing else
            assert input == cmd.PROBE
            return CommandResult(tuple(argv), 0 if self.kernel_ok else 1, "",
                                 "" if self.kernel_ok else NO_NFTABLES, 0.0)
        if self.fail_load:
            return CommandResult(tuple(argv), 1, "", self.fail_load, 0.0)
        self.loaded.append(Path(argv[2]).read_text())
        return CommandResult(tuple(argv), 0, "", "", 0.0)


def _env(tmp_path: Path, nft: FakeNft, desired: str | None = None,
         hostname: str = "san-a") -> tuple[cmd.FirewallEnv, list[str]]:
    lines: list[str] = []
    path = tmp_path / "desired.toml"
    if desired is not None:
        path.write_text(desired)
    return cmd.FirewallEnv(nft, desired_path=str(path),
                           ruleset_path=str(tmp_path / "run" / "firewall.nft"),
                           hostname=lambda: hostname, log=lines.append), lines


def test_without_a_desired_state_the_base_policy_is_loaded(tmp_path: Path) -> None:
    nft = FakeNft()
    env, log = _env(tmp_path, nft)
    assert cmd.apply(env) == 0
    assert nft.loaded == [base_ruleset()]
    assert log == [f"<6>iscsiha-firewall: loaded the base policy (no desired state yet) "
                   f"({env.ruleset_path})"]
    assert (Path(env.ruleset_path).stat().st_mode & 0o777) == 0o600


def test_with_a_desired_state_this_box_gets_its_own_policy(tmp_path: Path) -> None:
    nft = FakeNft()
    env, log = _env(tmp_path, nft, EXAMPLE.read_text(), hostname="san-b")
    assert cmd.apply(env) == 0
    (rules,) = nft.loaded
    assert "ip saddr 10.10.0.11 ip daddr 10.10.0.12 udp dport 5405 accept" in rules
    assert "policy of node san-b" in log[0]


@pytest.mark.parametrize(("desired", "hostname", "said"), [
    ("[cluster\nname = 'x'", "san-a", "desired.toml"),  # the file is named
    (EXAMPLE.read_text(), "iscsiha", "not one of the desired state's nodes"),
])
def test_an_unusable_desired_state_gets_the_base_policy_and_fails_the_unit(
        tmp_path: Path, desired: str, hostname: str, said: str) -> None:
    nft = FakeNft()
    env, log = _env(tmp_path, nft, desired, hostname)
    assert cmd.apply(env) == 1
    assert nft.loaded == [base_ruleset()]  # still reachable over SSH, to be fixed
    assert log[0].startswith("<3>iscsiha-firewall: ") and said in log[0]
    assert "loaded the base policy (the desired state is unusable)" in log[-1]


def test_a_kernel_without_nftables_does_not_stop_the_boot_but_says_so(tmp_path: Path) -> None:
    nft = FakeNft(fail_load=NO_NFTABLES, kernel_ok=False)
    env, log = _env(tmp_path, nft)
    assert cmd.apply(env) == 0
    (line,) = log
    assert line.startswith("<2>") and "WITHOUT A PACKET FILTER" in line and NO_NFTABLES in line


def test_a_ruleset_nft_refuses_on_a_capable_kernel_is_a_bug_and_fails(tmp_path: Path) -> None:
    nft = FakeNft(fail_load="Error: syntax error, unexpected junk")
    env, log = _env(tmp_path, nft)
    assert cmd.apply(env) == 1
    (line,) = log
    assert line.startswith("<3>") and "unexpected junk" in line and "bug" in line


def test_print_shows_the_policy_and_loads_nothing(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    nft = FakeNft()
    env, _ = _env(tmp_path, nft)
    assert cmd.main(["--print"], env) == 0
    assert capsys.readouterr().out == "# base policy (no desired state yet)\n" + base_ruleset()
    assert nft.loaded == []


def test_a_parser_crash_is_a_reported_bug_and_the_base_policy_still_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(text: str, source: str = "") -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(cmd, "load_text", crash)
    nft = FakeNft()
    env, log = _env(tmp_path, nft, EXAMPLE.read_text())
    assert cmd.apply(env) == 1
    assert nft.loaded == [base_ruleset()]
    assert "this is a bug in iscsiha" in log[0] and "RecursionError" in log[0]


def test_without_nft_the_unit_fails_and_says_there_is_no_filter(tmp_path: Path) -> None:
    class NoNft(FakeNft):
        def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
                timeout: float | None = 60.0) -> CommandResult:
            raise IscsihaError.single("command-missing", "command", argv[0],
                                      "an installed program", "No such file or directory")

    env, log = _env(tmp_path, NoNft())
    assert cmd.apply(env) == 1
    (line,) = log
    assert line.startswith("<2>") and "WITHOUT A PACKET FILTER" in line
