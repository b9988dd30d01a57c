"""A ClusterEnv of fakes: any part a test does not hand in fails the test when touched."""

from __future__ import annotations

from typing import Any, cast

from iscsiha.commands.cluster_env import (
    Boxes,
    Clock,
    ClusterEnv,
    ClusterManager,
    Files,
    LocalDrbd,
    RunsCommands,
)


class Untouchable:
    def __init__(self, what: str) -> None:
        self.what = what

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"touched {self.what}.{name}, which this test did not expect")


class FakeClock:
    """Time passes only when a command sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float, /) -> None:
        self.now += seconds


def fake_env(pacemaker: object = None, boxes: Boxes | None = None, *, drbd: object = None,
             runner: object = None, files: object = None,
             clock: Clock | None = None) -> ClusterEnv:
    """``boxes`` None is a box off the cluster, as in the real env."""
    return ClusterEnv(cast(ClusterManager, _given(pacemaker, "pacemaker")), boxes,
                      cast(LocalDrbd, _given(drbd, "drbd")),
                      cast(RunsCommands, _given(runner, "runner")),
                      cast(Files, _given(files, "files")), clock or FakeClock())


def _given(fake: object, what: str) -> object:
    return Untouchable(what) if fake is None else fake
