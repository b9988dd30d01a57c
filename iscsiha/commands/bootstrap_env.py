"""What bootstrap works with: the outside world (``HostEnv``), its settings, and the
state a waiting join keeps.

Every file path is an absolute path of the box, placed under ``HostEnv.root``
(``/`` on a box, a temporary folder in tests).
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from iscsiha.commands.apply import Changes
from iscsiha.commands.bootstrap_params import HeldAddress
from iscsiha.commands.cluster_env import Cib, RunsCommands
from iscsiha.commands.node_steps import DESIRED_PATH
from iscsiha.executors.join_channel import Security
from iscsiha.model.types import Config, IPAddress

Progress = Callable[[str], None]
JOIN_PORT = 5407  # TCP, on the first box's first cluster link, only while a join waits
JOIN_TTL = 3600.0
JOIN_STATE = "/run/iscsiha/join.json"  # tmpfs: a reboot ends a pending join
JOIN_UNIT = "iscsiha-join.service"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
AUTHKEY_BYTES = 256  # as corosync-keygen makes it
CONNECT_TIMEOUT = 10.0
MEMBERS_TIMEOUT = 180.0
CIB_TIMEOUT = 120.0
# What the services write when they start: undone with them.
SERVICE_STATE = ("/var/lib/corosync", "/var/lib/pacemaker/cib")


class BootstrapCib(Cib, Protocol):
    def standby(self, node: str, on: bool) -> None: ...


class ServiceManager(Protocol):
    """executors.systemd.Systemd, as bootstrap uses it."""

    def start(self, unit: str, timeout: float = 90.0) -> None: ...

    def stop(self, unit: str, timeout: float = 90.0) -> None: ...

    def enable(self, *units: str) -> None: ...

    def disable(self, *units: str) -> None: ...

    def active_state(self, unit: str) -> str: ...

    def unit_file_state(self, unit: str) -> str: ...

    def start_transient(self, unit: str, argv: Sequence[str], description: str,
                        runtime_max: float) -> None: ...


@dataclass
class HostEnv:
    runner: RunsCommands
    systemd: ServiceManager
    cib: BootstrapCib
    security: Security
    addresses: Callable[[], list[HeldAddress]]
    hostname: Callable[[], str]
    # The final `apply` of the desired state, once both boxes are members.
    apply: Callable[[Config, str, Progress], Changes]
    # Instead, on a box that replaces a dead one: its volumes made anew (commands.replace).
    rebuild: Callable[[Config, str, Progress], None]
    start_listener: Callable[[HostEnv], None]
    root: Path = Path("/")
    desired_path: str = DESIRED_PATH
    join_port: int = JOIN_PORT
    random: Callable[[int], bytes] = os.urandom
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    def path(self, box_path: str) -> str:
        return str(self.root / box_path.lstrip("/"))


@dataclass(frozen=True)
class InitResult:
    token: str
    cluster: str
    node: str
    peer: str
    expires: float  # seconds since the epoch
    tiebreaker: str | None


@dataclass(frozen=True)
class PendingJoin:
    """What the join listener needs beyond the installed files; 0600 on tmpfs."""

    secret: bytes
    address: IPAddress
    port: int
    expires: float
    peer: str
    replacing: bool = False  # `cluster replace`: the peer comes back with empty disks

    def dump(self) -> bytes:
        return json.dumps({"secret": self.secret.hex(), "address": str(self.address),
                           "port": self.port, "expires": self.expires,
                           "peer": self.peer, "replacing": self.replacing}).encode()

    @classmethod
    def load(cls, data: bytes) -> PendingJoin:
        raw = json.loads(data)
        return cls(bytes.fromhex(raw["secret"]), ipaddress.ip_address(raw["address"]),
                   int(raw["port"]), float(raw["expires"]), str(raw["peer"]),
                   raw.get("replacing") is True)
