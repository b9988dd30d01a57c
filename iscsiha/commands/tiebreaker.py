"""The tiebreaker's certificate: corosync-qdevice talks TLS to corosync-qnetd with a
certificate its CA signed for this cluster.

corosync's own steps (corosync-qdevice-net-certutil(8)): the first box makes an
NSS database holding the qnetd CA, makes a certificate request, has the qnetd
host sign it, and turns the signed certificate into a PKCS#12 bundle; the second
box imports that bundle. Only fetching the CA and signing involve the qnetd host,
behind the ``Tiebreaker`` interface: over SSH in a standard deployment (as the
stock ``-Q`` quick start does), through a local program where the lab or a site
has its own way (docs/bootstrap.md).
"""

from __future__ import annotations

import base64
import binascii
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from iscsiha.commands.cluster_env import RunsCommands
from iscsiha.errors import IscsihaError
from iscsiha.executors import files
from iscsiha.executors.transaction import Transaction

CERTUTIL = "/usr/sbin/corosync-qdevice-net-certutil"
SSH = "/usr/bin/ssh"
QDEVICE_DIR = "/etc/corosync/qdevice/net"
NSSDB = f"{QDEVICE_DIR}/nssdb"  # fixed in corosync-qdevice-net-certutil
CA_PATH = f"{QDEVICE_DIR}/qnetd-cacert.crt"
REQUEST = f"{NSSDB}/qdevice-net-node.crq"
BUNDLE = f"{NSSDB}/qdevice-net-node.p12"  # made by -M on the first box
PEER_BUNDLE = f"{QDEVICE_DIR}/qdevice-net-node.p12"  # where the second box gets it
QNETD_DB = "/etc/corosync/qnetd/nssdb"  # fixed in corosync-qnetd-certutil
QNETD_CERTUTIL = "corosync-qnetd-certutil"
TIMEOUT = 120.0


class Tiebreaker(Protocol):
    """The qnetd host's CA: its certificate, and signing a cluster's request."""

    def ca_certificate(self) -> bytes: ...

    def sign(self, cluster: str, request: bytes) -> bytes: ...


class SshTiebreaker:
    """Over SSH to the qnetd host as ``user`` (root, or one who may use the qnetd CA).

    The admin authenticates as with any SSH login (key, agent or password, asked
    on the terminal once: both calls share one connection); the appliance keeps no
    credential for the tiebreaker.
    """

    def __init__(self, runner: RunsCommands, host: str, user: str = "root") -> None:
        self.runner = runner
        self.host = host
        self.user = user
        self._control: str | None = None

    def __enter__(self) -> SshTiebreaker:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._control is not None:
            self.runner.run([SSH, *self._options(), "-O", "exit", self._target()],
                            check=False, timeout=10.0)
            shutil.rmtree(self._control, ignore_errors=True)
            self._control = None

    def ca_certificate(self) -> bytes:
        return self._remote(f"cat {QNETD_DB}/qnetd-cacert.crt", None).encode()

    def sign(self, cluster: str, request: bytes) -> bytes:
        name = shlex.quote(cluster)
        script = ("set -e; d=$(mktemp -d); trap 'rm -rf \"$d\"' EXIT; "
                  "base64 -d > \"$d/request\"; "
                  f"{QNETD_CERTUTIL} -s -c \"$d/request\" -n {name} >&2; "
                  f"base64 < {QNETD_DB}/cluster-{name}.crt")
        return _unbase64(self._remote(f"sh -c {shlex.quote(script)}",
                                      base64.b64encode(request).decode()), self.host)

    def _target(self) -> str:
        return f"{self.user}@{self.host}"

    def _options(self) -> list[str]:
        if self._control is None:
            self._control = tempfile.mkdtemp(prefix="iscsiha-qnetd-")
        return ["-o", "ConnectTimeout=10", "-o", "ControlMaster=auto",
                "-o", f"ControlPath={self._control}/%C", "-o", "ControlPersist=120"]

    def _remote(self, command: str, stdin: str | None) -> str:
        result = self.runner.run([SSH, *self._options(), self._target(), command],
                                 input=stdin, check=False, timeout=TIMEOUT)
        if result.returncode != 0:
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
            raise IscsihaError.single(
                "tiebreaker-failed", "tiebreaker", self._target(),
                f"a corosync-qnetd host where {self.user} may run {QNETD_CERTUTIL} "
                "over SSH (its CA made with corosync-qnetd-certutil -i)",
                f"ssh exited with {result.returncode}: "
                f"{detail[-1] if detail else 'no output'}")
        return result.stdout


class CommandTiebreaker:
    """A local program: ``PROGRAM ca`` prints the CA certificate (base64), ``PROGRAM
    sign CLUSTER`` reads the request (base64) and prints the certificate (base64)."""

    def __init__(self, runner: RunsCommands, argv: Sequence[str]) -> None:
        self.runner = runner
        self.argv = list(argv)

    def ca_certificate(self) -> bytes:
        return _unbase64(self._run(["ca"], None), self.argv[0])

    def sign(self, cluster: str, request: bytes) -> bytes:
        return _unbase64(self._run(["sign", cluster], base64.b64encode(request).decode()),
                         self.argv[0])

    def _run(self, args: list[str], stdin: str | None) -> str:
        result = self.runner.run([*self.argv, *args], input=stdin, check=False,
                                 timeout=TIMEOUT)
        if result.returncode != 0:
            raise IscsihaError.single(
                "tiebreaker-failed", "tiebreaker signer", " ".join([*self.argv, *args]),
                "exit code 0", (result.stderr.strip() or f"exit {result.returncode}")[-300:])
        return result.stdout


@dataclass(frozen=True)
class TiebreakerAccess:
    """How `cluster init` reaches the qnetd CA: SSH as ``user``, or a ``signer`` program."""

    user: str = "root"
    signer: str | None = None  # a command line, split like a shell's


@contextmanager
def open_tiebreaker(runner: RunsCommands, host: str | None,
                    access: TiebreakerAccess) -> Iterator[Tiebreaker | None]:
    """None without a tiebreaker host; the SSH connection closes on leaving."""
    if access.signer:
        yield CommandTiebreaker(runner, shlex.split(access.signer))
    elif host:
        with SshTiebreaker(runner, host, access.user) as ssh:
            yield ssh
    else:
        yield None


def _unbase64(text: str, source: str) -> bytes:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except binascii.Error as exc:
        raise IscsihaError.single("tiebreaker-failed", "tiebreaker", source,
                                  "a certificate in base64", "answered something else") from exc


# -- on the boxes -------------------------------------------------------------------------

def enrol_first(tx: Transaction, runner: RunsCommands, tiebreaker: Tiebreaker, ca: bytes,
                cluster: str) -> None:
    """The NSS database with the CA, a request, the signed certificate, the bundle."""
    tx.write(CA_PATH, ca, 0o644)
    tx.fresh_tree(NSSDB)
    runner.run([CERTUTIL, "-i", "-c", tx.path(CA_PATH)], timeout=TIMEOUT)
    runner.run([CERTUTIL, "-r", "-n", cluster], timeout=TIMEOUT)
    request = files.read(tx.path(REQUEST))
    if not request:
        raise IscsihaError.single("qdevice-request-missing", "file", REQUEST,
                                  "the request corosync-qdevice-net-certutil -r makes",
                                  "is missing or empty")
    signed = f"{NSSDB}/cluster-{cluster}.crt"
    tx.write(signed, tiebreaker.sign(cluster, request), 0o600)
    runner.run([CERTUTIL, "-M", "-c", tx.path(signed)], timeout=TIMEOUT)


def enrol_peer(tx: Transaction, runner: RunsCommands, ca: bytes, bundle: bytes) -> None:
    """The second box: the same CA, and the first box's bundle."""
    tx.write(CA_PATH, ca, 0o644)
    tx.fresh_tree(NSSDB)
    runner.run([CERTUTIL, "-i", "-c", tx.path(CA_PATH)], timeout=TIMEOUT)
    tx.write(PEER_BUNDLE, bundle, 0o600)
    runner.run([CERTUTIL, "-m", "-c", tx.path(PEER_BUNDLE)], timeout=TIMEOUT)
