"""The host side of the exec channel: run a command in a guest, get exit code and output.

A request is a JSON file dropped into the node's share folder (requests/), which
the guest sees through hostfs; the agent (agent.py) answers in results/. Why
files rather than ssh: it needs no sshd or key in the appliance image, and no
guest network, so it keeps working while the lab cuts a node's links, which is
exactly when a test wants to look inside.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from iscsiha.errors import IscsihaError
from iscsiha_lab.paths import LabPaths

_counter = itertools.count()
# The agent enforces the command's own timeout; the host waits this much longer
# for the answer file before it gives up on the guest.
_ANSWER_GRACE = 15.0


@dataclass(frozen=True)
class GuestResult:
    node: str
    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def out(self) -> str:
        return self.stdout.decode(errors="replace")

    @property
    def err(self) -> str:
        return self.stderr.decode(errors="replace")

    def check(self) -> GuestResult:
        if not self.ok:
            detail = (self.err.strip() or self.out.strip()).splitlines()
            raise IscsihaError.single(
                "guest-command-failed", "command", " ".join(self.argv), "exit code 0",
                f"on {self.node} exited with {self.returncode}: "
                f"{detail[-1] if detail else 'no output'}",
            )
        return self


class GuestChannel:
    def __init__(self, paths: LabPaths, node: str, alive: Callable[[], bool]) -> None:
        self._share = paths.share_dir(node)
        self._node = node
        self._alive = alive

    @property
    def agent_file(self) -> Path:
        return self._share / "agent.json"

    def ready(self) -> bool:
        return self.agent_file.exists()

    def setup_report(self) -> dict[str, object] | None:
        try:
            data = json.loads((self._share / "setup.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | str | None = None,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
        check: bool = False,
    ) -> GuestResult:
        if not argv:
            raise IscsihaError.single("empty-command", "command", "", "a program and its arguments")
        if not self.ready():
            raise IscsihaError.single(
                "node-not-ready", "node", self._node, "a running node whose agent has started",
                "its lab agent is not up (powered off, or still booting)")
        data = input.encode() if isinstance(input, str) else input
        request_id = f"{time.time_ns()}-{os.getpid()}-{next(_counter)}.json"
        request = {
            "argv": list(argv),
            "stdin": base64.b64encode(data).decode() if data is not None else None,
            "timeout": timeout,
            "env": dict(env or {}),
        }
        tmp = self._share / "tmp" / f"host-{request_id}"
        tmp.parent.mkdir(exist_ok=True)
        tmp.write_text(json.dumps(request))
        os.replace(tmp, self._share / "requests" / request_id)
        answer = self._share / "results" / request_id
        started = time.monotonic()
        deadline = started + timeout + _ANSWER_GRACE
        next_alive_check = started + 0.5
        while not answer.exists():
            now = time.monotonic()
            if now >= next_alive_check:
                next_alive_check = now + 0.5
                if not self._alive():
                    raise IscsihaError.single(
                        "node-down", "node", self._node, "a running node",
                        f"powered off while running {' '.join(argv)}")
            if now >= deadline:
                (self._share / "requests" / request_id).unlink(missing_ok=True)
                raise IscsihaError.single(
                    "guest-timeout", "command", " ".join(argv),
                    f"an answer within {timeout + _ANSWER_GRACE:.0f} s",
                    f"{self._node} did not answer (frozen, or its agent is stuck)")
            time.sleep(0.02)
        reply = json.loads(answer.read_text())
        answer.unlink(missing_ok=True)
        result = GuestResult(
            node=self._node,
            argv=tuple(argv),
            returncode=int(reply["rc"]),
            stdout=base64.b64decode(reply.get("stdout") or ""),
            stderr=base64.b64decode(reply.get("stderr") or ""),
            seconds=time.monotonic() - started,
        )
        return result.check() if check else result
