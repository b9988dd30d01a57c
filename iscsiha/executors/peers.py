"""Running an iscsiha step on either box: here directly, on the peer over SSH.

The cluster's own key (made when the cluster is set up) and known_hosts live in
/etc/iscsiha/ssh; no private daemon or RPC. Arguments and results are JSON on
stdin/stdout, so secrets never reach a command line.
"""

from __future__ import annotations

import json
import shlex
import socket
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from iscsiha.errors import IscsihaError, Report
from iscsiha.executors.runner import Runner
from iscsiha.model.types import IPAddress
from iscsiha.plan.peer_ssh import ISCSIHA, KEY, KNOWN_HOSTS

SSH = "/usr/bin/ssh"


class Boxes:
    """The two boxes by node name; ``addresses`` are where each is reached over SSH."""

    def __init__(self, runner: Runner, addresses: Mapping[str, IPAddress],
                 here: str | None = None) -> None:
        self._runner = runner
        self._addresses = dict(addresses)
        self.here = here or socket.gethostname()
        if self.here not in self._addresses:
            raise IscsihaError.single(
                "not-a-cluster-node", "hostname", self.here, " or ".join(self._addresses),
                "iscsiha changes the cluster from one of its own boxes")

    @property
    def names(self) -> list[str]:
        return list(self._addresses)

    @property
    def peer(self) -> str:
        return next(n for n in self._addresses if n != self.here)

    def step(self, node: str, op: str, args: Any, timeout: float = 300.0) -> Any:
        """Run ``iscsiha node OP`` on ``node`` with JSON ``args``; its JSON result."""
        argv = [ISCSIHA, "node", op]
        if node != self.here:
            argv = [SSH, "-i", KEY, "-o", f"UserKnownHostsFile={KNOWN_HOSTS}",
                    "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                    "-o", "ConnectTimeout=10", f"root@{self._addresses[node]}",
                    shlex.join(argv)]
        result = self._runner.run(argv, input=json.dumps(args), check=False, timeout=timeout)
        if result.returncode == 0:
            return json.loads(result.stdout or "null")
        try:  # the step's own reports, passed back as JSON
            reports = [Report(**r) for r in json.loads(result.stdout)["reports"]]
        except (ValueError, KeyError, TypeError):
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
            reports = [Report("step-failed", "node", node, f"{op} succeeding there",
                              detail[-1] if detail else f"exit code {result.returncode}")]
        raise IscsihaError(reports)

    def on_both(self, op: str, args: Callable[[str], Any] | Any,
                nodes: Sequence[str] | None = None) -> dict[str, Any]:
        """The same step on each box at once; every box's failure reported together."""
        nodes = list(nodes or self.names)
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            futures = {n: pool.submit(self.step, n, op, args(n) if callable(args) else args)
                       for n in nodes}
        results: dict[str, Any] = {}
        reports: list[Report] = []
        for node, future in futures.items():
            try:
                results[node] = future.result()
            except IscsihaError as exc:
                reports += exc.reports
        if reports:
            raise IscsihaError(reports)
        return results
