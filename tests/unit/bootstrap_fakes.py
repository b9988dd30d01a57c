"""Two boxes for bootstrap tests: each a temp folder as its root, with fake systemd,
Pacemaker, runner and tiebreaker, and the join exchange over real loopback sockets.

Python 3.11 has no TLS-PSK, so ``KeyCheck`` stands in for it: it refuses a
connection whose key differs, as the TLS handshake would (tests/unit/test_join_token.py
runs the real TlsPsk where Python has it).
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

from iscsiha.commands import bootstrap, bootstrap_env
from iscsiha.commands.apply import Changes
from iscsiha.commands.bootstrap_env import HostEnv, Progress
from iscsiha.commands.bootstrap_params import HeldAddress, InitRequest
from iscsiha.commands.tiebreaker import CERTUTIL, NSSDB
from iscsiha.errors import IscsihaError, Secret
from iscsiha.executors.join_channel import HandshakeFailed, Stream
from iscsiha.executors.pacemaker import Pacemaker
from iscsiha.executors.runner import CommandResult
from iscsiha.model.types import Config
from tests.unit import ssh_keys

WAIT = 20.0  # the longest any test waits for a thread or a socket

NETWORKS = {"link0": "127.0.0.0/24,127.0.0.11,127.0.0.12",  # loopback: the join listens here
            "link1": "10.11.0.0/24,10.11.0.11,10.11.0.12",
            "repl": "10.20.0.0/24,10.20.0.11,10.20.0.12",
            "storage": "10.30.0.0/24,10.30.0.11,10.30.0.12"}


def request(**changes: object) -> InitRequest:
    values: dict[str, object] = dict(
        name="san", peer="san-b", networks=dict(NETWORKS), bmc="10.0.0.21", bmc_user="fence",
        bmc_password=Secret("bmc-a-secret"), peer_bmc="10.0.0.22", peer_bmc_user="fence",
        peer_bmc_password=Secret("bmc-b-secret"), ping=("10.30.0.1",),
        tiebreaker="10.0.0.5")
    values.update(changes)
    return InitRequest(**values)  # type: ignore[arg-type]


def held(box: int) -> list[HeldAddress]:
    """What a correctly cabled box holds: box 1 is san-a (.11), box 2 san-b (.12)."""
    out: list[HeldAddress] = [("eth0", ip_address("192.168.1.5"), 24)]
    for ifname, (net, spec) in zip(("lo", "eth1", "eth2", "eth3"), NETWORKS.items(),
                                   strict=True):
        subnet, *addresses = spec.split(",")
        out.append((ifname if net != "link0" else "lo", ip_address(addresses[box - 1]),
                    int(subnet.split("/")[1])))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.11", 0))
        return int(s.getsockname()[1])


class KeyCheck:
    """Stands in for TLS-PSK: the client shows a hash of its key; a mismatch is refused."""

    def unavailable(self) -> str | None:
        return None

    def server(self, sock: socket.socket, psk: bytes) -> Stream:
        sock.settimeout(WAIT)
        shown = _exactly(sock, 32)
        if shown != hashlib.sha256(psk).digest():
            sock.close()
            raise HandshakeFailed("binder does not verify")
        sock.sendall(b"ok")
        return sock

    def client(self, sock: socket.socket, psk: bytes) -> Stream:
        sock.sendall(hashlib.sha256(psk).digest())
        if _exactly(sock, 2) != b"ok":
            raise HandshakeFailed("sslv3 alert illegal parameter")
        return sock


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    try:
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data


@dataclass
class FakeSystemd:
    root: Path
    calls: list[tuple[str, ...]] = field(default_factory=list)
    active: set[str] = field(default_factory=set)
    enabled: set[str] = field(default_factory=set)
    fail_start: set[str] = field(default_factory=set)

    def start(self, unit: str, timeout: float = 90.0) -> None:
        self.calls.append(("start", unit))
        # What the real services leave behind: their state folders fill up.
        state = {"corosync.service": "var/lib/corosync/ringid_1",
                 "pacemaker.service": "var/lib/pacemaker/cib/cib.xml"}.get(unit)
        if state:
            (self.root / state).parent.mkdir(parents=True, exist_ok=True)
            (self.root / state).write_text("state")
        if unit in self.fail_start:
            raise IscsihaError.single("unit-state", "unit", unit, "reaching active within 90 s",
                                      "is failed")
        self.active.add(unit)

    def stop(self, unit: str, timeout: float = 90.0) -> None:
        self.calls.append(("stop", unit))
        self.active.discard(unit)

    def enable(self, *units: str) -> None:
        self.calls.append(("enable", *units))
        self.enabled.update(units)

    def disable(self, *units: str) -> None:
        self.calls.append(("disable", *units))
        self.enabled.difference_update(units)

    def active_state(self, unit: str) -> str:
        return "active" if unit in self.active else "inactive"

    def unit_file_state(self, unit: str) -> str:
        return "enabled" if unit in self.enabled else "disabled"

    def start_transient(self, unit: str, argv: Sequence[str], description: str,
                        runtime_max: float) -> None:
        self.calls.append(("start_transient", unit, *argv))
        self.active.add(unit)


def empty_cib(num_updates: int) -> str:
    return (f'<cib admin_epoch="0" epoch="1" num_updates="{num_updates}"><configuration>'
            '<crm_config/><nodes/><resources/><constraints/></configuration><status/></cib>')


@dataclass
class FakeCib(Pacemaker):
    """Pacemaker's CIB as bootstrap sees it; ``update``'s retry is the real one."""

    online: set[str] = field(default_factory=set)
    patches: list[tuple[str, str]] = field(default_factory=list)
    not_ready: int = 0  # queries that fail first, as while Pacemaker starts
    status_not_ready: int = 0  # crm_mon calls that fail first (cannot connect yet)
    moves_after_read: int = 0  # reads after which Pacemaker bumps the version itself
    version: int = 3
    standby_calls: list[tuple[str, bool]] = field(default_factory=list)

    def query(self) -> str:
        if self.not_ready:
            self.not_ready -= 1
            raise IscsihaError.single("command-failed", "command", "cibadmin --query",
                                      "exit code 0", "exited with 102")
        text = empty_cib(self.version)
        if self.moves_after_read:
            self.moves_after_read -= 1
            self.version += 1
        return text

    def patch(self, old: str, new: str) -> bool:
        if old != empty_cib(self.version):
            raise IscsihaError.single("cib-patch-refused", "CIB", "Update was older",
                                      "a CIB unchanged since it was read")
        self.patches.append((old, new))
        self.version += 1
        return True

    def wait(self, timeout: float) -> None:
        pass

    def standby(self, node: str, on: bool) -> None:
        self.standby_calls.append((node, on))

    def status(self) -> str:
        if self.status_not_ready:
            self.status_not_ready -= 1
            raise IscsihaError.single("command-failed", "command", "crm_mon --one-shot",
                                      "exit code 0", "exited with 102")
        nodes = "".join(f'<node name="{n}" online="true"/>' for n in sorted(self.online))
        return f"<crm_mon><nodes>{nodes}</nodes></crm_mon>"


@dataclass
class FakeRunner:
    """ssh-keygen and corosync-qdevice-net-certutil, as files under the box's root."""

    root: Path
    calls: list[list[str]] = field(default_factory=list)

    def run(self, argv: list[str], *, input: str | None = None, check: bool = True,
            timeout: float | None = 60.0) -> CommandResult:
        self.calls.append(list(argv))
        nssdb = self.root / NSSDB.lstrip("/")
        if argv[0] == bootstrap_env.SSH_KEYGEN:
            key = Path(argv[argv.index("-f") + 1])
            key.write_text(f"PRIVATE KEY {os.urandom(4).hex()}\n")
            key.with_suffix(".pub").write_text(f"{ssh_keys.CLUSTER} iscsiha-cluster\n")
        elif argv[:2] == [CERTUTIL, "-i"]:
            nssdb.mkdir(parents=True)
            (nssdb / "cert9.db").write_bytes(Path(argv[3]).read_bytes())
        elif argv[:2] == [CERTUTIL, "-r"]:
            (nssdb / "qdevice-net-node.crq").write_bytes(b"REQUEST " + argv[3].encode())
        elif argv[:2] == [CERTUTIL, "-M"]:
            signed = Path(argv[3]).read_bytes()
            (nssdb / "qdevice-net-node.p12").write_bytes(b"BUNDLE " + signed)
        elif argv[:2] == [CERTUTIL, "-m"]:
            (nssdb / "imported.p12").write_bytes(Path(argv[3]).read_bytes())
        return CommandResult(tuple(argv), 0, "", "", 0.0)


@dataclass
class FakeTiebreaker:
    signed: list[tuple[str, bytes]] = field(default_factory=list)
    error: IscsihaError | None = None

    def ca_certificate(self) -> bytes:
        if self.error is not None:
            raise self.error
        return b"QNET CA CERTIFICATE\n"

    def sign(self, cluster: str, request: bytes) -> bytes:
        self.signed.append((cluster, request))
        return b"SIGNED " + request


class Box:
    """One box: its root folder, its fakes and its HostEnv."""

    def __init__(self, root: Path, name: str, number: int, port: int) -> None:
        self.root = root
        self.name = name
        self.held = held(number)
        self.systemd = FakeSystemd(root)
        self.cib = FakeCib()
        self.runner = FakeRunner(root)
        self.applied: list[Config] = []
        self.rebuilt: list[Config] = []
        self.apply_error: IscsihaError | None = None
        self.progress: list[str] = []
        self.listener: list[str] = []
        host_key = root / "etc/ssh/ssh_host_ed25519_key.pub"
        host_key.parent.mkdir(parents=True)
        host_key.write_text(f"{ssh_keys.ed25519(f'host {name}')} root@{name}\n")
        for folder in bootstrap_env.SERVICE_STATE:  # as the packages install them
            (root / folder.lstrip("/")).mkdir(parents=True)
        debian = root / "etc/corosync/corosync.conf"
        debian.parent.mkdir(parents=True)
        debian.write_text("# Debian's example: one node called node1\n")
        self.env = HostEnv(
            runner=self.runner, systemd=self.systemd, cib=self.cib, security=KeyCheck(),
            addresses=lambda: list(self.held), hostname=lambda: self.name, apply=self._apply,
            rebuild=lambda config, text, progress: self.rebuilt.append(config),
            start_listener=lambda env: self.listener.append("started"), root=root,
            join_port=port, sleep=lambda _seconds: None)

    def _apply(self, config: Config, text: str, progress: Progress) -> Changes:
        if self.apply_error is not None:
            raise self.apply_error
        self.applied.append(config)
        return Changes((), (), (), True)

    def file(self, path: str) -> bytes:
        return (self.root / path.lstrip("/")).read_bytes()

    def mode(self, path: str) -> int:
        return (self.root / path.lstrip("/")).stat().st_mode & 0o7777

    def snapshot(self) -> dict[str, tuple[bytes | None, int]]:
        """Every file and folder under the root, with content and mode."""
        found: dict[str, tuple[bytes | None, int]] = {}
        for folder, dirs, names in os.walk(self.root):
            for name in dirs + names:
                path = Path(folder, name)
                content = None if path.is_dir() else path.read_bytes()
                found[str(path.relative_to(self.root))] = (content,
                                                           path.stat().st_mode & 0o7777)
        return found


class Server:
    """The first box's join listener (`cluster serve-join`) in a thread, waiting at most
    ``ttl`` seconds (the pending join's expiry, moved that close)."""

    def __init__(self, box: Box, ttl: float = WAIT) -> None:
        self.box = box
        self.ttl = ttl
        self.log: list[str] = []
        self.result: list[bool | IscsihaError] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result.append(bootstrap.serve_join(self.box.env, self.log.append))
        except IscsihaError as exc:
            self.result.append(exc)

    def __enter__(self) -> Server:
        expires = bootstrap_env.PendingJoin.load(self.box.file(bootstrap_env.JOIN_STATE)).expires
        self.box.env.clock = lambda: expires - self.ttl
        self.thread.start()
        deadline = time.monotonic() + WAIT
        while not any(line.startswith("waiting for") for line in self.log):
            assert self.thread.is_alive() and time.monotonic() < deadline, self.result
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.wait()

    def wait(self) -> bool | IscsihaError:
        """Until the listener has ended; whether a box joined (or why it failed)."""
        self.thread.join(self.ttl + 5.0)
        assert not self.thread.is_alive(), "the join listener did not end"
        return self.result[0]
