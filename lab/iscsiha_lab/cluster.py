"""Form the corosync/pacemaker cluster of the two appliance nodes, quorum through qnetd.

A stand-in for the product's bootstrap: everything goes through the exec
channel into the guests, with the stock tools (corosync-qdevice-net-certutil,
systemctl), in the same order an administrator would follow:

1. stop what the image may have started with Debian's default one-node config,
   and forget that config's CIB;
2. the same authkey and corosync.conf on both nodes;
3. qdevice certificates: the first node makes a request, qnetd's CA signs it,
   the first node turns it into a PKCS#12 bundle, the second node imports that;
4. enable and start corosync, corosync-qdevice, pacemaker on both.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from iscsiha.errors import IscsihaError, Secret
from iscsiha.model.types import NetworkRole
from iscsiha.plan.corosync import corosync_conf
from iscsiha.plan.peer_ssh import (
    AUTHORIZED_KEYS,
    KEY,
    KNOWN_HOSTS,
    SSH_DIR,
    authorized_keys,
    known_hosts,
)
from iscsiha_lab.desired import lab_config
from iscsiha_lab.guest import GuestChannel, GuestResult
from iscsiha_lab.topology import Topology

QDEVICE_DIR = "/etc/corosync/qdevice/net"
QDEVICE_NSSDB = f"{QDEVICE_DIR}/nssdb"
CERTUTIL = "corosync-qdevice-net-certutil"

# Writes stdin to a file with the product's own atomic writer (temporary name,
# fsync, rename, fsync the folder): without the fsyncs a power cut soon after (the
# lab's `kill`, a fence) leaves an empty file behind, as seen with corosync's authkey.
_PUT_FILE = ("import sys\nfrom iscsiha.executors.files import write_atomic\n"
             "write_atomic(sys.argv[1], sys.stdin.buffer.read(), int(sys.argv[2], 8))\n")


class LabAccess(Protocol):
    topology: Topology

    def channel(self, node: str) -> GuestChannel: ...

    def qnetd_ca(self) -> bytes: ...

    def qnetd_sign(self, cluster: str, request: bytes) -> bytes: ...

    def bmc_password(self) -> Secret: ...


def put_file(channel: GuestChannel, path: str, data: bytes, mode: int = 0o644) -> None:
    channel.run(["python3", "-c", _PUT_FILE, path, f"{mode:o}"], input=data, check=True)


def get_file(channel: GuestChannel, path: str) -> bytes:
    return channel.run(["cat", path], check=True).stdout


def _on_each(channels: list[GuestChannel], step: Callable[[GuestChannel], None]) -> None:
    """Run one step on every node at once: each exec waits on its own guest."""
    with ThreadPoolExecutor(max_workers=len(channels)) as pool:
        for future in [pool.submit(step, ch) for ch in channels]:
            future.result()  # re-raises the first failure


def bootstrap(lab: LabAccess, progress: Callable[[str], None]) -> None:
    topology = lab.topology
    first, *others = [lab.channel(n.name) for n in topology.appliances]
    everyone = [first, *others]
    units = ("corosync", "corosync-qdevice", "pacemaker")

    def reset(ch: GuestChannel) -> None:
        # The image's defaults are thrown away, so no graceful stop: pacemaker
        # asked to stop while it is still starting can take minutes to comply.
        ch.run(["systemctl", "kill", "--signal=SIGKILL", *units], timeout=60)
        ch.run(["systemctl", "stop", *reversed(units)], timeout=120, check=True)
        # Enabled but unconfigured, corosync-qdevice failed at boot often enough
        # to hit its start limit: without this, starting it now is refused.
        ch.run(["systemctl", "reset-failed", *units], timeout=30)
        ch.run(["sh", "-c", "rm -f /var/lib/pacemaker/cib/cib* /var/lib/corosync/*"], check=True)
        ch.run(["rm", "-rf", QDEVICE_NSSDB], check=True)

    progress("cluster: stopping image defaults")
    _on_each(everyone, reset)

    progress("cluster: authkey, corosync.conf, qnetd CA")
    authkey = os.urandom(256)
    conf = corosync_conf(lab_config(topology, lab.bmc_password())).encode()
    ca_path = f"{QDEVICE_DIR}/qnetd-cacert.crt"
    ca = lab.qnetd_ca()

    def configure(ch: GuestChannel) -> None:
        put_file(ch, "/etc/corosync/authkey", authkey, 0o400)
        put_file(ch, "/etc/corosync/corosync.conf", conf, 0o644)
        put_file(ch, ca_path, ca)
        ch.run([CERTUTIL, "-i", "-c", ca_path], timeout=120, check=True)

    _on_each(everyone, configure)

    progress("cluster: qdevice certificate signed by the tiebreaker's CA")
    first.run([CERTUTIL, "-r", "-n", topology.cluster_name], timeout=120, check=True)
    request = get_file(first, f"{QDEVICE_NSSDB}/qdevice-net-node.crq")
    signed = lab.qnetd_sign(topology.cluster_name, request)
    cert_path = f"{QDEVICE_NSSDB}/cluster-{topology.cluster_name}.crt"
    put_file(first, cert_path, signed)
    first.run([CERTUTIL, "-M", "-c", cert_path], timeout=120, check=True)
    bundle = get_file(first, f"{QDEVICE_NSSDB}/qdevice-net-node.p12")

    def import_bundle(ch: GuestChannel) -> None:
        put_file(ch, f"{QDEVICE_DIR}/qdevice-net-node.p12", bundle, 0o600)
        ch.run([CERTUTIL, "-m", "-c", f"{QDEVICE_DIR}/qdevice-net-node.p12"], timeout=120,
               check=True)

    _on_each(others, import_bundle)

    progress("cluster: SSH trust between the boxes (the cluster key)")
    peer_ssh_setup(lab)

    progress("cluster: starting corosync, corosync-qdevice, pacemaker")

    def enable(ch: GuestChannel) -> None:
        # Only what is not enabled yet: `systemctl enable` costs 10 s and more per
        # call in UML (the SysV compatibility script), and images enable them anyway.
        states = ch.run(["systemctl", "is-enabled", *units], timeout=30).out.split()
        todo = [u for u, state in zip(units, states, strict=False) if state != "enabled"]
        if todo:
            ch.run(["systemctl", "enable", "--no-reload", *todo], timeout=180, check=True)

    _on_each(everyone, enable)
    for unit in units:
        def start(ch: GuestChannel, unit: str = unit) -> None:
            ch.run(["systemctl", "start", unit], timeout=180, check=True)

        _on_each(everyone, start)
    # The certificate databases and enablement links were written by the tools
    # themselves: flush them too, so the cluster survives the lab's power cuts.
    def flush(ch: GuestChannel) -> None:
        ch.run(["sync"], timeout=120, check=True)

    _on_each(everyone, flush)


def peer_ssh_setup(lab: LabAccess) -> None:
    """One cluster key on both boxes, usable only for `iscsiha node` steps from the peer.

    A stand-in for `cluster init/join`, like the rest of this module.
    """
    config = lab_config(lab.topology, lab.bmc_password())
    links = [n.name for n in config.cluster.networks_with(NetworkRole.CLUSTER)]
    channels = {node.name: lab.channel(node.name) for node in config.cluster.nodes}
    first = channels[config.cluster.nodes[0].name]
    first.run(["sh", "-c", f"mkdir -p {SSH_DIR} && chmod 700 {SSH_DIR} && "
               f"{{ test -e {KEY} || ssh-keygen -q -t ed25519 -N '' -C iscsiha-cluster "
               f"-f {KEY}; }}"], timeout=60, check=True)
    private, public = get_file(first, KEY), get_file(first, f"{KEY}.pub").decode()
    addresses = {n.name: [n.address_on(link) for link in links] for n in config.cluster.nodes}
    hosts = known_hosts((addresses[name], get_file(ch, "/etc/ssh/ssh_host_ed25519_key.pub")
                         .decode()) for name, ch in channels.items())
    for name, ch in channels.items():
        peer = next(n for n in addresses if n != name)
        put_file(ch, KEY, private, 0o600)
        put_file(ch, f"{KEY}.pub", public.encode(), 0o644)
        put_file(ch, KNOWN_HOSTS, hosts.encode(), 0o644)
        put_file(ch, AUTHORIZED_KEYS, authorized_keys(public, addresses[peer]).encode(), 0o600)


def quorum_status(channel: GuestChannel) -> GuestResult:
    return channel.run(["corosync-quorumtool", "-s"], timeout=30)


def is_quorate_with_qdevice(text: str) -> bool:
    quorate = re.search(r"^Quorate:\s+Yes", text, re.MULTILINE) is not None
    qdevice = re.search(r"^\s*0\s+1\s+Qdevice", text, re.MULTILINE) is not None
    return quorate and qdevice


def pacemaker_members(channel: GuestChannel) -> tuple[set[str], str]:
    """The nodes pacemaker has online, as this node sees it, and the raw output.

    crm_mon (pacemaker-cli-utils) shows them once a DC is elected; an image
    without it falls back to `crm_node -p`, the controller's partition members,
    from the pacemaker package itself (an earlier, weaker sign).
    """
    mon = channel.run(["crm_mon", "-1"], timeout=30)
    if mon.returncode != 127:
        online = re.search(r"Online:\s*\[([^\]]*)\]", mon.out)
        return (set(online.group(1).split()) if online else set()), mon.out + mon.err
    partition = channel.run(["crm_node", "-p"], timeout=30)
    return set(partition.out.split()), partition.out + partition.err


def wait_formed(lab: LabAccess, timeout: float, progress: Callable[[str], None]) -> float:
    """Wait until every appliance node is quorate with the qdevice vote and pacemaker has both."""
    started = time.monotonic()
    deadline = started + timeout
    names = [n.name for n in lab.topology.appliances]
    last = ""
    while time.monotonic() < deadline:
        formed = True
        for name in names:
            ch = lab.channel(name)
            quorum = quorum_status(ch)
            members, raw = pacemaker_members(ch)
            if not is_quorate_with_qdevice(quorum.out) or members != set(names):
                formed = False
                last = (f"{name}: corosync-quorumtool -s: {quorum.out.strip()!r}; "
                        f"pacemaker: {raw.strip()!r}")
                break
        if formed:
            seconds = time.monotonic() - started
            progress(f"cluster: formed, quorate through qnetd ({seconds:.1f} s)")
            return seconds
        time.sleep(2.0)
    raise IscsihaError.single(
        "cluster-not-formed", "cluster", lab.topology.cluster_name,
        f"both nodes online and quorate with the qdevice vote within {timeout:.0f} s",
        last[-1500:])
