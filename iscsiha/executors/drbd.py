"""DRBD resources, via drbdadm and the runner (8.4 kernel module, drbd-utils 9)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from iscsiha.errors import IscsihaError
from iscsiha.executors.runner import Runner

DRBDADM = "/usr/sbin/drbdadm"


@dataclass(frozen=True)
class DrbdState:
    role: str  # this box's: Primary, Secondary, or Unconfigured when down
    connection: str  # Connected, WFConnection, StandAlone...
    disk: str  # this box's: UpToDate, Inconsistent...
    peer_disk: str


DOWN = DrbdState("Unconfigured", "StandAlone", "Diskless", "DUnknown")


class Drbd:
    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    def create_md(self, res: str) -> None:
        self._runner.run([DRBDADM, "--force", "create-md", res], timeout=120)

    def up(self, res: str) -> None:
        self._runner.run([DRBDADM, "up", res], timeout=60)

    def down(self, res: str) -> None:
        self._runner.run([DRBDADM, "down", res], timeout=60)

    def skip_initial_sync(self, res: str) -> None:
        """Declare both sides' (zeroed, never written) data identical: no full sync."""
        self._runner.run([DRBDADM, "--clear-bitmap", "new-current-uuid", res], timeout=60)

    def adjust(self, res: str) -> None:
        """Bring a running resource in line with its file (options, peer secret)."""
        self._runner.run([DRBDADM, "adjust", res], timeout=60)

    def resize(self, res: str) -> None:
        self._runner.run([DRBDADM, "resize", res], timeout=120)

    def backing_device(self, res: str) -> str | None:
        """The device under the resource, from its resource file (None when unknown)."""
        result = self._runner.run([DRBDADM, "sh-ll-dev", res], check=False, timeout=30)
        return result.stdout.strip() or None if result.ok else None

    def state(self, res: str) -> DrbdState:
        role = self._query("role", res)
        if role is None:
            return DOWN
        disk = self._query("dstate", res) or "Diskless/DUnknown"
        return DrbdState(role.split("/")[0], self._query("cstate", res) or "StandAlone",
                         *[*disk.split("/"), "DUnknown"][:2])

    def wait_connected(self, res: str, timeout: float) -> DrbdState:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(res)
            if state.connection == "Connected" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if state.connection != "Connected":
            raise IscsihaError.single(
                "drbd-not-connected", "volume", res, "connected to the peer",
                f"still {state.connection} after {timeout:.0f} s: check the replication link")
        return state

    def _query(self, what: str, res: str) -> str | None:
        result = self._runner.run([DRBDADM, what, res], check=False, timeout=30)
        text = result.stdout.strip()
        if not result.ok or not re.fullmatch(r"[A-Za-z]+(/[A-Za-z]+)?", text):
            return None
        return text
