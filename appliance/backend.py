"""The real backend: the desired file on this box, and the library's commands on the cluster.

The only console module that reaches outside the process (through the library's
executors); everything else talks to the ``Backend`` protocol in iscsiha.console.state.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from contextlib import suppress
from datetime import datetime
from pathlib import Path

from iscsiha.audit import Record
from iscsiha.commands import apply as apply_cmd
from iscsiha.commands import audit as audit_cmd
from iscsiha.commands import (
    bootstrap,
    node_steps,
    replace,
    support_bundle,
    upgrade_env,
    upgrade_pair,
)
from iscsiha.commands import network as network_cmd
from iscsiha.commands import standby as standby_cmd
from iscsiha.commands import targets as targets_cmd
from iscsiha.commands import timeline as timeline_cmd
from iscsiha.commands.apply import Approve, Changes
from iscsiha.commands.audit import Recorder
from iscsiha.commands.bootstrap_env import InitResult
from iscsiha.commands.bootstrap_params import HeldAddress, InitRequest
from iscsiha.commands.cluster_env import ClusterEnv, real_env
from iscsiha.commands.network import NetworkEnv
from iscsiha.commands.targets import ClusterStatus, TargetStatus
from iscsiha.commands.tiebreaker import TiebreakerAccess, open_tiebreaker
from iscsiha.commands.timeline import TimelineReport
from iscsiha.commands.upgrade_pair import PairUpgrade
from iscsiha.console.files import DESIRED_PATH, read_text, write_secret
from iscsiha.console.state import Progress
from iscsiha.errors import IscsihaError
from iscsiha.executors.addresses import Addresses
from iscsiha.executors.audit_log import AuditLog
from iscsiha.executors.runner import Runner
from iscsiha.model.types import Config
from iscsiha.plan.cib import nvpairs
from iscsiha.protocol import messages as m

ROOT_SHELL = "/bin/bash"


class ClusterBackend:
    """What `iscsiha apply`, `status` and `target move` do, for the console."""

    def __init__(self, desired: Path = DESIRED_PATH, runner: Runner | None = None) -> None:
        self.desired = desired
        self.runner = runner or Runner()

    def load_desired(self) -> str:
        return read_text(self.desired)

    def save_desired(self, text: str) -> None:
        write_secret(self.desired, text)

    def _env(self, config: Config | None = None) -> ClusterEnv:
        """Built afresh each time: the desired state naming the boxes may have changed."""
        return real_env(self.runner, config, str(self.desired))

    def apply(self, config: Config, text: str, confirmed_deletes: frozenset[str],
              progress: Progress, approve: Approve) -> Changes:
        return apply_cmd.apply(self._env(config), config, text, confirmed_deletes, progress,
                               approve)

    def status(self) -> ClusterStatus:
        return targets_cmd.live_status(self._env())

    def timeline(self, iqns: Mapping[str, str]) -> TimelineReport:
        return timeline_cmd.last_timeline(self._env(), iqns)

    def move(self, target: str, node: str, timeout: float, progress: Progress) -> float:
        return targets_cmd.move(self._env(), target, node, timeout, progress)

    def standby(self, node: str, on: bool, timeout: float,
                progress: Progress) -> tuple[TargetStatus, ...]:
        return standby_cmd.standby(self._env(), node, on, timeout, progress)

    def support_bundle(self, since: str, output: str | None,
                       progress: Progress) -> tuple[str, int]:
        """Both boxes' bundle written to ``output`` (or the default file); (path, size)."""
        support_bundle.checked_since(since)  # before minutes of collecting
        box = node_steps.Box(self.runner)
        path = output or support_bundle.default_output(box.hostname(), box.wall_clock())
        data = support_bundle.make(box, self._env().boxes, since, progress)
        support_bundle.write(path, data)
        return path, len(data)

    def seen_initiators(self) -> list[str]:
        """Initiators the running targets allow (the CIB), and those that tried to log in
        to either box and were refused (its kernel log): the ones about to be allowed."""
        env = self._env()
        found = set()
        for prim in ET.fromstring(env.pacemaker.query()).iter("primitive"):
            if prim.get("provider") == "iscsiha" and prim.get("type") == "target":
                params = nvpairs(prim.find("instance_attributes"))
                found.update(params.get("initiators", "").split())
        boxes = env.boxes
        if boxes is not None:
            for node in boxes.names:
                with suppress(IscsihaError):  # a box down: what the other saw still counts
                    found.update(boxes.call(node, m.SEEN_INITIATORS, m.Nothing(),
                                                      timeout=30.0).iqns)
        return sorted(found)

    def init_cluster(self, request: InitRequest, access: TiebreakerAccess,
                     progress: Progress) -> InitResult:
        env = bootstrap.host_env(self.runner, str(self.desired))
        with open_tiebreaker(self.runner, request.tiebreaker, access) as tiebreaker:
            return bootstrap.init(env, request, tiebreaker, progress)

    def join_cluster(self, token: str, progress: Progress) -> Config:
        return bootstrap.join(bootstrap.host_env(self.runner, str(self.desired)), token,
                              progress)

    def replace_box(self, node: str, progress: Progress) -> InitResult:
        return replace.replace(bootstrap.host_env(self.runner, str(self.desired)), node,
                               progress)

    def upgrade_pair(self, path: str, progress: Progress) -> PairUpgrade:
        return upgrade_pair.upgrade_pair(upgrade_env.real_env(), self._env(), path, progress)

    def audit(self, since: datetime | None) -> list[Record | None]:
        """This box's audit log from ``since`` on (None: a line that cannot be read)."""
        log = AuditLog()
        try:
            return list(audit_cmd.records(log, since))
        except OSError as exc:
            raise IscsihaError.single("audit-unreadable", "audit log", log.path,
                                      "a file root may read", exc.strerror or str(exc)) from exc

    def recorder(self, warn: Callable[[str], None]) -> Recorder:
        """The console's audit recorder: this box's log, a copy to the peer."""
        return Recorder("console", AuditLog(), self.load_desired, lambda: self._env().boxes,
                        warn)

    def root_shell(self) -> int:
        return self.runner.interactive([ROOT_SHELL, "--login"])

    def hostname(self) -> str:
        return socket.gethostname()

    def local_addresses(self) -> list[HeldAddress]:
        with Addresses() as found:
            return found.own()

    def network_env(self) -> NetworkEnv:
        return network_cmd.real_env()
