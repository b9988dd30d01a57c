"""Running an iscsiha step on either box: here directly, on the peer over SSH.

The cluster's own key (made when the cluster is set up) and known_hosts live in
/etc/iscsiha/ssh; no private daemon or RPC. Requests and replies are typed JSON
(iscsiha.protocol) on stdin/stdout, so secrets never reach a command line.
"""

from __future__ import annotations

import itertools
import shlex
import socket
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from iscsiha.errors import IscsihaError, Report
from iscsiha.executors.runner import CommandResult, Runner
from iscsiha.model.types import IPAddress
from iscsiha.plan.peer_ssh import ISCSIHA, KEY, KNOWN_HOSTS
from iscsiha.protocol import codec
from iscsiha.protocol.messages import HELLO, Hello, Nothing, Step
from iscsiha.protocol.version import THIS_BUILD, Speaks

SSH = "/usr/bin/ssh"
Q = TypeVar("Q")
R = TypeVar("R")


class Boxes:
    """The two boxes by node name; ``addresses`` are where each is reached over SSH."""

    def __init__(self, runner: Runner, addresses: Mapping[str, IPAddress],
                 here: str | None = None, speaks: Speaks | None = None) -> None:
        self._runner = runner
        self._addresses = dict(addresses)
        self.speaks = speaks or THIS_BUILD
        self._hellos: dict[str, Hello] = {}
        self.here = here or socket.gethostname()
        if self.here not in self._addresses:
            raise IscsihaError.single(
                "not-a-cluster-node", "hostname", self.here, " or ".join(self._addresses),
                "iscsiha changes the cluster from one of its own boxes")

    @property
    def names(self) -> list[str]:
        return list(self._addresses)

    def hello(self, node: str, timeout: float = 60.0) -> Hello:
        """What ``node`` runs (asked once): its release and the protocols it serves."""
        if node not in self._hellos:
            self._hellos[node] = self._run(node, HELLO, Nothing(), None, min(timeout, 60.0))
        return self._hellos[node]

    def forget(self, node: str) -> None:
        """Ask ``node`` what it runs again before the next step (it rebooted, maybe into
        another release)."""
        self._hellos.pop(node, None)

    def call(self, node: str, step: Step[Q, R], request: Q, timeout: float = 300.0) -> R:
        """Run ``iscsiha node STEP`` on ``node``, in the newest protocol both boxes
        serve; its reply, decoded and checked."""
        protocol = None if node == self.here else self._protocol(node, step, timeout)
        return self._run(node, step, request, protocol, timeout)

    def call_feeding(self, node: str, step: Step[Q, R], request: Q, parts: Iterable[bytes],
                     timeout: float) -> R:
        """A step on the other box whose request line is followed on its stdin by
        ``parts`` (iscsiha.executors.runner.Runner.feed)."""
        protocol = self._protocol(node, step, timeout)
        # Keepalives: a peer that dies mid-stream ends SSH, and with it the sending.
        # AES-GCM first: CPUs do it in hardware, and this is gigabytes.
        argv = self._argv(node, step, protocol, [
            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
            "-c", "aes128-gcm@openssh.com,chacha20-poly1305@openssh.com"])
        header = (codec.dumps(request) + "\n").encode()
        result = self._runner.feed(argv, itertools.chain([header], parts), timeout)
        return self._reply(node, step, result)

    def _protocol(self, node: str, step: Step[Q, R], timeout: float) -> int:
        """The protocol to write ``step`` in to the other box ``node``; refused when that
        box's release does not have the step."""
        peer = self.hello(node, timeout)  # a hung peer costs the caller's bound, once
        protocol = self.speaks.common(Speaks(peer.oldest, peer.newest), node, peer.release)
        self.speaks.step(step.name, step.since, protocol, f"node {node} (iscsiha "
                         f"{peer.release})")
        return protocol

    def _argv(self, node: str, step: Step[Q, R], protocol: int | None,
              ssh_options: Sequence[str] = ()) -> list[str]:
        argv = [ISCSIHA, "node", step.name]
        if protocol is not None:
            argv += ["--protocol", str(protocol)]
        if node != self.here:
            argv = [SSH, "-i", KEY, "-o", f"UserKnownHostsFile={KNOWN_HOSTS}",
                    "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                    "-o", "ConnectTimeout=10", *ssh_options, f"root@{self._addresses[node]}",
                    shlex.join(argv)]
        return argv

    def _run(self, node: str, step: Step[Q, R], request: Q, protocol: int | None,
             timeout: float) -> R:
        result = self._runner.run(self._argv(node, step, protocol), input=codec.dumps(request),
                                  check=False, timeout=timeout)
        return self._reply(node, step, result)

    def _reply(self, node: str, step: Step[Q, R], result: CommandResult) -> R:
        if result.returncode == 0:
            return codec.decode(step.reply, codec.loads(result.stdout, f"{node} {step.name}"),
                                f"{node} {step.name} reply")
        reports = codec.reports_from(result.stdout)  # the step's own reports
        if reports is None:
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
            reports = [Report("step-failed", "node", node, f"{step.name} succeeding there",
                              detail[-1][:300] if detail else f"exit code {result.returncode}")]
        raise IscsihaError(reports)

    def on_both(self, step: Step[Q, R], request: Q) -> dict[str, R]:
        """The same step on each box at once; every box's failure reported together."""
        nodes = self.names
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            futures = {n: pool.submit(self.call, n, step, request) for n in nodes}
        results: dict[str, R] = {}
        reports: list[Report] = []
        for node, future in futures.items():
            try:
                results[node] = future.result()
            except IscsihaError as exc:
                reports += exc.reports
        if reports:
            raise IscsihaError(reports)
        return results
