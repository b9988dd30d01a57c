"""The outside world the cluster's commands work with (``ClusterEnv``), each part a small
Protocol of exactly what the commands call, and ``real_env``: the one place it is wired
to the real executors (the CLI, the console and bootstrap build it; tests hand in fakes).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from iscsiha.commands import node_steps
from iscsiha.errors import IscsihaError
from iscsiha.executors import files, peers
from iscsiha.executors.drbd import Drbd, ProcDevice
from iscsiha.executors.pacemaker import Pacemaker
from iscsiha.executors.runner import CommandResult, Runner
from iscsiha.model.load import load_text
from iscsiha.model.types import Config, NetworkRole
from iscsiha.protocol.messages import Step

Q = TypeVar("Q")
R = TypeVar("R")


class RunsCommands(Protocol):
    """executors.runner.Runner."""

    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0) -> CommandResult: ...


class Cib(Protocol):
    """The CIB and crm_mon's view of the cluster (executors.pacemaker.Pacemaker)."""

    def query(self) -> str: ...

    def status(self) -> str: ...

    def update(self, change: Callable[[str], str], attempts: int = 5) -> bool: ...


class ClusterManager(Cib, Protocol):
    """Pacemaker as apply and `target move` also drive it."""

    def wait(self, timeout: float) -> None: ...

    def move(self, resource: str, node: str) -> None: ...

    def clear(self, resource: str) -> None: ...

    def standby(self, node: str, on: bool) -> None: ...

    def cleanup_node(self, node: str) -> None: ...


class Boxes(Protocol):
    """`iscsiha node STEP` on either box (executors.peers.Boxes)."""

    @property
    def here(self) -> str: ...

    @property
    def names(self) -> list[str]: ...

    def call(self, node: str, step: Step[Q, R], request: Q, timeout: float = 300.0) -> R: ...

    def on_both(self, step: Step[Q, R], request: Q) -> dict[str, R]: ...

    def forget(self, node: str) -> None: ...

    def call_feeding(self, node: str, step: Step[Q, R], request: Q, parts: Iterable[bytes],
                     timeout: float) -> R: ...


class LocalDrbd(Protocol):
    """This box's DRBD as its kernel shows it (executors.drbd.Drbd)."""

    def proc(self) -> Mapping[int, ProcDevice]: ...


class Files(Protocol):
    """This box's files (executors.files)."""

    def read(self, path: str, /) -> bytes | None: ...


class Clock(Protocol):
    """For the commands that poll (the time module)."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float, /) -> None: ...


@dataclass(frozen=True)
class ClusterEnv:
    """What a command may touch outside the process."""

    pacemaker: ClusterManager
    boxes: Boxes | None  # None off a cluster box (no desired state names this one)
    drbd: LocalDrbd
    runner: RunsCommands
    files: Files
    clock: Clock

    def both_boxes(self) -> Boxes:
        """The boxes, for a command that works on both."""
        if self.boxes is None:
            raise IscsihaError.single(
                "not-a-cluster-box", "desired state", None, "one naming this box and its peer",
                "this box has none it can read: run this on a box of the cluster")
        return self.boxes

    def cluster_key(self) -> bytes:
        return node_steps.cluster_key(self.files.read)


def real_env(runner: Runner | None = None, config: Config | None = None,
             desired_path: str = node_steps.DESIRED_PATH) -> ClusterEnv:
    """This box's executors, with the boxes ``config`` names, or without one those of the
    desired state kept at ``desired_path`` (none when it cannot be read)."""
    runner = runner or Runner()
    boxes = _boxes_for(config, runner) if config is not None else _desired_boxes(
        desired_path, runner)
    return ClusterEnv(Pacemaker(runner), boxes, Drbd(runner), runner, files, time)


def _boxes_for(config: Config, runner: Runner) -> peers.Boxes:
    """The boxes, reached over the first cluster link."""
    link = config.cluster.networks_with(NetworkRole.CLUSTER)[0].name
    return peers.Boxes(runner, {n.name: n.address_on(link) for n in config.cluster.nodes})


def _desired_boxes(path: str, runner: Runner) -> peers.Boxes | None:
    """The boxes of the desired state kept at ``path``; None off a cluster box."""
    try:
        return _boxes_for(load_text(files.read_text(path), path), runner)
    except IscsihaError:
        return None
