"""A fake backend and a harness that drives the console shell in memory and a temp dir."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from configshell_fb import Console

from iscsiha.audit import Record, since_ok
from iscsiha.commands.apply import Approve, Changes
from iscsiha.commands.apply_losses import Loss
from iscsiha.commands.bootstrap_env import InitResult
from iscsiha.commands.bootstrap_params import HeldAddress, InitRequest
from iscsiha.commands.network import NetworkEnv
from iscsiha.commands.targets import ClusterStatus, TargetStatus, VolumeStatus
from iscsiha.commands.tiebreaker import TiebreakerAccess
from iscsiha.commands.timeline import TimelineReport
from iscsiha.commands.upgrade_pair import PairUpgrade
from iscsiha.console.console import ConsoleShell
from iscsiha.console.files import Backups, read_text, write_secret
from iscsiha.console.state import Progress, State
from iscsiha.errors import IscsihaError
from iscsiha.executors.networkd import Networkd
from iscsiha.executors.runner import CommandResult, Runner
from iscsiha.model.load import load_text
from iscsiha.model.root_image import Manifest, Release
from iscsiha.model.types import Config
from tests.conftest import EXAMPLE

SEEN_INITIATOR = "iqn.1993-08.org.debian:01:new-host"
TOKEN = "ISJ1-BIFAAC-YVD5ZI-DYZHLS-QVSLAW-JWX6RN-C35W6N-327X7M"


def running_status() -> ClusterStatus:
    """The example cluster, everything running where it prefers to."""
    return ClusterStatus(
        nodes=(("san-a", True), ("san-b", True)),
        targets=(TargetStatus("vm", "iqn.2026-11.com.example:san.vm", ("san-a",), "san-a",
                              "manual", True),
                 TargetStatus("backup", "iqn.2026-11.com.example:san.backup", ("san-b",),
                              "san-b", "auto", True)),
        volumes=tuple(VolumeStatus(name, (("san-a", "Promoted"), ("san-b", "Unpromoted")))
                      for name in ("vmstore", "db", "backup")))


@dataclass
class Applied:
    config: Config
    text: str
    confirmed_deletes: frozenset[str]


@dataclass
class FakeBackend:
    """Records what the console asked for; the desired state is a real file in a temp dir."""

    desired: Path
    cluster: ClusterStatus = field(default_factory=running_status)
    applied: list[Applied] = field(default_factory=list)
    saved: list[str] = field(default_factory=list)
    moves: list[tuple[str, str, float]] = field(default_factory=list)
    standbys: list[tuple[str, bool, float]] = field(default_factory=list)
    apply_error: IscsihaError | None = None
    status_error: IscsihaError | None = None
    seen: list[str] = field(default_factory=lambda: [SEEN_INITIATOR])
    shells: int = 0
    inits: list[tuple[InitRequest, TiebreakerAccess]] = field(default_factory=list)
    joins: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    upgrades: list[str] = field(default_factory=list)
    bootstrap_error: IscsihaError | None = None
    addresses: list[HeldAddress] = field(default_factory=list)
    timeline_report: TimelineReport = field(default_factory=lambda: TimelineReport(None, ()))
    timeline_asked: list[dict[str, str]] = field(default_factory=list)
    losses: tuple[Loss, ...] = ()  # what the next applies would take from initiators
    audit_records: list[Record | None] = field(default_factory=list)
    bundles: list[tuple[str, str | None]] = field(default_factory=list)

    def load_desired(self) -> str:
        return read_text(self.desired)

    def save_desired(self, text: str) -> None:
        self.saved.append(text)
        write_secret(self.desired, text)

    def apply(self, config: Config, text: str, confirmed_deletes: frozenset[str],
              progress: Progress, approve: Approve) -> Changes:
        if self.apply_error is not None:
            raise self.apply_error
        if self.losses:  # as apply asks: after its checks, before any change
            approve(self.losses)
        self.applied.append(Applied(config, text, confirmed_deletes))
        progress("applied (fake)")
        return Changes((), (), tuple(sorted(confirmed_deletes)), True)

    def status(self) -> ClusterStatus:
        if self.status_error is not None:
            raise self.status_error
        return self.cluster

    def timeline(self, iqns: Mapping[str, str]) -> TimelineReport:
        self.timeline_asked.append(dict(iqns))
        return self.timeline_report

    def move(self, target: str, node: str, timeout: float, progress: Progress) -> float:
        self.moves.append((target, node, timeout))
        return 2.5

    def standby(self, node: str, on: bool, timeout: float,
                progress: Progress) -> tuple[TargetStatus, ...]:
        self.standbys.append((node, on, timeout))
        return self.cluster.targets

    def seen_initiators(self) -> list[str]:
        return list(self.seen)

    def audit(self, since: datetime | None) -> list[Record | None]:
        return [r for r in self.audit_records if r is None or since_ok(r, since)]

    def support_bundle(self, since: str, output: str | None,
                       progress: Progress) -> tuple[str, int]:
        self.bundles.append((since, output))
        return output or "/var/tmp/bundle.tar.gz", 1234

    def init_cluster(self, request: InitRequest, access: TiebreakerAccess,
                     progress: Progress) -> InitResult:
        self.inits.append((request, access))
        if self.bootstrap_error is not None:
            raise self.bootstrap_error
        progress("initialised (fake)")
        return InitResult(TOKEN, request.name, request.node or "san-a", request.peer,
                          1_800_000_000.0, request.tiebreaker)

    def join_cluster(self, token: str, progress: Progress) -> Config:
        self.joins.append(token)
        if self.bootstrap_error is not None:
            raise self.bootstrap_error
        return load_text(EXAMPLE.read_text())

    def replace_box(self, node: str, progress: Progress) -> InitResult:
        self.replaced.append(node)
        if self.bootstrap_error is not None:
            raise self.bootstrap_error
        return InitResult(TOKEN, "san", "san-a", node, 1_800_000_000.0, None)

    def upgrade_pair(self, path: str, progress: Progress) -> PairUpgrade:
        self.upgrades.append(path)
        if self.bootstrap_error is not None:
            raise self.bootstrap_error
        progress("san-b: staged in slot b")
        manifest = Manifest(Release("0.2.0", "abc", "0d9e8f7a-6b5c-5d4e-8f3a-2b1c0d9e8f7a"),
                            1 << 20, "0" * 64)
        return PairUpgrade(manifest, ("san-b",), (), "san-a")

    def root_shell(self) -> int:
        self.shells += 1
        return 0

    def hostname(self) -> str:
        return "san-a"

    def local_addresses(self) -> list[HeldAddress]:
        return list(self.addresses)

    def network_env(self) -> NetworkEnv:
        """This box's network file and networkd folder under the temp dir; no waiter runs."""
        root = self.desired.parent / "box"
        for nic in ("eno0", "eno1", "eno2", "ens1f0", "ens1f1", "ens2f0"):
            (root / "sys" / nic).mkdir(parents=True, exist_ok=True)
        return NetworkEnv(Networkd(NoCommands(), str(root)), lambda argv, seconds: None,
                          lambda: [], box_file=str(root / "network.toml"),
                          sys_net=str(root / "sys"), address_wait=0.0)


class NoCommands(Runner):
    """networkctl is for the lab: here a command is recorded and succeeds."""

    def __init__(self) -> None:
        self.argvs: list[list[str]] = []

    def run(self, argv: Sequence[str], **_: object) -> CommandResult:  # type: ignore[override]
        assert argv[0].startswith("/"), argv  # the real Runner takes absolute paths only
        self.argvs.append(list(argv))
        return CommandResult(tuple(argv), 0, "", "", 0.0)


class Clock:
    """A clock that moves one second per reading, so backups get distinct names."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, 12, 0, 0)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class Harness:
    """The console over a copy of the example, with answers to its questions queued."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.desired = tmp / "desired.toml"
        shutil.copy(EXAMPLE, self.desired)
        os.chmod(self.desired, 0o600)
        self.original = self.desired.read_text()
        self.backend = FakeBackend(self.desired)
        self.backups = Backups(tmp / "backup", clock=Clock())
        self.answers: list[bool] = []
        self.questions: list[str] = []
        self.secrets: list[str] = []
        self.progress: list[str] = []
        self.out = io.StringIO()
        self.err = io.StringIO()
        self.state = State(self.backend, self.backups, progress=self.progress.append,
                           ask=self._ask, ask_secret=lambda _prompt: self.secrets.pop(0))
        self.shell = ConsoleShell(self.state, str(tmp / "prefs"), out=self.out, err=self.err)

    def _ask(self, question: str) -> bool:
        self.questions.append(question)
        return self.answers.pop(0) if self.answers else False

    def run(self, cmdline: str) -> int:
        """Run one command line; the output of earlier ones is dropped."""
        for stream in (self.out, self.err):
            stream.seek(0)
            stream.truncate()
        # configshell's Console is a Borg (all instances share one state): with two
        # consoles in one test, the last one made would get both outputs.
        self.shell.con = Console(stdout=self.out, stderr=self.err)
        return self.shell.run_once(cmdline)

    def unchanged(self) -> bool:
        """Nothing applied, nothing saved, the file as it was."""
        return (not self.backend.applied and not self.backend.saved
                and self.desired.read_text() == self.original)
