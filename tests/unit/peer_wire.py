"""Boxes over fake boxes: the real request encoding, `iscsiha node STEP`'s decoding and
node steps, and the reply decoding, with no SSH in between."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping
from ipaddress import ip_address
from typing import Any, Protocol, cast

from iscsiha import __version__
from iscsiha.commands import node_steps
from iscsiha.executors.peers import SSH, Boxes
from iscsiha.executors.runner import CommandResult, Runner
from iscsiha.protocol.version import Speaks


def hello_reply(speaks: Speaks | None = None) -> str:
    """What `iscsiha node hello` prints on a box of this build (or one serving ``speaks``)."""
    speaks = speaks or Speaks()
    return json.dumps({"release": __version__, "oldest": speaks.oldest, "newest": speaks.newest})


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
        self.calls: list[tuple[str, str, int | None]] = []  # (node, step, --protocol)

    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0, env: Any = None) -> CommandResult:
        if argv[0] == SSH:
            node, words = self.by_address[argv[-2].removeprefix("root@")], shlex.split(argv[-1])
        else:
            node, words = self.here, list(argv)
        step = words[2]
        protocol = int(words[4]) if words[3:4] == ["--protocol"] else None
        self.calls.append((node, step, protocol))
        ok, out = node_steps.serve(self.boxes[node], step, input or "", protocol)
        return CommandResult(tuple(argv), 0 if ok else 1, out, "", 0.0)


def fake_boxes(*nodes: FakeNode, box: Callable[[str], dict[str, Any]] = lambda name: {},
               speaks: Speaks | None = None) -> Boxes:
    """Boxes for ``nodes`` (the first one is here, serving ``speaks``); ``box(name)``:
    that node's Box fields."""
    addresses = {n.name: f"192.0.2.{i}" for i, n in enumerate(nodes, 1)}
    wire = Wire({n.name: node_steps.Box(cast(Runner, n), n.read, **box(n.name))
                 for n in nodes}, nodes[0].name, addresses)
    return Boxes(cast(Runner, wire), {n: ip_address(a) for n, a in addresses.items()},
                 nodes[0].name, speaks)
