"""Boxes over fake boxes: the real request encoding, `iscsiha node STEP`'s decoding and
node steps, and the reply decoding, with no SSH in between."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from ipaddress import ip_address
from typing import Any, Protocol, cast

from iscsiha.commands import node_steps
from iscsiha.executors.peers import SSH, Boxes
from iscsiha.executors.runner import CommandResult, Runner


class FakeNode(Protocol):
    name: str

    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0, env: Any = None) -> CommandResult: ...

    def read(self, path: str) -> str: ...


class Wire:
    """A runner that answers `iscsiha node STEP` (here, or over SSH) on the box it names."""

    def __init__(self, boxes: Mapping[str, node_steps.Box], here: str,
                 addresses: Mapping[str, str]) -> None:
        self.boxes, self.here = boxes, here
        self.by_address = {a: n for n, a in addresses.items()}
        self.requests: list[tuple[str, str, str]] = []  # (node, step, JSON sent)

    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0, env: Any = None) -> CommandResult:
        if argv[0] == SSH:
            node, words = self.by_address[argv[-2].removeprefix("root@")], shlex.split(argv[-1])
        else:
            node, words = self.here, list(argv)
        step = words[2]
        self.requests.append((node, step, input or ""))
        ok, out = node_steps.serve(self.boxes[node], step, input or "")
        return CommandResult(tuple(argv), 0 if ok else 1, out, "", 0.0)


def fake_boxes(*nodes: FakeNode, box: Callable[[str], dict[str, Any]] = lambda name: {}
               ) -> Boxes:
    """Boxes for ``nodes`` (the first one is here); ``box(name)``: that node's Box fields."""
    addresses = {n.name: f"192.0.2.{i}" for i, n in enumerate(nodes, 1)}
    wire = Wire({n.name: node_steps.Box(cast(Runner, n), n.read, **box(n.name))
                 for n in nodes}, nodes[0].name, addresses)
    return Boxes(cast(Runner, wire), {n: ip_address(a) for n, a in addresses.items()},
                 nodes[0].name)
