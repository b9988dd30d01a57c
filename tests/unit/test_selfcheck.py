"""The boot self check reports every module, not only the first failure."""

from __future__ import annotations

import pytest

from iscsiha.cli import main as cli
from iscsiha.commands.selfcheck import MODULES, selfcheck
from iscsiha.executors.runner import CommandResult
from tests.unit.env_fakes import fake_env


class FakeRunner:
    def __init__(self, missing: set[str]) -> None:
        self.missing = missing
        self.calls: list[list[str]] = []

    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0) -> CommandResult:
        self.calls.append(argv)
        bad = argv[-1] in self.missing
        return CommandResult(tuple(argv), 1 if bad else 0, "",
                             f"modprobe: FATAL: Module {argv[-1]} not found" if bad else "", 0.0)


def test_all_modules_loaded_is_ok() -> None:
    runner = FakeRunner(set())
    checks = selfcheck(fake_env(runner=runner))
    assert all(c.ok for c in checks)
    assert [c[-1] for c in runner.calls] == list(MODULES)


def test_every_missing_module_is_named(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    runner = FakeRunner({"drbd", "iscsi_target_mod"})
    monkeypatch.setattr(cli, "real_env", lambda: fake_env(runner=runner))
    assert cli.main(["selfcheck"]) == 1
    out = capsys.readouterr().out
    assert "module drbd: modprobe: FATAL: Module drbd not found" in out
    assert "FAILED: module iscsi_target_mod, module drbd" in out
