"""The tiebreaker: corosync-qnetd from the host, inside the lab namespace on the management network.

Run from the host's Debian package rather than a third UML node: it costs no
memory or boot time, and the quorum device protocol has been stable across
corosync-qdevice 3.x (bookworm's qnetd 3.0.3 serves trixie's qdevice 3.0.3).

The certificate scripts keep their database under the fixed path
/etc/corosync/qnetd. The supervisor bind-mounts the lab's own qnetd folder
there, in the lab's private mount namespace only, so the lab has its own CA and
never touches the host's.
"""

from __future__ import annotations

from pathlib import Path

from iscsiha.executors.runner import Runner
from iscsiha_lab.paths import LabPaths
from iscsiha_lab.tools import QNETD, QNETD_CERTUTIL, QNETD_TOOL
from iscsiha_lab.topology import Topology

QNETD_PORT = 5403
QNETD_CONFIG_DIR = Path("/etc/corosync/qnetd")  # fixed in corosync-qnetd-certutil


def nssdb(paths: LabPaths) -> Path:
    return paths.qnetd_dir / "nssdb"


def ca_certificate(paths: LabPaths) -> Path:
    return nssdb(paths) / "qnetd-cacert.crt"


def socket_path(paths: LabPaths) -> Path:
    return paths.qnetd_dir / "qnetd.sock"


def init_ca(runner: Runner, paths: LabPaths) -> None:
    """Make the CA and the server certificate (needs the bind mount over /etc/corosync/qnetd)."""
    if not ca_certificate(paths).exists():
        runner.run([QNETD_CERTUTIL.path, "-i"], timeout=120)


def sign(runner: Runner, paths: LabPaths, cluster: str, request: bytes) -> bytes:
    """Sign a cluster's certificate request (made by corosync-qdevice-net-certutil -r on a node)."""
    request_file = paths.qnetd_dir / f"{cluster}.crq"
    request_file.write_bytes(request)
    runner.run([QNETD_CERTUTIL.path, "-s", "-c", str(request_file), "-n", cluster], timeout=120)
    return (nssdb(paths) / f"cluster-{cluster}.crt").read_bytes()


def qnetd_argv(paths: LabPaths, topology: Topology) -> list[str]:
    # Lock file and status socket would default to /run/corosync-qnetd on the
    # host: keep them in the run directory.
    settings = (f"lock_file={paths.qnetd_dir / 'qnetd.pid'},"
                f"local_socket_file={socket_path(paths)}")
    return [QNETD.path, "-f", "-l", str(topology.qnetd_address), "-p", str(QNETD_PORT),
            "-S", settings]


def status_argv(paths: LabPaths) -> list[str]:
    return [QNETD_TOOL.path, "-l", "-v", "-p", str(socket_path(paths))]
