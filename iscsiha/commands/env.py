"""The outside world a command may touch, handed in so tests can hand in fakes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from iscsiha.executors.runner import CommandResult, Runner


class RunsCommands(Protocol):
    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0) -> CommandResult: ...


@dataclass(frozen=True)
class Env:
    runner: RunsCommands

    @classmethod
    def real(cls) -> Env:
        return cls(runner=Runner())
